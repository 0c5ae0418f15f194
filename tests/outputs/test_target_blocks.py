"""``check output`` and a target under a write block, on the real nodes
(Elasticsearch and OpenSearch). Audit 7 (edge 7): the check said "(exists,
open)" and "output ok" for an index with ``index.blocks.write``, which
refuses every document (retried until the block is lifted). Only the index
that takes the documents counts: ILM puts write blocks on the older backing
indices of a data stream."""

from __future__ import annotations

import pytest

from agent.config import resolve
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.opensearch import OpenSearchOutput

pytestmark = pytest.mark.elasticsearch

_BLOCKS = ("index.blocks.write", "index.blocks.read_only", "index.blocks.read_only_allow_delete")


def _es_target(node, target: str) -> tuple[bool, str]:
    output = ElasticsearchOutput.from_config(resolve(
        {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file, "index": target}, {}))
    try:
        report = output.check()
    finally:
        output.close()
    return report.ok, dict(report.lines)["target"]


def _os_target(node, target: str) -> tuple[bool, str]:
    output = OpenSearchOutput.from_config(resolve(
        {"es_urls": (node.url,), "ca_cert": node.ca_cert, "username": node.username,
         "password_file": node.password_file, "index": target}, {}))
    try:
        report = output.check()
    finally:
        output.close()
    return report.ok, dict(report.lines)["target"]


def _check_blocks(helper, node, check, prefix: str) -> None:
    for block in _BLOCKS:
        name = f"{prefix}-{block.rsplit('.', 1)[1].replace('_', '-')}"
        helper.ok("PUT", f"/{name}")
        try:
            helper.ok("PUT", f"/{name}/_settings", {block: True})
            ok, line = check(node, name)
            assert not ok, line
            assert line.startswith(f"FAILED: {name}: {name} refuses documents ({block}), so they are retried until "
                                   f'the block is lifted: ') and f'PUT /{name}/_settings {{"{block}": null}}' in line
            assert ("flood-stage watermark: free disk space" in line) == block.endswith("allow_delete"), line
            helper.ok("PUT", f"/{name}/_settings", {block: None})
            assert check(node, name) == (True, f"{name} (exists, open)")
        finally:
            helper.request("PUT", f"/{name}/_settings", {block: None})
            helper.request("DELETE", f"/{name}")


def test_a_write_blocked_target_fails_the_check_naming_the_block_elasticsearch(es_node, es):
    _check_blocks(es, es_node, _es_target, "blocked-es")


def test_a_write_blocked_target_fails_the_check_naming_the_block_opensearch(os_node, os):
    _check_blocks(os, os_node, _os_target, "blocked-os")


def test_only_the_write_index_of_an_alias_counts(es_node, es):
    es.ok("PUT", "/blocked-alias-1", {"aliases": {"blocked-alias": {"is_write_index": False}}})
    es.ok("PUT", "/blocked-alias-2", {"aliases": {"blocked-alias": {"is_write_index": True}}})
    try:
        es.ok("PUT", "/blocked-alias-1/_settings", {"index.blocks.write": True})  # an old index, as ILM leaves it
        assert _es_target(es_node, "blocked-alias") == (True, "blocked-alias (exists, open)")
        es.ok("PUT", "/blocked-alias-2/_settings", {"index.blocks.write": True})
        ok, line = _es_target(es_node, "blocked-alias")
        assert not ok and line.startswith("FAILED: blocked-alias: blocked-alias-2 refuses documents "
                                          "(index.blocks.write)"), line
    finally:
        es.request("PUT", "/blocked-alias-1,blocked-alias-2/_settings", {"index.blocks.write": None})
        es.request("DELETE", "/blocked-alias-1,blocked-alias-2")


def test_only_the_write_index_of_a_data_stream_counts(es_node, es):
    es.ok("PUT", "/_index_template/blocked-ds", {"index_patterns": ["blocked-ds*"], "data_stream": {},
                                                 "priority": 500})
    try:
        es.ok("POST", "/blocked-ds/_doc", {"@timestamp": "2026-12-05T10:00:00Z"})
        es.ok("POST", "/blocked-ds/_rollover")
        backing = sorted(es.ok("GET", "/blocked-ds/_settings"))  # .ds-blocked-ds-DATE-00000N
        assert len(backing) == 2 and backing[-1].endswith("-000002"), backing
        es.ok("PUT", f"/{backing[0]}/_settings", {"index.blocks.write": True})
        assert _es_target(es_node, "blocked-ds") == (True, "blocked-ds (exists, open)")
        es.ok("PUT", f"/{backing[-1]}/_settings", {"index.blocks.write": True})
        ok, line = _es_target(es_node, "blocked-ds")
        assert not ok and line.startswith(f"FAILED: blocked-ds: {backing[-1]} refuses documents "
                                          "(index.blocks.write)"), line
    finally:
        es.request("PUT", "/.ds-blocked-ds-*/_settings?expand_wildcards=all", {"index.blocks.write": None})
        es.request("DELETE", "/_data_stream/blocked-ds")
        es.request("DELETE", "/_index_template/blocked-ds")
