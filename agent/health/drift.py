"""Feature distributions against a reference: bins, per-window counts, data
quality counters, PSI and Jensen–Shannon distance.

What it is for: one ``FeatureCounts`` per (window, feature) and one for the
prediction; the window's drift document carries its bin counts (mergeable:
bins are fixed by the reference, so counts of many windows or agents add up),
its quality counters, and ``psi``/``js_distance`` against the reference counts.

Bins (``agent.health.bins``) are fixed by the reference, never by the window.

What ``FeatureCounts.add`` counts (each value lands in exactly one bin, or in
``missing``/``type_mismatch`` and no bin):

- ``missing``: None (absent) and NaN — NaN is how numeric tools write "no
  value", so it is treated as absent, not as a wrong type;
- ``type_mismatch``: for a numeric feature anything that is not an int or float
  (strings, even "3.5", lists, objects, and booleans: true is not a number);
  for a categorical feature lists and objects. Not binned.
- ``out_of_range``: a number outside the reference's [min, max], ±inf
  included; it is still binned, in the open end bin.
- ``unseen_category``: a category not among the kept ones; binned in ``OTHER``.

Categories are compared as strings (``category_key``): "a" is "a", 1 and 1.0
are "1", true is "true".

``FeatureCounts.add_many`` counts a batch of values to exactly what ``add``
of each in turn counts (counting commutes), in fewer interpreter steps: the
floats and ints of the batch are sorted once and cut at the edges, the
strings counted by a ``Counter``; every other value goes through ``add``.

Drift measures (both need two non-empty count vectors of the same bins):

- ``psi``: population stability index ``sum((a - e) * ln(a / e))`` over the
  bins' proportions. Empty bins would make it infinite, so both count vectors
  get additive (Laplace/Jeffreys) smoothing of ``PSI_PSEUDO_COUNT`` = 0.5 per
  bin before taking proportions: ``p_i = (c_i + 0.5) / (N + 0.5 * k)``. With a
  large reference this changes nothing visible; with a small window it keeps a
  bin that happens to be empty from raising a false alarm.
- ``js_distance``: Jensen–Shannon distance, base 2 (the square root of the JS
  divergence computed with log2), in [0, 1]; no smoothing is needed (0·log 0 = 0).
- ``homogeneity_p_value``: the p-value of Pearson's chi-square test of
  homogeneity of the two count vectors (no continuity correction), over
  neighbouring bins joined until each group expects at least 5 values of
  the smaller sample (``chi2_cells``: the approximation does not hold for
  cells that expect fewer; a long tail of rare categories, each expecting a
  fraction of a value, alerted in 15 % of windows without drift): how likely
  sampling alone, both sides drawn from one distribution, gives counts at
  least this far apart. Both measures above are biased upwards in small
  samples: with 10 equal bins, a window of 30 events drawn from the
  reference's own distribution has a JS distance above 0.1 nearly always,
  of 200 events 28 % of the time. The drift alert therefore also asks that
  this p-value be below ``thresholds.drift_p``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from typing import Any

from agent.health import native
from agent.health.bins import Bins, NumericBins, as_number, category_key

PSI_PSEUDO_COUNT = 0.5
"""Added to every bin's count (both sides) before PSI takes proportions."""

MISSING = "missing"
TYPE_MISMATCH = "type_mismatch"
OUT_OF_RANGE = "out_of_range"
UNSEEN_CATEGORY = "unseen_category"
QUALITY_KINDS = (MISSING, TYPE_MISMATCH, OUT_OF_RANGE, UNSEEN_CATEGORY)


BULK_MIN = 16
"""Fewer values (or requests) than this are counted one by one: below it the bulk
path's fixed cost (a sort, a Counter, the cuts) is more than it saves (measured)."""

_FLOAT = frozenset({float})
_STR = frozenset({str})


_NO_FEATURES: dict[str, Any] = {}


class FeatureCounts:
    """One feature's bin counts and quality counters in one window."""

    __slots__ = ("bins", "counts", "missing", "type_mismatch", "out_of_range", "unseen_category",
                 "_edges", "_minimum", "_maximum", "_lookup")

    def __init__(self, bins: Bins) -> None:
        self.bins = bins
        self.counts = [0] * bins.size
        self.missing = 0
        self.type_mismatch = 0
        self.out_of_range = 0
        self.unseen_category = 0
        # Copied out of the bins: add() runs per feature per event, on the hot path.
        if isinstance(bins, NumericBins):
            self._edges, self._minimum, self._maximum = bins.edges, bins.minimum, bins.maximum
            self._lookup = None
        else:
            self._edges, self._minimum, self._maximum = (), 0.0, 0.0
            self._lookup = bins._index

    def add(self, value: Any) -> str | None:
        """Count one value; returns the quality kind it was counted as, or None."""
        kind = value.__class__
        lookup = self._lookup
        if lookup is None:  # numeric
            if kind is float:
                if value != value:  # NaN
                    self.missing += 1
                    return MISSING
            elif kind is int:
                try:
                    value = float(value)
                except OverflowError:  # an int beyond float range
                    value = math.inf if value > 0 else -math.inf
            elif value is None:
                self.missing += 1
                return MISSING
            else:
                number = as_number(value)  # int and float subclasses; bool is refused there
                if number is None:
                    self.type_mismatch += 1
                    return TYPE_MISMATCH
                if number != number:
                    self.missing += 1
                    return MISSING
                value = number
            self.counts[bisect_left(self._edges, value)] += 1
            if value < self._minimum or value > self._maximum:
                self.out_of_range += 1
                return OUT_OF_RANGE
            return None
        if kind is not str:
            if value is None or (isinstance(value, float) and value != value):
                self.missing += 1
                return MISSING
            value = category_key(value)
            if value is None:
                self.type_mismatch += 1
                return TYPE_MISMATCH
        index = lookup.get(value)
        if index is None:
            self.counts[-1] += 1
            self.unseen_category += 1
            return UNSEEN_CATEGORY
        self.counts[index] += 1
        return None

    def add_many(self, values: Sequence[Any]) -> list[str]:
        """Count every value of ``values``, exactly as ``add`` of each in turn
        would; returns the quality kinds counted (each once, in no set order)."""
        accelerated = native.NATIVE
        if accelerated is not None:
            return self._tally(accelerated.count_values(values, self._edges, self._minimum, self._maximum,
                                                        self._lookup, self.counts))
        return self.add_many_python(values)

    def add_feature(self, feature_dicts: list[dict[str, Any] | None], name: str) -> list[str]:
        """``add_many`` of ``(d or {}).get(name)`` for each feature dict ``d``
        (None: an event that logged no features)."""
        accelerated = native.NATIVE
        if accelerated is not None:
            return self._tally(accelerated.count_feature(feature_dicts, name, self._edges, self._minimum,
                                                         self._maximum, self._lookup, self.counts))
        return self.add_many_python([(d or _NO_FEATURES).get(name) for d in feature_dicts])

    def _tally(self, tally: tuple[int, int, int, list[Any]]) -> list[str]:
        """What the C counting (``agent/health/_native_counts.c``) left to do: its
        quality counts, and ``add`` of each value of a type it leaves to Python."""
        missing, out_of_range, unseen, rest = tally
        kinds: dict[str, None] = {}
        if missing:
            self.missing += missing
            kinds[MISSING] = None
        if out_of_range:
            self.out_of_range += out_of_range
            kinds[OUT_OF_RANGE] = None
        if unseen:
            self.unseen_category += unseen
            kinds[UNSEEN_CATEGORY] = None
        for value in rest:
            kind = self.add(value)
            if kind is not None:
                kinds[kind] = None
        return list(kinds)

    def add_many_python(self, values: Sequence[Any]) -> list[str]:
        """``add_many`` in Python (the specification of the C version, and what
        runs without it)."""
        kinds: dict[str, None] = {}
        if len(values) < BULK_MIN:  # a few values: each in turn is cheaper
            for value in values:
                kind = self.add(value)
                if kind is not None:
                    kinds[kind] = None
            return list(kinds)
        lookup = self._lookup
        if lookup is None:  # numeric
            if set(map(type, values)) <= _FLOAT:
                total = sum(values)
                if total == total:  # no NaN (nor +inf with -inf): every value is binned
                    self._cut(sorted(values), kinds)
                    return list(kinds)
            numbers = [v for v in values if v.__class__ is float]
            if len(numbers) != len(values):
                rest = [v for v in values if v.__class__ is not float]
                ints = [v for v in rest if v.__class__ is int]
                try:
                    numbers += list(map(float, ints))  # add's conversion (all at once or not at all)
                    rest = [v for v in rest if v.__class__ is not int]
                except OverflowError:  # an int beyond float range: add's infinities, value by value
                    pass
                for value in rest:
                    kind = self.add(value)
                    if kind is not None:
                        kinds[kind] = None
            present = [v for v in numbers if v == v]  # NaN is missing
            if len(present) != len(numbers):
                self.missing += len(numbers) - len(present)
                kinds[MISSING] = None
            if present:
                present.sort()
                self._cut(present, kinds)
            return list(kinds)
        if set(map(type, values)) <= _STR:
            strings = values
        else:
            strings = [v for v in values if v.__class__ is str]
        if len(strings) != len(values):
            for value in values:
                if value.__class__ is not str:
                    kind = self.add(value)
                    if kind is not None:
                        kinds[kind] = None
        if strings:
            counts = self.counts
            unseen = 0
            for key, n in Counter(strings).items():
                index = lookup.get(key)
                if index is None:
                    unseen += n
                else:
                    counts[index] += n
            if unseen:
                counts[-1] += unseen
                self.unseen_category += unseen
                kinds[UNSEEN_CATEGORY] = None
        return list(kinds)

    def _cut(self, ordered: list[float], kinds: dict[str, None]) -> None:
        """Bin sorted numbers (no NaN). add() puts v in bin bisect_left(edges, v),
        i.e. (e[i-1], e[i]]: the sorted values up to bisect_right(sorted, e[i])
        fill the bins up to i."""
        counts = self.counts
        below = 0
        for i, edge in enumerate(self._edges):
            upto = bisect_right(ordered, edge)
            counts[i] += upto - below
            below = upto
        counts[-1] += len(ordered) - below
        outside = bisect_left(ordered, self._minimum) + len(ordered) - bisect_right(ordered, self._maximum)
        if outside:
            self.out_of_range += outside
            kinds[OUT_OF_RANGE] = None

    @property
    def total(self) -> int:
        """Values that were binned (missing and type mismatches are not)."""
        return sum(self.counts)

    def quality(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in QUALITY_KINDS}

    def merge(self, other: FeatureCounts) -> None:
        if other.bins != self.bins:
            raise ValueError("cannot merge feature counts of different bins (different references)")
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        for kind in QUALITY_KINDS:
            setattr(self, kind, getattr(self, kind) + getattr(other, kind))

    def to_state(self) -> dict[str, Any]:
        """The counts only: the bins belong to the reference and are saved with it."""
        return {"counts": list(self.counts), **self.quality()}

    @classmethod
    def from_state(cls, bins: Bins, state: dict[str, Any]) -> FeatureCounts:
        counts = cls(bins)
        if len(state["counts"]) != bins.size:
            raise ValueError(f"feature counts have {len(state['counts'])} bins, the reference {bins.size}")
        counts.counts = [int(n) for n in state["counts"]]
        for kind in QUALITY_KINDS:
            setattr(counts, kind, int(state[kind]))
        return counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureCounts):
            return NotImplemented
        return self.bins == other.bins and self.to_state() == other.to_state()

    def __repr__(self) -> str:
        return f"FeatureCounts(counts={self.counts}, quality={self.quality()})"


def _check(first: Sequence[int], second: Sequence[int]) -> tuple[int, int]:
    if len(first) != len(second):
        raise ValueError(f"count vectors of different lengths: {len(first)} and {len(second)}")
    if any(n < 0 for n in first) or any(n < 0 for n in second):
        raise ValueError("counts must not be negative")
    total_first, total_second = sum(first), sum(second)
    if total_first == 0 or total_second == 0:
        raise ValueError("drift needs two non-empty count vectors (check FeatureCounts.total first)")
    return total_first, total_second


def psi(expected_counts: Sequence[int], actual_counts: Sequence[int]) -> float:
    """Population stability index of ``actual`` against ``expected``, with
    ``PSI_PSEUDO_COUNT`` added to every bin of both (see the module docstring)."""
    total_expected, total_actual = _check(expected_counts, actual_counts)
    k = len(expected_counts)
    denominator_expected = total_expected + PSI_PSEUDO_COUNT * k
    denominator_actual = total_actual + PSI_PSEUDO_COUNT * k
    result = 0.0
    for e, a in zip(expected_counts, actual_counts):
        pe = (e + PSI_PSEUDO_COUNT) / denominator_expected
        pa = (a + PSI_PSEUDO_COUNT) / denominator_actual
        result += (pa - pe) * math.log(pa / pe)
    return result


MIN_EXPECTED = 5.0
"""Values a cell of the chi-square test must expect in the smaller sample (Cochran's rule)."""


def chi2_cells(expected_counts: Sequence[int], actual_counts: Sequence[int]) -> list[tuple[int, int]]:
    """The bins as the chi-square test takes them: neighbouring bins joined
    until each group expects at least ``MIN_EXPECTED`` values of the smaller
    sample (bins are in value order, or categories most frequent first with
    ``__other__`` last, so rare neighbours join); a last group that expects
    fewer stays a group if it expects at least 1 value, else joins the one
    before it. Bins empty on both sides are left out."""
    total_expected, total_actual = _check(expected_counts, actual_counts)
    total = total_expected + total_actual
    smaller = min(total_expected, total_actual)
    cells: list[tuple[int, int]] = []
    e_sum = a_sum = 0
    for e, a in zip(expected_counts, actual_counts):
        if e + a == 0:
            continue
        e_sum += e
        a_sum += a
        if smaller * (e_sum + a_sum) / total >= MIN_EXPECTED:
            cells.append((e_sum, a_sum))
            e_sum = a_sum = 0
    if e_sum + a_sum:
        # What is left (the rarest categories and __other__, or the top bins) stays a
        # cell of its own if it expects at least 1 value: Cochran's rule allows a
        # few such cells, and joined to the one before it, a window whose values all
        # moved there (unseen categories) would test as no change at all.
        if cells and smaller * (e_sum + a_sum) / total < 1.0:
            last_e, last_a = cells[-1]
            cells[-1] = (last_e + e_sum, last_a + a_sum)
        else:
            cells.append((e_sum, a_sum))
    return cells


def homogeneity_p_value(expected_counts: Sequence[int], actual_counts: Sequence[int]) -> float:
    """p-value of Pearson's chi-square test that both count vectors come from one
    distribution, over ``chi2_cells`` (1.0 when fewer than two cells: samples
    too small for the test, which then says nothing)."""
    total_expected, total_actual = _check(expected_counts, actual_counts)
    total = total_expected + total_actual
    cells = chi2_cells(expected_counts, actual_counts)
    if len(cells) < 2:
        return 1.0
    statistic = 0.0
    for e, a in cells:
        pooled = e + a
        from_expected = total_expected * pooled / total
        from_actual = total_actual * pooled / total
        statistic += (e - from_expected) ** 2 / from_expected + (a - from_actual) ** 2 / from_actual
    return chi2_survival(statistic, len(cells) - 1)


def chi2_survival(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with ``df`` degrees of freedom: the regularised
    upper incomplete gamma function Q(df/2, x/2)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return _gamma_q(df / 2.0, x / 2.0)


_EPSILON = 1e-15
_TINY = 1e-300


def _gamma_q(a: float, x: float) -> float:
    # A series for P when x < a + 1, else a continued fraction for Q
    # (modified Lentz): each converges fast on its side, so at most a few
    # hundred terms for any count a window can hold.
    if x <= 0.0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(100_000):
            n += 1.0
            term *= x / n
            total += term
            if abs(term) < abs(total) * _EPSILON:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPSILON:
            break
    return min(1.0, math.exp(log_front) * h)


def js_distance(p_counts: Sequence[int], q_counts: Sequence[int]) -> float:
    """Jensen–Shannon distance (base 2) between two count vectors, in [0, 1]."""
    total_p, total_q = _check(p_counts, q_counts)
    divergence = 0.0
    for a, b in zip(p_counts, q_counts):
        p, q = a / total_p, b / total_q
        m = (p + q) / 2
        if p > 0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0:
            divergence += 0.5 * q * math.log2(q / m)
    # Rounding can leave a tiny negative divergence for identical vectors.
    return math.sqrt(min(1.0, max(0.0, divergence)))
