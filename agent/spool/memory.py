"""MemoryQueue: the spool's interface without a disk (``--no-spool``).

The agent has one delivery path: reader → hand-off → queue → batcher →
outputs → ack. With ``--no-spool`` the queue is this class instead of
``DiskQueue``; the hand-off, the batcher, the place where events are
registered for acknowledgement (the batcher, at dispatch) and the stop
protocol are the same in both modes.

Guarantees, as ``DiskQueue``'s, minus durability:

* ``take`` hands out events in append order, each once;
* space is freed only by ``ack``, after the output confirmed delivery, so
  ``max_events`` bounds every event between the reader and the output's
  acknowledgement, in flight included (a group larger than the whole bound
  is admitted when the queue is empty, so nothing can wait forever);
* a full queue makes ``append`` wait (backpressure) up to its timeout, and
  ``close`` releases every waiter; unknown and repeated acks are ignored.

What a crash costs: everything in the queue, which the registry has not
committed, so it is read again from the files (as long as they exist).

Acknowledgements name runs of consecutive ordinals (``RefRun`` with
``segment`` 0 and one entry of ``positions`` per event), like the disk
spool's, so the batcher cannot tell the two apart.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Iterable, Sequence

from agent.clock import SYSTEM_CLOCK, Clock
from agent.events import Event
from agent.spool.recovery import Recovery
from agent.spool.segment import RefRun, Taken


class MemoryQueue:
    """A bounded FIFO of events in memory, acknowledged in runs."""

    kind = "memory queue"
    disk_full = False  # (DiskQueue's: a memory queue has no disk)

    def __init__(self, max_events: int, clock: Clock = SYSTEM_CLOCK) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self._max = max_events
        # Groups small enough that several fit: the reader keeps going while
        # the batcher takes the group before.
        self.group_size = min(2048, max(1, max_events // 4))
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[tuple[int, tuple[Event, ...], float]] = deque()  # (first ordinal, events, appended at)
        self._head = 0        # events of the first ready batch already handed out
        self._next = 0        # ordinal of the next event appended
        self._held = 0        # events appended and not acknowledged
        self._bytes = 0       # their data bytes
        # Handed out, not acknowledged: first ordinal -> events, in ordinal order.
        self._out: dict[int, tuple[tuple[Event, ...], float]] = {}
        self._out_starts: list[int] = []
        self._woken = False
        self._closed = False
        self._append_waiting = False  # an append waits for room (``blocked``)

    def open(self) -> Recovery:
        return Recovery()  # nothing survives a restart: the files are read again

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- append ------------------------------------------------------------------

    def append(self, events: Sequence[Event], timeout: float | None = None) -> bool:
        """Queue ``events`` after every earlier batch; waits while they do not
        fit. False if ``timeout`` passed or the queue was closed first."""
        if not events:
            return True
        batch = tuple(events)
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._cond:
            try:
                while not self._closed and self._held and self._held + len(batch) > self._max:
                    wait = 0.5 if deadline is None else deadline - self._clock.monotonic()
                    if wait <= 0:
                        return False
                    if not self._append_waiting:
                        self._append_waiting = True
                        self._woken = True  # a waiting take returns now (see ``blocked``)
                        self._cond.notify_all()
                    self._cond.wait(min(wait, 0.5))
            finally:
                self._append_waiting = False
            if self._closed:
                return False
            self._ready.append((self._next, batch, self._clock.time()))
            self._next += len(batch)
            self._held += len(batch)
            self._bytes += sum(len(event.data) for event in batch)
            self._cond.notify_all()
        return True

    @property
    def blocked(self) -> bool:
        """Whether an append waits for room: nothing new comes before what was
        handed out is acknowledged (the batcher then sends what it holds)."""
        return self._append_waiting

    # -- take --------------------------------------------------------------------

    def take(self, max_events: int, max_bytes: int, timeout: float) -> Taken:
        """Up to ``max_events`` events not handed out yet, in append order, and
        no more data bytes than ``max_bytes`` except that the one reaching the
        limit is included. Waits up to ``timeout`` for one; empty if none
        came, if ``wake`` was called, or if the queue was closed."""
        out = Taken()
        deadline = self._clock.monotonic() + timeout
        with self._cond:
            while not self._ready and not self._woken and not self._closed:
                wait = deadline - self._clock.monotonic()
                if wait <= 0:
                    return out
                self._cond.wait(wait)
            self._woken = False
            max_events, max_bytes = max(1, max_events), max(1, max_bytes)
            while self._ready and len(out) < max_events and out.nbytes < max_bytes:
                first, batch, appended = self._ready[0]
                start = self._head
                stop, nbytes = start, 0
                while stop < len(batch) and len(out) + stop - start < max_events and out.nbytes + nbytes < max_bytes:
                    nbytes += len(batch[stop].data)
                    stop += 1
                run = batch[start:stop]
                out.add(0, first + start, run, range(len(run)), nbytes)
                self._out[first + start] = (run, appended)
                bisect.insort(self._out_starts, first + start)
                if stop == len(batch):
                    self._ready.popleft()
                    self._head = 0
                else:
                    self._head = stop
        return out

    def wake(self) -> None:
        """Make a waiting ``take`` return now (with what there is, maybe nothing)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    # -- ack ---------------------------------------------------------------------

    def ack(self, refs: Iterable[RefRun]) -> None:
        """Free the events named by ``refs`` (whole runs or parts of them)."""
        with self._cond:
            freed = 0
            for ref in refs:
                freed += self._ack_range(ref.first, ref.first + len(ref.positions))
            if freed:
                self._cond.notify_all()

    def _ack_range(self, start: int, stop: int) -> int:
        starts = self._out_starts
        # The runs handed out that may overlap [start, stop).
        hits = starts[max(0, bisect.bisect_right(starts, start) - 1):bisect.bisect_left(starts, stop)]
        freed = 0
        for first in hits:
            events, appended = self._out[first]
            lo, hi = max(start, first) - first, min(stop, first + len(events)) - first
            if lo >= hi:
                continue  # acknowledged before, or never handed out: ignored
            self._release(events[lo:hi])
            freed += hi - lo
            del self._out[first]
            del starts[bisect.bisect_left(starts, first)]
            # Keep what was not acknowledged, before and after the acknowledged part.
            for part_first, part in ((first, events[:lo]), (first + hi, events[hi:])):
                if part:
                    self._out[part_first] = (part, appended)
                    bisect.insort(starts, part_first)
        return freed

    def _release(self, events: Sequence[Event]) -> None:
        self._held -= len(events)
        self._bytes -= sum(len(event.data) for event in events)

    # -- gauges ------------------------------------------------------------------

    def reclaim(self) -> bool:
        """(``DiskQueue.reclaim``: a memory queue holds no disk space to free.)"""
        return False

    def nearly_full(self) -> bool:
        """True when another group would not fit: the reader should pause."""
        return self._held + self.group_size > self._max

    def used_bytes(self) -> int:
        """Data bytes of the events held (handed out or not)."""
        return self._bytes

    def max_events(self) -> int:
        return self._max

    def pending(self) -> int:
        """Events appended and not acknowledged yet, handed out or not."""
        return self._held

    def oldest_unacked_age(self) -> float | None:
        with self._cond:
            times = [appended for _, appended in self._out.values()]
            if self._ready:
                times.append(self._ready[0][2])
        return max(0.0, self._clock.time() - min(times)) if times else None
