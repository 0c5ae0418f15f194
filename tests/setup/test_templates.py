"""Template generation and planning, without a cluster: what the bodies look
like, when an installed template counts as ours and unchanged, and which
templates in the way stop the install. The same logic against the real node
is in test_templates_es.py."""

from __future__ import annotations

import pytest

from agent import __version__, schema
from agent.outputs.base import Response
from agent.setup import templates
from agent.setup.report import Action, format_actions
from agent.setup.templates import (COMPONENT, INDEX, TemplateConflictError, build_templates, patterns_overlap, plan,
                                   requester, version_number)

NAMES = ["modelscribe-settings", "modelscribe-mappings", "logs-modelscribe", "metrics-modelscribe"]


def test_four_templates_components_first():
    built = build_templates()
    assert [(t.kind, t.name) for t in built] == [(COMPONENT, NAMES[0]), (COMPONENT, NAMES[1]),
                                                  (INDEX, NAMES[2]), (INDEX, NAMES[3])]
    assert built[0].path == "/_component_template/modelscribe-settings"
    assert built[2].path == "/_index_template/logs-modelscribe"


def test_index_templates_are_data_streams_that_beat_the_stack_defaults():
    for template, kind in zip(build_templates()[2:], ("logs", "metrics")):
        body = template.body
        assert body["index_patterns"] == [f"{kind}-modelscribe-*"]
        assert body["data_stream"] == {}
        # The stack's logs-*-* / metrics-*-* are priority 100, Fleet integrations 200.
        assert body["priority"] == templates.PRIORITY > 200
        custom = f"{kind}-modelscribe@custom"
        assert body["composed_of"] == ["modelscribe-settings", "modelscribe-mappings", "modelscribe-lifecycle",
                                       custom]
        assert body["ignore_missing_component_templates"] == ["modelscribe-lifecycle", custom]
        assert body["allow_auto_create"] is True


def test_settings_wire_the_entry_and_final_pipelines_only_when_given():
    assert "default_pipeline" not in build_templates()[0].body["template"]["settings"]["index"]
    wired = build_templates(pipelines=("modelscribe-entry-0.1.0", "modelscribe-final-0.1.0"))[0]
    index = wired.body["template"]["settings"]["index"]
    assert index["default_pipeline"] == "modelscribe-entry-0.1.0"
    assert index["final_pipeline"] == "modelscribe-final-0.1.0"
    # The wiring is part of the body, hence of the hash: wiring later is an update.
    assert wired.body["_meta"]["template_hash"] != build_templates()[0].body["_meta"]["template_hash"]


def test_opensearch_templates_use_its_types_and_keys():
    built = {t.name: t.body for t in build_templates(engine="opensearch")}
    text = str(built["modelscribe-mappings"])
    assert "flattened" not in text and "subobjects" not in text and "'flat_object'" in text
    assert templates.opensearch_mappings({"type": "flattened", "ignore_above": 1}) == {"type": "flat_object"}
    assert built["modelscribe-settings"]["template"]["settings"]["index"]["mapping"] == {"ignore_malformed": True, "total_fields": {"limit": 25_000}}
    for name in ("logs-modelscribe", "metrics-modelscribe"):
        assert built[name]["composed_of"] == ["modelscribe-settings", "modelscribe-mappings"]
        assert "ignore_missing_component_templates" not in built[name]
        assert "allow_auto_create" not in built[name]


def test_components_carry_the_schema_mappings_and_the_settings():
    settings, mappings = build_templates()[:2]
    assert mappings.body["template"] == {"mappings": schema.mappings()}
    assert settings.body["template"]["settings"]["index"] == {
        "codec": "best_compression",
        "mapping": {"ignore_malformed": True, "total_fields": {"limit": 25_000, "ignore_dynamic_beyond_limit": True}}}
    fallback = build_templates(frozenset({"match_only_text"}))[1]
    assert fallback.body["template"] == {"mappings": schema.mappings(frozenset({"match_only_text"}))}


def test_meta_and_version():
    built = build_templates()
    for template in built:
        meta = template.body["_meta"]
        assert meta["managed_by"] == "modelscribe"
        assert meta["version"] == __version__
        assert meta["schema_hash"] == schema.schema_hash()
        assert len(meta["template_hash"]) == 16
        assert template.body["version"] == version_number(__version__)
    # The hash follows the body: stable, and different when the mapping differs.
    assert build_templates()[1].body == built[1].body
    assert build_templates(frozenset({"match_only_text"}))[1].body["_meta"]["template_hash"] != \
        built[1].body["_meta"]["template_hash"]
    assert built[2].body["_meta"]["template_hash"] != built[3].body["_meta"]["template_hash"]


@pytest.mark.parametrize("version, number", [
    ("0.1.0", 1_000), ("1.0.0", 1_000_000), ("2.13.7", 2_013_007), ("1.2.3rc1", 1_002_003),
    ("1.2.3.dev4+g1234", 1_002_003)])
def test_version_number(version, number):
    assert version_number(version) == number


@pytest.mark.parametrize("version", ["1.2", "dev", "1.1000.0"])
def test_version_number_rejects(version):
    with pytest.raises(ValueError):
        version_number(version)


@pytest.mark.parametrize("first, second, overlap", [
    ("logs-modelscribe-*", "logs-*-*", True),
    ("logs-modelscribe-*", "logs-*", True),
    ("logs-modelscribe-*", "*", True),
    ("logs-modelscribe-*", "logs-modelscribe-prod", True),
    ("logs-modelscribe-*", "logs-modelscribe", False),  # ours needs the second dash
    ("logs-modelscribe-*", "metrics-*-*", False),
    ("logs-modelscribe-*", "*-nginx-*", True),  # logs-modelscribe-a-nginx-b
    ("logs-modelscribe-*", "logs-nginx-*", False),
    ("logs-modelscribe-*", "*-modelscribe-default", True),
    ("*a", "b*", True),
    ("a*b", "*c*", True),
    ("a*b", "c*", False),
])
def test_patterns_overlap(first, second, overlap):
    assert patterns_overlap(first, second) is overlap
    assert patterns_overlap(second, first) is overlap


def _installed(template, **changes):
    """The template as GET returns it (no top-level name; extra server keys)."""
    return {**template.body, "created_date_millis": 1, "modified_date_millis": 1, **changes}


# What a default-distribution cluster ships (GET /_index_template, filtered).
STACK_LOGS = {"index_patterns": ["logs-*-*"], "priority": 100, "version": 16,
              "_meta": {"description": "default logs template installed by x-pack", "managed": True}}
STACK_METRICS = {"index_patterns": ["metrics-*-*"], "priority": 100, "version": 16,
                 "_meta": {"description": "default metrics template installed by x-pack", "managed": True}}


def test_plan_on_an_empty_cluster_creates_everything():
    steps = plan(build_templates(), {}, {})
    assert [(t.name, step, detail) for t, step, detail in steps] == [(name, "create", "") for name in NAMES]


def test_plan_takes_over_from_the_stack_defaults():
    steps = plan(build_templates(), {}, {"logs": STACK_LOGS, "metrics": STACK_METRICS, "synthetics": {
        "index_patterns": ["synthetics-*-*"], "priority": 100}})
    details = {t.name: detail for t, _, detail in steps}
    assert details["logs-modelscribe"] == \
        "takes over from index template 'logs' (patterns logs-*-*, priority 100)"
    assert details["metrics-modelscribe"] == \
        "takes over from index template 'metrics' (patterns metrics-*-*, priority 100)"


def test_plan_leaves_identical_templates_alone_and_updates_changed_ones():
    desired = build_templates()
    components = {t.name: _installed(t) for t in desired[:2]}
    index_templates = {t.name: _installed(t) for t in desired[2:]}
    assert [step for _, step, _ in plan(desired, components, index_templates)] == ["unchanged"] * 4
    old_meta = {**desired[1].body["_meta"], "schema_hash": "0" * 64}
    components[desired[1].name] = _installed(desired[1], _meta=old_meta)
    index_templates["logs-modelscribe"] = _installed(desired[2], version=999)
    assert [step for _, step, _ in plan(desired, components, index_templates)] == \
        ["unchanged", "update", "update", "unchanged"]


def test_plan_never_downgrades_a_newer_install():
    desired = build_templates()
    newer = {**desired[2].body["_meta"], "version": "9.0.0"}
    installed = {"logs-modelscribe": _installed(desired[2], version=9_000_000, _meta=newer)}
    steps = plan(desired, {}, installed)
    assert steps[2][1:] == ("skip", "installed by modelscribe 9.0.0, newer than 0.1.0: left alone "
                                    "(--force downgrades it)")
    forced = plan(desired, {}, installed, force=True)
    assert forced[2][1:] == ("update", "downgraded from modelscribe 9.0.0 (--force)")


def test_plan_refuses_templates_it_does_not_manage():
    desired = build_templates()
    foreign = {"template": {"settings": {}}}  # no _meta at all
    hand_made = {"index_patterns": ["metrics-modelscribe-*"], "priority": 300, "_meta": {"managed_by": "ops"}}
    with pytest.raises(TemplateConflictError) as caught:
        plan(desired, {"modelscribe-settings": foreign}, {"metrics-modelscribe": hand_made})
    message = str(caught.value)
    # Only the templates step is known to have written nothing (setup all may
    # have installed pipelines before): the message says no more than that.
    assert message.startswith("cannot install the modelscribe templates, no template was written:")
    assert "component template 'modelscribe-settings' exists and is not managed by modelscribe " \
           "(it has no _meta.managed_by): rename or delete it, then run this again (--force does not " \
           "overwrite it)" in message
    assert "index template 'metrics-modelscribe' exists and is not managed by modelscribe " \
           "(its _meta.managed_by is 'ops')" in message
    assert "None" not in message
    with pytest.raises(TemplateConflictError):
        plan(desired, {"modelscribe-settings": foreign}, {}, force=True)


def test_plan_refuses_an_overlap_at_the_same_priority_and_reports_higher_ones():
    desired = build_templates()
    same = {"index_patterns": ["logs-modelscribe-prod*"], "priority": templates.PRIORITY}
    with pytest.raises(TemplateConflictError, match=r"index template 'ops-logs' \(patterns "
                                                    r"logs-modelscribe-prod\*, priority 250\) overlaps "
                                                    r"'logs-modelscribe' at the same priority"):
        plan(desired, {}, {"ops-logs": same})
    higher = {"index_patterns": ["logs-modelscribe-*", "other-*"], "priority": 500}
    steps = plan(desired, {}, {"test-logs-modelscribe": higher})
    assert steps[2][2] == ("outranked by index template 'test-logs-modelscribe' (patterns "
                           "logs-modelscribe-*, priority 500): data streams it matches do not get "
                           "these mappings")
    assert steps[3][2] == ""


def test_format_actions():
    actions = [Action(COMPONENT, "modelscribe-settings", "created"),
               Action(COMPONENT, "modelscribe-mappings", "created", "this cluster lacks x (mapped as y)"),
               Action(INDEX, "logs-modelscribe", "unchanged"),
               Action("ingest pipeline", "modelscribe-json-0.1.0", "skipped", "this cluster lacks grok")]
    assert format_actions(actions) == [
        "component template modelscribe-settings: created",
        "component template modelscribe-mappings: created (this cluster lacks x (mapped as y))",
        "index template logs-modelscribe: unchanged",
        "ingest pipeline modelscribe-json-0.1.0: skipped (this cluster lacks grok)",
        "done (2 created, 1 unchanged, 1 skipped)",
    ]
    assert format_actions(actions[2:]) == ["index template logs-modelscribe: unchanged",
                                           "ingest pipeline modelscribe-json-0.1.0: skipped (this cluster lacks grok)",
                                           "up to date (1 unchanged, 1 skipped)"]
    dry = [Action(INDEX, "logs-modelscribe", "would-update")]
    assert format_actions(dry, dry_run=True) == ["index template logs-modelscribe: would-update",
                                                 "dry run: nothing was written (1 would-update)"]
    assert format_actions([]) == ["up to date (nothing to do)"]


def test_requester_adapts_the_output_request_signature():
    calls = []

    class Output:  # ElasticsearchOutput.request's signature
        def request(self, method, path, body=None, content_type="application/json", params=None):
            calls.append((method, path, body))
            return Response(404, {"error": "x"})

    request = requester(Output())
    assert request("PUT", "/_index_template/x", {"a": 1}) == (404, {"error": "x"})
    assert request("GET", "/_index_template/x", None) == (404, {"error": "x"})
    assert calls == [("PUT", "/_index_template/x", b'{"a":1}'), ("GET", "/_index_template/x", None)]
