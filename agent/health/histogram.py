"""A latency histogram with fixed, data-independent log-spaced buckets.

What it is for: the per-window latency (and token count, time to first token)
distribution of a model, reported as p50/p90/p95/p99 and shipped as an
Elasticsearch ``histogram`` field, so that a ``percentiles`` aggregation over
the windows of many agents gives the fleet-wide figure.

What it guarantees:

- The buckets do not depend on the data: bucket ``i`` covers
  ``(GAMMA**(i-1), GAMMA**i]`` with ``GAMMA = (1 + RELATIVE_ERROR) / (1 -
  RELATIVE_ERROR)``, and is represented by ``2 * GAMMA**i / (GAMMA + 1)``, which
  is within ``RELATIVE_ERROR`` (1 %) of every value in the bucket (the DDSketch
  construction). So histograms of many agents, windows or restarts merge by
  adding counts, and merging is exact: ``merge(a, b)`` is the histogram of the
  union of their values.
- ``percentile(q)`` follows numpy's default (linear) definition on the sorted
  values, with each value replaced by its bucket's representative. Every value
  is within ``RELATIVE_ERROR`` of its representative and the interpolation is a
  convex combination, so for values ≥ ``MIN_VALUE`` the result is within
  ``RELATIVE_ERROR`` (relative) of ``numpy.percentile`` on the raw values.
- Values below ``MIN_VALUE`` (1 µs when the unit is ms, and 0 itself) are
  counted in a zero bucket represented by 0.0: absolute error < ``MIN_VALUE``.
  Values above ``MAX_VALUE`` (10⁹, 11.6 days in ms) are counted in the top
  bucket, reported as at most ``MAX_VALUE`` and summed as ``MAX_VALUE``. Hence at most ``MAX_BUCKETS``
  (~1,400) buckets per histogram, whatever is added: bounded memory.
- ``add`` refuses NaN, ±inf, negative numbers, ints beyond float range and
  non-numbers, booleans included (returns False, counts nothing): the caller
  counts those as bad values.
- ``to_state``/``from_state`` round-trip through plain lists of ints and
  finite floats (msgpack- and JSON-able, for checkpoints).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from agent.health import native

RELATIVE_ERROR = 0.01
"""Every reported value (bucket representative, percentile) is within 1 % of the true one."""

GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)

MIN_VALUE = 1e-3
"""Smaller values (and 0) go to the zero bucket, reported as 0.0."""

MAX_VALUE = 1e9
"""Larger values are counted in the top bucket (clamped)."""

_MIN_INDEX = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
_MAX_INDEX = math.ceil(math.log(MAX_VALUE) / _LOG_GAMMA)
MAX_BUCKETS = _MAX_INDEX - _MIN_INDEX + 2
"""Upper bound of distinct buckets in one histogram (zero bucket included)."""

_STATE_VERSION = 1


def bucket_index(value: float) -> int:
    """The bucket of a finite value > 0 (clamped to the tracked range)."""
    if value > MAX_VALUE:
        return _MAX_INDEX
    index = math.ceil(math.log(value) / _LOG_GAMMA)
    return index if index > _MIN_INDEX else _MIN_INDEX


def representative(index: int) -> float:
    """The value reported for every value of bucket ``index``."""
    return 2.0 * math.pow(GAMMA, index) / (GAMMA + 1.0)


class LatencyHistogram:
    """Counts per fixed log-spaced bucket, plus exact count, sum, min and max."""

    __slots__ = ("_buckets", "zero", "count", "total", "min", "max")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.zero = 0  # values in [0, MIN_VALUE)
        self.count = 0
        self.total = 0.0  # sum of the raw values (for a mean)
        self.min: float | None = None
        self.max: float | None = None

    def add(self, value: Any) -> bool:
        """Count ``value``; False (nothing counted) for NaN, ±inf, < 0, an int
        beyond float range or a non-number."""
        if value.__class__ is not float:
            # bool is an int subclass, but True is no latency.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            try:
                value = float(value)
            except OverflowError:
                return False
        if not (0.0 <= value < math.inf):  # also false for NaN
            return False
        if value < MIN_VALUE:
            self.zero += 1
        else:
            # bucket_index(), inlined: this runs for every event on the hot path.
            index = _MAX_INDEX if value > MAX_VALUE else math.ceil(math.log(value) / _LOG_GAMMA)
            if index < _MIN_INDEX:
                index = _MIN_INDEX
            buckets = self._buckets
            buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        # Clamped like the buckets, so the sum stays finite (a state holds no inf).
        self.total += value if value <= MAX_VALUE else MAX_VALUE
        if self.count == 1:
            self.min = self.max = value
        elif value < self.min:  # type: ignore[operator]
            self.min = value
        elif value > self.max:  # type: ignore[operator]
            self.max = value
        return True

    def add_many(self, values: list[Any]) -> int:
        """``add`` of each value in turn, None skipped (no latency logged); returns
        how many were refused. In C for a batch of floats (``agent/health/_native_counts.c``)."""
        accelerated = native.NATIVE
        if accelerated is not None:
            done = accelerated.add_latencies(values, self._buckets, self.zero, self.count, self.total, self.min,
                                             self.max, MIN_VALUE, MAX_VALUE, _LOG_GAMMA, _MIN_INDEX, _MAX_INDEX)
            if done is not None:
                self.zero, self.count, self.total, self.min, self.max, refused = done
                return refused
        return sum(1 for value in values if value is not None and not self.add(value))

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts into this histogram (exact: same buckets everywhere)."""
        for index, n in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + n
        self.zero += other.zero
        self.count += other.count
        self.total += other.total
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max

    def _sorted(self) -> tuple[list[float], list[int]]:
        values: list[float] = []
        counts: list[int] = []
        if self.zero:
            values.append(0.0)
            counts.append(self.zero)
        for index in sorted(self._buckets):
            values.append(representative(index))
            counts.append(self._buckets[index])
        return values, counts

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100), numpy's linear definition; None when empty."""
        if not (0.0 <= q <= 100.0):  # also rejects NaN
            raise ValueError(f"percentile q must be in 0..100, got {q!r}")
        if self.count == 0:
            return None
        values, counts = self._sorted()
        cumulative: list[int] = []
        running = 0
        for n in counts:
            running += n
            cumulative.append(running)
        rank = q / 100.0 * (self.count - 1)
        low = math.floor(rank)
        high = min(low + 1, self.count - 1)
        fraction = rank - low

        def value_at(position: int) -> float:
            # The position-th value (0-based) in sorted order lies in the first
            # bucket whose cumulative count exceeds the position.
            return values[bisect_left(cumulative, position + 1)]

        low_value = value_at(low)
        if fraction == 0.0:
            return low_value
        high_value = value_at(high)
        return low_value + (high_value - low_value) * fraction

    def to_es(self) -> dict[str, list]:
        """The Elasticsearch ``histogram`` field value: sorted distinct values and their counts."""
        values, counts = self._sorted()
        return {"values": values, "counts": counts}

    def to_state(self) -> dict[str, Any]:
        indexes = sorted(self._buckets)
        return {
            "v": _STATE_VERSION,
            "index": indexes,
            "counts": [self._buckets[i] for i in indexes],
            "zero": self.zero,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LatencyHistogram:
        if state.get("v") != _STATE_VERSION:
            raise ValueError(f"latency histogram state version {state.get('v')!r}, expected {_STATE_VERSION}")
        histogram = cls()
        histogram._buckets = {int(i): int(n) for i, n in zip(state["index"], state["counts"], strict=True)}
        histogram.zero = int(state["zero"])
        histogram.count = int(state["count"])
        histogram.total = float(state["total"])
        histogram.min = state["min"]
        histogram.max = state["max"]
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        # The sum of floats depends on the order of addition; everything else is exact.
        mine, theirs = self.to_state(), other.to_state()
        if not math.isclose(mine.pop("total"), theirs.pop("total"), rel_tol=1e-9, abs_tol=1e-9):
            return False
        return mine == theirs

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, buckets={len(self._buckets) + bool(self.zero)})"
