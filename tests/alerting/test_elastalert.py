"""ElastAlert2 itself runs every generated rule file against the real node.

Each checked-in kibana/elastalert/<slug>.yaml (only its ``alert`` swapped for
the ``command`` alerter, which writes each match to a file) is run by
``elastalert-test-rule --alert`` over the last 80 minutes of seeded data:
silent on the normal scenario, one or more alerts for exactly the abnormal
group on the anomalous one. See elastalert_kit for the venv and for how
ElastAlert2 learns the node's version.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import elastalert_kit
import pytest
import alerting_scenarios as scenarios

from agent.alerting.rules import RULES

pytestmark = pytest.mark.elasticsearch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def venv() -> Path:
    return elastalert_kit.ensure_venv()


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.slug)
def test_elastalert_fires_on_the_anomaly_only(es_node, seed, now, venv, tmp_path, rule):
    config = elastalert_kit.write_config(tmp_path, es_node)
    rule_file = ROOT / "kibana" / "elastalert" / f"{rule.slug}.yaml"
    start, end = now - timedelta(minutes=80), now + timedelta(minutes=1)

    seed(scenarios.NORMAL[rule.slug](now))
    matches, output = elastalert_kit.run_rule(venv, config, rule_file, start, end, es_node.version, tmp_path)
    assert matches == [], output[-3000:]

    seed(scenarios.ANOMALY[rule.slug](now))
    matches, output = elastalert_kit.run_rule(venv, config, rule_file, start, end, es_node.version, tmp_path)
    groups = {elastalert_kit.match_group(match, rule.group_by[-1]) for match in matches}
    assert groups == {scenarios.ABNORMAL_GROUP[rule.slug]}, output[-3000:]
