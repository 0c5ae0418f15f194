"""The reader's hand-off to the spool: the spool-writer thread, flush,
failures, shutdown, and the drop policy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.errors import StateError
from agent.events import Event
from agent.handoff import Handoff
from agent.spool import DiskQueue
from agent.stats import Stats
from small_disk import small_disk


def group(start: int, n: int = 5) -> list[Event]:
    return [Event("src", i * 10, i * 10 + 10, f"doc-{i}", b"x" * 50) for i in range(start, start + n)]


class ScriptedSpool:
    """A stand-in for DiskQueue.append: fails, refuses (full) or accepts as told."""

    def __init__(self, fail_at: int | None = None, full: bool = False) -> None:
        self.appended: list[list[Event]] = []
        self.calls = 0
        self.fail_at = fail_at
        self.full = full

    def append(self, events, timeout=None) -> bool:  # noqa: ANN001
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise StateError("cannot write spool segment: No space left on device")
        if self.full:
            return False
        self.appended.append(list(events))
        return True

    kind = "spool"
    group_size = 5
    disk_full = False

    def nearly_full(self) -> bool:
        return self.full

    def used_bytes(self) -> int:
        return 0

    def pending(self) -> int:
        return sum(map(len, self.appended))


def test_every_group_put_is_in_the_spool_in_order_after_flush(tmp_path: Path) -> None:
    spool = DiskQueue(tmp_path / "spool", 1 << 24)
    spool.open()
    handoff = Handoff(spool, "block", threading.Event(), Stats())
    sent = []
    for start in range(0, 100, 5):
        handoff.put(group(start))
        sent += group(start)
    assert handoff.flush(timeout=30)
    assert spool.take(1000, 1 << 30, 0).events == sent
    assert handoff.finish(timeout=30)
    spool.close()


def test_a_failed_append_is_raised_in_the_reader_and_nothing_is_appended_after_it() -> None:
    spool = ScriptedSpool(fail_at=2)
    handoff = Handoff(spool, "block", threading.Event(), Stats())  # type: ignore[arg-type]
    handoff.put(group(0))
    handoff.put(group(5))  # this append fails
    with pytest.raises(StateError, match="No space left"):
        handoff.flush(timeout=30)  # waits for both appends, so the failure is known by then
    with pytest.raises(StateError):
        handoff.put(group(10))
    assert handoff.finish(timeout=30)  # does not raise again: the reader knows already
    # A later group never reaches the spool: a restart re-reads from the lost one.
    assert spool.appended == [group(0)]


def test_finish_raises_a_failed_last_append_the_reader_did_not_hear_of() -> None:
    spool = ScriptedSpool(fail_at=1)
    handoff = Handoff(spool, "block", threading.Event(), Stats())  # type: ignore[arg-type]
    handoff.put(group(0))
    with pytest.raises(StateError, match="No space left"):
        handoff.finish(timeout=30)
    assert spool.appended == []


def test_the_events_held_while_the_spool_is_full_are_counted_until_they_are_in_it() -> None:
    # Audit 9: thousands of events read and waiting for room were in no gauge.
    spool = ScriptedSpool(full=True)
    handoff = Handoff(spool, "block", threading.Event(), Stats())  # type: ignore[arg-type]
    handoff.put(group(0))
    handoff.put(group(5, 3))
    assert handoff.events == 8
    spool.full = False
    assert handoff.flush(timeout=30)
    assert handoff.events == 0 and spool.pending() == 8


def test_finish_gives_up_at_its_timeout_while_the_spool_stays_full_until_abort() -> None:
    spool = ScriptedSpool(full=True)
    abort = threading.Event()
    handoff = Handoff(spool, "block", abort, Stats())  # type: ignore[arg-type]
    handoff.put(group(0))
    assert handoff.finish(timeout=0.2) is False
    abort.set()  # the shutdown deadline passed: abandon what waits
    assert handoff.finish(timeout=30) is True
    assert spool.appended == []


def test_at_a_stop_a_disk_that_cannot_be_written_is_given_up_at_once_not_at_the_timeout() -> None:
    # A stop with the spool directory read-only took --shutdown-timeout plus the
    # grace (35 s): the hand-off waited for a disk nothing could free, and after
    # the abort each part of a split group still waited half a second.
    class Unwritable(ScriptedSpool):
        disk_full = True

    spool = Unwritable(full=True)
    spool.group_size = 64
    abort = threading.Event()
    handoff = Handoff(spool, "block", abort, Stats())  # type: ignore[arg-type]
    handoff.put(group(0, 64))
    handoff.put(group(64, 64))
    started = time.monotonic()
    assert handoff.finish(timeout=30, give_up=handoff.waiting_on_disk) is False
    abort.set()
    assert handoff.finish(timeout=30) is True
    assert time.monotonic() - started < 5 and spool.appended == []
    assert not handoff.waiting_on_disk()


def test_drop_newest_counts_what_did_not_fit() -> None:
    spool = ScriptedSpool(full=True)
    stats = Stats()
    handoff = Handoff(spool, "drop-newest", threading.Event(), stats)  # type: ignore[arg-type]
    handoff.put(group(0))
    handoff.put(group(5, n=3))
    assert handoff.finish(timeout=30)
    assert stats.snapshot().events_dropped == 8


def test_the_sink_flushes_its_handoff_when_a_file_closes() -> None:
    from agent.enrich import Enricher
    from agent.events import Line, Source
    from agent.parsing import ParseSettings
    from agent.sink import Sink as _Sink

    calls: list[tuple] = []

    class Recorder:
        group_size = 100

        def put(self, events) -> None:  # noqa: ANN001
            calls.append(("put", [event.offset for event in events]))

        def flush(self) -> None:
            calls.append(("flush",))

        def accepting(self) -> bool:
            return True

    sink = _Sink(ParseSettings(format="plain"), Enricher("host", "agent-id", False), Recorder())  # type: ignore[arg-type]
    source = Source("key", "/var/log/x.log")
    sink.line(Line(source, 0, 6, "hello", 1.0))
    sink.line(Line(source, 6, 12, "world", 1.0))
    sink.source_closed(source)
    assert calls == [("put", [0, 6]), ("flush",)]


class EpisodeSpool(ScriptedSpool):
    """A spool whose appends succeed or not as scripted (True: room), each
    refusal taking the time a real append would have waited."""

    def __init__(self, clock, script) -> None:  # noqa: ANN001
        super().__init__()
        self.clock = clock
        self.script = list(script)

    def append(self, events, timeout=None) -> bool:  # noqa: ANN001
        room = self.script.pop(0) if self.script else True
        if not room:
            self.clock.advance(timeout or 0)
            return False
        self.clock.advance(0.01)
        return super().append(events)


def _records(records, text):
    return [record for record in records if text in record.getMessage()]


def test_a_full_spool_catching_up_in_bursts_pauses_once_and_resumes_once(agent_log):
    """The output empties the spool in bursts while it catches up: each group
    waits a little. One "paused" for the whole episode, then one "resumed" once
    nothing waited for QUIET seconds (it warned at every group, never resumed)."""
    from agent.clock import FakeClock
    from agent.handoff import QUIET

    clock = FakeClock()
    spool = EpisodeSpool(clock, [False, False, True] * 10)
    handoff = Handoff(spool, "block", threading.Event(), Stats(), clock)  # type: ignore[arg-type]
    for start in range(0, 50, 5):
        handoff.put(group(start))
        assert handoff.flush(timeout=30)
        assert handoff.accepting()  # the reader reads on between the waits
    assert not _records(agent_log, "reading resumed"), "not while appends still wait"
    clock.advance(QUIET)
    assert handoff.accepting()
    assert handoff.accepting()
    assert handoff.finish(timeout=30)
    assert len(_records(agent_log, "spool full: reading paused")) == 1
    assert len(_records(agent_log, "has room again: reading resumed")) == 1
    assert sum(map(len, spool.appended)) == 50


def test_drop_newest_logs_every_dropped_event(agent_log):
    """At the start, a running total at most every 10 s, the rest when it stops
    (noticed by the next append or accepting() after QUIET seconds) and at the
    end: the dropped= fields add up to the counter (it logged 5 of 40)."""
    from agent.clock import FakeClock
    from agent.handoff import DROP_LOG_INTERVAL, QUIET

    clock = FakeClock()
    stats = Stats()
    spool = EpisodeSpool(clock, [False] * 6 + [True] + [False] * 2)
    handoff = Handoff(spool, "drop-newest", threading.Event(), stats, clock)  # type: ignore[arg-type]
    for start in range(0, 30, 5):  # 6 groups dropped, 4 s apart
        handoff.put(group(start))
        assert handoff.flush(timeout=30)
        clock.advance(4)
    assert len(_records(agent_log, "dropping new events")) == 2  # the start, then one running total
    assert DROP_LOG_INTERVAL == 10
    handoff.put(group(30))  # room again...
    assert handoff.flush(timeout=30)
    clock.advance(QUIET)
    assert handoff.accepting()  # ...for QUIET seconds: the episode ends, with what was not counted yet
    ended = _records(agent_log, "no longer dropping new events")
    assert len(ended) == 1 and ended[0].kv["total"] == 30
    handoff.put(group(35))  # a new episode: dropped at the very end of the run
    handoff.put(group(40))
    assert handoff.finish(timeout=30)
    assert stats.snapshot().events_dropped == 40
    counted = [record.kv["dropped"] for record in agent_log if "dropped" in record.kv]
    assert sum(counted) == 40
    last = agent_log[-1]
    assert "events dropped since the last report" in last.getMessage() and last.kv["total"] == 40


def test_a_group_larger_than_the_free_disk_is_spooled_in_parts(tmp_path: Path, monkeypatch) -> None:
    # Found by audit 4: a group bigger than the space left was retried whole,
    # forever (154 of 5,000 lines, then a stall with 448 KiB free).
    directory = tmp_path / "spool"
    directory.mkdir()
    disk = small_disk(monkeypatch, directory, capacity=24_000)
    spool = DiskQueue(directory, 1 << 24)
    spool.open()
    delivered: list[Event] = []
    stop = threading.Event()

    def output() -> None:  # takes and acknowledges what comes, as the output does
        while not stop.is_set():
            records = spool.take(1000, 1 << 30, 0.05).records()
            delivered.extend(r.event for r in records)
            spool.ack(r.ref for r in records)

    consumer = threading.Thread(target=output)
    consumer.start()
    handoff = Handoff(spool, "block", threading.Event(), Stats())
    sent = [Event("src", i * 10, i * 10 + 10, f"doc-{i}", b"x" * 400) for i in range(120)]  # ~50 KB
    try:
        handoff.put(sent)
        assert handoff.flush(timeout=20)
        assert handoff.finish(timeout=20)
        for _ in range(200):
            if len(delivered) == len(sent):
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
        consumer.join(5)
        spool.close()
    assert delivered == sent and disk.failures >= 1


def test_on_a_full_disk_a_group_is_split_at_once_not_after_a_wait_per_halving() -> None:
    # Audit 5: each halving of a group that did not fit waited a second first
    # (600 KiB free: 20,000 lines in 78 s).
    class SmallSpace(ScriptedSpool):
        disk_full = True
        waits: list[tuple[int, float | None]] = []

        def append(self, events, timeout=None):  # noqa: ANN001
            self.waits.append((len(events), timeout))
            if len(events) > 2:
                return False  # (the part that fits in the space left is written)
            self.appended.append(list(events))
            return True

    spool = SmallSpace()
    handoff = Handoff(spool, "block", threading.Event(), Stats())  # type: ignore[arg-type]
    handoff.put(group(0, 16))
    assert handoff.finish(timeout=10)
    assert [e for part in spool.appended for e in part] == group(0, 16)
    assert all(timeout == 0 for size, timeout in spool.waits if size > 2), spool.waits
