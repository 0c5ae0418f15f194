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
import os
import subprocess
import sys
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


def test_cli_setup_templates_on_opensearch(os_node):
    flags = ["--es-url", os_node.url, "--ca-cert", os_node.ca_cert, "--username", os_node.username,
             "--password-file", os_node.password_file]
    done = subprocess.run([sys.executable, "-m", "agent", "setup", "templates", *flags], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"cluster: OpenSearch {os_node.version}; licence none; ")
    assert lines[-1].startswith(("done (", "up to date ("))
