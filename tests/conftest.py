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

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import elasticsearch_local  # noqa: E402
pytest_plugins = ["opensearch_fixtures"]  # os_node, os: the OpenSearch node (tests/ is on pythonpath)

# Every `modelscribe run` serves /metrics on 127.0.0.1:9464 by default: agents
# started by tests (subprocesses inherit this) do not, so two of them, or a
# test run next to a developer's agent, never fight over the port. Tests of
# the metrics endpoint pass --metrics-addr, which wins over the variable.
os.environ.setdefault("MODELSCRIBE_METRICS_ADDR", "off")


class ElasticsearchHelper:
    """Small synchronous helpers over plain HTTPS; work on 8.x and 9.x nodes."""

    def __init__(self, node: elasticsearch_local.Node) -> None:
        self.node = node

    def request(self, method: str, path: str, body: Any = None,
                auth: str | None = "password") -> tuple[int, Any]:
        """(status, parsed body); error statuses are returned, not raised."""
        return elasticsearch_local.request(self.node, method, path, body, auth=auth)

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, resp = self.request(method, path, body)
        if status >= 300:
            raise AssertionError(f"{method} {path} -> {status}: {resp}")
        return resp

    def count(self, index: str) -> int:
        """Documents in `index` (pattern allowed) after a refresh; 0 if it does not exist."""
        status, resp = self.request("POST", f"/{index}/_refresh")
        if status == 404:
            return 0
        if status >= 300:
            raise AssertionError(f"refresh {index} -> {status}: {resp}")
        return self._ok("GET", f"/{index}/_count")["count"]

    def search_all(self, index: str, size: int = 10000) -> list[dict]:
        """The ``_source`` of up to `size` documents, sorted by log.offset when present."""
        status, resp = self.request("POST", f"/{index}/_refresh")
        if status == 404:
            return []
        resp = self._ok("POST", f"/{index}/_search",
                        {"size": size, "query": {"match_all": {}}, "sort": ["_doc"]})
        sources = [hit["_source"] for hit in resp["hits"]["hits"]]
        # Documents without an offset keep their order, after the others.
        return sorted(sources, key=lambda s: (_offset(s) is None, _offset(s) or 0))

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
            self._ok("POST", f"/{name}/_rollover")
            self._ok("DELETE", "/" + ",".join(stream["backing_indices"]))
        indices = [index["name"] for index in resolved["indices"]]
        if indices:
            self._ok("DELETE", "/" + ",".join(indices) + "?ignore_unavailable=true")


def _offset(source: dict) -> Any:
    log = source.get("log")
    if isinstance(log, dict) and "offset" in log:
        return log["offset"]
    return source.get("log.offset")


@pytest.fixture(scope="session")
def es_node(tmp_path_factory: pytest.TempPathFactory):
    """The session's Elasticsearch node (version: $MODELSCRIBE_ES_VERSION or the default)."""
    work_dir = tmp_path_factory.mktemp("elasticsearch")
    # No try/except: a node that cannot start must fail the tests loudly.
    node = elasticsearch_local.start_node(work_dir)
    try:
        yield node
    finally:
        # By work dir, so a node restarted by a test (new pid) is stopped too.
        # remove_node stops it, deletes its data and keeps its logs in work_dir.
        elasticsearch_local.remove_node(work_dir)


@pytest.fixture
def es(es_node: elasticsearch_local.Node) -> ElasticsearchHelper:
    return ElasticsearchHelper(es_node)
