"""The real ingest engine for the pipeline tests: the session's OpenSearch
node (``os_node`` of tests/opensearch_fixtures.py: secured, with ingest-common,
lang-painless and lang-mustache, which renders ``{{{_ingest.timestamp}}}`` and
the ``on_failure`` metadata), with our pipelines installed once per session.
If the node cannot start, these tests fail (never skip).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pipeline_parity, shared by these tests
import opensearch_local  # noqa: E402


@pytest.fixture(scope="session")
def ingest(os_node: opensearch_local.Node) -> Any:
    """``request(method, path, body)`` against the node, with our pipelines installed."""
    from pipeline_parity import install

    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return opensearch_local.request(os_node, method, path, body)

    install(request)
    return request
