"""Must 5: the pipelines use only processors and options that Elasticsearch
8.x/9.x and OpenSearch 2.x/3.x both accept.

The table below is the shared set this project allows itself, each entry with
the reason it is safe on all four. A processor or option the pipelines use
that is not in it fails the test: add it only after checking both engines'
documentation (and, for OpenSearch, the real node in test_parity.py, which
installs every pipeline).
"""

from __future__ import annotations

import re

from agent.setup.pipeline_defs import load_pipelines, processors_used

# Options every processor of both engines takes (ES: "common options";
# OpenSearch inherits them from the 7.10 fork).
COMMON = {
    "tag": "identifies the processor in errors and in on_failure metadata, both engines",
    "if": "a painless condition; both engines since 7.x",
    "on_failure": "processor-level failure handling; both engines",
    "ignore_failure": "both engines",
    "description": "processor descriptions: ES since 7.9, OpenSearch from the 7.10 fork",
}

SHARED: dict[str, dict[str, str]] = {
    "set": {"field": "core option", "value": "core option; {{{ }}} templates are mustache, in both"},
    "append": {"field": "core option", "value": "core option"},
    "fail": {"message": "core option; mustache template in both"},
    "grok": {"field": "core option",
             "patterns": "core option; raw Joni regexes with named groups work in both (same grok library lineage)"},
    "json": {"field": "core option", "target_field": "core option (not add_to_root_conflict_strategy: ES only)"},
    "pipeline": {"name": "core option (not ignore_missing_pipeline: ES 8 only, OpenSearch refuses it)"},
    "script": {"lang": "painless in both", "source": "inline script, both",
               "params": "script parameters, both"},
    "gsub": {"field": "core option", "pattern": "core option (java.util.regex in both engines)",
             "replacement": "core option"},
    "urldecode": {"field": "core option (URLDecoder in both; + is protected by the caller)"},
    "rename": {"field": "core option, both engines (ES rename processor; OpenSearch from the 7.10 fork)",
               "target_field": "core option; a target that exists fails the processor in both (its on_failure "
                               "then appends); not override (ES 8.13+ only)"},
    "remove": {"field": "core option",
               "ignore_missing": "ES since 6.x; OpenSearch from the 7.10 fork (verified on 2.19 by test_pipeline_behaviour)"},
}

# Never: present in one engine only.
FORBIDDEN = {"reroute", "redact", "uri_parts", "terminate", "inference", "enrich", "geo_grid",
             "community_id", "fingerprint", "network_direction", "registered_domain", "attachment",
             "text_embedding", "sparse_encoding", "copy", "remove_by_pattern", "ip2geo"}


def test_every_processor_and_option_is_in_the_shared_set() -> None:
    outside = sorted((kind, option) for kind, option in processors_used()
                     if kind not in SHARED or (option not in SHARED[kind] and option not in COMMON))
    assert not outside, f"not in the shared processor/option table of {__file__}: {outside}"


def test_no_processor_of_one_engine_only() -> None:
    assert not {kind for kind, _ in processors_used()} & FORBIDDEN


def test_the_table_is_not_stale() -> None:
    """Every entry of the table is used (a table larger than the truth hides nothing, but misleads)."""
    used = processors_used()
    assert {kind for kind, _ in used} == set(SHARED)
    for kind, options in SHARED.items():
        for option in options:
            assert (kind, option) in used, (kind, option)


def _scripts() -> list[str]:
    sources = []

    def visit(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("source", "if") and isinstance(value, str):
                    sources.append(value)
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(load_pipelines())
    return sources


def test_painless_without_regexes() -> None:
    """Elasticsearch limits painless regexes (script.painless.regex.enabled:
    limited) and may disable them; matching is done by grok or by hand."""
    for source in _scripts():
        assert "=~" not in source and "Pattern" not in source and "matcher(" not in source
        assert not re.search(r"(^|[=(,\s])/[^/*\s][^/\n]*/[a-z]*[\s;.)]", source), source[:200]
        assert ".split(" not in source and ".replaceAll(" not in source  # regex-taking String methods
