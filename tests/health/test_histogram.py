"""agent.health.histogram: percentiles within the stated resolution of numpy on
the raw values, exact merges, the Elasticsearch histogram field value, the
refusal of values that are no latency, and the checkpoint round trip."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.health.histogram import (MAX_BUCKETS, MAX_VALUE, MIN_VALUE, RELATIVE_ERROR, LatencyHistogram,
                                    bucket_index, representative)


def checkpoint(state):
    """``state`` after the trip a checkpoint makes: msgpack, and JSON (the engine's
    state file; a non-finite float would come back as null there)."""
    return orjson.loads(orjson.dumps(msgpack.unpackb(msgpack.packb(state))))


# Latencies from a microsecond to a day (ms), plus the zero bucket's range.
tracked = st.floats(min_value=MIN_VALUE, max_value=86_400_000.0, allow_nan=False)
any_value = st.one_of(tracked, st.floats(min_value=0.0, max_value=MIN_VALUE, exclude_max=True))
quantiles = st.floats(min_value=0.0, max_value=100.0)
SLACK = 1e-9  # float rounding of numpy's interpolation and of the bucket boundaries


def histogram_of(values) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        assert histogram.add(value)
    return histogram


@settings(max_examples=300, deadline=None)
@given(st.lists(tracked, min_size=1, max_size=300), st.lists(quantiles, min_size=1, max_size=5))
def test_percentiles_are_within_the_relative_error_of_numpy(values, qs):
    histogram = histogram_of(values)
    for q in [*qs, 50.0, 90.0, 95.0, 99.0, 0.0, 100.0]:
        expected = float(np.percentile(values, q))
        assert abs(histogram.percentile(q) - expected) <= (RELATIVE_ERROR + SLACK) * expected


@settings(max_examples=200, deadline=None)
@given(st.lists(any_value, min_size=1, max_size=200), quantiles)
def test_values_below_the_tracked_range_cost_at_most_min_value(values, q):
    expected = float(np.percentile(values, q))
    assert abs(histogram_of(values).percentile(q) - expected) <= (RELATIVE_ERROR + SLACK) * expected + MIN_VALUE


@given(tracked)
def test_every_value_is_within_the_relative_error_of_its_bucket(value):
    assert abs(representative(bucket_index(value)) - value) <= (RELATIVE_ERROR + SLACK) * value


def test_the_known_percentiles_of_a_uniform_sample():
    values = list(range(1, 1001))
    histogram = histogram_of(values)
    for q, expected in [(50, 500.5), (90, 900.1), (99, 990.01)]:
        assert histogram.percentile(q) == pytest.approx(expected, rel=RELATIVE_ERROR)
    # A wrong bucket (one too far) would be off by about 2 %.
    assert histogram.percentile(50) != pytest.approx(500.5 * (1 + 2 * RELATIVE_ERROR), rel=RELATIVE_ERROR / 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(any_value, max_size=100), st.lists(any_value, max_size=100))
def test_merge_is_the_histogram_of_the_union(first, second):
    merged = histogram_of(first)
    merged.merge(histogram_of(second))
    assert merged == histogram_of(first + second)
    assert merged.count == len(first) + len(second)
    if first or second:
        assert merged.min == min(first + second) and merged.max == max(first + second)
        assert merged.total == pytest.approx(math.fsum(first + second), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(any_value, max_size=200))
def test_the_state_round_trips_through_a_checkpoint(values):
    histogram = histogram_of(values)
    restored = LatencyHistogram.from_state(checkpoint(histogram.to_state()))
    assert restored == histogram
    assert restored.to_es() == histogram.to_es()
    assert restored.to_state() == histogram.to_state()


@given(st.lists(any_value, min_size=1, max_size=200))
def test_the_elasticsearch_value_is_sorted_distinct_values_with_their_counts(values):
    field = histogram_of(values).to_es()
    assert field["values"] == sorted(set(field["values"]))
    assert sum(field["counts"]) == len(values)
    assert all(isinstance(n, int) and n > 0 for n in field["counts"])
    # Every raw value is represented within the resolution (or by 0.0 below MIN_VALUE).
    for value in values:
        nearest = min(field["values"], key=lambda v: abs(v - value))
        assert abs(nearest - value) <= (RELATIVE_ERROR + SLACK) * value + MIN_VALUE


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, -1e-9, -3, 10**400, "12", None, True,
                                   [1.0]])
def test_values_that_are_no_latency_are_refused_and_not_counted(value):
    histogram = LatencyHistogram()
    assert histogram.add(value) is False
    assert histogram.count == 0 and histogram.percentile(50) is None
    assert histogram.to_es() == {"values": [], "counts": []}


def test_ints_zero_and_huge_values_are_counted():
    histogram = histogram_of([0, 3, 10**30, MAX_VALUE * 10])
    assert histogram.count == 4
    assert histogram.percentile(0) == 0.0
    assert histogram.percentile(100) == pytest.approx(MAX_VALUE, rel=RELATIVE_ERROR)  # clamped


def test_the_number_of_buckets_is_bounded_whatever_is_added():
    histogram = LatencyHistogram()
    value = MIN_VALUE / 10
    while value < MAX_VALUE * 1e6:
        histogram.add(value)
        value *= 1.001
    assert len(histogram.to_es()["values"]) <= MAX_BUCKETS
    assert MAX_BUCKETS < 1500


@pytest.mark.parametrize("q", [-0.1, 100.5, math.nan])
def test_a_percentile_outside_0_to_100_is_an_error(q):
    with pytest.raises(ValueError, match="0..100"):
        histogram_of([1.0]).percentile(q)


def test_a_state_of_another_version_is_refused():
    state = LatencyHistogram().to_state()
    state["v"] = 99
    with pytest.raises(ValueError, match="version"):
        LatencyHistogram.from_state(state)


def test_huge_values_keep_the_state_finite():
    histogram = histogram_of([1e308, 1e308, 5.0])
    assert math.isfinite(histogram.total) and histogram.max == 1e308
    assert LatencyHistogram.from_state(checkpoint(histogram.to_state())) == histogram


# -- a batch at once (in C when it is built) ----------------------------------------------

from native_switch import IMPLEMENTATIONS, health_implementation  # noqa: E402

_latencies = st.one_of(st.none(), st.floats(allow_nan=True), st.floats(0, 1e4),
                       st.sampled_from([0.0, -0.0, MIN_VALUE, MIN_VALUE * 0.999, MAX_VALUE, MAX_VALUE * 1.001, -1.0,
                                        math.inf, 1e308]))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.one_of(st.lists(_latencies, max_size=50),  # floats only: counted in C
                                  st.lists(st.one_of(_latencies, st.integers(-2, 10), st.booleans()), max_size=50)),
                        min_size=1, max_size=3))
def test_a_batch_counts_what_each_value_counts(implementation, batches):
    bulk, single = LatencyHistogram(), LatencyHistogram()
    refused = expected = 0
    for batch in batches:
        with health_implementation(implementation):
            refused += bulk.add_many(batch)
        expected += sum(1 for value in batch if value is not None and not single.add(value))
    assert repr(bulk.to_state()) == repr(single.to_state())  # (repr: the same floats, the same sum's rounding)
    assert refused == expected
