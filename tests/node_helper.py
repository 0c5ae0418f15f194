"""What the Elasticsearch and OpenSearch test fixtures share (tests/ is on pytest's pythonpath).

* ``NodeHelper``: small synchronous helpers over a harness's plain
  HTTP(S) ``request`` (scripts/elasticsearch_local.py or opensearch_local.py):
  ``request`` returns error statuses, ``ok`` raises AssertionError naming the
  request on a status >= 300, ``count`` and ``search_all`` refresh first and
  treat a missing index as empty.  ``ElasticsearchHelper`` (conftest.py) and
  ``OpenSearchHelper`` (opensearch_fixtures.py) add what differs.
* ``running_node(harness, work_dir, **kwargs)``: a node started with
  ``harness.start_node`` that is removed (by work dir, so a node restarted
  by a test with a new pid is stopped too; its logs are kept in the work
  dir) when the block ends.  No try/except around the start: a node that
  cannot start must fail the tests loudly, never skip them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator


class NodeHelper:
    """Helpers over `harness.request` for one node."""

    def __init__(self, harness: Any, node: Any) -> None:
        self.node = node
        self._harness = harness

    def request(self, method: str, path: str, body: Any = None,
                auth: str | None = "password") -> tuple[int, Any]:
        """(status, parsed body); error statuses are returned, not raised."""
        return self._harness.request(self.node, method, path, body, auth=auth)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The parsed body; AssertionError naming the request on a status >= 300."""
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
        return self.ok("GET", f"/{index}/_count")["count"]

    def search_all(self, index: str, size: int = 10000) -> list[dict]:
        """The ``_source`` of up to `size` documents, sorted by log.offset when present."""
        status, resp = self.request("POST", f"/{index}/_refresh")
        if status == 404:
            return []
        resp = self.ok("POST", f"/{index}/_search",
                       {"size": size, "query": {"match_all": {}}, "sort": ["_doc"]})
        sources = [hit["_source"] for hit in resp["hits"]["hits"]]
        # Documents without an offset keep their order, after the others.
        return sorted(sources, key=lambda s: (_offset(s) is None, _offset(s) or 0))


def _offset(source: dict) -> Any:
    log = source.get("log")
    if isinstance(log, dict) and "offset" in log:
        return log["offset"]
    return source.get("log.offset")


@contextlib.contextmanager
def running_node(harness: Any, work_dir: Path, **kwargs: Any) -> Iterator[Any]:
    node = harness.start_node(work_dir, **kwargs)
    try:
        yield node
    finally:
        harness.remove_node(work_dir)
