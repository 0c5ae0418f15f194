"""The dead-letter file: format, locking against a concurrent replay, broken
lines, and writes that fall short or fail part-way (all or nothing)."""

import errno
import json
import os
import threading

import pytest

from agent.errors import StateError
from agent.events import Event
from agent.outputs import dead_letter
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

        def write(self, rejected, now, target):
            raise OutputError("cluster unavailable")

    path = str(tmp_path / "dead.ndjson")
    DeadLetters(path, "logs-x", DownIndex()).write([_reject(7)], 0.0)
    letters, _ = read_letters(path)
    assert [letter.doc_id for letter in letters] == ["id7"]


# -- writes that fail or fall short (audit 2, flow #1) ------------------------------
# A full disk cannot be made without mounting one: the module's write seams
# play it, on real files.


def _chunked(limit):
    """write(2) as on a nearly full disk: at most ``limit`` bytes per call."""
    def write(fd, data):
        return os.write(fd, data[:limit])
    return write


def _fails_after(budget, error=errno.ENOSPC):
    """write(2) that writes ``budget`` bytes in all, short, then raises ``error``."""
    left = [budget]

    def write(fd, data):
        if left[0] <= 0:
            raise OSError(error, os.strerror(error))
        written = os.write(fd, data[:left[0]])
        left[0] -= written
        return written
    return write


def _raise(error):
    def call(*args):
        raise OSError(error, os.strerror(error))
    return call


def test_a_short_write_is_continued_until_every_letter_is_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "dead.ndjson")
    monkeypatch.setattr(dead_letter, "_write", _chunked(7))
    letters = DeadLetters(path, "logs-x")
    letters.write([_reject(i) for i in range(40)], 0.0)
    found, broken = read_letters(path)
    assert [letter.doc_id for letter in found] == [f"id{i}" for i in range(40)]
    assert broken == [] and letters.count == 40


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT, errno.EIO], ids=["ENOSPC", "EDQUOT", "EIO"])
def test_a_write_failing_part_way_is_cut_back_and_raises(tmp_path, monkeypatch, error):
    path = tmp_path / "dead.ndjson"
    letters = DeadLetters(str(path), "logs-x")
    letters.write([_reject(0)], 0.0)
    before = path.read_bytes()
    monkeypatch.setattr(dead_letter, "_write", _fails_after(300, error))
    with pytest.raises(StateError, match=f"cannot write the dead-letter file {path}: {os.strerror(error)}"):
        letters.write([_reject(i) for i in range(1, 40)], 0.0)
    assert path.read_bytes() == before  # no torn line, nothing half-written
    assert letters.count == 1
    monkeypatch.undo()  # space is back
    letters.write([_reject(99)], 0.0)
    assert [letter.doc_id for letter in read_letters(str(path))[0]] == ["id0", "id99"]


def test_a_failed_fsync_is_cut_back_too(tmp_path, monkeypatch):
    path = tmp_path / "dead.ndjson"
    monkeypatch.setattr(dead_letter, "_fsync", _raise(errno.EIO))
    with pytest.raises(StateError, match="Input/output error"):
        DeadLetters(str(path), "logs-x").write([_reject(0)], 0.0)
    assert path.read_bytes() == b""


def test_a_cut_back_that_fails_is_done_before_the_next_letters(tmp_path, monkeypatch):
    """Nothing is appended after the torn bytes: the cut is tried again first,
    and the write fails (its documents wait) until it works."""
    path = tmp_path / "dead.ndjson"
    letters = DeadLetters(str(path), "logs-x")
    letters.write([_reject(0)], 0.0)
    before = path.read_bytes()
    monkeypatch.setattr(dead_letter, "_write", _fails_after(100))
    monkeypatch.setattr(dead_letter, "_truncate", _raise(errno.EPERM))  # an append-only file
    with pytest.raises(StateError):
        letters.write([_reject(1)], 0.0)
    assert len(path.read_bytes()) == len(before) + 100  # torn
    monkeypatch.setattr(dead_letter, "_write", os.write)
    with pytest.raises(StateError, match="Operation not permitted"):
        letters.write([_reject(2)], 0.0)
    assert len(path.read_bytes()) == len(before) + 100  # nothing appended after the torn bytes
    monkeypatch.setattr(dead_letter, "_truncate", os.ftruncate)
    letters.write([_reject(3)], 0.0)
    found, broken = read_letters(str(path))
    assert [letter.doc_id for letter in found] == ["id0", "id3"] and broken == []


def test_letters_after_a_torn_line_start_on_a_line_of_their_own(tmp_path):
    path = tmp_path / "dead.ndjson"
    DeadLetters(str(path), "logs-x").write([_reject(0)], 0.0)
    with open(path, "ab") as handle:
        handle.write(b'{"@timestamp":"2026-')  # a crash mid-write
    DeadLetters(str(path), "logs-x").write([_reject(1)], 0.0)
    found, broken = read_letters(str(path))
    assert [letter.doc_id for letter in found] == ["id0", "id1"] and broken == [2]


def test_a_missing_directory_is_a_state_error_naming_the_file(tmp_path):
    path = tmp_path / "gone" / "dead.ndjson"
    with pytest.raises(StateError, match=f"cannot write the dead-letter file {path}: No such file"):
        DeadLetters(str(path), "logs-x").write([_reject(0)], 0.0)


def test_with_the_index_down_an_unwritable_file_is_still_an_error(tmp_path):
    """--dead-letter-index falls back to the file; if that fails too the
    caller must hear it (the sender then waits), not lose the letters."""
    from agent.errors import OutputError

    class DownIndex:
        name = "dlq"

        def write(self, rejected, now, target):
            raise OutputError("cluster unavailable")

    letters = DeadLetters(str(tmp_path / "gone" / "dead.ndjson"), "logs-x", DownIndex())
    with pytest.raises(StateError, match="No such file"):
        letters.write([_reject(7)], 0.0)
    assert letters.count == 0
