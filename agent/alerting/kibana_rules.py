"""Kibana "Elasticsearch query" rules (``.es-query``) generated from agent.alerting.rules.

``rule_body(rule, connector_id)`` is the body of
``POST /api/alerting/rule/<rule.id>``; ``connector_body()`` the index
connector every rule's action writes to. An ES query rule counts documents,
or computes avg/min/max/sum of one field, over a time window, optionally per
group (``groupBy: top`` on ``termField``), and compares that with a
threshold. What each kind becomes (docs/alerting.md states the
approximations plainly):

    THRESHOLD  aggType = the rule's metric on its field, per group, > or <;
               a weighted figure (``rule.weight``) cannot be expressed (no
               weighted average among the aggTypes): the ``partial``
               documents (label corrections) are left out and the figure is
               the plain average of the windows' values (``Rule.match_for``)
    COUNT      count per group >= threshold; grouped by the LAST group field
               only and counting documents, not distinct windows (``multi_terms``
               grouping and distinct counts are beyond the rule type's options
               in the Kibana versions we target)
    SPIKE      no baseline exists in this rule type: avg(field) per group
               above the rule's floor (``threshold``)
    ABSENT     no per-group absence either: fires when NO matching document
               at all arrived in the look-back (count < 1, not grouped)

On a Basic licence only the index and server-log connectors exist, so every
rule routes to one index connector writing into rules.ALERTS_INDEX (it works
on every licence; add other connectors in Kibana on a higher one).

``search_body(params)`` and ``fired(params, response)`` reproduce how the
rule type runs its query and applies its threshold, following
https://www.elastic.co/guide/en/kibana/current/rule-type-es-query.html
(query: the rule's query AND a range ``timeField`` within the last
``timeWindowSize timeWindowUnit``; grouped: a ``terms`` aggregation on
``termField`` of ``termSize`` buckets with the metric below it; the value of
a group is its doc count or metric; the threshold comparator is applied per
group, or to the total hits / the metric when not grouped). The tests run
that search on the real node.

Guarantees: pure functions of the rule; stable key order; ``esQuery`` is the
JSON string the rule type requires.
"""

from __future__ import annotations

import json
from typing import Any

from agent.alerting.rules import ABOVE, ABSENT, ALERTS_INDEX, COUNT, SPIKE, THRESHOLD, TIME_FIELD, Rule

RULE_TYPE = ".es-query"
CONSUMER = "stackAlerts"
ACTION_GROUP = "query matched"
CONNECTOR_ID = "modelscribe-alerts-index"
TERM_SIZE = 100
# The oldest Kibana whose ES query rule has every option used here: the
# 8.7 reference is the first to document its aggregation and "grouped over"
# options (8.6's counts matching documents only). Checked against the
# reference, not against a running Kibana.
OLDEST_KIBANA = "8.7"

_COMPARATORS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
                "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def params(rule: Rule) -> dict[str, Any]:
    """The rule's ``params`` (see the module docstring for each kind)."""
    out: dict[str, Any] = {
        "searchType": "esQuery",
        "index": [rule.index],
        "timeField": TIME_FIELD,
        "esQuery": json.dumps({"query": rule.match_for(weighted=False).es_query()}, indent=2),
        "size": 10,
        "timeWindowSize": rule.lookback_minutes,
        "timeWindowUnit": "m",
        "excludeHitsFromPreviousRun": False,
    }
    if rule.kind == THRESHOLD:
        out.update(aggType=rule.metric, aggField=rule.field, groupBy="top", termField=rule.group_by[0],
                   termSize=TERM_SIZE, thresholdComparator=">" if rule.direction == ABOVE else "<",
                   threshold=[rule.threshold])
    elif rule.kind == SPIKE:
        out.update(aggType="avg", aggField=rule.field, groupBy="top", termField=rule.group_by[0],
                   termSize=TERM_SIZE, thresholdComparator=">=", threshold=[rule.threshold])
    elif rule.kind == COUNT:
        out.update(aggType="count", groupBy="top", termField=rule.group_by[-1], termSize=TERM_SIZE,
                   thresholdComparator=">=", threshold=[rule.threshold])
    elif rule.kind == ABSENT:
        out.update(aggType="count", groupBy="all", thresholdComparator="<", threshold=[1])
    else:
        raise ValueError(f"unknown rule kind {rule.kind!r}")
    return out


def _action(rule: Rule, connector_id: str) -> dict[str, Any]:
    document = {
        TIME_FIELD: "{{context.date}}",
        "message": "{{context.message}}",
        "modelscribe": {"rule": rule.id, "severity": rule.severity, "group": "{{alert.id}}",
                        "value": "{{context.value}}", "conditions": "{{context.conditions}}"},
        "kibana": {"rule_id": "{{rule.id}}", "rule_name": "{{rule.name}}"},
    }
    return {"group": ACTION_GROUP, "id": connector_id, "params": {"documents": [document]},
            "frequency": {"summary": False, "notify_when": "onActionGroupChange", "throttle": None}}


def rule_body(rule: Rule, connector_id: str = CONNECTOR_ID) -> dict[str, Any]:
    """Body of ``POST /api/alerting/rule/<rule.id>`` (create)."""
    return {"rule_type_id": RULE_TYPE, "consumer": CONSUMER, **update_body(rule, connector_id)}


def update_body(rule: Rule, connector_id: str = CONNECTOR_ID) -> dict[str, Any]:
    """Body of ``PUT /api/alerting/rule/<rule.id>`` (update: no type, no consumer)."""
    return {
        "name": f"modelscribe: {rule.title}",
        "tags": ["modelscribe", *rule.tags],
        "schedule": {"interval": f"{rule.every_minutes}m"},
        "params": params(rule),
        "actions": [_action(rule, connector_id)],
    }


def connector_body() -> dict[str, Any]:
    """Body of ``POST /api/actions/connector/<CONNECTOR_ID>``: an index connector."""
    return {"name": "modelscribe alerts (index)", "connector_type_id": ".index",
            "config": {"index": ALERTS_INDEX, "refresh": False, "executionTimeField": None}}


# ------------------------------------------------------------ the rule type's run

def search_body(rule_params: dict[str, Any]) -> dict[str, Any]:
    """The search the ES query rule type runs for `rule_params` (``now`` as the end)."""
    query = json.loads(rule_params["esQuery"])["query"]
    window = f"now-{rule_params['timeWindowSize']}{rule_params['timeWindowUnit']}"
    time_range = {"range": {rule_params["timeField"]: {"gte": window, "lte": "now",
                                                       "format": "strict_date_optional_time"}}}
    body: dict[str, Any] = {"size": rule_params["size"], "track_total_hits": True,
                            "query": {"bool": {"filter": [query, time_range]}}}
    agg_type = rule_params.get("aggType", "count")
    metric = {"metricAgg": {agg_type: {"field": rule_params.get("aggField")}}} if agg_type != "count" else {}
    if rule_params.get("groupBy") == "top":
        terms: dict[str, Any] = {"field": rule_params["termField"], "size": rule_params["termSize"]}
        if metric:
            ascending = rule_params["thresholdComparator"].startswith("<")
            terms["order"] = {"metricAgg": "asc" if ascending else "desc"}
        body["aggs"] = {"groupAgg": {"terms": terms, **({"aggs": metric} if metric else {})}}
    elif metric:
        body["aggs"] = metric
    return body


def fired(rule_params: dict[str, Any], response: dict[str, Any]) -> list[tuple[str, float]]:
    """The (group, value) pairs that met the threshold (group "all" when not grouped)."""
    compare = _COMPARATORS[rule_params["thresholdComparator"]]
    threshold = rule_params["threshold"][0]
    agg_type = rule_params.get("aggType", "count")
    if rule_params.get("groupBy") == "top":
        values = [(str(bucket["key"]),
                   bucket["doc_count"] if agg_type == "count" else bucket["metricAgg"]["value"])
                  for bucket in response["aggregations"]["groupAgg"]["buckets"]]
    elif agg_type == "count":
        total = response["hits"]["total"]
        values = [("all", total["value"] if isinstance(total, dict) else total)]
    else:
        values = [("all", response["aggregations"]["metricAgg"]["value"])]
    return [(group, value) for group, value in values if value is not None and compare(value, threshold)]
