"""Elasticsearch Watcher watches generated from agent.alerting.rules.

``watch(rule)`` returns the body of ``PUT _watcher/watch/<rule.id>``:

    trigger    schedule every ``rule.every_minutes``
    input      one search over ``rule.index``: the rule's filter and its
               look-back as a ``now-<N>m`` range (date math that Elasticsearch
               resolves itself, so the body needs no mustache), one
               ``composite`` aggregation ``groups`` over ``rule.group_by``
               (flat buckets, whatever the number of group fields) with the
               figure of each group below it; ``rest_total_hits_as_int`` so
               ``ctx.payload.hits.total`` is an integer
    condition  ``array_compare`` over the groups' buckets (quantifier
               ``some``: fire when any group is abnormal), except SPIKE,
               which compares two figures of the same bucket: a Painless
               ``script`` condition
    actions    a ``logging`` action and an ``index`` action into
               rules.ALERTS_INDEX; throttled to one per 15 minutes

Guarantees: a pure function of the rule (stable key order, no timestamps);
the search body uses only aggregations of the Elasticsearch server itself
(terms sources, filter, avg/max/min/sum, weighted_avg, cardinality), none
from optional modules. A rule with a ``weight`` gets its exact pooled
figure (``weighted_avg``: sum(value x weight) / sum(weight), over every
matching document, label corrections included). Groups beyond
``GROUPS_PER_RUN`` (1,000) are not looked at in one run (docs/alerting.md).
"""

from __future__ import annotations

from typing import Any

from agent.alerting.rules import ABOVE, ABSENT, ALERTS_INDEX, COUNT, SPIKE, THRESHOLD, TIME_FIELD, Rule

GROUPS_PER_RUN = 1000
THROTTLE = "15m"

def _since(minutes: int) -> dict[str, Any]:
    return {"range": {TIME_FIELD: {"gte": f"now-{minutes}m"}}}


def _groups(rule: Rule, figures: dict[str, Any]) -> dict[str, Any]:
    sources = [{name: {"terms": {"field": name}}} for name in rule.group_by]
    return {"groups": {"composite": {"size": GROUPS_PER_RUN, "sources": sources}, "aggs": figures}}


def search_body(rule: Rule) -> dict[str, Any]:
    """The search input's ``body``: filter, look-back and the per-group figures."""
    query = rule.match_for(weighted=True).es_query()
    filters = query["bool"]["filter"]
    if rule.kind == THRESHOLD:
        filters.append(_since(rule.lookback_minutes))
        if rule.weight is not None:
            figures = {"value": {"weighted_avg": {"value": {"field": rule.field},
                                                  "weight": {"field": rule.weight}}}}
        else:
            figures = {"value": {rule.metric: {"field": rule.field}}}
    elif rule.kind == COUNT:
        filters.append(_since(rule.lookback_minutes))
        figures = {"distinct": {"cardinality": {"field": rule.distinct}}} if rule.distinct else {}
    elif rule.kind == SPIKE:
        filters.append(_since(rule.lookback_minutes + rule.baseline_minutes))
        recent = {"range": {TIME_FIELD: {"gte": f"now-{rule.lookback_minutes}m"}}}
        baseline = {"range": {TIME_FIELD: {"lt": f"now-{rule.lookback_minutes}m"}}}
        figures = {"recent": {"filter": recent, "aggs": {"value": {"avg": {"field": rule.field}}}},
                   "baseline": {"filter": baseline, "aggs": {"value": {"avg": {"field": rule.field}}}}}
    elif rule.kind == ABSENT:
        filters.append(_since(rule.baseline_minutes))
        figures = {"recent": {"filter": _since(rule.lookback_minutes)}}
    else:
        raise ValueError(f"unknown rule kind {rule.kind!r}")
    return {"size": 0, "track_total_hits": True, "query": query, "aggs": _groups(rule, figures)}


BUCKETS = "ctx.payload.aggregations.groups.buckets"


def spike_script(rule: Rule) -> str:
    """The Painless source of a SPIKE condition (agent.alerting.evaluate.spike mirrors it)."""
    return (
        f"for (def b : {BUCKETS}) {{"
        " def cur = b.recent.value.value; def ref = b.baseline.value.value;"
        " if (cur != null && cur >= params.floor && (ref == null ? 0.0 : ref) * params.factor <= cur)"
        " { return true; } }"
        " return false;")


def condition(rule: Rule) -> dict[str, Any]:
    """The watch's condition (see the module docstring)."""
    if rule.kind == THRESHOLD:
        op = "gt" if rule.direction == ABOVE else "lt"
        return {"array_compare": {BUCKETS: {"path": "value.value",
                                            op: {"value": rule.threshold, "quantifier": "some"}}}}
    if rule.kind == COUNT:
        path = "distinct.value" if rule.distinct else "doc_count"
        return {"array_compare": {BUCKETS: {"path": path,
                                            "gte": {"value": rule.threshold, "quantifier": "some"}}}}
    if rule.kind == ABSENT:
        return {"array_compare": {BUCKETS: {"path": "recent.doc_count",
                                            "eq": {"value": 0, "quantifier": "some"}}}}
    if rule.kind == SPIKE:
        return {"script": {"lang": "painless", "source": spike_script(rule),
                           "params": {"factor": rule.factor, "floor": rule.threshold}}}
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def watch(rule: Rule) -> dict[str, Any]:
    """The body of ``PUT _watcher/watch/<rule.id>``."""
    text = (f"modelscribe {rule.id} ({rule.severity}): {rule.title}. "
            "{{ctx.payload.hits.total}} matching documents, watch {{ctx.watch_id}}")
    return {
        "metadata": {"managed_by": "modelscribe", **rule.summary(), "description": rule.description},
        "trigger": {"schedule": {"interval": f"{rule.every_minutes}m"}},
        "input": {"search": {"request": {
            "indices": [rule.index],
            "rest_total_hits_as_int": True,
            "body": search_body(rule),
        }}},
        "condition": condition(rule),
        "throttle_period": THROTTLE,
        "actions": {
            "log": {"logging": {"level": "warn", "text": text}},
            "index": {"index": {"index": ALERTS_INDEX, "execution_time_field": TIME_FIELD}},
        },
    }
