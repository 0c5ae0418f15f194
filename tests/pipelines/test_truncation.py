"""--max-field-bytes in the cluster: the pipelines cut a raw document's long
strings exactly as the agent cuts a parsed one's (agent/transforms/truncate.py,
the tag field_truncated as agent/transforms/__init__.py adds it), with the
default cap and with one the raw document carries (modelscribe.raw.max_field_bytes);
and a 33 KB value is indexed end to end on OpenSearch, whose flat_object has no
ignore_above, in raw mode (it was rejected whole before the pipelines cut it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.parsing import ParseSettings
from agent.setup.pipeline_defs import ENTRY, FINAL, PIPELINES_DIR
from agent.transforms import DEFAULT_MAX_FIELD_BYTES, TAG_FIELD_TRUNCATED, TransformSettings, _add_tags
from agent.transforms.redact import MAX_DEPTH
from agent.transforms.truncate import truncate_fields
from pipeline_parity import agent_documents, differences, raw_documents, through_pipelines

ASCII = "abcdefghij" * 3300  # 33,000 bytes
# about 40 KB in 481 lines (an event is cut at 500 lines, --multiline-max-lines)
FRAMES = "".join(f'  File "/srv/app/{"package/" * 12}module_{n:04d}.py", line {n}, in handler_{n}\n'
                 f'    do_something_{n}(request, response)\n' for n in range(240))
TRACEBACK = "Traceback (most recent call last):\n" + FRAMES + "ValueError: the real reason"


def _json_lines() -> list[str]:
    objects: list[dict[str, Any]] = [
        {"message": "request logged", "model": "resnet", "image_b64": ASCII, "timestamp": "2024-05-01T12:00:00Z"},
        # multi-byte characters straddling the cut (32,001 to 32,003 bytes: one character too many)
        {"message": "two bytes", "note": "a" + "é" * 16000},
        {"message": "three bytes", "note": "a" + "€" * 10667},
        {"message": "four bytes", "note": "abc" + "\U0001F600" * 8000},
        {"message": "mixed", "note": ("é€\U0001F600a" * 4000)[:14001]},
        {"message": "exactly the cap", "note": "é" * 16000, "other": "x" * 32000},
        {"message": "nested", "payload": {"inner": {"blob": ASCII, "small": "s"}}, "labels": {"team": ASCII}},
        {"message": "in a list", "items": ["short", ASCII, {"k": "é" * 20000}, [ASCII, 3]]},
        {"message": "the message is never cut " + ASCII, "level": "error"},
        {"message": "long error", "error": {"message": "€" * 12000, "type": "E"}},
        {"message": "json traceback", "exc_info": TRACEBACK},
        {"message": "long keys' values", "level": "info", "logger": "l" * 40000, "trace_id": "t" * 33000},
        {"message": "ok"},
    ]
    return [json.dumps(obj, ensure_ascii=False) for obj in objects]


PLAIN = ["2024-05-01 12:00:00,130 - app.worker - ERROR - failed", *TRACEBACK.split("\n"),
         "2024-05-01 12:00:01,000 - app.worker - INFO - next " + ASCII,
         "2024-05-01 12:00:02,000 - app.worker - INFO - done"]


def _compare(ingest: Any, path: Path, fmt: str, transforms: TransformSettings) -> list[dict[str, Any]]:
    settings = ParseSettings(format=fmt)
    agent = agent_documents(path, settings, transforms)
    raw = raw_documents(path, settings, transforms)
    cap = transforms.max_field_bytes
    for doc in raw:
        carried = doc["modelscribe"]["raw"].get("max_field_bytes")
        assert carried == (None if cap == DEFAULT_MAX_FIELD_BYTES else cap), doc["modelscribe"]
    cluster = through_pipelines(ingest, raw)
    assert len(agent) == len(cluster)
    report = [f"offset {mine['log']['offset']}:\n" + "\n".join(diff)
              for mine, theirs in zip(agent, cluster) if (diff := differences(mine, theirs, fmt))]
    assert not report, "\n".join(report)
    return cluster


@pytest.mark.parametrize("cap", [DEFAULT_MAX_FIELD_BYTES, 100, 20000])
def test_long_values_of_json_lines_are_cut_as_the_agent_cuts_them(ingest: Any, tmp_path: Path, cap: int) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(_json_lines()) + "\n", encoding="utf-8")
    cluster = _compare(ingest, path, "json", TransformSettings(max_field_bytes=cap))
    assert sum(TAG_FIELD_TRUNCATED in doc.get("tags", ()) for doc in cluster) >= 10
    first = cluster[0]
    assert len(first["extra"]["image_b64"]) == min(cap, DEFAULT_MAX_FIELD_BYTES)
    assert first["tags"][-1] == TAG_FIELD_TRUNCATED
    assert cluster[8]["message"].endswith(ASCII)  # exempt
    assert "tags" not in cluster[-1]


@pytest.mark.parametrize("cap", [DEFAULT_MAX_FIELD_BYTES, 1000])
def test_a_long_traceback_of_a_text_event_is_cut_as_the_agent_cuts_it(ingest: Any, tmp_path: Path, cap: int) -> None:
    path = tmp_path / "long.log"
    path.write_text("\n".join(PLAIN) + "\n", encoding="utf-8")
    cluster = _compare(ingest, path, "auto", TransformSettings(max_field_bytes=cap))
    error = cluster[0]["error"]
    assert error["type"] == "ValueError" and error["message"] == "the real reason"
    assert len(error["stack_trace"].encode()) <= cap and TRACEBACK.startswith(error["stack_trace"])
    assert cluster[0]["tags"] == [TAG_FIELD_TRUNCATED] and "Traceback" in cluster[0]["message"]


def _other_shipper(message: str, **fields: Any) -> dict[str, Any]:
    return {"@timestamp": "2024-12-04T08:00:00.000Z", "message": message, "agent": {"name": "filebeat"}, **fields}


@pytest.mark.parametrize("tags", [None, "mine", ["a", "field_truncated"], {"not": "a list"}, 7])
def test_the_tag_is_added_as_the_agent_adds_it(ingest: Any, tags: Any) -> None:
    """Another shipper's tags may be anything: _add_tags's rules (a string
    becomes a list; anything else is kept in extra.tags)."""
    fields = {} if tags is None else {"tags": tags}
    out, = through_pipelines(ingest, [_other_shipper(json.dumps({"message": "m", "blob": ASCII}), **fields)])
    expected: dict[str, Any] = {"extra": {"blob": ASCII}, **fields}
    expected, count = truncate_fields(expected, DEFAULT_MAX_FIELD_BYTES)
    assert count == 1
    expected = dict(expected)
    _add_tags(expected, [TAG_FIELD_TRUNCATED])
    assert out["tags"] == expected["tags"] and out["extra"] == expected["extra"]


def test_a_cap_the_agent_would_refuse_is_not_used(ingest: Any) -> None:
    raw = {"@timestamp": "2024-12-04T08:00:00.000Z", "message": json.dumps({"message": "m", "blob": "x" * 40000}),
           "agent": {"name": "modelscribe"}, "modelscribe": {"raw": {"format": "json", "max_field_bytes": 3}}}
    out, = through_pipelines(ingest, [raw])
    assert len(out["extra"]["blob"]) == DEFAULT_MAX_FIELD_BYTES and "modelscribe" not in out


def test_a_failure_after_parsing_still_cuts_what_was_extracted(ingest: Any) -> None:
    """A failure in the entry pipeline indexes the document as it was: what
    was extracted before the failure is cut too, never a rejection."""
    doc = {"@timestamp": "2024-12-04T08:00:00.000Z", "message": "m", "agent": {"name": "modelscribe"},
           "extra": {"blob": ASCII}, "modelscribe": {"raw": {"format": "quantum"}}}
    out, = through_pipelines(ingest, [doc])
    assert out["event"]["kind"] == "pipeline_error" and "modelscribe" not in out
    assert len(out["extra"]["blob"]) == DEFAULT_MAX_FIELD_BYTES
    assert out["tags"] == ["pipeline_error", TAG_FIELD_TRUNCATED]


def test_the_pipelines_constants_are_the_agents() -> None:
    body = yaml.safe_load((PIPELINES_DIR / "truncate.yml").read_text(encoding="utf-8"))
    (params,) = [step["script"]["params"] for step in body["processors"] if step["script"]["tag"] == "truncate-fields"]
    assert params == {"default_max": DEFAULT_MAX_FIELD_BYTES, "max_depth": MAX_DEPTH, "tag": TAG_FIELD_TRUNCATED}


# -- end to end: `modelscribe run --once` in both modes, into data streams with the real mappings ------------

def test_a_33_kb_value_is_indexed_end_to_end_in_raw_mode(ingest: Any, os_node: Any, tmp_path: Path) -> None:
    from e2e_helpers import run_once

    from agent.setup.cluster import OPENSEARCH
    from agent.setup.templates import mappings, settings, unsupported_types

    index_settings = settings((ENTRY, FINAL), OPENSEARCH)
    index_settings["index"]["number_of_replicas"] = 0
    index_mappings = mappings(unsupported_types(ingest, OPENSEARCH), OPENSEARCH)  # flat_object, as setup puts it
    status, resp = ingest("PUT", "/_index_template/trunctest", {
        "index_patterns": ["logs-trunctest-*"], "data_stream": {}, "priority": 500,
        "template": {"settings": index_settings, "mappings": index_mappings}})
    assert status == 200, resp
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [_json_lines()[0], json.dumps({"message": "ok", "timestamp": "2024-05-01T12:00:01Z"}),
             json.dumps({"message": "nested", "timestamp": "2024-05-01T12:00:02Z", "a": {"b": ["é" * 17000]}})]
    (logs / "b64.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = {}
    try:
        for mode in ("elasticsearch", "agent"):
            state = tmp_path / f"state-{mode}"
            state.mkdir()
            (state / "agent_id").write_text("agent-1\n")  # the same agent.id in both runs
            result = run_once(["run", "--once", "--path", str(logs / "*.jsonl"), "--state-dir", str(state),
                               "--parse-at", mode, "--output", "opensearch", "--es-url", os_node.url,
                               "--ca-cert", os_node.ca_cert, "--username", os_node.username,
                               "--password-file", os_node.password_file, "--data-stream", f"logs-trunctest-{mode}"])
            assert result.code == 0, result.stderr
            ingest("POST", f"/logs-trunctest-{mode}/_refresh")
            status, resp = ingest("POST", f"/logs-trunctest-{mode}/_search?size=10", {"sort": ["log.offset"]})
            assert status == 200, resp
            found[mode] = [hit["_source"] for hit in resp["hits"]["hits"]]
            assert len(found[mode]) == len(lines), (mode, found[mode])
        raw, parsed = found["elasticsearch"], found["agent"]
        assert len(raw[0]["extra"]["image_b64"]) == DEFAULT_MAX_FIELD_BYTES
        assert raw[0]["tags"] == [TAG_FIELD_TRUNCATED] and raw[2]["tags"] == [TAG_FIELD_TRUNCATED]
        report = [f"offset {mine['log']['offset']}:\n" + "\n".join(diff)
                  for mine, theirs in zip(parsed, raw) if (diff := differences(mine, theirs))]
        assert not report, "\n".join(report)
    finally:
        for mode in ("elasticsearch", "agent"):
            ingest("DELETE", f"/_data_stream/logs-trunctest-{mode}")
        ingest("DELETE", "/_index_template/trunctest")
