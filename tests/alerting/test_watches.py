"""Each watch's search input on the real node, its condition with Watcher's semantics.

Watcher itself cannot run here (paid licence, module absent from the
integ-test distribution): the search input runs as Watcher would send it
(``rest_total_hits_as_int=true``, the watch's indices and body) and the
condition is evaluated by agent.alerting.evaluate, which follows the
Watcher reference. The SPIKE condition is Painless in the watch; what runs
here is its Python twin (see that module).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import alerting_scenarios as scenarios

from agent.alerting import evaluate, watcher
from agent.alerting.rules import RULES, Rule

pytestmark = pytest.mark.elasticsearch


def run_input(es: Any, rule: Rule) -> dict[str, Any]:
    request = watcher.watch(rule)["input"]["search"]["request"]
    assert request["rest_total_hits_as_int"] is True
    status, payload = es.request(
        "POST", "/" + ",".join(request["indices"]) + "/_search?rest_total_hits_as_int=true", request["body"])
    assert status == 200, payload
    assert isinstance(payload["hits"]["total"], int)
    return payload


def firing_groups(rule: Rule, payload: dict[str, Any]) -> set[str]:
    """The groups whose bucket alone makes the condition true."""
    condition = watcher.watch(rule)["condition"]
    groups = set()
    for bucket in payload["aggregations"]["groups"]["buckets"]:
        alone = copy.deepcopy(payload)
        alone["aggregations"]["groups"]["buckets"] = [bucket]
        if evaluate.condition_met(condition, {"payload": alone}):
            groups.add(str(bucket["key"][rule.group_by[-1]]))
    return groups


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.slug)
def test_watch_fires_on_the_anomaly_only(es, seed, now, rule):
    condition = watcher.watch(rule)["condition"]

    seed(scenarios.NORMAL[rule.slug](now))
    payload = run_input(es, rule)
    assert not evaluate.condition_met(condition, {"payload": payload}), firing_groups(rule, payload)

    seed(scenarios.ANOMALY[rule.slug](now))
    payload = run_input(es, rule)
    assert payload["hits"]["total"] > 0
    assert evaluate.condition_met(condition, {"payload": payload})
    assert firing_groups(rule, payload) == {scenarios.ABNORMAL_GROUP[rule.slug]}
