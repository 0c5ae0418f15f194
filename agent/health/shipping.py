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
    _outbox: dict[str, bytes]
    _alerts: AlertBook

    # -- closing --------------------------------------------------------------------

    def close_due(self, final: bool = False) -> int:
        """Turn the windows that are due (all of them with ``final``) into documents."""
        with self._lock:
            closed = self.windows.close_due()
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
                self._previous[(kt, role + ":" + name)] = list(counts.counts)
            else:
                expected = list(counts.bins.reference_counts)
            doc_id, doc, _ = documents.drift_document(key, start, self._window, name, role, counts, expected, mode,
                                                      thresholds.psi, thresholds.js, self._agent)
            self._put(doc_id, doc)
            drift = doc["model"]["drift"]
            if "psi" in drift:
                score = max(drift["psi"] / thresholds.psi if thresholds.psi else 0.0,
                            drift["js"] / thresholds.js if thresholds.js else 0.0)
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
            return 0
        with self._lock:
            for doc_id, data in batch:
                if self._outbox.get(doc_id) is data:
                    del self._outbox[doc_id]
            self._dirty = True
        return len(batch)

    def run_shipper(self, deliver: Callable[[list[Event]], None], stop: threading.Event) -> None:
        """The health thread of the daemon: close due windows, send their documents."""
        while not stop.is_set():
            self.close_due()
            while self.ship(deliver) and not stop.is_set():
                pass
            stop.wait(_SHIP_INTERVAL)
        # Stopping: one last try for what the outbox holds (the caller's join
        # bounds it; what is not acknowledged stays in the checkpoint).
        self.close_due()
        self.ship(deliver)
