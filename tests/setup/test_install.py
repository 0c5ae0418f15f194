"""``modelscribe setup`` without a cluster: the offline --dry-run (command and
function), the privilege check's messages, and cleanup's reference rules
over a fake of the read APIs it uses (pure unit tests; the same against the
real nodes: test_setup_es.py, test_setup_os.py)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import __version__
from agent.errors import AuthError
from agent.setup import privileges
from agent.setup.install import SetupOptions, run_setup
from agent.setup.pipelines import PipelineSet, cleanup_pipelines

ENTRY, FINAL = f"modelscribe-entry-{__version__}", f"modelscribe-final-{__version__}"
SET = PipelineSet({ENTRY: {"processors": []}, FINAL: {"processors": []}}, ENTRY, FINAL)


def _agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120)


def _dead_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{probe.getsockname()[1]}"


def test_offline_dry_run_plans_everything_and_wires_the_pipelines_it_would_install():
    result = run_setup(None, SetupOptions(dry_run=True), pipelines=SET)
    assert result.cluster.offline
    assert [(a.what, a.name, a.outcome) for a in result.actions] == [
        ("ingest pipeline", ENTRY, "would-create"), ("ingest pipeline", FINAL, "would-create"),
        ("component template", "modelscribe-lifecycle", "would-create"),
        ("component template", "modelscribe-settings", "would-create"),
        ("component template", "modelscribe-mappings", "would-create"),
        ("index template", "logs-modelscribe", "would-create"),
        ("index template", "metrics-modelscribe", "would-create")]
    assert result.actions[3].detail == ""  # wired: no "not wired" reason
    alone = run_setup(None, SetupOptions(steps=("templates",), dry_run=True), pipelines=SET)
    assert alone.actions[0].detail == (f"not wired to ingest pipelines: {ENTRY}, {FINAL} not installed (run "
                                       f"`modelscribe setup pipelines`, then this again)")


def test_cli_dry_run_without_a_cluster():
    url = _dead_url()
    done = _agent("setup", "all", "--dry-run", "--es-url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"note: no cluster answered (cannot connect to Elasticsearch at {url}")
    assert lines[1] == "cluster: no cluster contacted: assuming Elasticsearch 9.2.0 with every feature"
    assert f"ingest pipeline {ENTRY}: would-create" in lines
    assert "index template logs-modelscribe: would-create" in lines
    assert lines[-1].startswith("dry run: nothing was written (")

    opensearch = _agent("setup", "lifecycle", "--dry-run", "--engine", "opensearch", "--retention", "14d",
                        "--es-url", url)
    assert opensearch.returncode == 0, opensearch.stderr
    assert "ISM policy modelscribe: would-create (retention 14d)" in opensearch.stdout.splitlines()


def test_cli_without_dry_run_needs_the_cluster():
    done = _agent("setup", "templates", "--es-url", _dead_url())
    assert done.returncode == 3
    assert "cannot connect to Elasticsearch" in done.stderr


def test_cli_refuses_a_bad_retention():
    done = _agent("setup", "lifecycle", "--dry-run", "--retention", "soon")
    assert done.returncode == 2
    assert done.stderr.startswith("modelscribe: error: --retention soon: ")


def _has_privileges(granted: set[str]):
    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert (method, path) == ("POST", "/_security/user/_has_privileges")
        answer = {"cluster": {name: name in granted for name in body["cluster"]}, "index": {}}
        for item in body.get("index", []):
            for pattern in item["names"]:
                answer["index"][pattern] = {name: name in granted for name in item["privileges"]}
        return 200, answer
    return request


def test_require_names_every_missing_privilege_in_a_stable_order():
    request = _has_privileges({"monitor", "manage_index_templates", "read_pipeline"})
    privileges.require(request, ["detect", "templates"])
    with pytest.raises(AuthError) as caught:
        privileges.require(request, ["detect", "pipelines", "lifecycle", "templates"])
    assert str(caught.value) == (
        "these credentials cannot run modelscribe setup pipelines lifecycle templates: missing the privileges "
        "manage_ingest_pipelines (cluster), manage_data_stream_lifecycle on logs-modelscribe-*, "
        "manage_data_stream_lifecycle on metrics-modelscribe-* (see the setup role in docs/security.md)")


def test_access_reports_both_roles_and_unknown_without_the_api():
    shipping, setup = privileges.access(_has_privileges({"monitor", "create_doc", "auto_configure"}))
    assert shipping.describe() == "yes"
    assert setup.describe().startswith("no, missing manage_index_templates (cluster), ")
    shipping, _ = privileges.access(lambda m, p, b=None: (400, {"error": "no handler found for uri"}))
    assert shipping.describe() == "unknown (this cluster has no _security/user/_has_privileges API)"


def test_a_401_stops_setup_before_anything_is_read():
    with pytest.raises(AuthError, match="HTTP 401"):
        run_setup(lambda m, p, b=None: (401, {"error": {"reason": "unable to authenticate"}}), SetupOptions())


class ReadOnlyCluster:
    """The read APIs cleanup uses, over dicts, and a record of deletions.

    `hidden`: indices Elasticsearch leaves out of ``_all`` for these
    credentials (then ``_has_privileges`` denies view_index_metadata on
    ``*``), whose default/final pipelines it still refuses to delete;
    `sees_all` None: no ``_has_privileges`` API (OpenSearch, security off)."""

    def __init__(self, pipelines: dict[str, dict], templates: dict[str, dict], indices: dict[str, dict],
                 hidden: dict[str, dict] | None = None, sees_all: bool | None = True) -> None:
        self.pipelines, self.templates, self.indices = pipelines, templates, indices
        self.hidden, self.sees_all = hidden or {}, sees_all
        self.deleted: list[str] = []

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if path == "/_security/user/_has_privileges":
            if self.sees_all is None:
                return 400, {"error": "no handler found for uri [/_security/user/_has_privileges]"}
            assert body == {"index": [{"names": ["*"], "privileges": ["view_index_metadata"]}]}
            return 200, {"has_all_requested": self.sees_all, "cluster": {},
                         "index": {"*": {"view_index_metadata": self.sees_all}}}
        if method == "DELETE":
            name = path.rsplit("/", 1)[1]
            users = sorted(index for index, settings in self.hidden.items()
                           if settings.get("index.default_pipeline") == name)
            if users:  # Elasticsearch's IngestService.validateNotInUse
                return 400, {"error": {"type": "illegal_argument_exception", "reason": (
                    f"pipeline [{name}] cannot be deleted because it is the default pipeline for {len(users)} "
                    f"index(es) including [{','.join(users[:3])}]")}, "status": 400}
            self.deleted.append(name)
            return 200, {"acknowledged": True}
        if path.startswith("/_ingest/pipeline/"):
            return 200, self.pipelines
        if path == "/_index_template":
            return 200, {"index_templates": [{"name": name, "index_template": body}
                                             for name, body in self.templates.items()]}
        if path == "/_component_template":
            return 200, {"component_templates": []}
        if path.startswith("/_all/_settings"):
            return 200, {name: {"settings": settings} for name, settings in self.indices.items()}
        raise AssertionError(path)


def test_cleanup_keeps_what_templates_indices_or_kept_pipelines_reference():
    def calls(name: str) -> dict:
        return {"processors": [{"pipeline": {"name": name}}]}

    cluster = ReadOnlyCluster(
        pipelines={"modelscribe-entry-0.0.1": calls("modelscribe-json-0.0.1"),  # used by an index: kept
                   "modelscribe-json-0.0.1": {"processors": []},  # called by a kept one: kept
                   "modelscribe-final-0.0.1": calls("modelscribe-plain-0.0.1"),  # unused: deleted
                   "modelscribe-plain-0.0.1": {"processors": []},  # only called by a deleted one: deleted
                   "modelscribe-hook-0.0.1": {"processors": []},  # called by a user's pipeline: kept
                   "users-pipeline": calls("modelscribe-hook-0.0.1"),
                   "modelscribe-tmpl-0.0.1": {"processors": []},  # named by an index template: kept
                   "modelscribe-foreign-0.0.1": {"processors": [], "_meta": {"managed_by": "ops"}},
                   "modelscribe-entry-99.0.0": {"processors": []}},  # newer: never touched
        templates={"other": {"template": {"settings": {"index": {"default_pipeline": "modelscribe-tmpl-0.0.1"}}}}},
        indices={".ds-logs-modelscribe-default-000001": {"index.default_pipeline": "modelscribe-entry-0.0.1"}})
    actions = {a.name: (a.outcome, a.detail) for a in cleanup_pipelines(cluster)}
    assert sorted(cluster.deleted) == ["modelscribe-final-0.0.1", "modelscribe-plain-0.0.1"]
    assert actions["modelscribe-entry-0.0.1"] == (
        "skipped", "older version still referenced by index .ds-logs-modelscribe-default-000001")
    assert actions["modelscribe-json-0.0.1"] == (
        "skipped", "older version still referenced by ingest pipeline modelscribe-entry-0.0.1")
    assert actions["modelscribe-hook-0.0.1"][1] == "older version still referenced by ingest pipeline users-pipeline"
    assert actions["modelscribe-tmpl-0.0.1"][1] == "older version still referenced by index template other"
    assert "modelscribe-foreign-0.0.1" not in actions and "modelscribe-entry-99.0.0" not in actions


def test_docs_security_shows_exactly_the_roles_setup_checks():
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    assert blocks == [{"modelscribe-shipping": dict(privileges.SHIPPING)},
                      {"modelscribe-setup": dict(privileges.SETUP)}]


def _calls(name: str) -> dict:
    return {"processors": [{"pipeline": {"name": name}}]}


def test_cleanup_without_sight_of_every_index_says_so_and_skips_what_the_cluster_refuses():
    """Audit 2 finding 5: the setup role cannot see other indices; Elasticsearch
    leaves them out of _all silently and refuses the delete with a 400."""
    cluster = ReadOnlyCluster(
        pipelines={"modelscribe-entry-0.0.1": _calls("modelscribe-json-0.0.1"),
                   "modelscribe-json-0.0.1": {"processors": []},
                   "modelscribe-final-0.0.1": {"processors": []}},
        templates={}, indices={}, sees_all=False,
        hidden={"other-app-logs": {"index.default_pipeline": "modelscribe-entry-0.0.1"}})
    caveat = "; only the indices these credentials can see were checked (they lack view_index_metadata on " \
             "every index, *)"
    dry = {a.name: (a.outcome, a.detail) for a in cleanup_pipelines(cluster, dry_run=True)}
    assert dry == {name: ("would-delete", "older version, referenced by nothing" + caveat)
                   for name in ("modelscribe-entry-0.0.1", "modelscribe-json-0.0.1", "modelscribe-final-0.0.1")}
    assert cluster.deleted == []

    done = cleanup_pipelines(cluster)
    assert [(a.name, a.outcome, a.detail) for a in done] == [
        ("modelscribe-entry-0.0.1", "skipped", "older version still the default pipeline for 1 index(es) "
                                               "including [other-app-logs] (the cluster refused to delete it)"),
        # Called by the pipeline that stays: deleting it would break other-app-logs.
        ("modelscribe-final-0.0.1", "deleted", "older version, referenced by nothing" + caveat),
        ("modelscribe-json-0.0.1", "skipped", "older version still referenced by ingest pipeline "
                                              "modelscribe-entry-0.0.1")]
    assert cluster.deleted == ["modelscribe-final-0.0.1"]


def test_cleanup_claims_no_caveat_where_every_index_is_visible_or_nothing_is_hidden():
    for sees_all in (True, None):
        cluster = ReadOnlyCluster({"modelscribe-final-0.0.1": {"processors": []}}, {}, {}, sees_all=sees_all)
        assert [(a.outcome, a.detail) for a in cleanup_pipelines(cluster, dry_run=True)] == [
            ("would-delete", "older version, referenced by nothing")]
