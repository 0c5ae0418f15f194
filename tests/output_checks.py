"""Checks both outputs (Elasticsearch, OpenSearch) must pass against their real node.

tests/outputs/test_elasticsearch_output.py and test_opensearch_output.py
call these with their own output, node helper and event factory (tests/ is
on pytest's pythonpath), so the two engines are held to the same contract.
"""
from __future__ import annotations

from typing import Any, Callable

from agent.outputs.retry import Action, classify


def check_bulk_items_classify(output: Any, helper: Any, index: str,
                              event: Callable[[int, dict], Any]) -> list:
    """Real bulk answers through the one classifier: stored, duplicate on re-send, mapping
    rejection.  Closes `output`; returns the item verdicts of the mixed bulk for
    engine-specific checks."""
    helper.ok("PUT", f"/{index}", {"mappings": {"properties": {"latency": {"type": "long"}}}})
    try:
        sent = [event(0, {"latency": 5}), event(1, {"latency": 6})]
        first = output.send(sent)
        assert [next(iter(item.values()))["_id"] for item in first.body["items"]] == [e.doc_id for e in sent]
        assert classify(first, 2, [e.doc_id for e in sent]).kind == "ack"
        assert classify(first, 2, [e.doc_id for e in reversed(sent)]).kind == "retry"
        mixed = output.send([event(0, {"latency": 5}), event(2, {"latency": "not a number"}),
                             event(3, {"latency": 7})])
        decision = classify(mixed, 3)
        assert decision.kind == "items"
        assert [v.action for v in decision.items] == [Action.DUPLICATE, Action.REJECT, Action.ACK]
        assert decision.items[0].error_type == "version_conflict_engine_exception"
        assert decision.items[1].status == 400 and "latency" in decision.items[1].reason
    finally:
        output.close()
    assert helper.count(index) == 3
    return decision.items
