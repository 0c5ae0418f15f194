"""A feature's bins, fixed by its reference: what a window's values are counted in.

Bins (fixed by the reference, never by the window):

- ``NumericBins.from_reference``: the reference's deciles d1..d9 (numpy's
  default linear quantile definition) as edges of ``(-inf, d1], (d1, d2], ...,
  (d9, +inf)``. Ties: duplicate edges are merged, so a reference that is mostly
  one value gets fewer than 10 bins (a constant reference gets two:
  ``(-inf, c]`` and ``(c, +inf)``). Only finite numbers of the reference count.
- ``CategoricalBins.from_reference``: the reference's ``max_categories`` most
  frequent categories (ties by name, so the choice is deterministic) plus
  ``OTHER`` for everything else; ``dropped`` says how many reference categories
  the cap sent to ``OTHER``.

Categories are compared as strings (``category_key``): "a" is "a", 1 and 1.0
are "1", true is "true"; a value is a number when ``as_number`` says so (an
int or a float, not a bool). ``agent.health.drift`` counts a window's values
in these bins and compares the counts with the reference's.

The bins are immutable; ``to_state``/``bins_from_state`` are what the
checkpoint and the reference file hold of them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

OTHER = "__other__"
"""The bin of a categorical feature that holds every category not kept from the reference."""

DECILES = tuple(i / 10 for i in range(1, 10))


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf if value > 0 else -math.inf


def category_key(value: Any) -> str | None:
    """The string a categorical value (or a class label) is compared as; None
    for a value that cannot be a category (list, object, None, NaN)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return None


def _quantile(ordered: Sequence[float], q: float) -> float:
    """numpy.quantile(ordered, q) with the default linear method."""
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    a, b, t = ordered[low], ordered[high], rank - low
    # numpy's lerp: from the upper end when t >= 0.5, so a tiny gap is not rounded away
    # (0.0 and 5e-324 at t = 0.5 give 5e-324, not 0.0: found by hypothesis).
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


_NUMBER_TYPES = frozenset({float, int})
_JSON_TYPES = frozenset({float, int, str, bool, type(None), list, dict})


def _finite_numbers(values: Iterable[Any]) -> list[float]:
    """``[x for x in map(as_number, values) if x is not None and math.isfinite(x)]``,
    in C-level steps when every value is a plain float or int (a reference
    freezes thousands of values per feature on the hot path)."""
    values = list(values)
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            return list(filter(math.isfinite, map(float, values)))
        except OverflowError:  # an int beyond float range: as_number's infinity, dropped below
            pass
    return [x for x in map(as_number, values) if x is not None and math.isfinite(x)]


@dataclass(frozen=True)
class NumericBins:
    """Open-ended bins ``(-inf, e0], (e0, e1], ..., (ek, +inf)`` from the reference."""

    edges: tuple[float, ...]
    minimum: float
    maximum: float
    reference_counts: tuple[int, ...]
    kind: str = field(default="numeric", init=False)

    @classmethod
    def from_reference(cls, values: Iterable[Any]) -> NumericBins:
        numbers = sorted(_finite_numbers(values))
        if not numbers:
            raise ValueError("a numeric feature's reference has no finite number; bins cannot be derived")
        edges = tuple(sorted(set(_quantile(numbers, q) for q in DECILES)))
        # Bin i is (e[i-1], e[i]]: the sorted numbers cut after each edge.
        counts = []
        below = 0
        for edge in edges:
            upto = bisect_right(numbers, edge)
            counts.append(upto - below)
            below = upto
        counts.append(len(numbers) - below)
        return cls(edges, numbers[0], numbers[-1], tuple(counts))

    @property
    def size(self) -> int:
        return len(self.edges) + 1

    @property
    def labels(self) -> list[str]:
        bounds = ["-inf", *map(repr, self.edges), "+inf"]
        return [f"({bounds[i]}, {bounds[i + 1]}{')' if i == len(self.edges) else ']'}" for i in range(self.size)]

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": list(self.edges), "min": self.minimum, "max": self.maximum,
                "reference_counts": list(self.reference_counts)}


@dataclass(frozen=True)
class CategoricalBins:
    """The reference's most frequent categories, then ``OTHER``."""

    categories: tuple[str, ...]
    reference_counts: tuple[int, ...]
    dropped: int = 0
    kind: str = field(default="categorical", init=False)
    _index: dict[str, int] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if OTHER in self.categories:
            raise ValueError(f"{OTHER!r} is reserved for the other-categories bin")
        if len(self.reference_counts) != len(self.categories) + 1:
            raise ValueError("reference_counts needs one count per category plus one for OTHER")
        self._index.update((name, i) for i, name in enumerate(self.categories))

    @classmethod
    def from_reference(cls, values: Iterable[Any], max_categories: int = 50) -> CategoricalBins:
        if max_categories < 1:
            raise ValueError(f"max_categories must be at least 1, got {max_categories}")
        values = list(values)
        if set(map(type, values)) == {str}:  # category_key of a str is the str
            seen = Counter(values)
        else:
            seen = Counter(key for key in map(category_key, values) if key is not None)
        seen.pop(OTHER, None)  # a literal "__other__" in the data is counted as other
        ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
        kept = ranked[:max_categories]
        other = sum(n for _, n in ranked[max_categories:])
        if not kept:
            raise ValueError("a categorical feature's reference has no category; bins cannot be derived")
        return cls(tuple(name for name, _ in kept), (*(n for _, n in kept), other), len(ranked) - len(kept))

    @property
    def size(self) -> int:
        return len(self.categories) + 1

    @property
    def labels(self) -> list[str]:
        return [*self.categories, OTHER]

    def index(self, key: str) -> int | None:
        return self._index.get(key)

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "categories": list(self.categories),
                "reference_counts": list(self.reference_counts), "dropped": self.dropped}


Bins = NumericBins | CategoricalBins


def bins_from_state(state: dict[str, Any]) -> Bins:
    if state.get("kind") == "numeric":
        return NumericBins(tuple(map(float, state["edges"])), float(state["min"]), float(state["max"]),
                           tuple(map(int, state["reference_counts"])))
    if state.get("kind") == "categorical":
        return CategoricalBins(tuple(state["categories"]), tuple(map(int, state["reference_counts"])),
                               int(state.get("dropped", 0)))
    raise ValueError(f"unknown bins kind {state.get('kind')!r}")


def bins_from_reference(values: Sequence[Any], max_categories: int = 50) -> Bins:
    """Numeric bins when more than half of the reference's present values are
    numbers (bools excluded), categorical ones otherwise."""
    if set(map(type, values)) <= _JSON_TYPES:  # what a parsed document holds: faster, same result
        # Of these types only a float NaN is unequal to itself (containers compare
        # their items by identity first).
        present = [v for v in values if v is not None and v == v]
        numbers = sum(map(_NUMBER_TYPES.__contains__, map(type, present)))
    else:
        present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        numbers = sum(1 for v in present if as_number(v) is not None)
    if present and numbers * 2 > len(present):
        return NumericBins.from_reference(present)
    return CategoricalBins.from_reference(present, max_categories)
