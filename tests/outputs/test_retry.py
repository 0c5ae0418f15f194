"""The retry classifier over bulk response shapes as Elasticsearch sends them.
Responses of the real node are classified in test_elasticsearch_output.py."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.outputs.base import Response
from agent.outputs.retry import Action, classify, refused_privilege, retry_reason


def _item(status, error_type=None, reason=None, doc_id=None):
    result = {"status": status} if doc_id is None else {"_id": doc_id, "status": status}
    if error_type:
        result["error"] = {"type": error_type, "reason": reason or "r"}
    return {"create": result}


def test_all_created_is_acknowledged():
    ids = ["a", "b", "c"]
    body = {"errors": False, "items": [_item(201, doc_id=i) for i in ids]}
    assert classify(Response(200, body), 3, ids).kind == "ack"
    assert classify(Response(200, body), 3).kind == "ack"


def test_errors_false_is_not_believed_over_the_items():
    body = {"errors": False, "items": [_item(201), _item(400, "document_parsing_exception")]}
    decision = classify(Response(200, body), 2)
    assert decision.kind == "items"
    assert [v.action for v in decision.items] == [Action.ACK, Action.REJECT]
    for body in ({"errors": False}, {"errors": False, "items": [_item(201)]}, {"errors": False, "items": None}):
        decision = classify(Response(200, body), 2)
        assert decision.kind == "retry" and "items for 2 documents" in decision.reason


def test_items_of_other_ids_retry_the_request():
    body = {"errors": True, "items": [_item(400, "document_parsing_exception", doc_id="b"), _item(201, doc_id="a")]}
    decision = classify(Response(200, body), 2, ["a", "b"])
    assert decision.kind == "retry" and "item 0 answers _id 'b', sent 'a'" in decision.reason
    body["errors"] = False
    assert classify(Response(200, body), 2, ["a", "b"]).kind == "retry"


def test_redirects_and_foreign_4xx_are_retried_with_what_to_check():
    stored = {"errors": False, "items": [_item(201)]}
    for status in (301, 302, 307, 308):
        decision = classify(Response(status, stored), 1)
        assert decision.kind == "retry" and "redirect" in decision.reason and "--es-url" in decision.reason
    for status, body in ((404, "<html>Not Found</html>"), (405, None), (407, "proxy auth"),
                         (409, {"error": {"type": "x", "reason": "y"}}), (404, {"error": {
                             "type": "index_not_found_exception", "reason": "no such index [x]"}}),
                         (400, "<html>bad request</html>"), (199, stored)):
        decision = classify(Response(status, body), 1)
        assert decision.kind == "retry" and "--es-url" in decision.reason, (status, decision)


def test_mixed_items():
    body = {"errors": True, "items": [
        _item(201), _item(409, "version_conflict_engine_exception"),
        _item(429, "es_rejected_execution_exception"), _item(400, "document_parsing_exception"),
        _item(503, "unavailable_shards_exception"), _item(403, "security_exception"),
        _item(404, "index_not_found_exception")]}
    decision = classify(Response(200, body), 7)
    assert decision.kind == "items"
    assert [v.action for v in decision.items] == [
        Action.ACK, Action.DUPLICATE, Action.RETRY, Action.REJECT, Action.RETRY, Action.RETRY, Action.RETRY]
    assert decision.items[3].error_type == "document_parsing_exception"


@pytest.mark.parametrize("status, error_type, reason, says", [
    # As Elasticsearch 9.2.8 answers them, per item, in a 200 (audit 4: each was a dead letter).
    (404, "index_not_found_exception", "no such index [absent-idx] and [action.auto_create_index] is [false]",
     "action.auto_create_index"),
    (400, "index_closed_exception", "closed", "_open"),
    (400, "illegal_argument_exception", "no write index is defined for alias [r2al]. The write index may be "
     "explicitly disabled using is_write_index=false or the alias points to multiple indices without one "
     "being designated as a write index", "is_write_index"),
])
def test_a_target_that_cannot_take_documents_now_is_retried_with_what_to_do(status, error_type, reason, says):
    body = {"errors": True, "items": [{"create": {"status": status, "error": {"type": error_type,
                                                                             "reason": reason}}}]}
    (verdict,) = classify(Response(200, body), 1).items
    assert verdict.action is Action.RETRY
    assert says in retry_reason(verdict) and reason in retry_reason(verdict)


def test_an_item_refused_for_a_privilege_is_the_credentials_problem_a_cluster_block_is_not():
    refused = {"errors": True, "items": [_item(403, "security_exception"), _item(403, "cluster_block_exception")]}
    privilege, block = classify(Response(200, refused), 2).items
    assert refused_privilege(privilege) and not refused_privilege(block)
    assert privilege.action is block.action is Action.RETRY


def test_a_plain_text_error_is_described_without_a_type():
    decision = classify(Response(400, {"error": "no handler found for uri [/prefix/_bulk] and method [POST]"}), 1)
    assert decision.kind == "retry" and "None" not in decision.reason
    assert decision.reason.startswith("HTTP 400: no handler found for uri [/prefix/_bulk]")


def test_request_level_statuses():
    assert classify(Response(429, {"error": {"type": "x", "reason": "y"}}), 1).kind == "retry"
    for status in (500, 502, 503, 504):
        assert classify(Response(status, None), 1).kind == "retry"
    assert classify(Response(401, {"error": {"type": "security_exception", "reason": "bad key"}}), 1).kind == "auth"
    assert classify(Response(403, None), 1).kind == "auth"
    assert classify(Response(413, None), 5).kind == "split"
    rejected = classify(Response(400, {"error": {"type": "illegal_argument_exception", "reason": "nope"}}), 2)
    assert rejected.kind == "reject" and "illegal_argument_exception: nope" in rejected.reason


def test_malformed_bodies_are_retried_not_dropped():
    assert classify(Response(200, "oops"), 1).kind == "retry"
    assert classify(Response(200, {"errors": True, "items": [_item(201)]}), 2).kind == "retry"
    weird = classify(Response(200, {"errors": True, "items": [{"create": {"status": "x"}}]}), 1)
    assert weird.items[0].action is Action.RETRY


_statuses = st.sampled_from([200, 201, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504])


@given(st.integers(min_value=100, max_value=599), st.one_of(
    st.none(), st.text(), st.dictionaries(st.text(), st.integers()),
    st.fixed_dictionaries({"errors": st.booleans(), "items": st.lists(
        st.builds(_item, _statuses, st.sampled_from([None, "version_conflict_engine_exception",
                                                     "document_parsing_exception"])))})),
       st.integers(min_value=1, max_value=20))
def test_classify_never_raises_and_accounts_for_every_item(status, body, count):
    decision = classify(Response(status, body), count)
    assert decision.kind in {"ack", "items", "retry", "auth", "split", "reject"}
    if decision.kind == "items":
        assert [v.position for v in decision.items] == list(range(count))
    if decision.kind == "ack":  # only one 2xx item per document acknowledges
        assert 200 <= status < 300 and len(body["items"]) == count
        assert all(200 <= item["create"]["status"] < 300 for item in body["items"])
