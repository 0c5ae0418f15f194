"""OpenSearch fixtures (a pytest plugin loaded by tests/conftest.py): one real node per session.

* ``os_node`` (session): a running ``opensearch_local.Node``, secured (the
  real security plugin: HTTPS with the harness CA, user ``admin`` and a
  random password; no API keys in OpenSearch), with the real ingest engine
  (ingest-common processors, painless).  Started on first use, removed at the
  end of the session.  If it cannot start the fixture raises: OpenSearch
  tests fail, they are never skipped.
* ``os`` (function): an ``OpenSearchHelper`` bound to that node.  The name
  mirrors ``es``; a test taking it shadows the ``os`` module inside that test
  function only.

Tests may ``import opensearch_local`` (scripts/ is on sys.path, see
conftest.py) to stop/restart ``os_node`` or start their own node.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import opensearch_local  # noqa: E402


class OpenSearchHelper:
    """Small synchronous helpers over the harness's plain HTTP(S) client."""

    def __init__(self, node: opensearch_local.Node) -> None:
        self.node = node

    def request(self, method: str, path: str, body: Any = None,
                auth: str | None = "password") -> tuple[int, Any]:
        """(status, parsed body); error statuses are returned, not raised."""
        return opensearch_local.request(self.node, method, path, body, auth=auth)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The parsed body; AssertionError naming the request on a status >= 300."""
        status, resp = self.request(method, path, body)
        if status >= 300:
            raise AssertionError(f"{method} {path} -> {status}: {resp}")
        return resp

    def simulate(self, pipeline: dict | str, docs: list[dict], verbose: bool = False) -> list:
        """Run `docs` (sources) through a pipeline body or an installed pipeline's name.

        Returns one entry per doc: the resulting ``_source``, or the
        ``error`` dict when the pipeline failed for that document.
        """
        suffix = "?verbose=true" if verbose else ""
        body: dict[str, Any] = {"docs": [{"_source": doc} for doc in docs]}
        if isinstance(pipeline, str):
            path = f"/_ingest/pipeline/{pipeline}/_simulate{suffix}"
        else:
            path = f"/_ingest/pipeline/_simulate{suffix}"
            body["pipeline"] = pipeline
        resp = self.ok("POST", path, body)
        if verbose:
            return resp["docs"]
        return [d["doc"]["_source"] if "doc" in d else d.get("error", d) for d in resp["docs"]]

    def count(self, index: str) -> int:
        """Documents in `index` (pattern allowed) after a refresh; 0 if it does not exist."""
        status, resp = self.request("POST", f"/{index}/_refresh")
        if status == 404:
            return 0
        if status >= 300:
            raise AssertionError(f"refresh {index} -> {status}: {resp}")
        return self.ok("GET", f"/{index}/_count")["count"]

    def search_all(self, index: str, size: int = 10000) -> list[dict]:
        """The ``_source`` of up to `size` documents, sorted by log.offset when present."""
        status, resp = self.request("POST", f"/{index}/_refresh")
        if status == 404:
            return []
        resp = self.ok("POST", f"/{index}/_search",
                       {"size": size, "query": {"match_all": {}}, "sort": ["_doc"]})
        sources = [hit["_source"] for hit in resp["hits"]["hits"]]
        return sorted(sources, key=lambda s: (_offset(s) is None, _offset(s) or 0))

    def delete_index(self, pattern: str) -> None:
        """Delete the data streams and indices matching `pattern` (missing is fine)."""
        status, resp = self.request("DELETE", f"/_data_stream/{pattern}")
        if status not in (200, 404):
            raise AssertionError(f"DELETE /_data_stream/{pattern} -> {status}: {resp}")
        status, resp = self.request(
            "DELETE", f"/{pattern}?ignore_unavailable=true&expand_wildcards=open,closed")
        if status not in (200, 404):
            raise AssertionError(f"DELETE /{pattern} -> {status}: {resp}")


def _offset(source: dict) -> Any:
    log = source.get("log")
    if isinstance(log, dict) and "offset" in log:
        return log["offset"]
    return source.get("log.offset")


@pytest.fixture(scope="session")
def os_node(tmp_path_factory: pytest.TempPathFactory):
    """The session's secured OpenSearch node ($MODELSCRIBE_OS_VERSION or the default)."""
    work_dir = tmp_path_factory.mktemp("opensearch")
    node = opensearch_local.start_node(work_dir)
    try:
        yield node
    finally:
        opensearch_local.remove_node(work_dir)


@pytest.fixture
def os(os_node: opensearch_local.Node) -> OpenSearchHelper:  # noqa: A001 (mirrors `es`)
    return OpenSearchHelper(os_node)
