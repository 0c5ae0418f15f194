"""Counters of what the agent did, shared by all stages (thread-safe).

Named after the metrics they will be exported as
(``modelscribe_<thing>_total``); ``snapshot`` gives a frozen copy for logs,
``--once`` summaries and tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    lines_read: int
    events_emitted: int
    events_acked: int
    events_duplicate: int
    events_rejected: int
    events_retried: int
    events_dropped: int
    lost_bytes: int
    batches_failed: int
    last_error: str | None


class Stats:
    _FIELDS = ("lines_read", "events_emitted", "events_acked", "events_duplicate", "events_rejected",
               "events_retried", "events_dropped", "lost_bytes", "batches_failed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._FIELDS, 0)
        self.last_error: str | None = None

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._counts[name] = value

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error = message

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(**self._counts, last_error=self.last_error)
