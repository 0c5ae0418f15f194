"""Outputs: where documents go. Every output implements ``base.Output`` and
goes through the same delivery path (``sender``): a batch is acknowledged
only after the output confirmed it, which is what lets the registry commit."""

from __future__ import annotations

from agent.config import Config
from agent.outputs.base import Output


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
    return ElasticsearchOutput.from_config(config)
