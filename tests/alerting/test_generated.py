"""The generated files, the rules' fields, and the condition evaluator itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from agent import schema
from agent.alerting import elastalert, evaluate, kibana_rules, watcher
from agent.alerting.rules import RULES, SPIKE, RuleFieldError, check_fields, field, require_fields

ROOT = Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_alerting", ROOT / "scripts" / "gen_alerting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_field_a_rule_uses_is_in_the_schema():
    assert check_fields() == []
    for rule in RULES:
        for name in (*rule.group_by, *(n for n, _ in rule.match.terms), *(n for n, _, _ in rule.match.ranges)):
            assert name in schema.FIELDS, (rule.slug, name)
        if rule.field:
            assert rule.field in schema.FIELDS, (rule.slug, rule.field)


def test_a_field_the_schema_lacks_stops_generation():
    field("model.renamed_in_a_hurry")
    try:
        with pytest.raises(RuleFieldError, match="model.renamed_in_a_hurry"):
            require_fields()
        with pytest.raises(RuleFieldError):
            _gen().render()
    finally:
        from agent.alerting import rules
        rules._USED.remove("model.renamed_in_a_hurry")


def test_checked_in_files_are_up_to_date():
    problems = _gen().problems()
    assert problems == [], f"{problems}: run `python3 scripts/gen_alerting.py`"


def test_generated_files_parse_and_carry_stable_ids():
    for rule in RULES:
        body = json.loads((ROOT / "kibana" / "watchers" / f"{rule.slug}.json").read_text())
        assert body["metadata"]["rule"] == rule.id
        kibana = json.loads((ROOT / "kibana" / "rules" / f"{rule.slug}.json").read_text())
        assert json.loads(kibana["params"]["esQuery"]) == {"query": rule.match_for(weighted=False).es_query()}
        config = yaml.safe_load((ROOT / "kibana" / "elastalert" / f"{rule.slug}.yaml").read_text())
        assert config == elastalert.rule_config(rule) and config["name"] == rule.id
    assert len({rule.id for rule in RULES}) == len(RULES)


def test_the_spike_script_and_its_python_twin_take_the_same_parameters():
    (rule,) = [rule for rule in RULES if rule.kind == SPIKE]
    condition = watcher.condition(rule)["script"]
    assert condition["params"] == {"factor": rule.factor, "floor": rule.threshold}
    for name in ("params.factor", "params.floor", "recent.value.value", "baseline.value.value"):
        assert name in condition["source"]


# ------------------------------------------------ Watcher's compare semantics

def _buckets(*values):
    return {"payload": {"aggregations": {"groups": {"buckets": [{"v": {"value": v}} for v in values]}}}}


def test_array_compare_quantifiers_follow_the_reference():
    some = {"array_compare": {"ctx.payload.aggregations.groups.buckets": {"path": "v.value",
                                                                          "gt": {"value": 5}}}}
    every = {"array_compare": {"ctx.payload.aggregations.groups.buckets": {
        "path": "v.value", "gt": {"value": 5, "quantifier": "all"}}}}
    assert evaluate.condition_met(some, _buckets(1, 6)) and not evaluate.condition_met(every, _buckets(1, 6))
    assert evaluate.condition_met(every, _buckets(7, 6))
    # empty arrays: some -> false, all -> true
    assert not evaluate.condition_met(some, _buckets()) and evaluate.condition_met(every, _buckets())
    # a null value never passes an ordering operator
    assert not evaluate.condition_met(some, _buckets(None))


def test_compare_reads_paths_and_context_references():
    ctx = {"payload": {"hits": {"total": 3}, "limit": 2}}
    assert evaluate.condition_met({"compare": {"ctx.payload.hits.total": {"gte": 3}}}, ctx)
    assert not evaluate.condition_met({"compare": {"ctx.payload.hits.total": {"lt": 3}}}, ctx)
    assert evaluate.condition_met({"compare": {"ctx.payload.hits.total": {"gt": "{{ctx.payload.limit}}"}}}, ctx)
    assert evaluate.condition_met({"compare": {"ctx.payload.missing": {"eq": None}}}, ctx)
    assert not evaluate.condition_met({"compare": {"ctx.payload.missing": {"gt": 0}}}, ctx)


def test_kibana_threshold_applies_per_group():
    rule_params = {"thresholdComparator": ">", "threshold": [500], "aggType": "max", "groupBy": "top"}
    response = {"aggregations": {"groupAgg": {"buckets": [
        {"key": "a", "doc_count": 3, "metricAgg": {"value": 501}},
        {"key": "b", "doc_count": 3, "metricAgg": {"value": 500}},
        {"key": "c", "doc_count": 1, "metricAgg": {"value": None}}]}}}
    assert kibana_rules.fired(rule_params, response) == [("a", 501)]
    count = {"thresholdComparator": "<", "threshold": [1], "aggType": "count", "groupBy": "all"}
    assert kibana_rules.fired(count, {"hits": {"total": {"value": 0}}}) == [("all", 0)]
    assert kibana_rules.fired(count, {"hits": {"total": {"value": 2}}}) == []
