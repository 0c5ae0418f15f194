"""Key paths too long for a flat_object field: the pipelines cut them
(pipelines/truncate.yml, truncate-keys) exactly as the agent does
(agent/transforms/truncate.py cut_key_paths, tag key_truncated), and on the
OpenSearch node a line with a 2,000-byte key and a 31,000-byte value is
indexed in both modes, where before it was refused whole: OpenSearch's
``flat_object`` makes one doc value of the field's name twice, the key path
and the value, over Lucene's 32,766 bytes ("DocValuesField
"extra._valueAndPath" is too large, must be <= 32766")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from agent.parsing import ParseSettings
from agent.setup.pipeline_defs import ENTRY, FINAL, PIPELINES_DIR
from agent.transforms import TransformSettings
from agent.transforms.redact import MAX_DEPTH
from agent.transforms.truncate import FLATTENED, KEY_PATH_MAX, TAG_KEY_TRUNCATED
from pipeline_parity import agent_documents, differences, raw_documents, through_pipelines

LONG = "feature:https://example.com/" + "p" * 1972  # 2,000 bytes
BIG = "v" * 31000


def _deep(levels: int, key: str) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(levels):
        value = {key: value}
    return value


OBJECTS: list[dict[str, Any]] = [
    {"message": "one long key", LONG: 0.25, "n": 1},
    {"message": "with a value near the cap", LONG: BIG},
    {"message": "in a prediction", "prediction": {"scores": {LONG: {"p": 0.9, "rank": {"n": 1}}}}},
    {"message": "below a list", "items": [{LONG: 1}, {LONG: 2, "b": 3}]},
    {"message": "multi-byte", "é" * 300: "two bytes", "€" * 200 + "\U0001F600" * 10: "three and four"},
    {"message": "parents fill the budget", "labels": _deep(30, "b" * 20)},
    {"message": "a dot where the head ends", ("a" * 502) + "." + ("c" * 200): 1},
    {"message": "short keys only", "extra_key": {"a": {"b": [1, {"c": 2}]}}},
]


def _lines() -> list[str]:
    return [json.dumps(obj, ensure_ascii=False) for obj in OBJECTS]


def _longest(value: Any, prefix: str = "") -> int:
    longest = 0
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            longest = max(longest, len(path.encode()), _longest(item, path))
    elif isinstance(value, list):
        longest = max([0, *(_longest(item, prefix) for item in value)])
    return longest


def _same_in_both_modes(ingest: Any, path: Path, lines: list[str]) -> list[dict[str, Any]]:
    """The pipelines' documents of ``lines`` (written to ``path``), checked equal to the agent's."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings, transforms = ParseSettings(format="json"), TransformSettings()
    agent = agent_documents(path, settings, transforms)
    cluster = through_pipelines(ingest, raw_documents(path, settings, transforms))
    assert len(agent) == len(cluster) == len(lines)
    report = [f"offset {mine['log']['offset']}:\n" + "\n".join(diff)
              for mine, theirs in zip(agent, cluster) if (diff := differences(mine, theirs, "json"))]
    assert not report, "\n".join(report)
    return cluster


def test_long_keys_are_cut_by_the_pipelines_as_the_agent_cuts_them(ingest: Any, tmp_path: Path) -> None:
    cluster = _same_in_both_modes(ingest, tmp_path / "keys.jsonl", _lines())
    for doc in cluster[:-1]:
        assert TAG_KEY_TRUNCATED in doc["tags"], doc["message"]
        for where in FLATTENED:
            node: Any = doc
            for part in where:
                node = node.get(part) if isinstance(node, dict) else None
            assert _longest(node) <= KEY_PATH_MAX
    assert "tags" not in cluster[-1]
    assert cluster[1]["tags"] == [TAG_KEY_TRUNCATED]  # (the value, 31,000 bytes, is under the cap)


NUL_OBJECTS: list[dict[str, Any]] = [
    {"message": "in extra", "we\0ird": 1, "nested": {"in\0ner": [{"\0": 2}]}},
    {"message": "in a prediction, labels and features", "prediction": {"cl\0ass": "x\0"},
     "labels": {"t\0eam": "y"}, "features": {"f\0": 0.5}},
    {"message": "replaced, then too long", "\0" * 200 + "k" * 400: 1},
]


def test_a_nul_in_a_flattened_key_is_replaced_by_the_pipelines_as_by_the_agent(ingest: Any, tmp_path: Path) -> None:
    # Elasticsearch refuses such a key ("failed to parse field [extra] of type [flattened]").
    cluster = _same_in_both_modes(ingest, tmp_path / "nul.jsonl", [json.dumps(obj) for obj in NUL_OBJECTS])
    first, second, third = cluster
    assert first["extra"] == {"we\ufffdird": 1, "nested": {"in\ufffdner": [{"\ufffd": 2}]}}
    assert second["model"]["prediction"] == {"cl\ufffdass": "x\0"} and second["labels"] == {"t\ufffdeam": "y"}
    assert second["model"]["input"]["features"] == {"f\ufffd": 0.5}
    assert "tags" not in first and "tags" not in second  # (a replaced NUL is not tagged)
    (key,) = third["extra"]
    assert key.startswith("\ufffd" * 167 + "~") and third["tags"] == [TAG_KEY_TRUNCATED]


def test_the_pipelines_constants_are_the_agents() -> None:
    body = yaml.safe_load((PIPELINES_DIR / "truncate.yml").read_text(encoding="utf-8"))
    (script,) = [step["script"] for step in body["processors"] if step["script"]["tag"] == "truncate-keys"]
    assert script["params"] == {"limit": KEY_PATH_MAX, "flattened": [list(path) for path in FLATTENED],
                                "max_depth": MAX_DEPTH, "tag": TAG_KEY_TRUNCATED}


# -- on the node: the documents are indexed, not refused ----------------------------------------------------

def test_a_2000_byte_key_with_a_31000_byte_value_is_indexed_in_both_modes(ingest: Any, tmp_path: Path) -> None:
    from agent.setup.cluster import OPENSEARCH
    from agent.setup.templates import mappings, settings, unsupported_types

    index_settings = settings((ENTRY, FINAL), OPENSEARCH)
    index_settings["index"]["number_of_replicas"] = 0
    status, resp = ingest("PUT", "/_index_template/keytest", {
        "index_patterns": ["logs-keytest-*"], "data_stream": {}, "priority": 500,
        "template": {"settings": index_settings,
                     "mappings": mappings(unsupported_types(ingest, OPENSEARCH), OPENSEARCH)}})
    assert status == 200, resp
    path = tmp_path / "keys.jsonl"
    path.write_text(_lines()[1] + "\n", encoding="utf-8")
    parse = ParseSettings(format="json")
    try:
        found = {}
        for mode, docs in (("agent", agent_documents(path, parse, TransformSettings())),
                           ("elasticsearch", raw_documents(path, parse, TransformSettings()))):
            body = "".join('{"create":{}}\n' + json.dumps(doc) + "\n" for doc in docs)
            status, answer = ingest("POST", f"/logs-keytest-{mode}/_bulk?refresh=true", body)
            assert status == 200, answer
            assert [item["create"]["status"] for item in answer["items"]] == [201], answer["items"]
            status, resp = ingest("POST", f"/logs-keytest-{mode}/_search", {"query": {"match_all": {}}})
            (hit,) = resp["hits"]["hits"]
            found[mode] = hit["_source"]
        (key,) = [name for name in found["agent"]["extra"]]
        assert len(key.encode()) == KEY_PATH_MAX and key.startswith(LONG[:KEY_PATH_MAX - 9] + "~")
        assert found["agent"]["extra"][key] == BIG and found["elasticsearch"]["extra"] == {key: BIG}
        assert found["agent"]["tags"] == found["elasticsearch"]["tags"] == [TAG_KEY_TRUNCATED]
    finally:
        for mode in ("agent", "elasticsearch"):
            ingest("DELETE", f"/_data_stream/logs-keytest-{mode}")
        ingest("DELETE", "/_index_template/keytest")
