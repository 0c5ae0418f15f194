"""The tailer while the sink is full: its optional ``accepting()`` says False.

The disk spool (``Handoff.accepting``) pauses reading this way instead of
blocking ``line()``, so the tailer thread stays free to release deleted files:
a deleted file is held open (its disk space not freed) for at most
``close_removed_after``, after which its unread bytes are counted in
``Tailer.lost_bytes`` and a warning is logged.

Everything runs on real files with a ``FakeClock``, driving ``Tailer.poll()``;
nothing sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.events import Line
from agent.sources.harvesters import MAX_CHECK_INTERVAL
from agent.sources.tailer import PAUSE_RECHECK, Tailer
from tailkit import RecordingSink, append, held_open, make, tiles

CLOSE_REMOVED_AFTER = 30.0
STEP = 0.25  # poll cadence of these tests (the tailer's own tick interval)
RELEASED = "deleted file released while the output is blocked"


class GatedSink(RecordingSink):
    """A recording sink that can be full: ``accepting()`` returns ``self.open``.

    Lines pushed while it said it was full are recorded separately (not
    raised: an exception would be swallowed or change the tailer's path).
    """

    def __init__(self) -> None:
        super().__init__()
        self.open = True
        self.asked = 0
        self.while_full: list[Line] = []

    def accepting(self) -> bool:
        self.asked += 1
        return self.open

    def line(self, line: Line) -> None:
        if not self.open:
            self.while_full.append(line)
        super().line(line)


def paused_tailer(tmp_path: Path, **overrides) -> tuple[Tailer, GatedSink, object, FakeClock]:
    clock = FakeClock()
    sink = GatedSink()
    overrides.setdefault("close_removed_after", CLOSE_REMOVED_AFTER)
    tailer, _, registry = make(tmp_path, clock=clock, sink=sink, **overrides)
    return tailer, sink, registry, clock


def run_for(tailer: Tailer, clock: FakeClock, seconds: float) -> None:
    """Poll every STEP seconds of fake time for ``seconds``."""
    for _ in range(round(seconds / STEP)):
        clock.advance(STEP)
        tailer.poll()


def released_warnings(agent_log) -> list[dict]:
    return [getattr(record, "kv", {}) for record in agent_log.records
            if RELEASED in record.getMessage()]


# -- 1. reading pauses --------------------------------------------------------


def test_reading_pauses_while_full_and_resumes_exactly_once(tmp_path):
    app = tmp_path / "app.log"
    append(app, "one\ntwo\n")
    tailer, sink, registry, clock = paused_tailer(tmp_path)
    with tailer:
        tailer.poll()
        assert sink.texts() == ["one", "two"]

        sink.open = False
        append(app, "three\nfour\n")
        run_for(tailer, clock, 20)
        assert sink.texts() == ["one", "two"], "nothing read while the sink is full"
        assert sink.asked > 0, "the tailer asked the sink"
        append(app, "five\n")
        run_for(tailer, clock, 20)
        assert sink.texts() == ["one", "two"]
        assert tailer.open_files() == 1
        assert sink.ticks[-1] == clock.time(), "ticks go on while paused"

        sink.open = True
        run_for(tailer, clock, MAX_CHECK_INTERVAL + STEP)  # the idle backoff: next stat within 2 s
        assert sink.texts() == ["one", "two", "three", "four", "five"]
        run_for(tailer, clock, 20)  # nothing comes twice
        append(app, "six\n")
        run_for(tailer, clock, MAX_CHECK_INTERVAL + STEP)

    assert [(l.text, l.offset, l.end) for l in sink.lines] == [
        ("one", 0, 4), ("two", 4, 8), ("three", 8, 14), ("four", 14, 19), ("five", 19, 24),
        ("six", 24, 28)]
    assert len({l.source.key for l in sink.lines}) == 1 and tiles(sink.lines)
    assert sink.while_full == []
    assert sink.closed == [] and tailer.lost_bytes == 0
    assert not registry.get(sink.lines[0].source.key).gone


def test_a_file_held_back_is_read_as_soon_as_the_sink_has_room(tmp_path):
    # A small spool has room again a moment after each delivery: waiting for the
    # file's own next check (2 s once it stopped growing) made 25,000 lines take
    # 7.5 s with a 400 KiB spool, against 1.9 s with 4 MiB.
    app = tmp_path / "app.log"
    append(app, "one\n")
    tailer, sink, _, clock = paused_tailer(tmp_path)
    with tailer:
        tailer.poll()
        sink.open = False
        append(app, "two\nthree\n")
        run_for(tailer, clock, 20)  # the file stopped growing: its checks are 2 s apart
        assert sink.texts() == ["one"]
        asked = sink.asked
        slept = tailer.poll()
        assert slept == pytest.approx(PAUSE_RECHECK), "the sink is asked again soon"
        assert sink.asked == asked + 1, "one question a recheck, not one per file"
        sink.open = True
        clock.advance(PAUSE_RECHECK)
        tailer.poll()
        assert sink.texts() == ["one", "two", "three"]


def test_a_file_first_seen_while_paused_is_read_from_zero_after_resuming(tmp_path):
    tailer, sink, _, clock = paused_tailer(tmp_path, scan_interval=1.0)
    with tailer:
        sink.open = False
        tailer.poll()
        append(tmp_path / "late.log", "l1\nl2\n")
        run_for(tailer, clock, 10)
        assert tailer.open_files() == 1, "found by the scan"
        assert sink.lines == []
        sink.open = True
        run_for(tailer, clock, MAX_CHECK_INTERVAL + STEP)
    assert [(l.text, l.offset, l.end) for l in sink.lines] == [("l1", 0, 3), ("l2", 3, 6)]
    assert sink.while_full == []


# -- 2. a deleted file is released after close_removed_after -------------------


def test_deleted_file_is_released_after_close_removed_after(tmp_path, agent_log):
    app = tmp_path / "app.log"
    append(app, "l1\nl2\n")
    tailer, sink, registry, clock = paused_tailer(tmp_path)
    with tailer:
        tailer.poll()
        assert sink.texts() == ["l1", "l2"]
        key = sink.lines[0].source.key

        sink.open = False
        unread = b"l3\nl4 never read\n"
        append(app, unread)
        run_for(tailer, clock, 1)
        unlinked_at = clock.monotonic()
        os.unlink(app)

        # Held open (still readable, were the output to come back) until the deadline.
        while clock.monotonic() + STEP < unlinked_at + CLOSE_REMOVED_AFTER:
            clock.advance(STEP)
            tailer.poll()
            assert tailer.open_files() == 1, f"released early, {clock.monotonic() - unlinked_at} s after delete"
        assert held_open(app) in (True, None)
        assert sink.closed == [] and tailer.lost_bytes == 0
        assert released_warnings(agent_log) == []

        # Released at the deadline (noticed within one idle check interval of the unlink).
        run_for(tailer, clock, MAX_CHECK_INTERVAL + 2 * STEP)
        assert tailer.open_files() == 0
        assert held_open(app) in (False, None), "the fd of the deleted file was closed"
        assert [s.key for s in sink.closed] == [key]
        assert sink.held_at_close in ([False], [None]), "blocked: let go before the sink hears of it"
        assert tailer.lost_bytes == len(unread)
        assert registry.get(key).gone

        # The output comes back: the released file's lines are gone for good.
        sink.open = True
        run_for(tailer, clock, 10)

    assert sink.texts() == ["l1", "l2"]
    assert sink.while_full == []
    assert tailer.lost_bytes == len(unread)
    (warning,) = released_warnings(agent_log)
    assert warning["path"] == str(app)
    assert warning["lost_bytes"] == len(unread)
    assert warning["close_removed_after"] == CLOSE_REMOVED_AFTER
    assert any(RELEASED in message for message in agent_log.messages())


def test_lost_bytes_add_up_over_several_released_files(tmp_path, agent_log):
    for name in ("a", "b"):
        append(tmp_path / f"{name}.log", f"{name}1\n")
    tailer, sink, registry, clock = paused_tailer(tmp_path)
    with tailer:
        tailer.poll()
        sink.open = False
        append(tmp_path / "a.log", "a2\n")  # 3 bytes
        append(tmp_path / "b.log", "b2 longer\nb3\n")  # 13 bytes
        os.unlink(tmp_path / "a.log")
        os.unlink(tmp_path / "b.log")
        run_for(tailer, clock, CLOSE_REMOVED_AFTER + MAX_CHECK_INTERVAL + STEP)
        assert tailer.open_files() == 0
    assert tailer.lost_bytes == 3 + 13
    assert sorted(w["lost_bytes"] for w in released_warnings(agent_log)) == [3, 13]
    assert len(sink.closed) == 2 and all(registry.get(s.key).gone for s in sink.closed)
    assert sorted(sink.texts()) == ["a1", "b1"]


def test_deleted_file_without_an_identity_is_released_and_its_bytes_counted(tmp_path, agent_log):
    """A file never delivered from has no key: nothing to close or mark gone, but its bytes count."""
    tailer, sink, registry, clock = paused_tailer(tmp_path, scan_interval=1.0)
    with tailer:
        sink.open = False
        tailer.poll()
        fresh = tmp_path / "fresh.log"
        append(fresh, "f1\nf2\n")
        run_for(tailer, clock, 2)
        assert tailer.open_files() == 1
        os.unlink(fresh)
        run_for(tailer, clock, CLOSE_REMOVED_AFTER + MAX_CHECK_INTERVAL + STEP)
        assert tailer.open_files() == 0
    assert tailer.lost_bytes == 6
    assert sink.lines == [] and sink.closed == [] and registry.entries() == []
    assert [w["lost_bytes"] for w in released_warnings(agent_log)] == [6]


# The unfinished last line the reader holds (read from the file, never
# delivered) counts as lost too: lost_bytes = size - the first undelivered byte.
def test_lost_bytes_include_the_held_unfinished_line(tmp_path, agent_log):
    app = tmp_path / "app.log"
    append(app, "l1\npart")  # "part" is read and held, waiting for its newline
    tailer, sink, _, clock = paused_tailer(tmp_path, partial_line_timeout=5.0)
    with tailer:
        tailer.poll()
        assert sink.texts() == ["l1"]
        sink.open = False
        append(app, "ial\nl3\n")  # completes the held line, and one more
        os.unlink(app)
        run_for(tailer, clock, CLOSE_REMOVED_AFTER + MAX_CHECK_INTERVAL + STEP)
        assert tailer.open_files() == 0
    size = len(b"l1\npartial\nl3\n")
    delivered_up_to = sink.lines[-1].end
    assert sink.texts() == ["l1"]
    # Every byte of the file is either delivered or reported lost.
    assert tailer.lost_bytes == size - delivered_up_to == 11
    assert [w["lost_bytes"] for w in released_warnings(agent_log)] == [11]


# -- 3. not released early; drained normally if the output comes back in time ---


@pytest.mark.parametrize("read_chunk_bytes", [65536, 8])  # 8: draining takes several passes
def test_deleted_file_is_drained_normally_if_the_sink_recovers_in_time(tmp_path, agent_log,
                                                                       read_chunk_bytes):
    app = tmp_path / "app.log"
    append(app, "first\n")
    tailer, sink, registry, clock = paused_tailer(tmp_path, read_chunk_bytes=read_chunk_bytes)
    with tailer:
        tailer.poll()
        key = sink.lines[0].source.key
        sink.open = False
        backlog = [f"backlog line {i:03d}" for i in range(60)]  # ~1 KB: > one pass at 8-byte chunks
        append(app, "".join(f"{text}\n" for text in backlog))
        unlinked_at = clock.monotonic()
        os.unlink(app)
        while clock.monotonic() < unlinked_at + CLOSE_REMOVED_AFTER - 1.0:
            clock.advance(STEP)
            tailer.poll()
        assert tailer.open_files() == 1, "not released before close_removed_after"
        assert sink.texts() == ["first"] and sink.closed == []

        sink.open = True  # one second before the deadline
        # At 8-byte chunks the drain takes several passes and runs past the
        # old deadline: the sink accepts, so nothing may be given up.
        run_for(tailer, clock, MAX_CHECK_INTERVAL + 4.0)
        assert tailer.open_files() == 0, "drained and closed"
        run_for(tailer, clock, CLOSE_REMOVED_AFTER)  # past the old deadline: nothing more happens

    assert sink.texts() == ["first"] + backlog
    assert tiles(sink.lines) and {l.source.key for l in sink.lines} == {key}
    assert sink.lines[-1].end == len("first\n") + sum(len(text) + 1 for text in backlog)
    assert [s.key for s in sink.closed] == [key]
    assert registry.get(key).gone
    assert tailer.lost_bytes == 0
    assert released_warnings(agent_log) == []
    assert sink.while_full == []


def test_the_release_deadline_counts_from_the_deletion_not_from_each_pause(tmp_path, agent_log):
    """Full, then briefly accepting (the file is drained and closed), then full again: no loss."""
    app = tmp_path / "app.log"
    append(app, "a\n")
    tailer, sink, _, clock = paused_tailer(tmp_path)
    with tailer:
        tailer.poll()
        sink.open = False
        append(app, "b\n")
        os.unlink(app)
        run_for(tailer, clock, CLOSE_REMOVED_AFTER / 2)
        sink.open = True
        run_for(tailer, clock, MAX_CHECK_INTERVAL + STEP)
        sink.open = False
        run_for(tailer, clock, CLOSE_REMOVED_AFTER)
    assert sink.texts() == ["a", "b"] and tailer.lost_bytes == 0
    assert len(sink.closed) == 1 and released_warnings(agent_log) == []


# -- 4. other files keep their place ------------------------------------------


def test_other_files_keep_their_offsets_while_paused(tmp_path, agent_log):
    a, b, c = (tmp_path / f"{name}.log" for name in "abc")
    append(a, "a1\n")
    append(b, "b1\nb2\n")
    append(c, "c1\n")
    tailer, sink, registry, clock = paused_tailer(tmp_path, scan_interval=5.0)
    with tailer:
        tailer.poll()
        assert sorted(sink.texts()) == ["a1", "b1", "b2", "c1"]

        sink.open = False
        append(a, "a2\na3\n")
        append(b, "b3\n")
        append(c, "c2 lost\n")
        os.unlink(c)
        d = tmp_path / "d.log"
        append(d, "d1\n")
        run_for(tailer, clock, CLOSE_REMOVED_AFTER / 2)
        append(a, "a4\n")
        run_for(tailer, clock, CLOSE_REMOVED_AFTER / 2 + MAX_CHECK_INTERVAL + STEP)
        assert tailer.open_files() == 3, "c released; a, b and the new d still open"
        assert sorted(sink.texts()) == ["a1", "b1", "b2", "c1"], "nothing read while full"

        sink.open = True
        run_for(tailer, clock, MAX_CHECK_INTERVAL + STEP)
        append(b, "b4\n")
        run_for(tailer, clock, MAX_CHECK_INTERVAL + STEP)

    assert sink.texts(a) == ["a1", "a2", "a3", "a4"]
    assert sink.texts(b) == ["b1", "b2", "b3", "b4"]
    assert sink.texts(c) == ["c1"]
    assert sink.texts(d) == ["d1"]
    keys = sink.by_key()
    assert len(keys) == 4
    for lines in keys.values():
        assert tiles(lines), [(l.text, l.offset, l.end) for l in lines]
    assert tailer.lost_bytes == len("c2 lost\n")
    (c_key,) = {l.source.key for l in sink.lines if l.source.path == str(c)}
    assert [s.key for s in sink.closed] == [c_key] and registry.get(c_key).gone
    assert [w["path"] for w in released_warnings(agent_log)] == [str(c)]
    assert sink.while_full == []


def test_a_pause_in_the_middle_of_a_budget_limited_read_skips_nothing(tmp_path):
    big = tmp_path / "big.log"
    other = tmp_path / "other.log"
    lines = [f"line {i:04d} " + "x" * (i % 37) for i in range(400)]
    append(big, "".join(f"{text}\n" for text in lines))
    append(other, "o1\n")
    # 16 chunks of 64 bytes per pass: ~1 KB of the ~12 KB file per poll.
    tailer, sink, _, clock = paused_tailer(tmp_path, read_chunk_bytes=64)
    with tailer:
        tailer.poll()
        first_pass = len(sink.texts(big))
        assert 0 < first_pass < len(lines), "the read budget stopped mid-file"
        sink.open = False
        append(other, "o2\n")
        run_for(tailer, clock, 20)
        assert len(sink.texts(big)) == first_pass and sink.texts(other) == ["o1"]
        sink.open = True
        run_for(tailer, clock, 10)
    assert sink.texts(big) == lines and tiles([l for l in sink.lines if l.source.path == str(big)])
    assert sink.texts(other) == ["o1", "o2"]
    assert sink.while_full == [] and tailer.lost_bytes == 0
