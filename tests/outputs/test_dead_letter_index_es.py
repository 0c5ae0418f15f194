"""``--dead-letter-index`` on the real node. Found by audit 5 on 9.2.8:
letters that fell back to the file (index closed, node down, index refused)
were invisible to ``dlq list`` / ``dlq replay`` with the same flags ("0 dead
letters", exit 0); an index made beforehand was adopted without the
agent's mapping, took the letters with ``doc_id`` as text, and ``dlq
list|replay`` then failed for ever with a bare "HTTP 400", exit 3."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agent import cli
from agent.config import resolve
from agent.errors import ConfigError
from agent.events import Event
from agent.outputs.dead_letter import DeadLetters, read_letters
from agent.outputs.dead_letter_index import IndexLetters
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.retry import Action, ItemVerdict

pytestmark = pytest.mark.elasticsearch


def _rejected(*numbers: int) -> list[tuple[Event, ItemVerdict]]:
    return [(Event("src", n, n + 1, f"dli-{n}", orjson.dumps({"message": f"line {n}"}), "dli-target"),
             ItemVerdict(0, Action.REJECT, 400, "document_parsing_exception", f"bad {n}")) for n in numbers]


@pytest.fixture
def output(es_node):
    config = {"es_urls": (es_node.url,), "ca_cert": es_node.ca_cert, "api_key_file": es_node.api_key_file}
    made = ElasticsearchOutput.from_config(resolve(config, {}))
    yield made
    made.close()


def _dlq(es_node, state: Path, index: str, *args: str):
    return CliRunner().invoke(cli.main, ["dlq", *args, "--state-dir", str(state), "--dead-letter-index", index,
                                         "--es-url", es_node.url, "--ca-cert", es_node.ca_cert,
                                         "--api-key-file", es_node.api_key_file])


def test_letters_that_fell_back_to_the_file_are_listed_and_replayed_with_the_index(es_node, es, output,
                                                                                   tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    es.delete_index("dli-fallback,dli-fixed")
    letters = DeadLetters(str(state / "dead-letter.ndjson"), "dli-target", IndexLetters(output, "dli-fallback"))
    try:
        letters.write(_rejected(1), 0.0)  # the index takes it
        es.ok("POST", "/dli-fallback/_close")
        letters.write(_rejected(2, 3), 0.0)  # closed: the file takes them
        es.ok("POST", "/dli-fallback/_open")
        assert [letter.doc_id for letter in read_letters(str(state / "dead-letter.ndjson"))[0]] == ["dli-2", "dli-3"]

        listing = _dlq(es_node, state, "dli-fallback", "list")
        assert listing.exit_code == 0, listing.output
        assert f"2 dead letters in {state / 'dead-letter.ndjson'}" in listing.output
        assert "1 dead letters in index dli-fallback" in listing.output

        replayed = _dlq(es_node, state, "dli-fallback", "replay", "--to-index", "dli-fixed")
        assert replayed.exit_code == 0, replayed.output
        assert "indexed=3 duplicates=0 still_rejected=0 kept_for_retry=0" in replayed.output
        assert es.count("dli-fixed") == 3
        assert read_letters(str(state / "dead-letter.ndjson")) == ([], [])
        assert es.count("dli-fallback") == 0

        again = _dlq(es_node, state, "dli-fallback", "replay", "--to-index", "dli-fixed")
        assert again.exit_code == 0 and "indexed=0" in again.output, again.output
    finally:
        es.delete_index("dli-fallback,dli-fixed")


def test_an_index_made_beforehand_gets_the_agent_mapping(es_node, es, output, tmp_path: Path):
    es.delete_index("dli-premade")
    es.ok("PUT", "/dli-premade", {"settings": {"number_of_replicas": 0}})  # (for its replicas, its lifecycle)
    try:
        IndexLetters(output, "dli-premade").write(_rejected(1, 2), 0.0, "dli-target")
        mapping = es.ok("GET", "/dli-premade/_mapping")["dli-premade"]["mappings"]
        assert mapping["properties"]["doc_id"] == {"type": "keyword"}
        assert es.ok("GET", "/dli-premade/_settings")["dli-premade"]["settings"]["index"]["number_of_replicas"] == "0"
        listing = _dlq(es_node, tmp_path, "dli-premade", "list")
        assert listing.exit_code == 0 and "2 dead letters in index dli-premade" in listing.output, listing.output
    finally:
        es.delete_index("dli-premade")


def test_an_index_whose_mapping_conflicts_sends_the_letters_to_the_file_saying_why(es_node, es, output, agent_log,
                                                                                   tmp_path: Path):
    """Letters stored by the old code into such an index (doc_id mapped
    dynamically, as text) stay readable: they are paged on doc_id.keyword."""
    es.delete_index("dli-dynamic")
    es.ok("PUT", "/dli-dynamic", {"settings": {"number_of_replicas": 0}})
    es.ok("PUT", "/dli-dynamic/_doc/dli-0?refresh=true", {
        "@timestamp": "2026-12-01T00:00:00.000Z", "target": "dli-target", "doc_id": "dli-0", "status": 400,
        "error": {"type": "document_parsing_exception", "reason": "bad 0"}, "document": '{"message":"line 0"}'})
    path = tmp_path / "dead-letter.ndjson"
    try:
        with pytest.raises(ConfigError, match=r"--dead-letter-index dli-dynamic: .*mapper \[.*cannot be changed"):
            IndexLetters(output, "dli-dynamic").write(_rejected(1), 0.0, "dli-target")
        DeadLetters(str(path), "dli-target", IndexLetters(output, "dli-dynamic")).write(_rejected(1), 0.0)
        assert [letter.doc_id for letter in read_letters(str(path))[0]] == ["dli-1"]
        (warning,) = [r for r in agent_log if "writing them to the file" in r.getMessage()]
        assert "delete it" in warning.kv["error"] and "cannot be changed from type" in warning.kv["error"]
        assert es.count("dli-dynamic") == 1

        listing = _dlq(es_node, tmp_path, "dli-dynamic", "list", "--dead-letter-file", str(path))
        assert listing.exit_code == 0, listing.output
        assert "1 dead letters in index dli-dynamic" in listing.output
        assert f"1 dead letters in {path}" in listing.output
    finally:
        es.delete_index("dli-dynamic")


def test_an_index_that_cannot_be_read_says_why(es_node, es, tmp_path: Path):
    """A doc_id the letters cannot be paged on is the user's to fix (exit
    2, naming the flag); a closed index is the output's state (exit 3); both
    carry the node's reason, not a bare "HTTP 400". A missing one is empty."""
    es.delete_index("dli-long,dli-closed")
    es.ok("PUT", "/dli-long", {"mappings": {"properties": {"doc_id": {"type": "long"}}}})
    es.ok("PUT", "/dli-closed")
    es.ok("POST", "/dli-closed/_close")
    try:
        wrong = _dlq(es_node, tmp_path, "dli-long", "list")
        assert wrong.exit_code == 2, wrong.output
        assert "--dead-letter-index dli-long: doc_id is mapped as long" in wrong.output
        closed = _dlq(es_node, tmp_path, "dli-closed", "replay")
        assert closed.exit_code == 3, closed.output
        assert "cannot read the dead-letter index dli-closed: HTTP 400: index_closed_exception" in closed.output
        absent = _dlq(es_node, tmp_path, "dli-absent", "list")  # (no letter yet: not created)
        assert absent.exit_code == 0 and "0 dead letters in index dli-absent" in absent.output, absent.output
    finally:
        es.delete_index("dli-long,dli-closed")


def test_check_output_says_whether_the_dead_letter_index_can_take_letters(es_node, es, output):
    # Audit 5: a --dead-letter-index that an index template makes a data stream of
    # refused every letter (all went to the file) while `check output` said ok.
    es.ok("PUT", "/_index_template/dli-streams", {"index_patterns": ["dli-stream-*"], "data_stream": {},
                                                  "priority": 500})
    es.delete_index("dli-open,dli-shut,dli-blocked")
    es.ok("PUT", "/dli-open", {"mappings": {"properties": {"doc_id": {"type": "keyword"}}}})
    es.ok("PUT", "/dli-shut")
    es.ok("POST", "/dli-shut/_close")
    es.ok("PUT", "/dli-blocked", {"mappings": {"properties": {"doc_id": {"type": "keyword"}}}})
    es.ok("PUT", "/dli-blocked/_settings", {"index.blocks.write": True})  # (audit 7: it said "exists, open")
    try:
        lines = {name: IndexLetters(output, name).check()[1]
                 for name in ("dli-stream-letters", "dli-open", "dli-shut", "dli-absent", "dli-blocked")}
        assert lines["dli-blocked"] == ("FAILED: dli-blocked: dli-blocked refuses letters (index.blocks.write): they "
                                        "go to the dead-letter file until the block is lifted: PUT "
                                        '/dli-blocked/_settings {"index.blocks.write": null}'), lines
        assert lines["dli-stream-letters"].startswith("FAILED: dli-stream-letters matches an index template that "
                                                      "makes data streams"), lines
        assert lines["dli-open"] == "dli-open (exists, open)"
        assert lines["dli-shut"].startswith("FAILED: dli-shut is closed"), lines
        assert lines["dli-absent"] == "dli-absent (does not exist yet; created at the first letter)"
        result = CliRunner().invoke(cli.main, ["check", "output", "--es-url", es_node.url, "--ca-cert",
                                               es_node.ca_cert, "--api-key-file", es_node.api_key_file,
                                               "--dead-letter-index", "dli-stream-letters"])
        assert result.exit_code == 3 and "output NOT ok" in result.output, result.output
    finally:
        es.ok("DELETE", "/_index_template/dli-streams")
        es.request("PUT", "/dli-blocked/_settings", {"index.blocks.write": None})
        es.delete_index("dli-open,dli-shut,dli-blocked")
