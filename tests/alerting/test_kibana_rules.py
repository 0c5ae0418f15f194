"""Each Kibana ES query rule's query and threshold on the real node.

No Kibana runs here: the search the rule type runs (its query AND the time
window, grouped by ``termField`` with the metric below) is built by
agent.alerting.kibana_rules.search_body and run on the real node, and the
threshold applied by ``fired``, as the rule type documents.
"""

from __future__ import annotations

from typing import Any

import pytest
import alerting_scenarios as scenarios

from agent.alerting import kibana_rules
from agent.alerting.rules import RULES, by_slug

pytestmark = pytest.mark.elasticsearch


def run(es: Any, rule_params: dict[str, Any]) -> list[tuple[str, float]]:
    index = ",".join(rule_params["index"])
    status, response = es.request("POST", f"/{index}/_search", kibana_rules.search_body(rule_params))
    assert status == 200, response
    return kibana_rules.fired(rule_params, response)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.slug)
def test_rule_fires_on_the_anomaly_only(es, seed, now, rule):
    rule_params = kibana_rules.rule_body(rule)["params"]

    seed(scenarios.KIBANA_NORMAL[rule.slug](now))
    assert run(es, rule_params) == []

    seed(scenarios.KIBANA_ANOMALY[rule.slug](now))
    groups = {group for group, _ in run(es, rule_params)}
    expected = "all" if rule_params["groupBy"] == "all" else scenarios.ABNORMAL_GROUP[rule.slug]
    assert groups == {expected}


def test_spike_form_is_an_absolute_floor(es, seed, now):
    """The documented limit: without a baseline, a model whose usual error rate
    is above the floor fires (the watch and ElastAlert2 forms do not)."""
    rule_params = kibana_rules.rule_body(by_slug("error-rate-spike"))["params"]
    seed(scenarios.spike_normal(now))
    assert {group for group, _ in run(es, rule_params)} == {"m-noisy"}


def test_no_data_form_is_not_per_model(es, seed, now):
    """The documented limit: a silent model among active ones goes unnoticed."""
    rule_params = kibana_rules.rule_body(by_slug("model-no-data"))["params"]
    seed(scenarios.absent_anomaly(now))
    assert run(es, rule_params) == []
