"""The reader's hand-off to the spool: the spool-writer thread, flush,
failures, shutdown, and the drop policy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.errors import StateError
from agent.events import Event
from agent.handoff import Handoff
from agent.spool import DiskQueue
from agent.stats import Stats


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


def test_finish_gives_up_at_its_timeout_while_the_spool_stays_full_until_abort() -> None:
    spool = ScriptedSpool(full=True)
    abort = threading.Event()
    handoff = Handoff(spool, "block", abort, Stats())  # type: ignore[arg-type]
    handoff.put(group(0))
    assert handoff.finish(timeout=0.2) is False
    abort.set()  # the shutdown deadline passed: abandon what waits
    assert handoff.finish(timeout=30) is True
    assert spool.appended == []


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
