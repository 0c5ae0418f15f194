"""agent.health.bins: bins fixed by the reference (deciles against numpy, ties,
the kind inferred from the values, references that give no bins)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.health.bins import CategoricalBins, NumericBins, bins_from_reference

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
# References with many ties: values drawn from a small set as well as from all floats.
reference_numbers = st.lists(st.one_of(finite, st.sampled_from([0.0, 1.0, 2.5]), st.integers(-5, 5)),
                             min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(reference_numbers)
def test_numeric_bins_are_the_reference_deciles_without_duplicates(reference):
    bins = NumericBins.from_reference(reference)
    expected_edges = np.unique(np.quantile(np.asarray(reference, dtype=float), [i / 10 for i in range(1, 10)]))
    np.testing.assert_allclose(bins.edges, expected_edges, rtol=1e-12, atol=1e-12)
    assert list(bins.edges) == sorted(set(bins.edges))
    assert bins.size == len(bins.edges) + 1 <= 10
    # Right-closed bins (-inf, e0], (e0, e1], ..., (ek, +inf).
    expected_counts = np.bincount(np.searchsorted(bins.edges, np.asarray(reference, dtype=float), side="left"),
                                  minlength=bins.size)
    assert list(bins.reference_counts) == expected_counts.tolist()
    assert (bins.minimum, bins.maximum) == (min(reference), max(reference))


def test_ties_merge_edges_and_a_constant_reference_has_two_bins():
    assert NumericBins.from_reference([7] * 50).edges == (7.0,)
    assert NumericBins.from_reference([7] * 50).reference_counts == (50, 0)
    mostly_zero = NumericBins.from_reference([0.0] * 80 + list(range(1, 21)))
    assert mostly_zero.edges[0] == 0.0 and mostly_zero.size < 10
    assert mostly_zero.reference_counts[0] == 80


def test_a_reference_of_distinct_values_has_ten_equal_bins():
    bins = NumericBins.from_reference(range(1000))
    assert bins.size == 10 and set(bins.reference_counts) == {100}
    assert bins.labels[0].startswith("(-inf, ") and bins.labels[-1].endswith(", +inf)")


def test_the_kind_is_inferred_from_the_reference():
    assert isinstance(bins_from_reference([1, 2.5, 3, "x", None]), NumericBins)
    assert isinstance(bins_from_reference(["a", "b", 3]), CategoricalBins)
    assert isinstance(bins_from_reference([True, False, True]), CategoricalBins)


@pytest.mark.parametrize("make", [
    lambda: NumericBins.from_reference([None, "a", math.nan, math.inf]),
    lambda: CategoricalBins.from_reference([None, [1]]),
    lambda: CategoricalBins.from_reference(["a"], max_categories=0),
])
def test_a_reference_that_gives_no_bins_is_an_error(make):
    with pytest.raises(ValueError):
        make()
