"""End-to-end acknowledgement: from "the output confirmed these events" to
"the registry may commit this offset".

MUST: a file's committed offset only ever covers events that the output has
acknowledged, and every event registered before them for the same file.
Events of one file may be acknowledged out of order (several bulk workers,
retries of a few items); the committed offset advances to the ``end`` of the
last event of the longest acknowledged prefix, never past a hole.

An event is identified by its file and its ``offset`` (the first byte of its
first line: unique within a file). Its ``end`` is the offset that may be
committed once it and everything registered before it are acknowledged: for
an event of consecutive lines, the byte after its last line; for an event
whose lines were interleaved with other events' (per-thread joining, see
``agent.parsing.multiline``), the parser lowers it to the first line of the
oldest event still open, so ``end`` never runs ahead of unfinished work.
Ends are non-decreasing in registration order within a file.

Idempotent: acknowledging an event that is not in flight (never registered,
or already acknowledged) does nothing, so a retry or a split request can
never settle an event twice nor drive the in-flight count below zero.

Thread-safe: ``register`` is called by one thread in emission order,
``acknowledge`` by output workers in any order.
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import groupby
from operator import attrgetter
from typing import Callable, Iterable

from agent.events import Event

_KEY, _OFFSET, _END = attrgetter("source_key"), attrgetter("offset"), attrgetter("end")


class _FileAcks:
    __slots__ = ("order", "pending")

    def __init__(self) -> None:
        self.order: deque[tuple[int, int]] = deque()  # (offset, end) in registration order
        self.pending: set[int] = set()                # offsets registered and not acknowledged


class AckTracker:
    """Tracks in-flight events per source key and commits acknowledged prefixes."""

    def __init__(self, commit: Callable[[str, int], None]) -> None:
        self._commit = commit
        self._lock = threading.Condition()
        self._files: dict[str, _FileAcks] = {}
        self._in_flight = 0

    def register(self, events: Iterable[Event]) -> None:
        """Record events about to be sent, in the order they were read.
        Registering an event already in flight does nothing."""
        with self._lock:
            # A batch holds runs of one file's events: each run is taken at
            # once when none of it is in flight yet (the usual case).
            for key, run in groupby(events, _KEY):
                run = list(run)
                offsets = list(map(_OFFSET, run))
                state = self._files.get(key)
                if state is None:
                    state = self._files[key] = _FileAcks()
                pending = state.pending
                if pending.isdisjoint(offsets) and len(set(offsets)) == len(offsets):
                    state.order.extend(zip(offsets, map(_END, run)))
                    pending.update(offsets)
                    self._in_flight += len(offsets)
                    continue
                for offset, end in zip(offsets, map(_END, run)):
                    if offset not in pending:
                        state.order.append((offset, end))
                        pending.add(offset)
                        self._in_flight += 1

    def acknowledge(self, events: Iterable[Event]) -> None:
        commits: dict[str, int] = {}
        with self._lock:
            for key, run in groupby(events, _KEY):
                state = self._files.get(key)
                if state is None:
                    continue  # not in flight: settled before, or never registered
                pending = state.pending
                settled = pending.intersection(map(_OFFSET, run))
                if not settled:
                    continue
                pending.difference_update(settled)
                self._in_flight -= len(settled)
                order = state.order
                committed = None
                if not pending:  # the whole file's events settled: all of order goes
                    committed = order[-1][1]
                    order.clear()
                while order and order[0][0] not in pending:
                    committed = order.popleft()[1]
                if committed is not None:
                    commits[key] = committed
                if not order:
                    del self._files[key]
            if self._in_flight == 0:
                self._lock.notify_all()
        # Outside the lock: the registry has its own, and ordering between
        # two commits of the same key is kept because commit never moves back.
        for key, offset in commits.items():
            self._commit(key, offset)

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every registered event is acknowledged; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)
