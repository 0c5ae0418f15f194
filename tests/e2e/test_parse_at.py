"""``--parse-at elasticsearch`` end to end: the real ``modelscribe run``
against the real node.

- The raw documents have the ids the agent-parsed documents have (same
  events, same ``_id``), the raw joined text as ``message``,
  ``modelscribe.raw.format``, the enrichment fields, and redaction applied
  on the host (a bearer token never reaches the cluster).
- A pipeline missing on the cluster blocks shipping with a clear message
  naming ``modelscribe setup pipelines``; nothing is dead-lettered, nothing
  read is lost, and shipping resumes once the pipeline exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from e2e_helpers import Daemon, create_index, es_flags, run_once, wait_for

pytestmark = pytest.mark.elasticsearch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TOKEN = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"
SECRET_LINES = (f"2024-05-01 12:00:09,001 - inference.server - INFO - calling upstream with Authorization: {TOKEN}\n"
                '{"message": "auth header", "level": "info", "authorization": "' + TOKEN + '"}\n')


def _hits(es, index: str) -> dict[str, dict]:
    """_id -> _source of every document of ``index``."""
    status, body = es.request("POST", f"/{index}/_refresh")
    assert status == 200, body
    status, body = es.request("POST", f"/{index}/_search", {"size": 10000, "query": {"match_all": {}}})
    assert status == 200, body
    return {hit["_id"]: hit["_source"] for hit in body["hits"]["hits"]}


def _logs(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("parsing/asctime_chained.log", "parsing/structlog.jsonl", "servers/torchserve/two_workers.log"):
        shutil.copy(FIXTURES / name, logs / Path(name).name.replace(".jsonl", ".log"))
    (logs / "secrets.log").write_text(SECRET_LINES)
    return logs


def test_raw_documents_have_the_agents_ids_and_no_secret(es_node, es, tmp_path):
    logs = _logs(tmp_path)
    indices = {"agent": "e2e-parse-at-agent", "elasticsearch": "e2e-parse-at-raw"}
    # The raw index keeps the documents as they come: a pipeline that does
    # nothing (the integ-test node has no processors to parse them anyway).
    # Without one the agent would refuse to ship raw documents there (below).
    es.ok("PUT", "/_ingest/pipeline/e2e-parse-at-keep-raw", {"processors": []})
    for mode, index in indices.items():
        create_index(es.request, index)
        if mode == "elasticsearch":
            es.ok("PUT", f"/{index}/_settings", {"index.default_pipeline": "e2e-parse-at-keep-raw"})
        # The same files and the same state key: a fresh state directory each,
        # with the per-input rule for the TorchServe file.
        config = tmp_path / f"{mode}.yml"
        config.write_text(f"inputs:\n  - paths: ['{logs}/two_workers.log']\n    format: torchserve\n")
        result = run_once(["run", "--once", "--path", str(logs / "*.log"), "--config", str(config),
                           "--state-dir", str(tmp_path / f"state-{mode}"), "--parse-at", mode,
                           *es_flags(es_node, index)])
        assert result.code == 0, result.stderr
        if mode == "elasticsearch":  # said, not refused: e2e-parse-at-keep-raw might call the entry pipeline
            assert "not modelscribe's entry pipeline" in result.stderr
    parsed, raw = _hits(es, indices["agent"]), _hits(es, indices["elasticsearch"])
    assert raw and set(raw) == set(parsed)
    for doc_id, doc in raw.items():
        agent_doc = parsed[doc_id]
        assert doc["log"] == {"file": agent_doc["log"]["file"], "offset": agent_doc["log"]["offset"]}
        assert doc["host"]["name"] == agent_doc["host"]["name"]
        assert doc["agent"]["name"] == agent_doc["agent"]["name"] == "modelscribe"
        assert "modelscribe" not in agent_doc
    by_file: dict[str, list[dict]] = {}
    for doc in raw.values():
        by_file.setdefault(Path(doc["log"]["file"]["path"]).name, []).append(doc)
    formats = {name: {doc["modelscribe"]["raw"]["format"] for doc in docs} for name, docs in by_file.items()}
    assert formats == {"asctime_chained.log": {"plain"}, "structlog.log": {"json"},
                       "two_workers.log": {"torchserve"}, "secrets.log": {"plain", "json"}}
    # The raw text of a joined traceback, prefixes and all, and the whole JSON line.
    chained = sorted(by_file["asctime_chained.log"], key=lambda doc: doc["log"]["offset"])
    text = (FIXTURES / "parsing/asctime_chained.log").read_text()
    joined = [doc for doc in chained if "\n" in doc["message"]]
    assert joined and all(doc["message"] in text for doc in joined)
    first_json = (FIXTURES / "parsing/structlog.jsonl").read_text().splitlines()[0]
    assert min(by_file["structlog.log"], key=lambda doc: doc["log"]["offset"])["message"] == first_json
    # Redaction ran on the host, before the spool: the token is in neither index.
    for docs in (raw, parsed):
        for doc in docs.values():
            assert "eyJzdWIiOiJ4In0" not in str(doc)
    assert any("[REDACTED" in doc["message"] for doc in by_file["secrets.log"])
    for index in indices.values():
        es.delete_index(index)
    es.request("DELETE", "/_ingest/pipeline/e2e-parse-at-keep-raw")


def test_a_missing_pipeline_blocks_until_it_exists_and_loses_nothing(es_node, es, tmp_path):
    name = "e2e-parse-at-entry"
    es.request("DELETE", f"/_ingest/pipeline/{name}")
    status, body = es.request("PUT", "/_index_template/e2e-parse-at-blocked", {
        "index_patterns": ["e2e-parse-at-blocked*"], "priority": 900,
        "template": {"settings": {"index.default_pipeline": name, "max_result_window": 500_000}}})
    assert status == 200, body
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [f"2024-05-01 12:00:{i % 60:02d},000 INFO app: request {i} served" for i in range(300)]
    (logs / "app.log").write_text("\n".join(lines[:200]) + "\n")
    state = tmp_path / "state"
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(state), "--parse-at", "elasticsearch",
                     "--backoff-max", "1s", "--flush-interval", "0.2s", "--log-level", "info",
                     *es_flags(es_node, "e2e-parse-at-blocked")], tmp_path / "agent.log")
    try:
        wait_for(lambda: "modelscribe setup pipelines" in daemon.log(), 60, "the missing-pipeline message")
        assert f"[{name}]" in daemon.log()
        with open(logs / "app.log", "a") as handle:  # read while blocked: must not be lost either
            handle.write("\n".join(lines[200:]) + "\n")
        wait_for(lambda: daemon.log().count("modelscribe setup pipelines") >= 3, 60, "retries going on")
        assert es.count("e2e-parse-at-blocked") == 0
        status, body = es.request("PUT", f"/_ingest/pipeline/{name}", {"processors": []})
        assert status == 200, body
        wait_for(lambda: es.count("e2e-parse-at-blocked") == 300, 90, "every line once the pipeline exists")
    finally:
        code = daemon.stop()
        es.request("DELETE", "/_index_template/e2e-parse-at-blocked")
    assert code == 0, daemon.log()[-3000:]
    docs = es.search_all("e2e-parse-at-blocked")
    assert sorted(doc["message"] for doc in docs) == sorted(lines)
    assert {doc["modelscribe"]["raw"]["format"] for doc in docs} == {"plain"}
    dead = state / "dead-letter.ndjson"
    assert not dead.exists() or dead.read_text() == ""
    es.delete_index("e2e-parse-at-blocked")
    es.request("DELETE", f"/_ingest/pipeline/{name}")


@pytest.mark.parametrize("once", [True, False], ids=["once", "daemon"])
def test_a_target_without_the_entry_pipeline_is_refused_before_reading(es_node, es, tmp_path, once):
    """Audit 3, finding 1: no template wired to the pipelines (``setup`` skipped
    them, an ``--index`` target, or no ``setup`` at all) stored the raw lines
    unparsed, exit code 0, no word. Now: exit code 3, one message, nothing read."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "worker.log").write_text("2026-11-27 09:00:00,101 INFO serving.worker: loading model resnet50\n")
    state = tmp_path / "state"
    args = ["run", "--path", str(logs / "*.log"), "--state-dir", str(state), "--parse-at", "elasticsearch",
            "--metrics-addr", "off", *es_flags(es_node, "e2e-parse-at-unwired")]
    result = run_once(args + (["--once"] if once else []), timeout=60)
    assert result.code == 3, result.stderr
    assert ("modelscribe: error: --parse-at elasticsearch: the documents would be stored unparsed in "
            "e2e-parse-at-unwired: no index template gives it an ingest pipeline") in result.stderr
    assert "modelscribe setup pipelines" in result.stderr and "starting anyway" not in result.stderr
    assert "new file" not in result.stderr and es.count("e2e-parse-at-unwired") == 0
    registry = state / "registry.json"
    assert not registry.exists() or json.loads(registry.read_text())["entries"] == []
