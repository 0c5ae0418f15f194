"""Bulk counting (``FeatureCounts.add_many``, ``WindowState.add_many``) counts
exactly what per-value ``add`` counts, on generated batches of every kind of
value a JSON document (or a caller) can hold."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_switch import IMPLEMENTATIONS, health_implementation

from agent.health import bins as health_bins
from agent.health.bins import CategoricalBins, NumericBins
from agent.health.drift import FeatureCounts


class _Float(float):
    pass


class _Str(str):
    pass


class _Dict(dict):
    """A feature object that is not a plain dict (C defers to its own ``get``)."""

    def get(self, key, default=None):
        value = super().get(key, default)
        return "seen" if value == "a" else value


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
reference_numbers = st.lists(st.one_of(finite, st.sampled_from([0.0, -0.0, 1.0, 2.5]), st.integers(-5, 5)),
                             min_size=1, max_size=60)
reference_categories = st.lists(st.one_of(st.sampled_from(["a", "b", "c", "1", "2.5", "true"]), st.text(max_size=2),
                                          st.integers(-3, 3), st.booleans()), min_size=1, max_size=60)
# Everything a value can be: numbers (ties with the edges included), NaN, None, bools,
# ints beyond float range, strings, numbers as strings, nested objects, subclasses.
values = st.one_of(
    finite, st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e300, -1e300]), st.integers(-10, 10),
    st.integers(-10**6, 10**6), st.sampled_from([10**400, -(10**400), 2**1024, 2**1023]),
    st.none(), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.booleans(),
    st.text(max_size=3), st.sampled_from(["a", "b", "c", "1", "2.5", "3.5", "nan", "true", "__other__"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.builds(_Float, finite), st.just(_Float(math.nan)), st.builds(_Str, st.sampled_from(["a", "z"])))
batches = st.lists(values, max_size=120)


def _one_by_one(bins, batch):
    counts = FeatureCounts(bins)
    kinds = {kind for kind in map(counts.add, batch) if kind is not None}
    return counts, kinds


def _same(bulk: FeatureCounts, single: FeatureCounts) -> None:
    assert bulk.counts == single.counts
    assert bulk.quality() == single.quality()


def _bulk_equals_one_by_one(bins, batches) -> None:
    bulk = FeatureCounts(bins)
    bulk_kinds: set[str] = set()
    for batch in batches:
        bulk_kinds.update(bulk.add_many(batch))
    single, kinds = _one_by_one(bins, [v for batch in batches for v in batch])
    _same(bulk, single)
    assert bulk_kinds == kinds


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=400, deadline=None)
@given(reference=reference_numbers, batches=st.lists(batches, min_size=1, max_size=3))
def test_numeric_bulk_counts_what_each_value_counts(implementation, reference, batches):
    with health_implementation(implementation):
        _bulk_equals_one_by_one(NumericBins.from_reference(reference), batches)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=400, deadline=None)
@given(reference=reference_categories, cap=st.integers(1, 5), batches=st.lists(batches, min_size=1, max_size=3))
def test_categorical_bulk_counts_what_each_value_counts(implementation, reference, cap, batches):
    with health_implementation(implementation):
        _bulk_equals_one_by_one(CategoricalBins.from_reference(reference, max_categories=cap), batches)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=300, deadline=None)
@given(reference=st.one_of(reference_numbers, reference_categories),
       dicts=st.lists(st.one_of(st.none(), st.dictionaries(st.sampled_from(["f", "g"]), values, max_size=2),
                                st.builds(_Dict, st.dictionaries(st.sampled_from(["f", "g"]), values, max_size=2))),
                      max_size=40))
def test_a_feature_of_many_dicts_counts_what_each_value_counts(implementation, reference, dicts):
    bins = health_bins.bins_from_reference(reference, 3)
    with health_implementation(implementation):
        counts = FeatureCounts(bins)
        kinds = set(counts.add_feature(dicts, "f"))
    single, single_kinds = _one_by_one(bins, [(d or {}).get("f") for d in dicts])
    _same(counts, single)
    assert kinds == single_kinds


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bulk_corner_values_by_hand(implementation):
    with health_implementation(implementation):
        _corner_values()


def _corner_values():
    numeric = FeatureCounts(NumericBins.from_reference(range(10)))  # edges 0.9 .. 8.1, range [0, 9]
    kinds = numeric.add_many([0.9, 0.9000000000000001, 10**400, -math.inf, math.nan, None, True, "5", 9, 9.5])
    assert sorted(kinds) == ["missing", "out_of_range", "type_mismatch"]
    assert numeric.counts[0] == 2 and numeric.counts[1] == 1 and numeric.counts[-1] == 3
    assert numeric.quality() == {"missing": 2, "type_mismatch": 2, "out_of_range": 3, "unseen_category": 0}
    categorical = FeatureCounts(CategoricalBins.from_reference(["a", "a", "b", 1], max_categories=2))
    assert sorted(categorical.add_many(["a", "b", 1, 1.0, True, "z", [1], None])) == [
        "missing", "type_mismatch", "unseen_category"]
    # Kept: a (2), then "1" before "b" (a tie, broken by name); 1 and 1.0 are "1";
    # b, true ("true") and z are other.
    assert categorical.bins.categories == ("a", "1")
    assert categorical.counts == [1, 2, 3] and categorical.unseen_category == 3


# -- a window's requests of a batch at once ---------------------------------------------

from agent.health.bins import bins_from_reference  # noqa: E402
from agent.health.extract import BAD_LATENCY, MISSING, Observation  # noqa: E402
from agent.health.state import WindowState  # noqa: E402

NAMES = ("a", "b", "c", "d")
latencies = st.one_of(st.none(), st.just(BAD_LATENCY), st.floats(allow_nan=True), st.integers(-5, 10**6),
                      st.just(10**400), st.booleans())
observations = st.builds(
    lambda latency, error, prediction, features, tokens: Observation(
        0.0, ("m", "", "", ""), None, latency, error, prediction, features, MISSING, *tokens),
    latencies, st.booleans(), st.one_of(st.just(MISSING), values),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(NAMES + ("x",)), values, max_size=5)),
    st.tuples(st.one_of(st.none(), st.integers(0, 100)), st.one_of(st.none(), st.integers(0, 100))))
references = st.dictionaries(st.sampled_from(NAMES), st.one_of(reference_numbers, reference_categories),
                             max_size=4).map(lambda columns: {name: bins_from_reference(column, 3)
                                                              for name, column in columns.items()})


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=300, deadline=None)
@given(features=references, prediction=st.one_of(st.none(), reference_categories), max_features=st.integers(0, 4),
       batches=st.lists(st.lists(observations, max_size=60), min_size=1, max_size=3))
def test_a_windows_batch_counts_what_each_request_counts(implementation, features, prediction, max_features,
                                                         batches):
    prediction_bins = bins_from_reference(prediction, 3) if prediction else None
    bulk, single = WindowState(3), WindowState(3)
    bulk_raised: set[str] = set()
    raised: set[str] = set()
    for batch in batches:
        with health_implementation(implementation):
            bulk_raised.update(bulk.add_many(batch, features or None, prediction_bins, max_features))
        for obs in batch:
            raised.update(single.add(obs, features or None, prediction_bins, max_features))
    assert bulk.to_state() == single.to_state()
    assert list(bulk.features) == list(single.features)  # the same features kept under the cap
    assert bulk_raised == raised


# -- freezing a reference ----------------------------------------------------------------

from collections import Counter  # noqa: E402
from bisect import bisect_left  # noqa: E402

from agent.health import drift  # noqa: E402


def _bins_value_by_value(values, max_categories):
    """bins_from_reference as it was written value by value (the specification of the fast one)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    numbers = sum(1 for v in present if health_bins.as_number(v) is not None)
    if present and numbers * 2 > len(present):
        ordered = sorted(x for x in map(health_bins.as_number, present) if x is not None and math.isfinite(x))
        if not ordered:
            raise ValueError("no finite number")
        edges = tuple(sorted(set(health_bins._quantile(ordered, q) for q in health_bins.DECILES)))
        counts = [0] * (len(edges) + 1)
        for x in ordered:
            counts[bisect_left(edges, x)] += 1
        return NumericBins(edges, ordered[0], ordered[-1], tuple(counts))
    seen = Counter(key for key in map(health_bins.category_key, present) if key is not None)
    seen.pop(health_bins.OTHER, None)
    ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:max_categories]
    if not kept:
        raise ValueError("no category")
    return CategoricalBins(tuple(name for name, _ in kept), (*(n for _, n in kept),
                                                              sum(n for _, n in ranked[max_categories:])),
                           len(ranked) - len(kept))


def _outcome(function, *args):
    try:
        result = function(*args)
    except ValueError:
        return "ValueError"
    return repr(result.to_state())  # repr: -0.0 and 0.0 told apart


reference_values = st.one_of(
    st.lists(st.one_of(finite, st.integers(-10, 10)), max_size=80),  # the fast paths
    st.lists(st.sampled_from(["a", "b", "c", "__other__"]), max_size=80),
    st.lists(values, max_size=80))


@settings(max_examples=400, deadline=None)
@given(reference_values, st.integers(1, 4))
def test_a_reference_freezes_to_the_bins_of_the_value_by_value_definition(values, max_categories):
    assert _outcome(health_bins.bins_from_reference, values, max_categories) == \
        _outcome(_bins_value_by_value, values, max_categories)


def test_both_paths_are_exercised():
    # Below BULK_MIN values are counted one by one; the hypothesis tests above draw
    # batches on both sides of it (up to 120 values, 60 requests).
    assert 1 < drift.BULK_MIN < 60
