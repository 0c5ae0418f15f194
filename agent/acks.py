"""End-to-end acknowledgement: from "the output confirmed these events" to
"the registry may commit this offset".

MUST: a file's committed offset only ever covers events that the output has
acknowledged, and every event before them in the same file. Events of one
file may be acknowledged out of order (several bulk workers, retries of a
few items); the committed offset advances to the end of the longest
acknowledged prefix, never past a hole.

Thread-safe: ``register`` is called by the reader thread in emission order,
``acknowledge`` by output workers in any order.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Iterable

from agent.events import Event


class _FileAcks:
    __slots__ = ("order", "done")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # event ends, in emission order
        self.done: set[int] = set()       # acknowledged ends not yet at the head


class AckTracker:
    """Tracks in-flight events per source key and commits acknowledged prefixes."""

    def __init__(self, commit: Callable[[str, int], None]) -> None:
        self._commit = commit
        self._lock = threading.Condition()
        self._files: dict[str, _FileAcks] = {}
        self._in_flight = 0

    def register(self, events: Iterable[Event]) -> None:
        """Record events about to be sent, in the order they were read."""
        with self._lock:
            for event in events:
                state = self._files.get(event.source_key)
                if state is None:
                    state = self._files[event.source_key] = _FileAcks()
                state.order.append(event.end)
                self._in_flight += 1

    def acknowledge(self, events: Iterable[Event]) -> None:
        commits: dict[str, int] = {}
        with self._lock:
            for event in events:
                state = self._files.get(event.source_key)
                if state is None or event.end in state.done:
                    continue
                state.done.add(event.end)
                self._in_flight -= 1
                committed = None
                while state.order and state.order[0] in state.done:
                    committed = state.order.popleft()
                    state.done.discard(committed)
                if committed is not None:
                    commits[event.source_key] = committed
                if not state.order:
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
