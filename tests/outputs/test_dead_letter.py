"""The dead-letter file: format, locking against a concurrent replay, broken lines."""

import json
import threading

import pytest

from agent.errors import StateError
from agent.events import Event
from agent.outputs.base import Response, all_created
from agent.outputs.dead_letter import DeadLetters, read_letters, replay, summarize
from agent.outputs.retry import Action, ItemVerdict


def _reject(i):
    event = Event("k", i, i + 1, f"id{i}", json.dumps({"n": i}).encode())
    return event, ItemVerdict(0, Action.REJECT, 400, "document_parsing_exception", f"bad {i}")


def test_letters_round_trip_and_summary(tmp_path):
    path = str(tmp_path / "dead.ndjson")
    DeadLetters(path, "logs-x").write([_reject(1), _reject(2)], 0.0)
    letters, broken = read_letters(path)
    assert [(letter.doc_id, json.loads(letter.document)) for letter in letters] == [("id1", {"n": 1}),
                                                                                  ("id2", {"n": 2})]
    assert broken == []
    assert summarize(letters) == [("logs-x", "document_parsing_exception", 2)]


def test_replay_keeps_only_what_failed_again(tmp_path):
    path = str(tmp_path / "dead.ndjson")
    DeadLetters(path, "logs-x").write([_reject(i) for i in range(3)], 0.0)
    sent = []

    def send(events):
        sent.append([(e.doc_id, e.target) for e in events])
        return Response(200, {"errors": True, "items": [
            {"create": {"status": 201}},
            {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "x"}}},
            {"create": {"status": 400, "error": {"type": "document_parsing_exception", "reason": "again"}}}]})

    result = replay(path, send, to_index="fixed")
    assert sent == [[("id0", "fixed"), ("id1", "fixed"), ("id2", "fixed")]]
    assert (result.indexed, result.duplicates, result.still_rejected) == (1, 1, 1)
    left, _ = read_letters(path)
    assert [letter.doc_id for letter in left] == ["id2"]


def test_writer_waiting_on_a_replay_does_not_lose_its_letter(tmp_path):
    path = str(tmp_path / "dead.ndjson")
    letters = DeadLetters(path, "logs-x")
    letters.write([_reject(0)], 0.0)
    started = threading.Event()
    release = threading.Event()

    def slow_send(events):
        started.set()
        release.wait(5)
        return all_created(events)

    replayer = threading.Thread(target=replay, args=(path, slow_send, None))
    replayer.start()
    assert started.wait(5)
    writer = threading.Thread(target=letters.write, args=([_reject(9)], 0.0))
    writer.start()  # blocks on the lock held by the replay
    release.set()
    replayer.join(5)
    writer.join(5)
    remaining, _ = read_letters(path)
    assert [letter.doc_id for letter in remaining] == ["id9"]


def test_broken_lines_are_reported_and_block_a_replay(tmp_path):
    path = tmp_path / "dead.ndjson"
    path.write_text('{"not": "a letter"}\nnot json\n')
    letters, broken = read_letters(str(path))
    assert letters == [] and broken == [1, 2]
    with pytest.raises(StateError, match="lines 1, 2 are not dead letters"):
        replay(str(path), all_created, None)


def test_letters_fall_back_to_the_file_when_the_index_refuses(tmp_path):
    from agent.errors import OutputError

    class DownIndex:
        name = "dlq"

        def write(self, rejected, now):
            raise OutputError("cluster unavailable")

    path = str(tmp_path / "dead.ndjson")
    DeadLetters(path, "logs-x", DownIndex()).write([_reject(7)], 0.0)
    letters, _ = read_letters(path)
    assert [letter.doc_id for letter in letters] == ["id7"]
