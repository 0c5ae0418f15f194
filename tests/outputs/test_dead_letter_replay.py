"""Audit 7 (faults 1, 2, 6; edge 1, 5, 8): replay in halves under 413, the
target of an index letter, where the log says the letters went, the
fallback warning's rate, and no refresh on the letters' hot path. Without
a node: the send seam and a recording output stand in for the transport
(the real-node side is in test_dead_letter_index_faults_es.py)."""

from __future__ import annotations

import json
import threading

import pytest

from agent.acks import AckTracker
from agent.errors import ConfigError, OutputError
from agent.events import Event
from agent.outputs import dead_letter
from agent.outputs.base import Response, all_created
from agent.outputs.dead_letter import DeadLetters, read_letters, replay
from agent.outputs.dead_letter_index import IndexLetters
from agent.outputs.retry import Action, ItemVerdict
from agent.outputs.sender import Sender
from agent.stats import Stats


def _reject(i, size=10, target=None):
    event = Event("k", i, i + 1, f"id{i}", json.dumps({"n": i, "pad": "x" * size}).encode(), target)
    return event, ItemVerdict(0, Action.REJECT, 400, "document_parsing_exception", f"bad {i}")


def _limited(limit, sent):
    """A node (or proxy) that answers 413 to a bulk body over ``limit`` bytes."""
    def send(events):
        sent.append(len(events))
        size = sum(len(event.data) + len(event.doc_id) + 40 for event in events)
        return Response(413, None) if size > limit else all_created(events)
    return send


def test_replay_halves_a_request_refused_as_too_large(tmp_path):
    """600 letters of about 1.7 KB behind a 100 KB limit: sent 500 per
    request, each 413 halved until it fits; all indexed, the file emptied
    (the old code counted all 600 as kept_for_retry, exit 3, for ever)."""
    path = str(tmp_path / "dead.ndjson")
    DeadLetters(path, "logs-x").write([_reject(i, 1700) for i in range(600)], 0.0)
    sent: list[int] = []
    result = replay(path, _limited(100_000, sent), None)
    assert (result.indexed, result.still_rejected, result.failed) == (600, 0, 0), result
    assert read_letters(path) == ([], [])
    assert sent[:3] == [500, 250, 125]  # halved, as the sender does


def test_a_single_letter_too_large_is_rejected_again_naming_its_size_and_the_limits(tmp_path):
    path = str(tmp_path / "dead.ndjson")
    DeadLetters(path, "logs-x").write([_reject(0, 150_000), _reject(1), _reject(2)], 0.0)
    result = replay(path, _limited(100_000, []), None)
    assert (result.indexed, result.still_rejected, result.failed) == (2, 1, 0), result
    (reason,) = result.reasons
    assert "id0" in reason and "1500" in reason and "bytes" in reason
    assert "http.max_content_length" in reason and "proxy" in reason
    assert [letter.doc_id for letter in read_letters(path)[0]] == ["id0"]


class _Recording:
    """An ElasticsearchOutput's request() as the letters index uses it."""

    def __init__(self):
        self.requests = []

    def request(self, method, path, body=None, content_type="application/json", params=None):
        self.requests.append((method, path, body, params))
        return Response(200, {"errors": False, "items": []} if path.endswith("/_bulk") else {})


def test_an_index_letter_names_the_output_default_target_as_the_file_does(tmp_path):
    output = _Recording()
    letters = DeadLetters(str(tmp_path / "dead.ndjson"), "logs-a", IndexLetters(output, "dlq"))
    letters.write([_reject(1), _reject(2, target="logs-other")], 0.0)
    (bulk,) = [body for method, path, body, _ in output.requests if path == "/dlq/_bulk"]
    documents = [json.loads(line) for line in bulk.splitlines()[1::2]]
    assert [document["target"] for document in documents] == ["logs-a", "logs-other"]


def test_writing_letters_to_the_index_asks_for_no_refresh(tmp_path):
    """refresh=wait_for held the output worker about 1 s per batch with a
    rejected document; dlq list|replay refresh before they read instead."""
    output = _Recording()
    DeadLetters(str(tmp_path / "dead.ndjson"), "logs-a", IndexLetters(output, "dlq")).write([_reject(1)], 0.0)
    (params,) = [params for method, path, _, params in output.requests if path == "/dlq/_bulk"]
    assert not (params or {}).get("refresh"), params


class _DownIndex:
    name = "dlq"

    def write(self, rejected, now, *target):
        raise OutputError("dead-letter index dlq refused 1 letters: cluster_block_exception")


def test_the_fallback_warning_is_logged_once_a_minute_with_the_batches_since(tmp_path, monkeypatch, agent_log):
    clock = [1000.0]
    monkeypatch.setattr(dead_letter, "_monotonic", lambda: clock[0], raising=False)
    letters = DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x", _DownIndex())
    for second in (0, 1, 2, 30, 59, 61, 62):
        clock[0] = 1000.0 + second
        letters.write([_reject(second)], 0.0)
    warned = [r for r in agent_log if r.getMessage().startswith("the dead-letter index cannot take the letters")]
    assert [(r.kv["batches"], r.kv.get("since")) for r in warned] == [(1, None), (5, "61s")]
    assert warned[0].kv["index"] == "dlq" and "cluster_block_exception" in warned[0].kv["error"]
    assert len(read_letters(str(tmp_path / "dead.ndjson"))[0]) == 7


def _sender(dead):
    acks = AckTracker(lambda key, offset: None)

    class Rejecting:
        name = "scripted"

        def send(self, events):
            items = [{"create": {"status": 400, "error": {"type": "document_parsing_exception", "reason": "bad"}}}
                     for _ in events]
            return Response(200, {"errors": True, "items": items})

    return Sender(Rejecting(), acks, dead, Stats(), threading.Event(), None, backoff_max=0.0, retry_permanent=True)


def test_the_rejection_log_names_the_index_that_took_the_letters(tmp_path, agent_log):
    dead = DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x", IndexLetters(_Recording(), "dlq"))
    _sender(dead).deliver([_reject(1)[0]])
    (record,) = [r for r in agent_log if r.getMessage().startswith("documents rejected")]
    assert record.getMessage() == "documents rejected, written to the dead-letter index"
    assert record.kv["index"] == "dlq" and "path" not in record.kv
    assert not (tmp_path / "dead.ndjson").exists()


def test_the_rejection_log_names_the_file_when_the_letters_fell_back(tmp_path, agent_log):
    dead = DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x", _DownIndex())
    _sender(dead).deliver([_reject(1)[0]])
    (record,) = [r for r in agent_log if r.getMessage().startswith("documents rejected")]
    assert record.getMessage() == "documents rejected, written to the dead-letter file"
    assert record.kv["path"] == str(tmp_path / "dead.ndjson")


def test_the_index_taking_letters_again_is_said_once(tmp_path, agent_log):
    class Flaky:
        name = "dlq"
        down = True

        def write(self, rejected, now, target):
            if self.down:
                raise OutputError("dead-letter index dlq: POST /dlq/_bulk answered HTTP 503")

    store = Flaky()
    letters = DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x", store)
    assert letters.write([_reject(1)], 0.0) == "file"
    store.down = False
    assert [letters.write([_reject(n)], 0.0) for n in (2, 3)] == ["index", "index"]
    again = [r for r in agent_log if r.getMessage() == "the dead-letter index takes the letters again"]
    assert len(again) == 1 and again[0].kv["index"] == "dlq"


def test_a_conflicting_premade_index_is_told_how_to_save_letters_dlq_replay_cannot_read(tmp_path):
    # Audit 7: the warning said "replay its letters first: modelscribe dlq replay",
    # which exits 2 for an index whose doc_id is text ("copy them out (_reindex)").
    class Conflicting:
        def request(self, method, path, body=None, content_type="application/json", params=None):
            if method == "PUT" and path == "/premade":
                return Response(400, {"error": {"type": "resource_already_exists_exception"}})
            return Response(400, {"error": {"type": "illegal_argument_exception",
                                            "reason": "mapper [doc_id] cannot be changed from type [text] to "
                                                      "[keyword]"}})

    with pytest.raises(ConfigError) as raised:
        IndexLetters(Conflicting(), "premade").write([], 0.0, "logs-x")
    message = str(raised.value)
    assert "mapper [doc_id] cannot be changed" in message
    assert "modelscribe dlq replay" in message and "copy them out with _reindex" in message


def test_a_letters_batch_the_index_refuses_as_too_large_is_named_so(tmp_path):
    # Audit 8: "answered HTTP 413: None" (Elasticsearch's 413 has no body); the
    # letters go to the file all the same.
    class TooLarge:
        def request(self, method, path, body=None, content_type="application/json", params=None):
            return Response(413, None) if path.endswith("/_bulk") else Response(200, {})

    with pytest.raises(OutputError) as raised:
        IndexLetters(TooLarge(), "letters").write([_reject(0, 5000)], 0.0, "logs-x")
    assert "answered HTTP 413: request body too large (" in str(raised.value)
    assert "http.max_content_length" in str(raised.value)
