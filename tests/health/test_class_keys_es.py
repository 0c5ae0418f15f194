"""The accuracy keys of a window document on the real node (audit 9): class names escaped
by ``class_key`` (``%2E``, ``%5F``, ``%25``) are accepted under the schema's mappings, each
key its own ``long`` (confusion) or ``double`` (per_class) field, and a sum aggregation of
the confusion keys gives ``model.accuracy.n``."""

from __future__ import annotations

import pytest

from agent.health.documents import label_fields
from agent.health.state import LabelState
from agent.schema import FALLBACK_TYPES, mappings

pytestmark = [pytest.mark.elasticsearch]

INDEX = "health-class-keys"


def test_escaped_class_keys_are_mapped_one_field_each_and_add_up(es):
    es.delete_index(INDEX)
    # (the types the integ-test node lacks get their fallbacks, as `setup templates` does there)
    es.ok("PUT", f"/{INDEX}", {"mappings": mappings(frozenset(FALLBACK_TYPES))})
    labels = LabelState(100)
    pairs = [("a.b", "a.b")] * 3 + [("a_b", "a_b")] * 2 + [("x__y", "z")] * 4 + [("x", "y__z"), ("50%", "_c_")]
    for true, predicted in pairs:
        labels.add(true, predicted)
    fields = label_fields(labels, len(pairs))
    es.ok("POST", f"/{INDEX}/_doc?refresh=true", {"@timestamp": "2026-01-01T00:00:00Z",
                                                  "model": {"accuracy": fields["accuracy"]}})
    confusion = fields["accuracy"]["confusion"]
    assert set(confusion) == {"a%2Eb__a%2Eb", "a_b__a_b", "x%5F%5Fy__z", "x__y%5F%5Fz", "50%25__%5Fc%5F"}
    status, caps = es.request("GET", f"/{INDEX}/_field_caps?fields=model.accuracy.*")
    assert status == 200, caps
    for key in confusion:
        assert list(caps["fields"][f"model.accuracy.confusion.{key}"]) == ["long"], key
    assert list(caps["fields"]["model.accuracy.per_class.a%2Eb__support"]) == ["double"]
    status, body = es.request("POST", f"/{INDEX}/_search", {"size": 0, "aggs": {
        key: {"sum": {"field": f"model.accuracy.confusion.{key}"}} for key in confusion}})
    assert status == 200, body
    assert sum(agg["value"] for agg in body["aggregations"].values()) == len(pairs)
    es.delete_index(INDEX)
