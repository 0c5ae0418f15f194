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
from node_helper import NodeHelper, running_node  # noqa: E402


class OpenSearchHelper(NodeHelper):
    """Small synchronous helpers over the harness's plain HTTP(S) client."""

    def __init__(self, node: opensearch_local.Node) -> None:
        super().__init__(opensearch_local, node)

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

    def delete_index(self, pattern: str) -> None:
        """Delete the data streams and indices matching `pattern` (missing is fine)."""
        status, resp = self.request("DELETE", f"/_data_stream/{pattern}")
        if status not in (200, 404):
            raise AssertionError(f"DELETE /_data_stream/{pattern} -> {status}: {resp}")
        status, resp = self.request(
            "DELETE", f"/{pattern}?ignore_unavailable=true&expand_wildcards=open,closed")
        if status not in (200, 404):
            raise AssertionError(f"DELETE /{pattern} -> {status}: {resp}")


@pytest.fixture(scope="session")
def os_node(tmp_path_factory: pytest.TempPathFactory):
    """The session's secured OpenSearch node ($MODELSCRIBE_OS_VERSION or the default)."""
    with running_node(opensearch_local, tmp_path_factory.mktemp("opensearch")) as node:
        yield node


@pytest.fixture
def os(os_node: opensearch_local.Node) -> OpenSearchHelper:  # noqa: A001 (mirrors `es`)
    return OpenSearchHelper(os_node)
