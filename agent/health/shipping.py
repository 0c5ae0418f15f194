"""Closing windows into documents and sending them: the ``Shipping`` half of
``HealthEngine`` (on the engine's attributes, as ``agent.health.checkpoint``'s
``Persisted`` is; why the documents are exact: ``agent.health.engine``).

A window closed by its watermark, by idleness or at the end of a ``--once``
run becomes a window document, one drift document per feature and for the
prediction, and alert documents when a rule starts or stops firing; they wait
in the outbox (kept in the checkpoint) until the output acknowledged them.
An ``OutputError`` leaves them there for the next attempt.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Callable

from agent.errors import OutputError
from agent.events import Event
from agent.health import documents
from agent.health.windows import ClosedWindow, ModelKey

if TYPE_CHECKING:
    from agent.health.alerts import AlertBook

HEALTH_SOURCE = "modelscribe-health"  # the source key of health documents (no file, never committed)
_SHIP_INTERVAL = 0.5
_SHIP_BATCH = 500


def _key_tuple(key: ModelKey) -> tuple[str, ...]:
    return tuple(part or "" for part in key.to_list())  # type: ignore[misc]


class Shipping:
    """close_due, ship and the health thread's loop (set up by ``HealthEngine``)."""

    _lock: threading.RLock
    _room: threading.Condition  # on _lock: the outbox has room again, or the shipper stopped or failed
    _shipping: bool  # run_shipper runs
    _output_up: bool  # the last send of health documents did not fail
    _outbox: dict[str, bytes]
    _alerts: AlertBook

    # -- closing --------------------------------------------------------------------

    def close_due(self, final: bool = False, wall_clock: bool = True) -> int:
        """Turn the windows that are due (all of them with ``final``) into documents
        (``wall_clock``: see ``Windows.close_due``)."""
        with self._lock:
            backwards = self.windows.clock_backwards
            closed = self.windows.close_due(wall_clock=wall_clock)
            if self.windows.clock_backwards != backwards:
                self._once("clock_backwards", "health: the system clock went backwards; the idle timers of the "
                           "windows start again from the new time (event times decide everything else)")
            if final:
                closed += self.windows.close_all()
            for window in closed:
                self._close(window)
            if final:
                self._flush_corrections(None)
            return len(closed)

    def _close(self, window: ClosedWindow) -> None:
        key, start, state = window.key, window.start, window.state
        kt = _key_tuple(key)
        if window.reason != "watermark":
            index = math.floor(start / self._w) + 1
            self._frontier[kt] = max(self._frontier.get(kt, index), index)
            self._flush_corrections(kt)
        self.counters["windows"] += 1
        self._put(*documents.window_document(key, start, self._window, state, window.late, self._agent))
        thresholds = self.settings.thresholds
        mode = "file" if self._file_reference is not None else \
            "previous" if self.settings.reference == "previous" else "first_events"
        worst: float | None = None
        parts = [(name, "feature", counts) for name, counts in sorted(state.features.items())]
        if state.prediction is not None:
            parts.append(("prediction", "prediction", state.prediction))
        for name, role, counts in parts:
            if mode == "previous":
                expected = self._previous.get((kt, role + ":" + name))
                if expected is not None and len(expected) != len(counts.counts):
                    expected = None  # the reference was reset since, with other bins: no previous window to compare
                self._previous[(kt, role + ":" + name)] = list(counts.counts)
            else:
                expected = list(counts.bins.reference_counts)
            doc_id, doc, alert = documents.drift_document(key, start, self._window, name, role, counts, expected,
                                                          mode, thresholds.psi, thresholds.js, self._agent,
                                                          thresholds.drift_p)
            self._put(doc_id, doc)
            drift = doc["model"]["drift"]
            if "psi" in drift:
                # Above 1 exactly when the document's alert flag is set: both thresholds are
                # above 0 (``Thresholds`` refuses 0, which used to alert every document while
                # this rule ignored that measure), and a difference within sampling noise
                # (p-value not below drift_p) scores at most 1.
                score = max(drift["psi"] / thresholds.psi, drift["js"] / thresholds.js)
                if not alert:
                    score = min(score, 1.0)
                worst = score if worst is None else max(worst, score)
        metrics = state.labels.classification.metrics() if state.labels.classification else None
        figures = {
            "error_rate": (state.errors / state.requests if state.requests else None, thresholds.error_rate),
            "latency_p95": (state.latency.percentile(95.0) if state.latency.count else None, thresholds.p95_ms),
            "drift": (worst, 1.0),
            "accuracy_drop": (self._alerts.accuracy_drop(kt, metrics.accuracy if metrics else None,
                                                         metrics.n if metrics else 0), thresholds.accuracy_drop),
        }
        for change in self._alerts.evaluate(kt, figures):
            self._put(*documents.alert_document(key, start, change.rule, change.started, change.value,
                                                change.threshold, self._agent))

    # -- shipping -------------------------------------------------------------------

    def pending_documents(self) -> int:
        with self._lock:
            return len(self._outbox)

    def ship(self, deliver: Callable[[list[Event]], None]) -> int:
        """Send what the outbox holds (any thread but the batcher's); returns how
        many were acknowledged. An OutputError leaves them for the next call."""
        with self._lock:
            batch = list(self._outbox.items())[:_SHIP_BATCH]
        if not batch:
            return 0
        events = [Event(HEALTH_SOURCE, 0, 0, doc_id, data, self._target) for doc_id, data in batch]
        try:
            deliver(events)
        except OutputError as error:
            self._once("ship", "health documents could not be sent yet; kept for the next attempt",
                       error=str(error))
            with self._room:  # the output is down: observe stops waiting for room (see _put)
                self._output_up = False
                self._room.notify_all()
            return 0
        with self._room:
            for doc_id, data in batch:
                if self._outbox.get(doc_id) is data:
                    del self._outbox[doc_id]
            self._dirty = True
            self._output_up = True
            self._room.notify_all()
        return len(batch)

    def finish(self, deliver: Callable[[list[Event]], None]) -> None:
        """The end of a ``--once`` run (the health thread stopped): close every
        window and send the outbox. Its documents are sent right away, so none
        is dropped for the outbox cap; what the output does not take stays in
        the checkpoint."""
        with self._room:
            self._shipping = True
        try:
            self.close_due(final=True)
            while self.ship(deliver):
                pass
        finally:
            with self._room:
                self._shipping = False

    def run_shipper(self, deliver: Callable[[list[Event]], None], stop: threading.Event,
                    wall_clock: bool = True) -> None:
        """The health thread: close due windows, send their documents. While it
        runs and the output takes them, a full outbox makes ``observe`` wait
        for room instead of dropping documents (a backlog read faster than its
        documents are sent)."""
        with self._room:
            self._shipping = True
        try:
            while not stop.is_set():
                self.close_due(wall_clock=wall_clock)
                while self.ship(deliver) and not stop.is_set():
                    pass
                stop.wait(_SHIP_INTERVAL)
            # Stopping: one last try for what the outbox holds (the caller's join
            # bounds it; what is not acknowledged stays in the checkpoint).
            self.close_due(wall_clock=wall_clock)
            self.ship(deliver)
        finally:
            with self._room:
                self._shipping = False
                self._room.notify_all()
