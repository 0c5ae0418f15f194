"""Counters of what the agent did, shared by all stages (thread-safe).

Named after the metrics they will be exported as
(``modelscribe_<thing>_total``); ``snapshot`` gives a frozen copy for logs,
``--once`` summaries and tests.

Errors a stage catches to stay alive (a format detector that raised, a
failure of the file-system event watcher) are counted by kind in the
process-wide ``ERRORS``: the code that catches them has no ``Stats`` of its
own. Each ``Stats`` reports the ones counted since it was created, as
``<kind>_errors``, so they show in ``status.json`` and ``modelscribe status``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


# Kinds of caught errors: a fixed, small set (each becomes a counter).
ERROR_KINDS = ("detector", "watcher")


class ErrorCounts:
    """Caught errors by kind, for the whole process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(ERROR_KINDS, 0)

    def add(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1  # KeyError for an unknown kind: a bug, not a new label

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


ERRORS = ErrorCounts()


def count_error(kind: str) -> None:
    """Count an error a stage caught and survived (``kind`` in ERROR_KINDS)."""
    ERRORS.add(kind)


@dataclass(frozen=True)
class Snapshot:
    lines_read: int
    events_emitted: int
    events_acked: int
    events_duplicate: int
    events_rejected: int
    events_retried: int
    events_dropped: int
    events_given_up: int  # --max-retries reached: sent to the dead letters with the reason
    lost_bytes: int
    batches_failed: int
    detector_errors: int  # a format detector raised (the format is skipped for that file)
    watcher_errors: int   # the file-system event watcher failed (polling carries on)
    last_error: str | None


class Stats:
    _FIELDS = ("lines_read", "events_emitted", "events_acked", "events_duplicate", "events_rejected",
               "events_retried", "events_dropped", "events_given_up", "lost_bytes", "batches_failed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._FIELDS, 0)
        self._errors_before = ERRORS.counts()
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
        errors = {f"{kind}_errors": count - self._errors_before[kind] for kind, count in ERRORS.counts().items()}
        with self._lock:
            return Snapshot(**self._counts, **errors, last_error=self.last_error)
