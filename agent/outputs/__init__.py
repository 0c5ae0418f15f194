"""Outputs: where documents go. Every output implements ``base.Output`` and
goes through the same delivery path (``sender``): a batch is acknowledged
only after the output confirmed it, which is what lets the registry commit.

``--output elasticsearch`` (the default) asks the cluster's root endpoint
what it is, once, when the output is built: an OpenSearch cluster gets the
OpenSearch output (its security and version APIs; delivery is the same). A
cluster that does not answer within ``DETECT_TIMEOUT`` keeps the
Elasticsearch output: shipping works the same on both engines, only
``check``, the start-up check of ``--once`` and the hints of an
authentication failure speak Elasticsearch until the agent restarts.
"""

from __future__ import annotations

from agent.config import Config
from agent.errors import OutputError
from agent.outputs.base import Output
from agent.selflog import get_logger

log = get_logger("output")
DETECT_TIMEOUT = 5.0  # seconds; the start-up must not wait long for a cluster that is down


def build_output(config: Config) -> Output:
    """The output named by --output."""
    # Each import only when chosen: the Elasticsearch client alone takes about
    # a third of the agent's start-up time.
    if config.output == "null":
        from agent.outputs.null import NullOutput
        return NullOutput()
    if config.output == "console":
        from agent.outputs.console import ConsoleOutput
        return ConsoleOutput()
    if config.output.startswith("file:"):
        from agent.outputs.file import FileOutput
        return FileOutput(config.output[5:])
    if config.output == "opensearch":
        # The same bulk delivery path, OpenSearch's security and version APIs.
        from agent.outputs.opensearch import OpenSearchOutput
        return OpenSearchOutput.from_config(config)
    from agent.outputs.elasticsearch import ElasticsearchOutput
    from agent.outputs.opensearch import OpenSearchOutput, detect_engine

    output = ElasticsearchOutput.from_config(config)
    try:
        root = output.request("GET", "/", timeout=DETECT_TIMEOUT)
    except OutputError as error:  # down or refusing now: see the module docstring
        log.debug("cannot tell the cluster's engine; the Elasticsearch output is used", error=str(error))
        return output
    engine = detect_engine(root)
    if engine != "opensearch":
        if engine == "elasticsearch":
            number = str(root.body["version"].get("number", "?"))
            if number.split(".")[0] not in ("8", "9"):
                log.warning("this Elasticsearch version is not supported (8.x, 9.x): shipping anyway, but data "
                            "streams, templates and setup may not work; `modelscribe check output` says more",
                            version=number, url=config.es_urls[0])
        return output
    output.close()
    log.info("the cluster's root endpoint says OpenSearch: the OpenSearch output is used (--output opensearch)",
             url=config.es_urls[0])
    return OpenSearchOutput.from_config(config)
