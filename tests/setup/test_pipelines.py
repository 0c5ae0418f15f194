"""Pipeline installation planning without a cluster: which processors a body
uses, call order, the stamp, skipping on a cluster that lacks a processor,
and when an installed pipeline counts as unchanged. Against the real node:
test_setup_es.py."""

from __future__ import annotations

from typing import Any

from agent import __version__
from agent.setup.cluster import Cluster
from agent.setup.pipelines import (PipelineSet, install_pipelines, missing_processors, processor_types, references,
                                   stamped)

BODY = {
    "description": "x",
    "processors": [
        {"grok": {"tag": "g", "field": "message", "patterns": ["%{WORD:a}"],
                  "on_failure": [{"set": {"tag": "s", "field": "error.message", "value": "x"}}]}},
        {"foreach": {"tag": "f", "field": "list", "processor": {"trim": {"tag": "t", "field": "_ingest._value"}}}},
        {"pipeline": {"tag": "p", "name": "modelscribe-json-0.1.0"}},
    ],
    "on_failure": [{"append": {"tag": "a", "field": "tags", "value": "pipeline_error"}}],
}
SET = PipelineSet({"modelscribe-entry-0.1.0": BODY,
                   "modelscribe-json-0.1.0": {"processors": [{"json": {"tag": "j", "field": "message"}}]},
                   "modelscribe-final-0.1.0": {"processors": [{"set": {"tag": "i", "field": "event.ingested",
                                                                     "value": "{{_ingest.timestamp}}"}}]}},
                  "modelscribe-entry-0.1.0", "modelscribe-final-0.1.0")
EVERYTHING = frozenset({"grok", "set", "foreach", "trim", "pipeline", "append", "json"})


def _cluster(processors: frozenset[str] | None = EVERYTHING, engine: str = "elasticsearch") -> Cluster:
    return Cluster(engine, "9.2.8", processors, "basic", frozenset())


class FakeCluster:
    """The two pipeline APIs install_pipelines uses, over a dict (a pure unit test)."""

    def __init__(self) -> None:
        self.pipelines: dict[str, dict] = {}
        self.writes: list[str] = []

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        name = path.rsplit("/", 1)[1]
        if method == "PUT":
            self.pipelines[name] = {**body, "created_date_millis": 1, "modified_date_millis": 2}
            self.writes.append(name)
            return 200, {"acknowledged": True}
        found = {key: value for key, value in self.pipelines.items() if key.startswith(name.rstrip("*"))}
        return (200, found) if found else (404, {})


def test_processor_types_and_references_include_nested_processors():
    assert processor_types(BODY) == {"grok", "set", "foreach", "trim", "pipeline", "append"}
    assert references(BODY) == {"modelscribe-json-0.1.0"}


def test_stamp_on_each_engine():
    on_es = stamped({"processors": []}, "elasticsearch")
    assert on_es == {"processors": [], "version": 1000,
                     "_meta": {"managed_by": "modelscribe", "version": __version__}}
    # OpenSearch refuses unknown top-level pipeline keys: the integer version is the stamp there.
    assert stamped({"processors": []}, "opensearch") == {"processors": [], "version": 1000}


def test_a_missing_processor_skips_every_pipeline_and_writes_nothing():
    cluster = FakeCluster()
    actions = install_pipelines(cluster, _cluster(frozenset({"set", "pipeline"})), SET)
    assert missing_processors(SET, _cluster(frozenset({"set", "pipeline"}))) == [
        "append", "foreach", "grok", "json", "trim"]
    assert {a.outcome for a in actions} == {"skipped"}
    assert actions[0].detail == ("this cluster lacks the ingest processors append, foreach, grok, json, trim "
                                 "(GET /_nodes/ingest): keep --parse-at agent here")
    assert cluster.writes == []


def test_install_writes_callees_first_then_is_idempotent_and_repairs_changes():
    cluster = FakeCluster()
    first = install_pipelines(cluster, _cluster(), SET)
    assert [(a.name, a.outcome) for a in first] == [("modelscribe-json-0.1.0", "created"),
                                                     ("modelscribe-entry-0.1.0", "created"),
                                                     ("modelscribe-final-0.1.0", "created")]
    assert cluster.writes.index("modelscribe-json-0.1.0") < cluster.writes.index("modelscribe-entry-0.1.0")
    assert {a.outcome for a in install_pipelines(cluster, _cluster(), SET)} == {"unchanged"}
    cluster.pipelines["modelscribe-json-0.1.0"]["processors"] = []  # edited by hand
    again = install_pipelines(cluster, _cluster(), SET, dry_run=True)
    assert [a.outcome for a in again] == ["would-update", "unchanged", "unchanged"]
    assert cluster.pipelines["modelscribe-json-0.1.0"]["processors"] == []
    assert [a.outcome for a in install_pipelines(cluster, _cluster(), SET)][0] == "updated"


def test_a_pipeline_someone_else_manages_is_skipped_unless_forced():
    cluster = FakeCluster()
    cluster.pipelines["modelscribe-json-0.1.0"] = {"processors": [], "_meta": {"managed_by": "ops"}}
    actions = install_pipelines(cluster, _cluster(), SET)
    assert (actions[0].outcome, actions[0].detail) == (
        "skipped", "exists and is managed by 'ops', not modelscribe: --force overwrites it")
    assert install_pipelines(cluster, _cluster(), SET, force=True)[0].outcome == "updated"


def test_offline_plan_creates_everything():
    actions = install_pipelines(None, _cluster(None), SET, dry_run=True)
    assert [a.outcome for a in actions] == ["would-create"] * 3
