"""Accuracy from delayed ground truth: confusion counts for classification,
error sums for regression — both mergeable, both turned into metrics.

What it is for: when a label is joined to its prediction, the pair is added to
the prediction's window; the window document carries the counts (which add up
across windows and agents) and the metrics derived from them.

What it guarantees:

- ``ClassificationCounts.metrics()`` equals scikit-learn's
  ``accuracy_score`` and ``precision_recall_fscore_support(average=None /
  "macro", zero_division=0)`` over the same pairs, with the classes being the
  sorted union of true and predicted labels (sklearn's default). Zero
  division: a class never predicted has precision 0, a class never true has
  recall 0, and F1 is ``2·tp / (2·tp + fp + fn)``, 0 when tp is 0. Macro
  averages are the unweighted means over those classes.
- Labels are compared as strings (``bins.category_key``: 1, 1.0 and "1" are
  the same class, true is "true"); a label that cannot be a class (None, NaN, a
  list, an object) is refused (``add`` returns False) and the caller counts it.
- Bounded: at most ``max_classes`` distinct labels are tracked per counter
  (true and predicted together); a pair that would bring a new label beyond
  that is not counted and adds to ``dropped``. ``merge`` is exact and does not
  apply the cap (two capped counters hold at most twice the cap).
- ``RegressionCounts`` keeps n, Σ|err| and Σerr²; ``mae`` and ``rmse`` equal
  numpy's on the same pairs up to float rounding. Non-finite numbers, and a
  pair that would make Σerr² overflow, are refused.
- ``to_state``/``from_state`` use plain lists, ints, strings and finite floats
  (msgpack- and JSON-able).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.health.bins import as_number, category_key

DEFAULT_MAX_CLASSES = 50


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int  # how many pairs have this class as the true label


@dataclass(frozen=True)
class ClassificationMetrics:
    n: int
    accuracy: float
    per_class: dict[str, ClassMetrics]
    macro_precision: float
    macro_recall: float
    macro_f1: float


class ClassificationCounts:
    """Confusion counts keyed (true, predicted)."""

    __slots__ = ("pairs", "labels", "max_classes", "dropped")

    def __init__(self, max_classes: int = DEFAULT_MAX_CLASSES) -> None:
        if max_classes < 1:
            raise ValueError(f"max_classes must be at least 1, got {max_classes}")
        self.pairs: dict[tuple[str, str], int] = {}
        self.labels: set[str] = set()
        self.max_classes = max_classes
        self.dropped = 0

    @property
    def n(self) -> int:
        return sum(self.pairs.values())

    def add(self, true: Any, predicted: Any) -> bool:
        """Count one labelled prediction; False when a label is unusable (not counted)
        or the class cap is reached (not counted, ``dropped`` incremented)."""
        true_key = true if true.__class__ is str else category_key(true)
        predicted_key = predicted if predicted.__class__ is str else category_key(predicted)
        if true_key is None or predicted_key is None:
            return False
        labels = self.labels
        if true_key not in labels or predicted_key not in labels:  # (a new class: rare after the first labels)
            new = {true_key, predicted_key} - labels
            if len(labels) + len(new) > self.max_classes:
                self.dropped += 1
                return False
            labels |= new
        key = (true_key, predicted_key)
        self.pairs[key] = self.pairs.get(key, 0) + 1
        return True

    def merge(self, other: ClassificationCounts) -> None:
        for key, count in other.pairs.items():
            self.pairs[key] = self.pairs.get(key, 0) + count
        self.labels |= other.labels
        self.dropped += other.dropped

    def metrics(self) -> ClassificationMetrics | None:
        """Accuracy, per-class and macro precision/recall/F1; None when nothing was counted."""
        n = self.n
        if n == 0:
            return None
        classes = sorted({t for t, _ in self.pairs} | {p for _, p in self.pairs})
        true_positive = dict.fromkeys(classes, 0)
        true_total = dict.fromkeys(classes, 0)
        predicted_total = dict.fromkeys(classes, 0)
        for (t, p), count in self.pairs.items():
            true_total[t] += count
            predicted_total[p] += count
            if t == p:
                true_positive[t] += count
        per_class = {}
        for c in classes:
            tp = true_positive[c]
            fp = predicted_total[c] - tp
            fn = true_total[c] - tp
            per_class[c] = ClassMetrics(
                precision=tp / predicted_total[c] if predicted_total[c] else 0.0,
                recall=tp / true_total[c] if true_total[c] else 0.0,
                f1=2 * tp / (2 * tp + fp + fn) if tp else 0.0,
                support=true_total[c],
            )
        k = len(classes)
        return ClassificationMetrics(
            n=n,
            accuracy=sum(true_positive.values()) / n,
            per_class=per_class,
            macro_precision=sum(m.precision for m in per_class.values()) / k,
            macro_recall=sum(m.recall for m in per_class.values()) / k,
            macro_f1=sum(m.f1 for m in per_class.values()) / k,
        )

    def to_state(self) -> dict[str, Any]:
        keys = sorted(self.pairs)
        return {"true": [t for t, _ in keys], "predicted": [p for _, p in keys],
                "counts": [self.pairs[k] for k in keys], "labels": sorted(self.labels),
                "max_classes": self.max_classes, "dropped": self.dropped}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClassificationCounts:
        counts = cls(int(state["max_classes"]))
        counts.pairs = {(str(t), str(p)): int(n)
                        for t, p, n in zip(state["true"], state["predicted"], state["counts"], strict=True)}
        counts.labels = set(map(str, state["labels"]))
        counts.dropped = int(state["dropped"])
        return counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassificationCounts):
            return NotImplemented
        return self.to_state() == other.to_state()

    def __repr__(self) -> str:
        return f"ClassificationCounts(n={self.n}, classes={len(self.labels)}, dropped={self.dropped})"


class RegressionCounts:
    """n, Σ|true − predicted| and Σ(true − predicted)² of labelled predictions."""

    __slots__ = ("n", "sum_abs", "sum_sq")

    def __init__(self) -> None:
        self.n = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0

    def add(self, true: Any, predicted: Any) -> bool:
        """Count one pair; False (not counted) unless both are finite numbers."""
        t, p = as_number(true), as_number(predicted)
        if t is None or p is None:
            return False
        error = t - p
        sum_sq = self.sum_sq + error * error
        if not math.isfinite(sum_sq):  # also catches a non-finite error; a state holds no inf
            return False
        self.n += 1
        self.sum_abs += abs(error)
        self.sum_sq = sum_sq
        return True

    def merge(self, other: RegressionCounts) -> None:
        self.n += other.n
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq

    @property
    def mae(self) -> float | None:
        return self.sum_abs / self.n if self.n else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sum_sq / self.n) if self.n else None

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "sum_abs": self.sum_abs, "sum_sq": self.sum_sq}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RegressionCounts:
        counts = cls()
        counts.n = int(state["n"])
        counts.sum_abs = float(state["sum_abs"])
        counts.sum_sq = float(state["sum_sq"])
        return counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegressionCounts):
            return NotImplemented
        return (self.n == other.n and math.isclose(self.sum_abs, other.sum_abs, rel_tol=1e-9, abs_tol=1e-9)
                and math.isclose(self.sum_sq, other.sum_sq, rel_tol=1e-9, abs_tol=1e-9))

    def __repr__(self) -> str:
        return f"RegressionCounts(n={self.n}, mae={self.mae}, rmse={self.rmse})"
