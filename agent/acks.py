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
from typing import Callable, Iterable

from agent.events import Event


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
            for event in events:
                state = self._files.get(event.source_key)
                if state is None:
                    state = self._files[event.source_key] = _FileAcks()
                elif event.offset in state.pending:
                    continue
                state.order.append((event.offset, event.end))
                state.pending.add(event.offset)
                self._in_flight += 1

    def acknowledge(self, events: Iterable[Event]) -> None:
        commits: dict[str, int] = {}
        with self._lock:
            for event in events:
                state = self._files.get(event.source_key)
                if state is None or event.offset not in state.pending:
                    continue  # not in flight: settled before, or never registered
                state.pending.discard(event.offset)
                self._in_flight -= 1
                order, pending = state.order, state.pending
                committed = None
                while order and order[0][0] not in pending:
                    committed = order.popleft()[1]
                if committed is not None:
                    commits[event.source_key] = committed
                if not order:
                    del self._files[event.source_key]
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
