"""Alerts at the edge: one document when a rule starts firing, one when it recovers.

Rules, evaluated on every window as it closes (``health.thresholds``):

- ``error_rate``: errors / requests above the threshold (windows with requests);
- ``latency_p95``: the window's p95 latency above ``p95_ms`` (off by default);
- ``drift``: any feature's or the prediction's PSI or JS distance above its
  threshold (the figure is the worst of PSI over its threshold and JS over its threshold);
- ``accuracy_drop``: the window's accuracy more than ``accuracy_drop`` below
  the baseline, which is the accuracy of the first window of the model that
  had at least ``MIN_LABELLED`` labels when it closed (labels arriving later,
  in corrections, do not move alerts).

A rule that has no figure in a window (no requests, no labels) keeps its
state. The firing state per (model key, rule) and the baselines are part of
the engine's checkpoint, so a restart neither repeats nor forgets an alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_LABELLED = 10


@dataclass(frozen=True)
class Transition:
    rule: str
    started: bool
    value: float | None
    threshold: float | None


class AlertBook:
    def __init__(self) -> None:
        self.firing: dict[tuple[tuple[str, ...], str], bool] = {}
        self.baseline: dict[tuple[str, ...], float] = {}

    def evaluate(self, key: tuple[str, ...], figures: dict[str, tuple[float | None, float | None]]) -> list[Transition]:
        """``figures``: rule -> (value, threshold); a None threshold disables the
        rule, a None value leaves its state as it is."""
        changes = []
        for rule, (value, threshold) in sorted(figures.items()):
            if threshold is None or value is None:
                continue
            crossed = value > threshold
            was = self.firing.get((key, rule), False)
            if crossed != was:
                self.firing[(key, rule)] = crossed
                changes.append(Transition(rule, crossed, value, threshold))
        return changes

    def accuracy_drop(self, key: tuple[str, ...], accuracy: float | None, labelled: int) -> float | None:
        """How far below the baseline ``accuracy`` is (None: no figure yet)."""
        if accuracy is None or labelled < MIN_LABELLED:
            return None
        base = self.baseline.get(key)
        if base is None:
            self.baseline[key] = accuracy
            return 0.0
        return base - accuracy

    def to_state(self) -> dict[str, Any]:
        return {"firing": [[list(k), rule] for (k, rule), on in sorted(self.firing.items()) if on],
                "baseline": [[list(k), v] for k, v in sorted(self.baseline.items())]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AlertBook:
        book = cls()
        book.firing = {(tuple(k), rule): True for k, rule in state["firing"]}
        book.baseline = {tuple(k): float(v) for k, v in state["baseline"]}
        return book
