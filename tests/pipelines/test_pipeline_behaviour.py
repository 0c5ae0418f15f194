"""What the entry and final pipelines promise besides parity, on the real node:
documents the agent parsed are left alone, other shippers' lines are parsed
as auto would, a failure is recorded and never drops the document (also
through index.default_pipeline / final_pipeline and _bulk), and the user's
modelscribe@custom hook runs when it exists."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.setup.pipeline_defs import ENTRY, FINAL
from pipeline_parity import through_pipelines

AGENT = {"name": "modelscribe", "type": "modelscribe", "version": "0.1.0", "id": "a"}


def raw(message: str, fmt: str, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": "2024-12-04T08:00:00.000Z", "message": message, "log": {"file": {"path": "/x.log"}, "offset": 0},
            "host": {"name": "h"}, "agent": AGENT, "modelscribe": {"raw": {"format": fmt}}, **extra}


def test_a_document_parsed_by_the_agent_is_left_alone(ingest: Any) -> None:
    doc = {"@timestamp": "2024-05-01T12:00:00.130Z", "message": '{"not": "parsed again"}',
           "log": {"level": "info", "file": {"path": "/x.log"}, "offset": 0}, "agent": AGENT,
           "modelscribe": {"health": {"drift": 0.1}}}
    out, = through_pipelines(ingest, [doc])
    ingested = out["event"].pop("ingested")
    assert ingested and not out["event"]
    del out["event"]
    assert out == doc


@pytest.mark.parametrize("message, expected", [
    ('{"level": "ERROR", "message": "boom", "model_name": "m", "timestamp": "2024-05-01T12:00:00Z"}',
     {"message": "boom", "log": {"level": "error"}, "model": {"name": "m"}, "@timestamp": "2024-05-01T12:00:00.000Z"}),
    ("2024-05-01 12:00:00,123 - app.worker - ERROR - boom",
     {"message": "boom", "log": {"level": "error", "logger": "app.worker"}, "@timestamp": "2024-05-01T12:00:00.123Z"}),
    ("no prefix at all", {"message": "no prefix at all", "@timestamp": "2024-12-04T08:00:00.000Z"}),
])
def test_another_shippers_line_is_read_as_auto_would(ingest: Any, message: str, expected: dict[str, Any]) -> None:
    doc = {"@timestamp": "2024-12-04T08:00:00.000Z", "message": message, "agent": {"name": "filebeat"},
           "log": {"file": {"path": "/var/log/app.log"}}}
    out, = through_pipelines(ingest, [doc])
    for key, value in expected.items():
        if isinstance(value, dict):
            assert {name: out[key].get(name) for name in value} == value, (key, out)
        else:
            assert out[key] == value, (key, out)
    assert out["agent"] == {"name": "filebeat"} and "modelscribe" not in out
    assert "tags" not in out


def test_an_unknown_format_is_indexed_with_the_failure_recorded(ingest: Any) -> None:
    out, = through_pipelines(ingest, [raw("line of a format from the future", "quantum", tags=["partial_line"])])
    assert out["message"] == "line of a format from the future"
    assert out["event"]["kind"] == "pipeline_error"
    assert out["tags"] == ["partial_line", "pipeline_error"]
    failure, = out["error"]["message"]  # appended: a list, the line's own message (none here) first
    assert "entry-unknown-format" in failure and "quantum" in failure
    assert "modelscribe" not in out


def test_a_line_too_big_for_the_engine_is_a_parse_failure_not_a_lost_document(ingest: Any) -> None:
    out, = through_pipelines(ingest, [raw('{"message": "x", "count": 123456789012345678901234}', "json")])
    assert out["tags"] == ["parse_failure"]
    assert "64 bits" in out["error"]["message"]
    assert out["message"] == '{"message": "x", "count": 123456789012345678901234}'


# A conditional processor's failure names its type "conditional" on OpenSearch.
HOOK_FAILED = "processor conditional [final-custom-hook]: modelscribe@custom failed: {}"


def test_custom_hook_runs_and_its_failure_is_recorded(ingest: Any) -> None:
    hook = "/_ingest/pipeline/modelscribe@custom"
    try:
        status, _ = ingest("PUT", hook, {"processors": [{"set": {"tag": "t", "field": "labels.team", "value": "ml"}}]})
        assert status == 200
        out, = through_pipelines(ingest, [raw("hello", "plain")])
        assert out["labels"] == {"team": "ml"} and "error" not in out
        ingest("PUT", hook, {"processors": [{"fail": {"tag": "mine", "message": "refused by the team"}}]})
        out, = through_pipelines(ingest, [raw("hello", "plain")])
        assert out["message"] == "hello"
        assert out["event"]["kind"] == "pipeline_error" and out["tags"] == ["pipeline_error"]
        assert out["error"]["message"] == [
            HOOK_FAILED.format("refused by the team")]
    finally:
        ingest("DELETE", hook)
    out, = through_pipelines(ingest, [raw("hello", "plain")])
    assert "error" not in out and "tags" not in out  # no hook: nothing to report


ERROR_EVENT = ("2024-05-01 12:00:00,130 - x - ERROR - failed\nTraceback (most recent call last):\n"
               '  File "a.py", line 1, in f\nValueError: the real reason')


def _index_with_the_pipelines(ingest: Any, index: str) -> None:
    """A fresh index whose settings name the entry and final pipelines, as the data streams' do."""
    ingest("DELETE", f"/{index}")
    status, resp = ingest("PUT", f"/{index}", {"settings": {"index.default_pipeline": ENTRY,
                                                            "index.final_pipeline": FINAL,
                                                            "number_of_replicas": 0}})
    assert status == 200, resp


def test_a_failing_hook_keeps_the_lines_own_error_message_first(ingest: Any, tmp_path: Any) -> None:
    """The failure is appended to error.message: the exception's message the
    line gave stays first (the Errors dashboard and saved search show it),
    for a raw document and for one the agent parsed, through _bulk into an
    index that names the pipelines, as the data streams do."""
    from agent.parsing import ParseSettings
    from pipeline_parity import agent_documents

    hook = "/_ingest/pipeline/modelscribe@custom"
    index = "modelscribe-hook-test"
    path = tmp_path / "hook.log"
    path.write_text(ERROR_EVENT + "\n", encoding="utf-8")
    parsed, = agent_documents(path, ParseSettings())
    assert parsed["error"]["message"] == "the real reason"
    _index_with_the_pipelines(ingest, index)
    try:
        status, resp = ingest("PUT", hook, {"processors": [{"fail": {
            "tag": "x", "message": "custom says no", "if": "ctx.log?.level == 'error'"}}]})
        assert status == 200, resp
        docs = [raw(ERROR_EVENT, "plain"), parsed, raw("2024-05-01 12:00:00,130 - x - INFO - fine", "plain")]
        body = "".join(json.dumps({"create": {"_id": str(n)}}) + "\n" + json.dumps(doc) + "\n"
                       for n, doc in enumerate(docs))
        status, resp = ingest("POST", f"/{index}/_bulk?refresh=true", body)
        assert status == 200 and not resp["errors"], resp
        status, resp = ingest("POST", f"/{index}/_search", {"size": 10, "sort": ["_id"]})
        found = [hit["_source"] for hit in resp["hits"]["hits"]]
        assert len(found) == 3
        failure = HOOK_FAILED.format("custom says no")
        for doc in found[:2]:
            assert doc["error"]["message"] == ["the real reason", failure], doc
            assert doc["error"]["type"] == "ValueError" and "the real reason" in doc["error"]["stack_trace"]
            assert doc["event"]["kind"] == "pipeline_error" and doc["tags"] == ["pipeline_error"]
            assert doc["message"].startswith("failed\nTraceback")
            assert "modelscribe_hook_failure" not in doc  # the scratch field of the failure (audit 11)
        assert "error" not in found[2] and "tags" not in found[2]
    finally:
        ingest("DELETE", hook)
        ingest("DELETE", f"/{index}")


def test_through_index_settings_and_bulk_nothing_is_dropped(ingest: Any) -> None:
    index = "modelscribe-pipeline-test"
    _index_with_the_pipelines(ingest, index)
    try:
        docs = [raw("2024-05-01 12:00:00,123 - app - ERROR - boom", "plain"),
                raw('{"message": "ok", "status_code": 503}', "json"),
                raw("from the future", "quantum"),
                raw("{broken json", "json")]
        body = "".join(json.dumps({"create": {"_id": str(n)}}) + "\n" + json.dumps(doc) + "\n"
                       for n, doc in enumerate(docs))
        status, resp = ingest("POST", f"/{index}/_bulk?refresh=true", body)
        assert status == 200 and not resp["errors"], resp
        status, resp = ingest("POST", f"/{index}/_search", {"size": 10, "sort": ["_id"]})
        found = {hit["_id"]: hit["_source"] for hit in resp["hits"]["hits"]}
        assert sorted(found) == ["0", "1", "2", "3"]
        assert found["0"]["log"]["logger"] == "app" and found["0"]["message"] == "boom"
        assert found["1"]["event"]["outcome"] == "failure" and found["1"]["http"]["response"]["status_code"] == 503
        assert found["2"]["event"]["kind"] == "pipeline_error"
        assert found["3"]["tags"] == ["parse_failure"] and found["3"]["message"] == "{broken json"
        assert all(doc["event"]["ingested"] for doc in found.values())
    finally:
        ingest("DELETE", f"/{index}")


def test_a_metric_event_goes_to_the_metrics_data_stream(ingest: Any, tmp_path: Any) -> None:
    """As the agent routes event.kind: metric to metrics-<rest> of its logs-<rest>
    data stream, the entry pipeline sets _index for a raw document (a bulk
    create into the logs stream lands in the metrics stream); a re-sent
    document conflicts there (409), so exactly-once holds; a document the
    agent parsed keeps the index it was sent to."""
    from agent.parsing import ParseSettings
    from pipeline_parity import raw_documents
    names = {kind: f"{kind}-mstest-default" for kind in ("logs", "metrics")}
    try:
        for kind in names:
            status, resp = ingest("PUT", f"/_index_template/mstest-{kind}", {
                "index_patterns": [f"{kind}-mstest-*"], "data_stream": {}, "priority": 500,
                "template": {"settings": {"index.default_pipeline": ENTRY, "index.final_pipeline": FINAL,
                                          "number_of_replicas": 0}}})
            assert status == 200, resp
        path = tmp_path / "ts_metrics.log"
        path.write_text("2024-05-01T10:00:00,001 - Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1714557600\n"
                        "2024-05-01T10:00:00,123 - /127.0.0.1:1 \"POST /predictions/m HTTP/1.1\" 200 25\n")
        docs = raw_documents(path, ParseSettings(format="torchserve"))
        parsed = {"@timestamp": "2024-05-01T10:00:00.000Z", "message": "m", "agent": AGENT, "event": {"kind": "metric"}}
        lines = []
        for number, doc in enumerate(docs + [parsed]):
            lines += [json.dumps({"create": {"_index": names["logs"], "_id": f"id{number}"}}), json.dumps(doc)]
        body = "\n".join(lines) + "\n"
        status, resp = ingest("POST", "/_bulk?refresh=true", body)
        assert status == 200 and not resp["errors"], resp
        landed = [item["create"]["_index"] for item in resp["items"]]
        assert [name.split("-")[1] for name in landed] == ["metrics", "logs", "logs"], landed
        status, again = ingest("POST", "/_bulk?refresh=true", body)
        assert [item["create"]["status"] for item in again["items"]] == [409, 409, 409], again
        status, found = ingest("GET", f"/{names['metrics']}/_search", None)
        hits = found["hits"]["hits"]
        assert [hit["_id"] for hit in hits] == ["id0"]
        source = hits[0]["_source"]
        assert source["event"]["kind"] == "metric" and source["model"]["metric"]["name"] == "Requests2XX"
        assert "modelscribe" not in source
    finally:
        for kind, name in names.items():
            ingest("DELETE", f"/_data_stream/{name}", None)
            ingest("DELETE", f"/_index_template/mstest-{kind}", None)


def test_an_agent_document_with_an_integer_beyond_63_bits_passes_the_final_pipeline(ingest: Any) -> None:
    """The agent keeps a JSON integer from 2^63 to 2^64-1 (orjson holds it, in
    ``extra``): the final pipeline, which every document passes, runs no
    script on it (OpenSearch's ingest refuses such a document in a script:
    it was indexed as a pipeline_error naming a hook that does not exist,
    audit 11)."""
    index = "modelscribe-bigint-test"
    ingest("DELETE", f"/{index}")
    status, resp = ingest("PUT", f"/{index}", {  # (extra is flat in the data streams: not a long here)
        "settings": {"index.default_pipeline": ENTRY, "index.final_pipeline": FINAL, "number_of_replicas": 0},
        "mappings": {"properties": {"extra": {"type": "object", "enabled": False}}}})
    assert status == 200, resp
    doc = {"message": "e", "agent": {"name": "modelscribe"}, "extra": {"n": 2 ** 64 - 1, "m": 2 ** 63}}
    status, resp = ingest("POST", f"/{index}/_bulk?refresh=true",
                          json.dumps({"create": {"_id": "1"}}) + "\n" + json.dumps(doc) + "\n")
    assert status == 200 and not resp["errors"], resp
    status, resp = ingest("POST", f"/{index}/_search", {"size": 1})
    out = resp["hits"]["hits"][0]["_source"]
    assert "error" not in out and "tags" not in out and "modelscribe_hook_failure" not in out, out
    assert out["extra"] == {"n": 2 ** 64 - 1, "m": 2 ** 63} and "ingested" in out["event"]
    from agent.schema import undefined_fields
    assert undefined_fields(out) == []  # event.ingested is in the schema, so mapped (audit 11)
