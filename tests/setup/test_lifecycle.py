"""Retention objects without a cluster: durations in the cluster's units, the
bodies for each mechanism, and which one each engine gets. The component on
the real node: test_setup_es.py; the skip on OpenSearch without ISM:
test_setup_os.py (neither test node enforces retention, see docs/setup.md)."""

from __future__ import annotations

import pytest

from agent.setup.cluster import DSL, ILM, ISM, Cluster, assumed
from agent.setup.lifecycle import component, ilm_policy, install_lifecycle, ism_policy, time_value


@pytest.mark.parametrize("seconds, text", [(30 * 86400, "30d"), (36 * 3600, "36h"), (90 * 60, "90m"),
                                           (45, "45s"), (86400 + 1, "86401s")])
def test_time_value(seconds, text):
    assert time_value(seconds) == text


def test_time_value_refuses_nothing():
    with pytest.raises(ValueError, match="--retention must be longer than zero"):
        time_value(0.2)


def test_component_per_mechanism():
    dsl = component("7d", DSL)
    assert dsl.name == "modelscribe-lifecycle"
    assert dsl.body["template"] == {"lifecycle": {"data_retention": "7d"}}
    assert dsl.body["_meta"]["retention"] == "7d" and dsl.body["_meta"]["managed_by"] == "modelscribe"
    assert component("7d", ILM).body["template"] == {"settings": {"index": {"lifecycle": {"name": "modelscribe"}}}}
    assert component("8d", DSL).body["_meta"]["template_hash"] != dsl.body["_meta"]["template_hash"]


def test_ilm_policy_rolls_over_then_deletes_after_the_retention():
    phases = ilm_policy("14d")["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"] == {"max_primary_shard_size": "50gb", "max_age": "1d"}
    assert phases["delete"] == {"min_age": "14d", "actions": {"delete": {}}}


def test_ism_policy_attaches_to_our_streams_and_deletes_after_the_retention():
    policy = ism_policy("14d")["policy"]
    assert policy["default_state"] == "hot"
    hot, delete = policy["states"]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "14d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert policy["ism_template"] == [{"index_patterns": ["logs-modelscribe-*", "metrics-modelscribe-*"],
                                       "priority": 100}]
    assert policy["description"].endswith("retention=14d)")


@pytest.mark.parametrize("lifecycles, expected", [
    ({DSL, ILM}, [("component template", "modelscribe-lifecycle", "would-create", "retention 30d")]),
    ({ILM}, [("ILM policy", "modelscribe", "would-create", "retention 30d"),
             ("component template", "modelscribe-lifecycle", "would-create", "retention 30d")]),
])
def test_offline_plan_on_elasticsearch_prefers_the_data_stream_lifecycle(lifecycles, expected):
    cluster = Cluster("elasticsearch", "9.2.0", None, "basic", frozenset(lifecycles), offline=True)
    actions = install_lifecycle(None, cluster, dry_run=True)
    assert [(a.what, a.name, a.outcome, a.detail) for a in actions] == expected


def test_offline_plan_on_opensearch_uses_ism():
    actions = install_lifecycle(None, assumed("opensearch"), retention=7 * 86400.0, dry_run=True)
    assert [(a.what, a.name, a.outcome, a.detail) for a in actions] == [
        ("ISM policy", "modelscribe", "would-create", "retention 7d")]
    assert assumed("opensearch").lifecycle == ISM


class StoredPolicies:
    """GET answers shaped as ILM / ISM store policies (defaults filled in); PUTs recorded."""

    def __init__(self, ilm: dict | None = None, ism: dict | None = None) -> None:
        self.ilm, self.ism, self.puts = ilm, ism, []

    def __call__(self, method: str, path: str, body=None):
        if method in ("PUT", "POST"):
            self.puts.append(path)
            return 200, {"acknowledged": True}
        if path == "/_ilm/policy/modelscribe" and self.ilm is not None:
            return 200, {"modelscribe": {"version": 1, "policy": self.ilm}}
        if path == "/_plugins/_ism/policies/modelscribe" and self.ism is not None:
            return 200, {"_id": "modelscribe", "_seq_no": 4, "_primary_term": 1, "policy": self.ism}
        return 404, {}


def test_ilm_policy_as_stored_counts_as_unchanged_and_a_new_retention_updates_it():
    stored = ilm_policy("30d")["policy"]
    stored = {**stored, "phases": {**stored["phases"], "delete": {
        "min_age": "30d", "actions": {"delete": {"delete_searchable_snapshot": True}}}}}
    cluster = Cluster("elasticsearch", "8.10.0", None, "basic", frozenset({ILM}))
    fake = StoredPolicies(ilm=stored)
    actions = install_lifecycle(fake, cluster, retention=30 * 86400.0)
    assert actions[0].outcome == "unchanged"
    assert install_lifecycle(fake, cluster, retention=7 * 86400.0)[0].outcome == "updated"
    assert fake.puts[-2:] == ["/_ilm/policy/modelscribe", "/_component_template/modelscribe-lifecycle"]


def test_ism_policy_as_stored_counts_as_unchanged_and_updates_carry_the_sequence_number():
    stored = ism_policy("30d")["policy"]
    stored = {**stored, "policy_id": "modelscribe", "states": [
        {**state, "actions": [{"retry": {"count": 3}, **action} for action in state["actions"]]}
        for state in stored["states"]]}
    fake = StoredPolicies(ism=stored)
    cluster = Cluster("opensearch", "2.19.1", None, None, frozenset({ISM}))
    assert [a.outcome for a in install_lifecycle(fake, cluster)] == ["unchanged"]
    assert install_lifecycle(fake, cluster, retention=86400.0)[0].outcome == "updated"
    assert fake.puts[0] == "/_plugins/_ism/policies/modelscribe?if_seq_no=4&if_primary_term=1"
