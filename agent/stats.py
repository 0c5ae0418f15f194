"""Counters of what the agent did, shared by all stages (thread-safe).

Named after the metrics they will be exported as
(``modelscribe_<thing>_total``); ``snapshot`` gives a frozen copy for logs,
``--once`` summaries and tests. ``agent.metrics`` reads them at scrape
time, so nothing here is called per line: request-level figures (retries
by reason, the bulk request latency histogram, the last acknowledgement)
are recorded once per request by the sender.

Errors a stage catches to stay alive (a format detector that raised, a
failure of the file-system event watcher, a failed ``/metrics`` request) are counted by kind in the
process-wide ``ERRORS``: the code that catches them has no ``Stats`` of its
own. Each ``Stats`` reports the ones counted since it was created, as
``<kind>_errors``, so they show in ``status.json`` and ``modelscribe status``.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass


# Kinds of caught errors: a fixed, small set (each becomes a counter).
ERROR_KINDS = ("detector", "watcher", "metrics")
# Why a bulk request was retried: a fixed, small set (the label values of
# modelscribe_retried_requests_total).
RETRY_REASONS = ("429", "5xx", "connection", "auth", "other")
# Upper bounds (seconds) of the bulk request latency histogram's buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
    events_sent: int      # events in bulk requests, re-sends included
    bytes_sent: int       # their document bytes
    bytes_emitted: int    # document bytes handed to the queue
    lost_bytes: int
    batches_failed: int
    detector_errors: int  # a format detector raised (the format is skipped for that file)
    watcher_errors: int   # the file-system event watcher failed (polling carries on)
    metrics_errors: int   # a /metrics or /health request failed (answered 500; the agent ships on)
    last_error: str | None
    last_error_at: float | None = None  # wall clock of the last error
    last_ack_at: float | None = None    # wall clock of the last acknowledgement


# Counters of events that leave out the agent's own metric documents
# (``agent.self_metrics``): ``add``'s and ``request``'s ``own`` counts them apart, in ``own()``.
OWN_FIELDS = ("events_sent", "bytes_sent", "events_acked", "events_duplicate", "events_rejected",
              "events_retried", "events_given_up", "events_dropped")


class Stats:
    _FIELDS = ("lines_read", "events_emitted", "events_acked", "events_duplicate", "events_rejected",
               "events_retried", "events_dropped", "events_given_up", "events_sent", "bytes_sent",
               "bytes_emitted", "lost_bytes", "batches_failed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._FIELDS, 0)
        self._own = dict.fromkeys(OWN_FIELDS, 0)
        self._errors_before = ERRORS.counts()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._retries = dict.fromkeys(RETRY_REASONS, 0)
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, the last one is +Inf
        self._latency_sum = 0.0
        self.last_ack_time: float | None = None  # wall clock of the last acknowledgement

    def add(self, name: str, amount: int = 1, own: int = 0) -> None:
        """``amount`` more, of which ``own`` of the agent's own metric documents (counted apart)."""
        with self._lock:
            self._counts[name] += amount - own
            if own:
                self._own[name] += own

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._counts[name] = value

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
            self.last_error_at = time.time()

    def request(self, seconds: float, events: int, size: int, own: tuple[int, int] = (0, 0)) -> None:
        """One bulk request done (whatever its outcome): its latency and size;
        ``own``: (documents, bytes) of the agent's own metric documents in it."""
        with self._lock:
            self._latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._latency_sum += seconds
            self._counts["events_sent"] += events - own[0]
            self._counts["bytes_sent"] += size - own[1]
            self._own["events_sent"] += own[0]
            self._own["bytes_sent"] += own[1]

    def retried(self, reason: str) -> None:
        """A request left events to retry; ``reason`` in RETRY_REASONS."""
        with self._lock:
            self._retries[reason if reason in self._retries else "other"] += 1

    def acknowledged(self, now: float) -> None:
        """The output settled events (stored, duplicate or dead-lettered) at ``now``."""
        self.last_ack_time = now  # one assignment: no lock needed

    def own(self) -> dict[str, int]:
        """The agent's own metric documents the counters left out (OWN_FIELDS)."""
        with self._lock:
            return dict(self._own)

    def retries(self) -> dict[str, int]:
        with self._lock:
            return dict(self._retries)

    def latency(self) -> tuple[list[tuple[float, int]], float]:
        """Cumulative (upper bound, count) buckets ending with +Inf, and the sum of seconds."""
        with self._lock:
            counts, total = list(self._latency), self._latency_sum
        buckets, running = [], 0
        for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), counts):
            running += count
            buckets.append((bound, running))
        return buckets, total

    def snapshot(self) -> Snapshot:
        errors = {f"{kind}_errors": count - self._errors_before[kind] for kind, count in ERRORS.counts().items()}
        with self._lock:
            return Snapshot(**self._counts, **errors, last_error=self.last_error, last_error_at=self.last_error_at,
                            last_ack_at=self.last_ack_time)
