"""The saved objects of kibana/: importable shape, references, stable ids, schema fields."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import schema
from agent.kibana import dashboards as catalogue
from agent.kibana.model import DashboardError, Metric, Panel, field
from agent.kibana.render import CORE_MIGRATION, TYPE_MIGRATION, ndjson, saved_objects

ROOT = Path(__file__).resolve().parents[2]
STRING_JSON = ("panelsJSON", "optionsJSON")


def test_checked_in_file_is_current():
    done = subprocess.run([sys.executable, "scripts/gen_kibana.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_every_object_carries_migration_versions_and_json_strings():
    objects = saved_objects()
    assert [o["type"] for o in objects].count("dashboard") == 5
    for obj in objects:
        assert obj["coreMigrationVersion"] == CORE_MIGRATION
        assert obj["typeMigrationVersion"] == TYPE_MIGRATION[obj["type"]]
        attributes = obj["attributes"]
        for key in STRING_JSON:
            if key in attributes:
                assert isinstance(attributes[key], str)
                json.loads(attributes[key])
        meta = attributes.get("kibanaSavedObjectMeta")
        if meta:
            assert isinstance(meta["searchSourceJSON"], str)
            json.loads(meta["searchSourceJSON"])


def test_every_reference_resolves_and_every_layer_is_referenced():
    objects = saved_objects()
    known = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in known, (obj["id"], reference)
        if obj["type"] != "dashboard":
            continue
        names = {r["name"] for r in obj["references"]}
        for panel in json.loads(obj["attributes"]["panelsJSON"]):
            if panel["type"] == "lens":
                layers = panel["embeddableConfig"]["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
                for layer_id in layers:
                    assert f"{panel['panelIndex']}:indexpattern-datasource-layer-{layer_id}" in names
            elif panel["type"] == "search":
                assert f"{panel['panelIndex']}:{panel['panelRefName']}" in names


def test_dashboards_link_to_each_other():
    objects = {o["id"]: o for o in saved_objects() if o["type"] == "dashboard"}
    for board_id, obj in objects.items():
        panels = json.loads(obj["attributes"]["panelsJSON"])
        markdown = panels[0]["embeddableConfig"]["savedVis"]["params"]["markdown"]
        for other in objects:
            assert (f"(#/view/{other})" in markdown) == (other != board_id)


def test_ids_are_stable_and_unique():
    assert ndjson() == ndjson()
    objects = saved_objects()
    assert len({(o["type"], o["id"]) for o in objects}) == len(objects)
    for obj in objects:
        if obj["type"] == "dashboard":
            indexes = [p["panelIndex"] for p in json.loads(obj["attributes"]["panelsJSON"])]
            assert len(set(indexes)) == len(indexes)


def test_every_panel_field_is_in_the_schema_and_aggregatable():
    for board in catalogue.dashboards():
        for panel in board.panels:
            for name in panel.fields():
                found = schema.FIELDS.get(name) or schema.FIELDS[name.rpartition(".")[0]]
                assert found is not None


def test_a_renamed_field_fails_the_build(monkeypatch):
    fields = dict(schema.FIELDS)
    del fields["model.health.requests"]
    monkeypatch.setattr(schema, "FIELDS", fields)
    with pytest.raises(DashboardError, match="model.health.requests"):
        catalogue.dashboards()


def test_text_fields_and_unknown_vllm_statistics_are_refused():
    with pytest.raises(DashboardError, match="cannot aggregate"):
        field("message")
    with pytest.raises(DashboardError, match="histogram"):
        field("model.health.requests", histogram=True)
    with pytest.raises(DashboardError, match="one value"):
        Panel("x", "metric", "logs", (Metric("count"), Metric("count")), over_time=False)
