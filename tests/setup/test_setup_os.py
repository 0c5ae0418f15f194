"""``modelscribe setup`` on the real OpenSearch node (2.19.1 with ingest-common,
painless and the security plugin; no index-management plugin, hence no ISM).

Checked for real: detection, templates adapted to OpenSearch (flat_object,
no subobjects, dynamic templates by leaf type, keyword for constant_keyword)
accepted and used by an auto-created data stream, pipelines stamped without
``_meta`` and wired as default and final pipelines, idempotency, and the
lifecycle step skipped with the reason. The ISM policy body is covered by
tests/setup/test_lifecycle.py only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from agent import __version__, schema
from agent.setup.cluster import detect
from agent.setup.install import SetupOptions, run_setup
from agent.setup.pipelines import PipelineSet
from agent.setup.templates import install_templates

ENTRY, FINAL = f"modelscribe-ostestentry-{__version__}", f"modelscribe-ostestfinal-{__version__}"
MARKS = PipelineSet({
    ENTRY: {"description": "test entry", "processors": [
        {"set": {"tag": "entry-mark", "field": "marks.entry", "value": True}}]},
    FINAL: {"description": "test final", "processors": [
        {"set": {"tag": "final-mark", "field": "marks.final", "value": True}}]},
}, ENTRY, FINAL)


def _request(os_helper):
    return lambda method, path, body=None: os_helper.request(method, path, body)


def test_setup_all_on_opensearch(os_node, os):
    request = _request(os)
    cluster = detect(request)
    assert (cluster.engine, cluster.version, cluster.licence) == ("opensearch", os_node.version, None)
    assert {"grok", "dissect", "script", "set", "pipeline"} <= cluster.processors
    try:
        first = run_setup(request, SetupOptions(), pipelines=MARKS)
        outcomes = {(a.what, a.name): (a.outcome, a.detail) for a in first.actions}
        assert outcomes[("ingest pipeline", ENTRY)][0] in ("created", "unchanged")
        assert outcomes[("lifecycle", "logs-modelscribe-*,metrics-modelscribe-*")] == (
            "skipped", "this cluster has no ISM (the index-management plugin: /_plugins/_ism has no handler): "
                       "data is kept until deleted by hand")
        assert "constant_keyword (mapped as keyword)" in outcomes[("component template", "modelscribe-mappings")][1]
        stored = os.ok("GET", f"/_ingest/pipeline/{ENTRY}")[ENTRY]
        assert stored["version"] == 1000 and "_meta" not in stored

        stream = "logs-modelscribe-ostest"
        document = schema.example_document()
        document["data_stream"] = {"type": "logs", "dataset": "modelscribe", "namespace": "ostest"}
        answer = os.ok("POST", f"/{stream}/_bulk?refresh=true",
                       '{"create":{}}\n' + json.dumps(document) + "\n")
        assert answer["errors"] is False, answer
        (hit,) = os.ok("POST", f"/{stream}/_search", {"query": {"match_all": {}}})["hits"]["hits"]
        assert hit["_source"]["marks"] == {"entry": True, "final": True}
        mapping = os.ok("GET", f"/{stream}/_mapping")
        (index,) = mapping.values()
        properties = index["mappings"]["properties"]
        assert properties["labels"]["type"] == "flat_object"
        assert properties["data_stream"]["properties"]["namespace"]["type"] == "keyword"
        stats = properties["model"]["properties"]["stats"]
        assert stats.get("type", "object") == "object"

        answer = os.ok("POST", f"/{stream}/_doc?refresh=true&pipeline=_none",
                       {"@timestamp": "2026-01-01T00:00:00Z", "message": "parsed elsewhere"})
        source = os.ok("GET", f"/{answer['_index']}/_doc/{answer['_id']}")["_source"]
        assert source["marks"] == {"final": True}

        again = run_setup(request, SetupOptions(), pipelines=MARKS)
        assert {a.outcome for a in again.actions} == {"unchanged", "skipped"}
    finally:
        install_templates(request, engine="opensearch")  # unwired, for whoever comes next


def test_a_health_window_of_a_40_class_classifier_is_indexed(os_node, os):
    """40 classes: 1,600 confusion pairs and 160 per-class figures, each a
    mapped field; OpenSearch, without ignore_dynamic_beyond_limit, refused
    such windows past its default limit of 1,000 fields (audit 11)."""
    install_templates(_request(os), engine="opensearch")
    stream = "metrics-modelscribe-ostest"
    classes = [f"class_{n}" for n in range(40)]
    document = {"@timestamp": "2026-01-01T00:00:00Z", "event": {"kind": "metric", "dataset": "modelscribe.health"},
                "data_stream": {"type": "metrics", "dataset": "modelscribe", "namespace": "ostest"},
                "model": {"name": "clf", "accuracy": {
                    "confusion": {f"{a}__{b}": 1 for a in classes for b in classes},
                    "per_class": {f"{a}__{figure}": 0.5 for a in classes
                                  for figure in ("precision", "recall", "f1", "support")}}}}
    try:
        answer = os.ok("POST", f"/{stream}/_bulk?refresh=true", '{"create":{}}\n' + json.dumps(document) + "\n")
        assert answer["errors"] is False, answer
        total = os.ok("POST", f"/{stream}/_search", {"size": 0, "aggs": {"n": {"sum": {
            "field": "model.accuracy.confusion.class_39__class_0"}}}})["aggregations"]["n"]["value"]
        assert total == 1
    finally:
        os.request("DELETE", f"/_data_stream/{stream}")


def _agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120)


def test_cli_setup_templates_on_opensearch(os_node):
    flags = ["--es-url", os_node.url, "--ca-cert", os_node.ca_cert, "--username", os_node.username,
             "--password-file", os_node.password_file]
    done = _agent("setup", "templates", *flags)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"cluster: OpenSearch {os_node.version}; licence none; ")
    assert lines[-1].startswith(("done (", "up to date ("))


# The roles of docs/security.md for OpenSearch, as its security plugin takes them.
OS_ROLES = {
    "modelscribe_shipping": {
        "cluster_permissions": ["cluster_monitor", "indices:data/write/bulk"],
        "index_permissions": [{"index_patterns": ["logs-modelscribe-*", "metrics-modelscribe-*"],
                               "allowed_actions": ["indices:data/write/index", "indices:data/write/bulk*",
                                                   "indices:admin/create", "indices:admin/data_stream/create",
                                                   "indices:admin/mapping/put"]}]},
    "modelscribe_setup": {
        "cluster_permissions": ["cluster_monitor", "cluster:admin/ingest/pipeline/*",
                                "indices:admin/index_template/*", "cluster:admin/component_template/*",
                                "indices:admin/template/*", "cluster:admin/opendistro/ism/*"],
        "index_permissions": [{"index_patterns": ["logs-modelscribe-*", "metrics-modelscribe-*",
                                                  ".ds-logs-modelscribe-*", ".ds-metrics-modelscribe-*"],
                               "allowed_actions": ["indices:admin/get", "indices:admin/settings/update",
                                                   "indices:monitor/settings/get"]}]},
}


def _user(os_helper, tmp_path, role: str) -> list[str]:
    """A user holding only `role`; the connection flags that log in as it."""
    name = role.replace("modelscribe_", "ms-user-")
    password = "Vq" + "7-karst-Meridian-" + str(len(role) * 7)
    os_helper.ok("PUT", f"/_plugins/_security/api/roles/{role}", OS_ROLES[role])
    os_helper.ok("PUT", f"/_plugins/_security/api/internalusers/{name}",
                 {"password": password, "opendistro_security_roles": [role]})
    password_file = tmp_path / f"{name}.password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    return ["--username", name, "--password-file", str(password_file)]


def test_opensearch_roles_of_the_docs(os_node, os, tmp_path):
    connection = ["--es-url", os_node.url, "--ca-cert", os_node.ca_cert]
    with open(Path(__file__).resolve().parents[2] / "docs" / "security.md") as docs:
        text = docs.read()
    for role, body in OS_ROLES.items():  # the page shows these same permissions
        for permission in body["cluster_permissions"]:
            assert f'"{permission}"' in text, (role, permission)
        for permission in body["index_permissions"][0]["allowed_actions"]:
            assert f'"{permission}"' in text, (role, permission)

    setup_flags = _user(os, tmp_path, "modelscribe_setup")
    os.ok("PUT", "/_ingest/pipeline/modelscribe-osold-0.0.1", {"processors": []})
    done = _agent("setup", "all", "--cleanup", *connection, *setup_flags)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("ingest pipeline modelscribe-osold-0.0.1: deleted (older version, referenced by nothing; only the "
            "indices of logs-modelscribe-*,metrics-modelscribe-* were checked") in done.stdout

    shipping_flags = _user(os, tmp_path, "modelscribe_shipping")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model.log").write_text('{"level": "info", "message": "shipped with the shipping role"}\n')
    stream = "logs-modelscribe-osshiponly"
    shipped = _agent("run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                     "--index", stream, *connection, *shipping_flags)
    assert shipped.returncode == 0, shipped.stderr
    assert os.count(stream) == 1
    refused = _agent("setup", "templates", *connection, *shipping_flags)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "(HTTP 403): no permissions for [cluster:admin/" in refused.stderr


def test_setup_all_with_the_shipped_pipelines_wires_them_for_the_agent(os_node, os, tmp_path):
    """The real pipelines/*.yml on the real ingest engine: installed, wired,
    and a document the agent ships goes through them (the final pipeline
    sets event.ingested). Parity of the parsing itself: tests/pipelines/."""
    from agent.setup.pipeline_defs import ENTRY as SHIPPED_ENTRY, FINAL as SHIPPED_FINAL

    flags = ["--es-url", os_node.url, "--ca-cert", os_node.ca_cert, "--username", os_node.username,
             "--password-file", os_node.password_file]
    try:
        done = _agent("setup", "all", *flags)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert any(line.startswith(f"ingest pipeline {SHIPPED_ENTRY}: ") for line in lines)
        settings = next(line for line in lines if line.startswith("component template modelscribe-settings: "))
        assert "not wired" not in settings, settings
        simulated = os.ok("POST", "/_index_template/_simulate_index/logs-modelscribe-ospipes")
        index = simulated["template"]["settings"]["index"]
        assert (index["default_pipeline"], index["final_pipeline"]) == (SHIPPED_ENTRY, SHIPPED_FINAL)

        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "model.log").write_text('{"level": "info", "message": "through the pipelines"}\n')
        stream = "logs-modelscribe-ospipes"
        shipped = _agent("run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                         "--index", stream, *flags)
        assert shipped.returncode == 0, shipped.stderr
        (source,) = os.search_all(stream)
        assert source["message"] == "through the pipelines"
        assert source["event"]["ingested"], source
        assert "pipeline_error" not in source.get("tags", []), source

        again = _agent("setup", "all", *flags)
        assert again.stdout.splitlines()[-1].startswith("up to date ("), again.stdout
    finally:
        install_templates(_request(os), engine="opensearch")  # unwired, for whoever comes next
