"""A real ingest engine for the pipeline tests: an OpenSearch node with
ingest-common, painless AND lang-mustache.

Why not the shared ``os_node`` fixture: the harness (scripts/opensearch_dist.py)
assembles ingest-common, lang-painless and analysis-common only, and without
lang-mustache an ingest node does not render templates ("{{{_ingest.timestamp}}}"
stays literal, ``_ingest.on_failure_message`` cannot be read), which every real
Elasticsearch and OpenSearch distribution does. So this fixture assembles the
same distribution plus the lang-mustache module (published on Maven Central as
``org.opensearch.plugin:lang-mustache-client``) in its own cache directory
(``<harness cache>/with-lang-mustache``), reusing the harness's downloads. The
harness's module table is extended only while this distribution is fetched.

Plain HTTP (security off): these tests are about what the ingest engine
computes, not about authentication. Bound to 127.0.0.1 by the harness, removed
at the end of the session. If the node cannot start, the tests fail (never skip).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pipeline_parity, shared by these tests
import opensearch_dist  # noqa: E402
import opensearch_local  # noqa: E402

MUSTACHE = ("org.opensearch.script.mustache.MustachePlugin", "", "lang-mustache-client",
            ("lang-mustache-client-", "compiler-"))


def _fetch_with_mustache(version: str) -> None:
    base = opensearch_dist.cache_dir()
    cache = base / "with-lang-mustache"
    downloads = base / f"downloads-{version}"
    mine = cache / f"downloads-{version}"
    mine.mkdir(parents=True, exist_ok=True)
    if downloads.is_dir():  # the zip and the security plugin: no second download
        for path in downloads.iterdir():
            if path.is_file() and not (mine / path.name).exists():
                shutil.copy2(path, mine / path.name)
    old_env = os.environ.get("MODELSCRIBE_OS_CACHE")
    os.environ["MODELSCRIBE_OS_CACHE"] = str(cache)
    opensearch_dist.MODULES["lang-mustache"] = MUSTACHE
    try:
        opensearch_dist.fetch_distribution(version)
    finally:
        del opensearch_dist.MODULES["lang-mustache"]
        if old_env is None:
            os.environ.pop("MODELSCRIBE_OS_CACHE", None)
        else:
            os.environ["MODELSCRIBE_OS_CACHE"] = old_env


@pytest.fixture(scope="session")
def ingest_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[opensearch_local.Node]:
    version = opensearch_local.default_version()
    _fetch_with_mustache(version)
    cache = opensearch_dist.cache_dir() / "with-lang-mustache"
    old_env = os.environ.get("MODELSCRIBE_OS_CACHE")
    os.environ["MODELSCRIBE_OS_CACHE"] = str(cache)
    try:
        node = opensearch_local.start_node(tmp_path_factory.mktemp("ingest-node"), version, security=False)
    finally:
        if old_env is None:
            os.environ.pop("MODELSCRIBE_OS_CACHE", None)
        else:
            os.environ["MODELSCRIBE_OS_CACHE"] = old_env
    try:
        yield node
    finally:
        opensearch_local.remove_node(node)


@pytest.fixture(scope="session")
def ingest(ingest_node: opensearch_local.Node) -> Any:
    """``request(method, path, body)`` against the node, with our pipelines installed."""
    from pipeline_parity import install

    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return opensearch_local.request(ingest_node, method, path, body)

    install(request)
    return request
