"""MemoryQueue: the spool's interface without a disk. A model-based test of
append/take/ack (whole runs and single records, repeated and in any order),
and the bound, wake and close behaviour the hand-off and batcher rely on."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.events import Event
from agent.spool import MemoryQueue


def _events(start: int, n: int, size: int = 3) -> list[Event]:
    return [Event("k", i, i + 1, f"id{i}", b"x" * size) for i in range(start, start + n)]


class MemoryQueueModel(RuleBasedStateMachine):
    """Every event appended is taken once, in order; space is freed exactly by
    the first ack of each event; pending() counts appended minus acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = MemoryQueue(10_000)
        self.appended = 0
        self.taken: list[Event] = []
        self.refs: list = []  # every ref handed out (runs and single records)
        self.acked: set[int] = set()

    @rule(n=st.integers(1, 20))
    def append(self, n: int) -> None:
        assert self.queue.append(_events(self.appended, n), timeout=0)
        self.appended += n

    @rule(max_events=st.integers(1, 15), max_bytes=st.integers(1, 60))
    def take(self, max_events: int, max_bytes: int) -> None:
        taken = self.queue.take(max_events, max_bytes, timeout=0)
        assert len(taken) <= max_events
        offsets = [event.offset for event in taken.events]
        assert offsets == list(range(len(self.taken), len(self.taken) + len(offsets)))
        if len(self.taken) < self.appended:
            assert offsets, "a take with events waiting returned none"
        self.taken.extend(taken.events)
        self.refs.extend(taken.refs)
        self.refs.extend(record.ref for record in taken.records())

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(self.refs))
        self.queue.ack([ref])
        self.acked.update(range(ref.first, ref.first + len(ref.positions)))

    @invariant()
    def pending_counts_what_is_not_acknowledged(self) -> None:
        assert self.queue.pending() == self.appended - len(self.acked)
        assert self.queue.used_bytes() == 3 * (self.appended - len(self.acked))


TestMemoryQueueModel = MemoryQueueModel.TestCase
TestMemoryQueueModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_append_waits_for_acks_when_full_and_times_out():
    queue = MemoryQueue(10)
    assert queue.append(_events(0, 9), timeout=0)
    assert queue.nearly_full()  # 9 held + a group of 2 would not fit: the reader pauses
    assert not queue.append(_events(9, 5), timeout=0.05)  # 14 > 10: waits, then gives up
    taken = queue.take(10, 1000, timeout=0)
    threading.Timer(0.1, queue.ack, args=(taken.refs,)).start()
    started = time.monotonic()
    assert queue.append(_events(9, 5), timeout=5)
    assert time.monotonic() - started < 4
    assert queue.pending() == 5 and not queue.nearly_full()


def test_a_group_larger_than_the_bound_is_admitted_into_an_empty_queue():
    queue = MemoryQueue(4)
    assert queue.append(_events(0, 9), timeout=0)
    assert not queue.append(_events(9, 1), timeout=0)


def test_close_releases_a_blocked_append_and_a_waiting_take():
    queue = MemoryQueue(2)
    queue.append(_events(0, 2))
    results = []
    blocked = threading.Thread(target=lambda: results.append(queue.append(_events(2, 1))))
    blocked.start()
    empty = MemoryQueue(2)
    waiting = threading.Thread(target=lambda: results.append(len(empty.take(1, 10, timeout=30))))
    waiting.start()
    time.sleep(0.1)
    queue.close()
    empty.close()
    blocked.join(5)
    waiting.join(5)
    assert sorted(results, key=str) == [0, False]


def test_wake_makes_a_waiting_take_return():
    queue = MemoryQueue(2)
    threading.Timer(0.05, queue.wake).start()
    started = time.monotonic()
    assert len(queue.take(1, 10, timeout=30)) == 0
    assert time.monotonic() - started < 5


def test_oldest_unacked_age_and_bad_bound():
    queue = MemoryQueue(10)
    assert queue.oldest_unacked_age() is None
    queue.append(_events(0, 1))
    assert queue.oldest_unacked_age() is not None
    queue.ack(queue.take(1, 10, timeout=0).refs)
    assert queue.oldest_unacked_age() is None
    with pytest.raises(ValueError, match="max_events"):
        MemoryQueue(0)
