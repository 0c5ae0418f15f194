"""accuracy-drop on label documents as the agent writes them, late-label corrections included
(audit 3, finding 1), in all three engines on the real node.

A correction document carries only the labels that came after its window was
written; its ``model.accuracy.accuracy`` is a ratio over those few labels. The
Watcher form pools: ``weighted_avg`` of accuracy by ``model.accuracy.n``, which
is correct / labelled over every document. Kibana's ES query rule and
ElastAlert2 have no weighted average: they leave the corrections out and
average the windows. Either way one late label no longer counts as a window.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import elastalert_kit
import pytest
import alerting_scenarios as scenarios
from test_kibana_rules import run as run_kibana
from test_watches import firing_groups, run_input

from agent.alerting import kibana_rules
from agent.alerting.rules import by_slug

pytestmark = pytest.mark.elasticsearch

ROOT = Path(__file__).resolve().parents[2]
RULE = by_slug("accuracy-drop")


def _pooled(docs: list[scenarios.Doc], model: str) -> float:
    accuracy = [doc["model"]["accuracy"] for _, doc in docs
                if doc["model"]["name"] == model and doc["event"]["kind"] == "metric"]
    return sum(a["accuracy"] * a["n"] for a in accuracy) / sum(a["n"] for a in accuracy)


def test_the_watch_pools_every_label_and_fires_on_the_real_drop_only(es, seed, now):
    docs = scenarios.late_labels(now)
    seed(docs)
    payload = run_input(es, RULE)
    assert firing_groups(RULE, payload) == {"m-drop"}
    values = {bucket["key"]["model.name"]: bucket["value"]["value"]
              for bucket in payload["aggregations"]["groups"]["buckets"]}
    for model in ("m-acc", "m-drop", "m-steady"):
        assert values[model] == pytest.approx(_pooled(docs, model), abs=1e-9), model
    assert values["m-acc"] == pytest.approx(522 / 586) and values["m-drop"] == pytest.approx(160 / 210)


def test_the_watch_weighs_windows_by_their_labels(es, seed, now):
    seed(scenarios.uneven_windows(now))
    payload = run_input(es, RULE)
    assert firing_groups(RULE, payload) == set()
    (bucket,) = payload["aggregations"]["groups"]["buckets"]
    assert bucket["value"]["value"] == pytest.approx(180 / 204)


def test_the_kibana_rule_averages_windows_without_the_corrections(es, seed, now):
    seed(scenarios.late_labels(now))
    rule_params = kibana_rules.rule_body(RULE)["params"]
    fired = dict(run_kibana(es, rule_params))
    assert set(fired) == {"m-drop"} and fired["m-drop"] == pytest.approx(0.75)


def test_the_kibana_rule_cannot_weigh_windows(es, seed, now):
    """The documented limit: a mean of windows, whatever their number of labels."""
    seed(scenarios.uneven_windows(now))
    fired = dict(run_kibana(es, kibana_rules.rule_body(RULE)["params"]))
    assert fired == {"m-big": pytest.approx(0.3)}


@pytest.fixture(scope="session")
def venv() -> Path:
    return elastalert_kit.ensure_venv()


def test_elastalert_averages_windows_without_the_corrections(es_node, seed, now, venv, tmp_path):
    seed(scenarios.late_labels(now))
    config = elastalert_kit.write_config(tmp_path, es_node)
    rule_file = ROOT / "kibana" / "elastalert" / "accuracy-drop.yaml"
    matches, output = elastalert_kit.run_rule(venv, config, rule_file, now - timedelta(minutes=80),
                                              now + timedelta(minutes=1), es_node.version, tmp_path)
    assert {elastalert_kit.match_group(match, "model.name") for match in matches} == {"m-drop"}, output[-3000:]
    for match in matches:
        assert match["metric_model.accuracy.accuracy_avg"] == pytest.approx(0.75), match
