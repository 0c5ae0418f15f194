"""Elasticsearch fixtures: one real node per test session.

* ``es_node`` (session): a running ``elasticsearch_local.Node`` (HTTPS, API key,
  password; see scripts/elasticsearch_local.py), started on first use and
  stopped at the end of the session.  If the node cannot start the fixture
  raises: Elasticsearch tests fail, they are never skipped.
* ``es`` (function): an ``ElasticsearchHelper`` bound to that node, for tests
  to inspect and clean the cluster.

Tests may also ``import elasticsearch_local`` (scripts/ is put on sys.path
here) to call ``stop_node``/``restart_node`` on ``es_node`` or to start their
own node with special settings.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import elasticsearch_local  # noqa: E402
from node_helper import NodeHelper, running_node  # noqa: E402
pytest_plugins = ["opensearch_fixtures"]  # os_node, os: the OpenSearch node (tests/ is on pythonpath)

# Every `modelscribe run` serves /metrics on 127.0.0.1:9464 by default: agents
# started by tests (subprocesses inherit this) do not, so two of them, or a
# test run next to a developer's agent, never fight over the port. Tests of
# the metrics endpoint pass --metrics-addr, which wins over the variable.
os.environ.setdefault("MODELSCRIBE_METRICS_ADDR", "off")


class ElasticsearchHelper(NodeHelper):
    """Small synchronous helpers over plain HTTPS; work on 8.x and 9.x nodes."""

    def __init__(self, node: elasticsearch_local.Node) -> None:
        super().__init__(elasticsearch_local, node)

    def delete_index(self, pattern: str) -> None:
        """Delete the indices and data streams matching `pattern` (missing is fine).

        The integ-test distribution has no data-streams module, hence no
        ``DELETE /_data_stream`` API: there a data stream is emptied instead
        (rolled over, then all its old backing indices deleted) and stays,
        with its index template, until the node goes away.
        """
        status, resolved = self.request("GET", f"/_resolve/index/{pattern}")
        if status == 404:
            return
        if status >= 300:
            raise AssertionError(f"resolve {pattern} -> {status}: {resolved}")
        for stream in resolved["data_streams"]:
            name = stream["name"]
            status, resp = self.request("DELETE", f"/_data_stream/{name}")
            if status == 200:
                continue
            if "no handler found" not in str(resp) and "Incorrect HTTP method" not in str(resp):
                raise AssertionError(f"DELETE /_data_stream/{name} -> {status}: {resp}")
            self.ok("POST", f"/{name}/_rollover")
            self.ok("DELETE", "/" + ",".join(stream["backing_indices"]))
        indices = [index["name"] for index in resolved["indices"]]
        if indices:
            self.ok("DELETE", "/" + ",".join(indices) + "?ignore_unavailable=true")


@pytest.fixture(scope="session")
def es_node(tmp_path_factory: pytest.TempPathFactory):
    """The session's Elasticsearch node (version: $MODELSCRIBE_ES_VERSION or the default)."""
    with running_node(elasticsearch_local, tmp_path_factory.mktemp("elasticsearch")) as node:
        yield node


@pytest.fixture(scope="session")
def mtls_node(tmp_path_factory: pytest.TempPathFactory):
    """A second Elasticsearch node, whose HTTPS layer requires a client
    certificate (``Node.client_cert``, ``Node.client_key``): shared by the
    modules that test client certificates, which never change it (they
    rotate copies of its files)."""
    work = tmp_path_factory.mktemp("es-client-auth")
    node = elasticsearch_local.start_node(work, client_auth=True)
    try:
        yield node
    finally:
        elasticsearch_local.remove_node(work)


@pytest.fixture
def es(es_node: elasticsearch_local.Node) -> ElasticsearchHelper:
    return ElasticsearchHelper(es_node)


@pytest.fixture(scope="session")
def es_session(es_node: elasticsearch_local.Node) -> ElasticsearchHelper:
    """``es`` for module- or session-scoped fixtures that fill the node once."""
    return ElasticsearchHelper(es_node)


@pytest.fixture
def agent_log():
    """The agent's own log records, from INFO: a handler on its logger, so
    neither the propagation nor the level ``selflog.configure`` or another
    test left matters."""
    logger = logging.getLogger("modelscribe")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def saved_handlers():
    """Whatever a test installs, the process gets its own signal handlers back."""
    import signal

    from agent.early_signals import HANDLED

    saved = {sig: signal.getsignal(sig) for sig in HANDLED}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
