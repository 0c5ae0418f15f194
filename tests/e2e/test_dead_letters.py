"""A document Elasticsearch rejects goes to the dead-letter file with its
reason while the rest of its batch is indexed; `dlq list` shows it, `dlq
replay` re-sends it once the user fixed the mapping; `status` reports it."""

from __future__ import annotations

import json

import pytest

from e2e_helpers import es_flags, run_once

pytestmark = pytest.mark.elasticsearch


def test_mapping_conflict_dead_letter_and_replay(es_node, es, tmp_path):
    status, body = es.request("PUT", "/e2e-dlq", {"mappings": {"properties": {
        "extra": {"properties": {"latency": {"type": "long"}}}}}})
    assert status == 200, body
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [{"message": f"served {i}", "latency": i} for i in range(5)]
    lines[2]["latency"] = "fast"  # cannot be a long: rejected by Elasticsearch
    (logs / "m.log").write_text("".join(json.dumps(line) + "\n" for line in lines))
    state = tmp_path / "state"
    flags = ["--state-dir", str(state), *es_flags(es_node, "e2e-dlq")]
    result = run_once(["run", "--once", "--path", str(logs / "*.log"), *flags])
    assert result.code == 4, result.stderr
    assert "documents rejected, written to the dead-letter file" in result.stderr
    assert es.count("e2e-dlq") == 4

    letters = [json.loads(line) for line in (state / "dead-letter.ndjson").read_text().splitlines()]
    assert len(letters) == 1
    assert letters[0]["document"]["message"] == "served 2"
    assert letters[0]["error"]["type"] == "document_parsing_exception"
    assert "latency" in letters[0]["error"]["reason"]

    listing = run_once(["dlq", "list", *flags])
    assert listing.code == 0 and "1 dead letters" in listing.stdout
    assert "document_parsing_exception" in listing.stdout

    report = run_once(["status", "--json", *flags])
    assert report.code == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["dead_letters"]["total"] == 1
    assert [(f["offset"], f["lag_bytes"]) for f in data["files"]] == [((logs / "m.log").stat().st_size, 0)]
    assert data["counters"]["events_rejected"] == 1

    # The offsets moved past the rejected line: a second run sends nothing.
    again = run_once(["run", "--once", "--path", str(logs / "*.log"), *flags])
    assert again.code == 0 and "events=0" in again.stderr

    # Replaying into the same index fails again and keeps the letter ...
    still = run_once(["dlq", "replay", *flags])
    assert still.code == 4 and "still_rejected=1" in still.stdout
    # ... into an index whose mapping takes the value, it is indexed and leaves the file.
    status, body = es.request("PUT", "/e2e-dlq-fixed", {"mappings": {"properties": {
        "extra": {"properties": {"latency": {"type": "keyword"}}}}}})
    assert status == 200, body
    fixed = run_once(["dlq", "replay", "--to-index", "e2e-dlq-fixed", *flags])
    assert fixed.code == 0, fixed.stdout + fixed.stderr
    assert "indexed=1" in fixed.stdout
    assert es.search_all("e2e-dlq-fixed")[0]["message"] == "served 2"
    assert (state / "dead-letter.ndjson").read_text() == ""
    twice = run_once(["dlq", "replay", "--to-index", "e2e-dlq-fixed", *flags])
    assert twice.code == 0 and "indexed=0" in twice.stdout
    assert es.count("e2e-dlq-fixed") == 1


def test_dead_letter_index_list_and_replay(es_node, es, tmp_path):
    status, body = es.request("PUT", "/e2e-dlqi", {"mappings": {"properties": {
        "extra": {"properties": {"latency": {"type": "long"}}}}}})
    assert status == 200, body
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [{"message": f"served {i}", "latency": "slow" if i in (1, 3) else i} for i in range(6)]
    (logs / "m.log").write_text("".join(json.dumps(line) + "\n" for line in lines))
    state = tmp_path / "state"
    flags = ["--state-dir", str(state), "--dead-letter-index", "e2e-dead-letters", *es_flags(es_node, "e2e-dlqi")]
    result = run_once(["run", "--once", "--path", str(logs / "*.log"), *flags])
    assert result.code == 4, result.stderr
    assert es.count("e2e-dlqi") == 4
    assert not (state / "dead-letter.ndjson").exists()  # the index took them, not the file
    letters = es.search_all("e2e-dead-letters")
    assert sorted(json.loads(letter["document"])["message"] for letter in letters) == ["served 1", "served 3"]
    assert {letter["error"]["type"] for letter in letters} == {"document_parsing_exception"}

    listing = run_once(["dlq", "list", *flags])
    assert listing.code == 0 and "2 dead letters in index e2e-dead-letters" in listing.stdout

    status, body = es.request("PUT", "/e2e-dlqi-fixed", {"mappings": {"properties": {
        "extra": {"properties": {"latency": {"type": "keyword"}}}}}})
    assert status == 200, body
    fixed = run_once(["dlq", "replay", "--to-index", "e2e-dlqi-fixed", *flags])
    assert fixed.code == 0 and "indexed=2" in fixed.stdout, fixed.stdout + fixed.stderr
    assert es.count("e2e-dlqi-fixed") == 2
    assert es.count("e2e-dead-letters") == 0
