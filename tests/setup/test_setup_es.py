"""``modelscribe setup`` on the real node (the integ-test zip, Elasticsearch 9.2.8).

That node has no ingest processor but ``set_security_user``, no ILM and no
data stream lifecycle service, so: the shipped pipelines are skipped there
with the reason (checked through the CLI); wiring, idempotency and the
pipelines really running at index time are checked with a small pipeline set
built from the one processor it has; cleanup with pipelines of empty
processor lists; the lifecycle component with a Cluster that claims the data
stream lifecycle (the node validates and composes the component; it has no
service to enforce it). The test pipelines are left on the node: backing
indices created while the templates named them still do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from agent import __version__
from agent.setup import privileges
from agent.setup.cluster import DSL, Cluster, detect
from agent.setup.install import SetupOptions, run_setup
from agent.setup.lifecycle import install_lifecycle
from agent.errors import AuthError
from agent.setup.pipelines import PipelineSet, cleanup_pipelines
from agent.setup.report import SetupInterrupted
from agent.setup.templates import install_templates

pytestmark = pytest.mark.elasticsearch

ENTRY, FINAL = f"modelscribe-testentry-{__version__}", f"modelscribe-testfinal-{__version__}"
# set_security_user is the one processor the integ-test zip has: each
# pipeline leaves its mark, so a document shows which pipelines ran.
TINY = PipelineSet({
    ENTRY: {"description": "test entry", "processors": [
        {"set_security_user": {"tag": "entry-mark", "field": "marks.entry", "properties": ["username"]}}]},
    FINAL: {"description": "test final", "processors": [
        {"set_security_user": {"tag": "final-mark", "field": "marks.final", "properties": ["username"]}}]},
}, ENTRY, FINAL)
GROK = PipelineSet({f"modelscribe-testgrok-{__version__}": {"processors": [
    {"grok": {"tag": "g", "field": "message", "patterns": ["%{WORD:w}"]}}]}},
    f"modelscribe-testgrok-{__version__}", f"modelscribe-testgrok-{__version__}")
STACK_LOGS = "test-stack-logs"


def _request(es):
    return lambda method, path, body=None: es.request(method, path, body)


def _ok(es, method: str, path: str, body: Any = None) -> Any:
    status, answer = es.request(method, path, body)
    assert status < 300, (method, path, status, answer)
    return answer


def _simulated_settings(es, index: str) -> dict:
    return _ok(es, "POST", f"/_index_template/_simulate_index/{index}")["template"]["settings"]["index"]


def _agent(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _flags(node, key_file: str | None = None) -> list[str]:
    return ["--es-url", node.url, "--ca-cert", node.ca_cert, "--api-key-file", key_file or node.api_key_file]


def test_detect_reads_what_the_integ_test_node_has(es_node, es):
    cluster = detect(_request(es))
    assert (cluster.engine, cluster.version, cluster.licence) == ("elasticsearch", es_node.version, "basic")
    assert cluster.processors == frozenset({"set_security_user"})
    assert cluster.lifecycles == frozenset() and cluster.lifecycle is None


def test_setup_wires_installed_pipelines_that_win_over_the_stack_logs_template(es_node, es):
    request = _request(es)
    # A stand-in for the stack's built-in logs template (the integ-test zip has none).
    _ok(es, "PUT", f"/_index_template/{STACK_LOGS}", {
        "index_patterns": ["logs-*-*"], "priority": 100, "data_stream": {},
        "template": {"settings": {"index.default_pipeline": "logs@default-pipeline"}}})
    try:
        first = run_setup(request, SetupOptions(), pipelines=TINY)
        outcomes = {(a.what, a.name): (a.outcome, a.detail) for a in first.actions}
        assert outcomes[("ingest pipeline", ENTRY)][0] in ("created", "unchanged")
        assert outcomes[("lifecycle", "logs-modelscribe-*,metrics-modelscribe-*")] == (
            "skipped", "this cluster has neither the data stream lifecycle nor ILM (their APIs have no handler): "
                       "data is kept until deleted by hand")
        assert outcomes[("component template", "modelscribe-settings")][0] in ("created", "updated")
        assert "takes over from index template 'test-stack-logs'" in outcomes[("index template",
                                                                               "logs-modelscribe")][1]
        settings = _simulated_settings(es, "logs-modelscribe-setupwired")
        assert (settings["default_pipeline"], settings["final_pipeline"]) == (ENTRY, FINAL)
        assert _simulated_settings(es, "logs-other-default")["default_pipeline"] == "logs@default-pipeline"

        # Both pipelines run at index time: default (no pipeline named) and final.
        answer = _ok(es, "POST", "/logs-modelscribe-setupwired/_doc?refresh=true",
                     {"@timestamp": "2026-01-01T00:00:00Z", "message": "hello"})
        source = _ok(es, "GET", f"/{answer['_index']}/_doc/{answer['_id']}")["_source"]
        assert source["marks"] == {"entry": {"username": "elastic"}, "final": {"username": "elastic"}}
        # A request naming another pipeline skips the default one, never the final one.
        answer = _ok(es, "POST", "/logs-modelscribe-setupwired/_doc?refresh=true&pipeline=_none",
                     {"@timestamp": "2026-01-01T00:00:00Z", "message": "parsed elsewhere"})
        source = _ok(es, "GET", f"/{answer['_index']}/_doc/{answer['_id']}")["_source"]
        assert source["marks"] == {"final": {"username": "elastic"}}

        again = run_setup(request, SetupOptions(), pipelines=TINY)
        assert {a.outcome for a in again.actions} == {"unchanged", "skipped"}
    finally:
        # Later tests expect unwired templates; the pipelines stay (indices name them).
        install_templates(request)
        _ok(es, "DELETE", f"/_index_template/{STACK_LOGS}")


def test_a_cluster_lacking_a_processor_gets_no_pipeline_and_unwired_templates(es):
    request = _request(es)
    result = run_setup(request, SetupOptions(steps=("pipelines", "templates"), dry_run=True), pipelines=GROK)
    pipeline, settings = result.actions[0], result.actions[1]
    assert (pipeline.outcome, pipeline.detail) == (
        "skipped", "this cluster lacks the ingest processor grok (GET /_nodes/ingest): keep --parse-at agent here")
    assert settings.name == "modelscribe-settings"
    assert settings.detail.startswith(f"not wired to ingest pipelines: modelscribe-testgrok-{__version__} is not "
                                      f"installed (this cluster lacks the ingest processor grok")
    assert es.request("GET", f"/_ingest/pipeline/modelscribe-testgrok-{__version__}")[0] == 404


def test_cli_setup_all_reports_each_object_and_skips_what_the_node_lacks(es_node):
    result = _agent("setup", "all", *_flags(es_node))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cluster: Elasticsearch {es_node.version}; licence basic; 1 ingest processors; lifecycle: none"
    pipelines = [line for line in lines if line.startswith("ingest pipeline ")]
    assert pipelines and all(": skipped (this cluster lacks the ingest processors " in line for line in pipelines)
    assert any(line.startswith("component template modelscribe-settings: ") and "not wired to ingest pipelines"
               in line for line in lines)
    assert lines[-1].startswith(("done (", "up to date ("))


def test_cleanup_removes_only_older_unreferenced_pipelines(es):
    request = _request(es)
    old, used, newer = "modelscribe-cleanold-0.0.1", "modelscribe-cleanused-0.0.1", "modelscribe-cleannew-9.0.0"
    for name in (old, used, newer):
        _ok(es, "PUT", f"/_ingest/pipeline/{name}", {"processors": [], "_meta": {"managed_by": "modelscribe"}})
    _ok(es, "PUT", "/_component_template/test-cleanup-holder",
        {"template": {"settings": {"index.final_pipeline": used}}})
    try:
        dry = {a.name: (a.outcome, a.detail) for a in cleanup_pipelines(request, dry_run=True)}
        assert dry[old] == ("would-delete", "older version, referenced by nothing")
        assert dry[used] == ("skipped", "older version still referenced by component template test-cleanup-holder")
        assert newer not in dry
        assert es.request("GET", f"/_ingest/pipeline/{old}")[0] == 200
        done = {a.name: a.outcome for a in cleanup_pipelines(request)}
        assert done[old] == "deleted" and done[used] == "skipped"
        assert es.request("GET", f"/_ingest/pipeline/{old}")[0] == 404
        assert es.request("GET", f"/_ingest/pipeline/{used}")[0] == 200
        assert es.request("GET", f"/_ingest/pipeline/{newer}")[0] == 200
    finally:
        es.request("DELETE", "/_component_template/test-cleanup-holder")
        for name in (used, newer):
            es.request("DELETE", f"/_ingest/pipeline/{name}")


def test_data_stream_lifecycle_component_is_composed_into_our_templates(es):
    request = _request(es)
    install_templates(request)
    claims_dsl = Cluster("elasticsearch", "9.2.8", frozenset(), "basic", frozenset({DSL}))
    try:
        first = install_lifecycle(request, claims_dsl, retention=7 * 86400.0)
        assert [(a.name, a.outcome, a.detail) for a in first] == [
            ("modelscribe-lifecycle", "created", "retention 7d")]
        simulated = _ok(es, "POST", "/_index_template/_simulate_index/logs-modelscribe-lifecycletest")
        assert simulated["template"]["lifecycle"]["data_retention"] == "7d"
        # No --retention: the installed one is kept, not reset to 30 days.
        kept = install_lifecycle(request, claims_dsl)
        assert [(a.outcome, a.detail) for a in kept] == [("unchanged", "retention 7d (kept from the installed "
                                                                       "lifecycle)")]
        changed = install_lifecycle(request, claims_dsl, retention=86400.0 * 30)
        assert [(a.outcome, a.detail) for a in changed] == [("updated", "retention 30d")]
    finally:
        _ok(es, "DELETE", "/_component_template/modelscribe-lifecycle")


def test_shipping_only_key_ships_but_cannot_set_up(es_node, es, tmp_path):
    key = _ok(es, "POST", "/_security/api_key", {"name": "modelscribe-shipping-only",
                                                  "role_descriptors": {"shipping": dict(privileges.SHIPPING)}})
    key_file = tmp_path / "api_key"
    key_file.write_text(key["encoded"] + "\n")
    install_templates(_request(es))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model.log").write_text('{"level": "info", "message": "shipped with the shipping role"}\n')
    stream = "logs-modelscribe-shiponly"

    shipped = _agent("run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                     "--index", stream, *_flags(es_node, str(key_file)))
    assert shipped.returncode == 0, shipped.stderr
    assert es.count(stream) == 1

    checked = _agent("check", "output", "--index", stream, *_flags(es_node, str(key_file)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "can ship (modelscribe run): yes" in checked.stdout
    assert ("can set up (modelscribe setup): no, missing manage_index_templates (cluster), manage_ingest_pipelines "
            "(cluster), manage_ilm (cluster)") in checked.stdout

    refused = _agent("setup", "templates", *_flags(es_node, str(key_file)))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert refused.stderr.strip() == (
        "modelscribe: error: these credentials cannot run modelscribe setup templates: missing the privileges "
        "manage_index_templates (cluster), read_pipeline (cluster) (see the setup role in docs/security.md)")
    refused = _agent("setup", "all", "--cleanup", *_flags(es_node, str(key_file)))
    assert refused.returncode == 3
    for name in ("manage_index_templates (cluster)", "manage_ingest_pipelines (cluster)",
                 "manage_data_stream_lifecycle on logs-modelscribe-*", "view_index_metadata on metrics-modelscribe-*"):
        assert name in refused.stderr


def test_setup_role_can_set_up(es_node, es, tmp_path):
    key = _ok(es, "POST", "/_security/api_key", {"name": "modelscribe-setup",
                                                  "role_descriptors": {"setup": dict(privileges.SETUP)}})
    key_file = tmp_path / "api_key"
    key_file.write_text(key["encoded"] + "\n")
    result = _agent("setup", "all", "--cleanup", *_flags(es_node, str(key_file)))
    assert result.returncode == 0, result.stdout + result.stderr
    checked = _agent("check", "output", *_flags(es_node, str(key_file)))
    assert "can set up (modelscribe setup): yes" in checked.stdout
    # The setup role's manage includes auto_configure; it never writes documents.
    assert ("can ship (modelscribe run): no, missing create_doc on logs-modelscribe-*, create_doc on "
            "metrics-modelscribe-*") in checked.stdout


def test_a_newer_install_is_skipped_unless_forced(es_node, es):
    request = _request(es)
    install_templates(request)
    (current,) = _ok(es, "GET", "/_index_template/metrics-modelscribe")["index_templates"]
    newer = {key: value for key, value in current["index_template"].items()
             if key not in ("created_date", "created_date_millis", "modified_date", "modified_date_millis")}
    newer.update(version=9_000_000, _meta={**newer["_meta"], "version": "9.0.0"})
    _ok(es, "PUT", "/_index_template/metrics-modelscribe", newer)
    try:
        kept = _agent("setup", "templates", *_flags(es_node))
        assert kept.returncode == 0, kept.stderr
        assert ("index template metrics-modelscribe: skipped (installed by modelscribe 9.0.0, newer than "
                f"{__version__}: left alone (--force downgrades it))") in kept.stdout.splitlines()
        assert _ok(es, "GET", "/_index_template/metrics-modelscribe")["index_templates"][0][
            "index_template"]["version"] == 9_000_000
        forced = _agent("setup", "templates", "--force", *_flags(es_node))
        assert forced.returncode == 0, forced.stderr
        assert "index template metrics-modelscribe: updated (downgraded from modelscribe 9.0.0 (--force))" in \
            forced.stdout.splitlines()
    finally:
        install_templates(request, force=True)


def test_a_refusal_part_way_carries_what_was_written_on_the_real_node(es):
    """Audit 2 finding 3: the pipeline written before a 403 is in the report."""
    first, second = f"modelscribe-stopfirst-{__version__}", f"modelscribe-stopsecond-{__version__}"
    request = _request(es)

    def refusing(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if method == "PUT" and path == f"/_ingest/pipeline/{second}":
            return 403, {"error": {"type": "security_exception", "reason": "action [cluster:admin/ingest/"
                                   "pipeline/put] is unauthorized"}, "status": 403}
        return request(method, path, body)

    pair = PipelineSet({first: {"processors": []}, second: {"processors": []}}, first, second)
    try:
        with pytest.raises(SetupInterrupted) as caught:
            run_setup(refusing, SetupOptions(steps=("pipelines", "templates")), pipelines=pair)
        stopped = caught.value
        assert isinstance(stopped.cause, AuthError) and stopped.exit_code == 3
        assert stopped.cluster.engine == "elasticsearch"
        assert [(a.what, a.name, a.outcome) for a in stopped.done] == [("ingest pipeline", first, "created")]
        assert es.request("GET", f"/_ingest/pipeline/{first}")[0] == 200
    finally:
        es.request("DELETE", f"/_ingest/pipeline/{first}")


def test_cleanup_with_the_setup_role_checks_only_what_it_sees_and_says_so(es_node, es, tmp_path):
    """Audit 2 finding 5: the setup role sees only our data streams' indices;
    Elasticsearch leaves the others out of _all silently and refuses to delete
    a pipeline one of them uses."""
    used, final, free = "modelscribe-hiddenused-0.0.1", "modelscribe-hiddenfinal-0.0.1", "modelscribe-hiddenfree-0.0.1"
    other = "test-other-app-logs"
    for name in (used, final, free):
        _ok(es, "PUT", f"/_ingest/pipeline/{name}", {"processors": [], "_meta": {"managed_by": "modelscribe"}})
    _ok(es, "PUT", f"/{other}", {"settings": {"index.default_pipeline": used, "index.final_pipeline": final,
                                              "number_of_replicas": 0}})
    key = _ok(es, "POST", "/_security/api_key", {"name": "modelscribe-setup-cleanup",
                                                  "role_descriptors": {"setup": dict(privileges.SETUP)}})
    key_file = tmp_path / "api_key"
    key_file.write_text(key["encoded"] + "\n")
    caveat = "; only the indices these credentials can see were checked (they lack view_index_metadata on " \
             "every index, *)"
    try:
        dry = _agent("setup", "pipelines", "--cleanup", "--dry-run", *_flags(es_node, str(key_file)))
        assert dry.returncode == 0, dry.stdout + dry.stderr
        for name in (used, final, free):
            assert f"ingest pipeline {name}: would-delete (older version, referenced by nothing{caveat})" \
                in dry.stdout.splitlines()

        done = _agent("setup", "pipelines", "--cleanup", *_flags(es_node, str(key_file)))
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert (f"ingest pipeline {used}: skipped (older version still the default pipeline for 1 index(es) "
                f"including [{other}] (the cluster refused to delete it))") in lines
        assert (f"ingest pipeline {final}: skipped (older version still the final pipeline for 1 index(es) "
                f"including [{other}] (the cluster refused to delete it))") in lines
        assert f"ingest pipeline {free}: deleted (older version, referenced by nothing{caveat})" in lines
        assert es.request("GET", f"/_ingest/pipeline/{used}")[0] == 200
        assert es.request("GET", f"/_ingest/pipeline/{free}")[0] == 404

        # Credentials that see every index: no caveat, and the reference is found before any delete.
        seen = _agent("setup", "pipelines", "--cleanup", "--dry-run", *_flags(es_node))
        assert seen.returncode == 0, seen.stderr
        assert f"ingest pipeline {used}: skipped (older version still referenced by index {other})" in \
            seen.stdout.splitlines()
        assert "were checked" not in seen.stdout
    finally:
        es.request("DELETE", f"/{other}")
        for name in (used, final, free):
            es.request("DELETE", f"/_ingest/pipeline/{name}")
