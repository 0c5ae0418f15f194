"""Dead letters on the real nodes, audit 7: replay under a node's body limit
(413), the target an index letter names, replayed letters the letters index
will not delete (a write block), letters listed right after they are written
(no refresh on the hot path), and a data-stream template on OpenSearch."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import elasticsearch_local
from agent import cli
from agent.config import resolve
from agent.events import Event
from agent.outputs.dead_letter import DeadLetters, read_letters
from agent.outputs.dead_letter_index import IndexLetters
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.opensearch import OpenSearchOutput
from agent.outputs.retry import Action, ItemVerdict
from node_helper import NodeHelper, running_node

pytestmark = pytest.mark.elasticsearch


def _rejected(numbers, pad: int = 10, target: str | None = None) -> list[tuple[Event, ItemVerdict]]:
    """Rejected events; ``target`` None: the output's default target, as the pipeline sends them."""
    return [(Event("src", n, n + 1, f"dlf-{n}", orjson.dumps({"message": f"line {n}", "pad": "x" * pad}), target),
             ItemVerdict(0, Action.REJECT, 400, "document_parsing_exception", f"bad {n}")) for n in numbers]


def _flags(node) -> list[str]:
    return ["--es-url", node.url, "--ca-cert", node.ca_cert, "--api-key-file", node.api_key_file]


def _dlq(node, state: Path, *args: str):
    return CliRunner().invoke(cli.main, ["dlq", *args, "--state-dir", str(state), *_flags(node)])


def _es_output(node, **flags) -> ElasticsearchOutput:
    config = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file, **flags}
    return ElasticsearchOutput.from_config(resolve(config, {}))


def test_index_letters_go_back_to_their_target_and_are_listed_at_once(es_node, es, tmp_path: Path):
    """Letters of a run with --index A are replayed into A by a replay whose
    config says --index B (they named "" and went to B); the letters are
    listed right after they are written, without a refresh wait in the run."""
    es.delete_index("dlf-a,dlf-b,dlf-letters")
    output = _es_output(es_node, index="dlf-a")
    try:
        DeadLetters(str(tmp_path / "dead-letter.ndjson"), "dlf-a",
                    IndexLetters(output, "dlf-letters")).write(_rejected(range(5)), 0.0)
        listing = _dlq(es_node, tmp_path, "list", "--dead-letter-index", "dlf-letters")
        assert listing.exit_code == 0, listing.output
        assert "5 dead letters in index dlf-letters" in listing.output
        assert "(target dlf-a)" in listing.output

        replayed = _dlq(es_node, tmp_path, "replay", "--dead-letter-index", "dlf-letters", "--index", "dlf-b")
        assert replayed.exit_code == 0, replayed.output
        assert "indexed=5" in replayed.output
        assert es.count("dlf-a") == 5
        assert es.request("GET", "/dlf-b")[0] == 404  # not created
        assert es.count("dlf-letters") == 0
    finally:
        output.close()
        es.delete_index("dlf-a,dlf-b,dlf-letters")


def test_letters_the_index_will_not_delete_are_reported_and_exit_3(es_node, es, tmp_path: Path):
    """A write block on the letters index (ILM/ISM read-only, an operator):
    the replayed letters cannot be deleted. The old code said indexed=10, exit
    0, and re-sent them at every replay."""
    es.delete_index("dlf-blocked,dlf-fixed")
    output = _es_output(es_node, index="dlf-target")
    try:
        DeadLetters(str(tmp_path / "dead-letter.ndjson"), "dlf-target",
                    IndexLetters(output, "dlf-blocked")).write(_rejected(range(10)), 0.0)
        es.ok("PUT", "/dlf-blocked/_settings", {"index.blocks.write": True})
        blocked = _dlq(es_node, tmp_path, "replay", "--dead-letter-index", "dlf-blocked", "--to-index", "dlf-fixed")
        assert blocked.exit_code == 3, blocked.output
        assert "indexed=10 duplicates=0 still_rejected=0 kept_for_retry=0" in blocked.output
        assert "warning: 10 replayed letters could not be deleted from the dead-letter index dlf-blocked" \
            in blocked.output
        assert "cluster_block_exception" in blocked.output and "index.blocks.write" in blocked.output
        assert es.count("dlf-fixed") == 10 and es.count("dlf-blocked") == 10

        es.ok("PUT", "/dlf-blocked/_settings", {"index.blocks.write": False})
        again = _dlq(es_node, tmp_path, "replay", "--dead-letter-index", "dlf-blocked", "--to-index", "dlf-fixed")
        assert again.exit_code == 0, again.output
        assert "duplicates=10" in again.output and "warning" not in again.output
        assert es.count("dlf-blocked") == 0
    finally:
        output.close()
        es.ok("PUT", "/dlf-blocked/_settings", {"index.blocks.write": False})
        es.delete_index("dlf-blocked,dlf-fixed")


@pytest.fixture(scope="module")
def small_body_node(tmp_path_factory):
    """A node that refuses bulk bodies over 20 KB with 413, as a proxy's
    body limit (nginx: 1 MB) does for larger ones."""
    with running_node(elasticsearch_local, tmp_path_factory.mktemp("es-413"),
                      settings={"http.max_content_length": "20kb"}) as node:
        yield node


def test_replay_splits_under_the_node_body_limit(small_body_node, tmp_path: Path):
    """60 letters of 1.5 KB (90 KB in one request) go in halves; one letter of
    30 KB is rejected again (exit 4), naming its size and the setting. The
    old code: kept_for_retry=61, exit 3, at every replay."""
    path = tmp_path / "dead-letter.ndjson"
    DeadLetters(str(path), "dlf-small").write(_rejected(range(60), 1500) + _rejected([99], 30_000), 0.0)
    result = _dlq(small_body_node, tmp_path, "replay")
    assert result.exit_code == 4, result.output
    assert "indexed=60 duplicates=0 still_rejected=1 kept_for_retry=0" in result.output
    assert "the letter dlf-99: request body too large (413) for this one document alone" in result.output
    assert "http.max_content_length" in result.output
    assert [letter.doc_id for letter in read_letters(str(path))[0]] == ["dlf-99"]
    assert NodeHelper(elasticsearch_local, small_body_node).count("dlf-small") == 60


def test_check_output_on_opensearch_fails_a_letters_index_a_data_stream_template_claims(os_node, os):
    """OpenSearch's _simulate_index does not flag data streams: the matching
    template's data_stream key does (audit 7: "output ok", then every letter
    went to the file)."""
    os.ok("PUT", "/_index_template/dlf-streams", {"index_patterns": ["dlf-stream-*"], "data_stream": {},
                                                  "priority": 500})
    os.ok("PUT", "/_index_template/dlf-plain", {"index_patterns": ["dlf-plain-*"], "priority": 500})
    output = OpenSearchOutput.from_config(resolve({"es_urls": (os_node.url,), "ca_cert": os_node.ca_cert,
                                                   "username": os_node.username,
                                                   "password_file": os_node.password_file}, {}))
    try:
        line = IndexLetters(output, "dlf-stream-letters").check()[1]
        assert line.startswith("FAILED: dlf-stream-letters matches an index template (dlf-streams) that makes "
                               "data streams"), line
        assert IndexLetters(output, "dlf-plain-letters").check()[1] == \
            "dlf-plain-letters (does not exist yet; created at the first letter)"
        status, body = os.request("PUT", "/dlf-stream-letters")  # what the first letter would meet
        assert status == 400 and "data streams only" in str(body), body
    finally:
        output.close()
        os.ok("DELETE", "/_index_template/dlf-streams")
        os.ok("DELETE", "/_index_template/dlf-plain")
