"""A missing ingest pipeline: retried with a message naming `modelscribe
setup pipelines`, never rejected into the dead letters.

The response body below is the one the real Elasticsearch 9.2.8 node sends
when an index template's ``index.default_pipeline`` names a pipeline that
does not exist (captured from the node; the last test gets it again from the
node and classifies it)."""

from __future__ import annotations

import orjson
import pytest

from agent.config import resolve
from agent.events import Event
from agent.outputs.base import Response
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.retry import Action, classify

MISSING = "pipeline with id [modelscribe-entry-9.9.9] does not exist"
REAL_BODY = {"errors": True, "took": 0, "ingest_took": 0, "items": [
    {"create": {"_index": "logs-probe-default", "_id": "a1", "status": 400,
                "error": {"type": "illegal_argument_exception", "reason": MISSING}}},
    {"create": {"_index": "probeidx-1", "_id": "a2", "status": 400,
                "error": {"type": "illegal_argument_exception", "reason": MISSING}}}]}


def test_the_real_response_is_retried_with_the_command_to_run():
    decision = classify(Response(200, REAL_BODY), 2)
    assert decision.kind == "retry"
    assert "[modelscribe-entry-9.9.9]" in decision.reason
    assert "modelscribe setup pipelines" in decision.reason


def test_one_missing_item_among_stored_ones_retries_the_request():
    """The stored items come back as 409 duplicates of their _id next time."""
    body = {"errors": True, "items": [{"create": {"status": 201}}, REAL_BODY["items"][0]]}
    assert classify(Response(200, body), 2).kind == "retry"


def test_a_request_level_missing_pipeline_is_retried_too():
    body = {"error": {"type": "illegal_argument_exception", "reason": MISSING}, "status": 400}
    assert classify(Response(400, body), 3).kind == "retry"


def test_other_illegal_arguments_are_still_rejected():
    items = [{"create": {"status": 400, "error": {"type": "illegal_argument_exception",
                                                   "reason": "field [x] is not a pipeline"}}},
             {"create": {"status": 400, "error": {"type": "document_parsing_exception", "reason": MISSING}}}]
    decision = classify(Response(200, {"errors": True, "items": items}), 2)
    assert decision.kind == "items"
    assert [verdict.action for verdict in decision.items] == [Action.REJECT, Action.REJECT]
    assert classify(Response(400, {"error": {"type": "illegal_argument_exception", "reason": "x"}}), 1).kind \
        == "reject"


@pytest.mark.elasticsearch
def test_on_the_real_node_missing_then_created(es_node, es):
    """An index template whose default pipeline is missing: the node's answer is
    classified "retry"; once an (empty) pipeline of that name exists, the same
    documents are stored."""
    name = "parse-at-missing-test"
    es.request("DELETE", f"/_ingest/pipeline/{name}")
    status, body = es.request("PUT", "/_index_template/parse-at-missing", {
        "index_patterns": ["parse-at-missing-*"], "priority": 900,
        "template": {"settings": {"index.default_pipeline": name}}})
    assert status == 200, body
    output = ElasticsearchOutput.from_config(resolve({"es_urls": (es_node.url,), "ca_cert": es_node.ca_cert,
                                                      "api_key_file": es_node.api_key_file,
                                                      "index": "parse-at-missing-1"}, {}))
    events = [Event("src", i, i + 1, f"pm-{i}", orjson.dumps({"@timestamp": "2026-12-04T10:00:00.000Z",
                                                               "message": f"line {i}"})) for i in range(3)]
    try:
        response = output.send(events)
        assert response.status == 200
        items = [next(iter(item.values())) for item in response.body["items"]]
        assert {(item["status"], item["error"]["type"], item["error"]["reason"]) for item in items} == \
            {(400, "illegal_argument_exception", f"pipeline with id [{name}] does not exist")}
        decision = classify(response, 3)
        assert decision.kind == "retry" and f"[{name}]" in decision.reason
        # The integ-test node has no ingest processors, but an empty pipeline is accepted.
        status, body = es.request("PUT", f"/_ingest/pipeline/{name}", {"processors": []})
        assert status == 200, body
        assert classify(output.send(events), 3).kind == "ack"
        assert es.count("parse-at-missing-1") == 3
    finally:
        output.close()
        es.request("DELETE", "/_index_template/parse-at-missing")
        es.delete_index("parse-at-missing-*")
        es.request("DELETE", f"/_ingest/pipeline/{name}")
