"""agent.health.accuracy: classification metrics against scikit-learn
(zero_division=0), regression metrics against numpy, exact merges, the class
cap, refused labels and the state round trip."""

from __future__ import annotations

import math
import warnings

import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from agent.health.accuracy import ClassificationCounts, RegressionCounts


def checkpoint(state):
    """``state`` after the trip a checkpoint makes: msgpack, and JSON (the engine's
    state file; a non-finite float would come back as null there)."""
    return orjson.loads(orjson.dumps(msgpack.unpackb(msgpack.packb(state))))


labels = st.one_of(st.sampled_from(["cat", "dog", "bird", "1"]), st.integers(0, 3))
pairs = st.lists(st.tuples(labels, labels), max_size=80)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def counted(pairs_, max_classes=50) -> ClassificationCounts:
    counts = ClassificationCounts(max_classes)
    for true, predicted in pairs_:
        assert counts.add(true, predicted)
    return counts


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_classification_metrics_equal_scikit_learn(pairs_):
    metrics = counted(pairs_).metrics()
    if not pairs_:
        assert metrics is None
        return
    y_true = [str(t) for t, _ in pairs_]  # the labels here are plain str/int: str() is category_key
    y_pred = [str(p) for _, p in pairs_]
    classes = sorted(set(y_true) | set(y_pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn may warn about ill-defined scores; the values are what count
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=classes, average=None, zero_division=0)
        macro = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    assert metrics.n == len(pairs_)
    assert metrics.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert list(metrics.per_class) == classes
    for i, name in enumerate(classes):
        got = metrics.per_class[name]
        assert (got.precision, got.recall, got.f1) == pytest.approx((precision[i], recall[i], f1[i]))
        assert got.support == support[i]
    assert (metrics.macro_precision, metrics.macro_recall, metrics.macro_f1) == pytest.approx(macro[:3])


def test_zero_division_gives_zero():
    metrics = counted([("a", "b"), ("a", "b")]).metrics()
    assert metrics.accuracy == 0.0
    assert metrics.per_class["a"].precision == 0.0  # never predicted
    assert metrics.per_class["b"].recall == 0.0  # never true
    assert metrics.per_class["a"].f1 == metrics.per_class["b"].f1 == metrics.macro_f1 == 0.0


@settings(max_examples=200, deadline=None)
@given(pairs, pairs)
def test_merge_equals_the_counts_of_the_union(first, second):
    merged = counted(first)
    merged.merge(counted(second))
    assert merged == counted(first + second)
    assert merged.metrics() == counted(first + second).metrics()


@settings(max_examples=100, deadline=None)
@given(pairs)
def test_the_classification_state_round_trips_through_a_checkpoint(pairs_):
    counts = ClassificationCounts(max_classes=5)
    for true, predicted in pairs_:
        counts.add(true, predicted)  # some pairs are dropped by the cap: dropped is state too
    restored = ClassificationCounts.from_state(checkpoint(counts.to_state()))
    assert restored == counts and restored.max_classes == 5


def test_labels_compare_as_strings_and_unusable_labels_are_refused():
    counts = ClassificationCounts()
    assert counts.add(1, 1.0) and counts.add("1", 1) and counts.add(True, "true")
    assert counts.metrics().accuracy == 1.0 and counts.labels == {"1", "true"}
    for true, predicted in [(None, "a"), ("a", None), (math.nan, "a"), ([1], "a"), ("a", {"x": 1})]:
        assert counts.add(true, predicted) is False
    assert counts.n == 3 and counts.dropped == 0


def test_labels_beyond_the_cap_are_dropped_and_counted():
    counts = ClassificationCounts(max_classes=2)
    assert counts.add("a", "b")
    assert counts.add("b", "a")
    assert counts.add("a", "c") is False and counts.add("c", "c") is False
    assert counts.dropped == 2 and counts.labels == {"a", "b"} and counts.n == 2
    with pytest.raises(ValueError, match="max_classes"):
        ClassificationCounts(0)


regression_pairs = st.lists(st.tuples(finite, finite), max_size=80)


@settings(max_examples=200, deadline=None)
@given(regression_pairs, regression_pairs)
def test_regression_metrics_equal_numpy_and_merge_is_the_union(first, second):
    counts = RegressionCounts()
    for true, predicted in first:
        assert counts.add(true, predicted)
    other = RegressionCounts()
    for true, predicted in second:
        assert other.add(true, predicted)
    counts.merge(other)
    union = first + second
    assert counts.n == len(union)
    if not union:
        assert counts.mae is None and counts.rmse is None
        return
    errors = np.array([t for t, _ in union]) - np.array([p for _, p in union])
    assert counts.mae == pytest.approx(float(np.mean(np.abs(errors))), rel=1e-9, abs=1e-9)
    assert counts.rmse == pytest.approx(float(np.sqrt(np.mean(errors ** 2))), rel=1e-9, abs=1e-9)
    restored = RegressionCounts.from_state(checkpoint(counts.to_state()))
    assert restored == counts


@pytest.mark.parametrize("true, predicted", [(math.nan, 1.0), (1.0, math.inf), ("1", 1.0), (True, 1.0),
                                             (None, 1.0), (1e200, -1e200), (1e160, 0.0)])
def test_regression_refuses_what_is_not_a_finite_error(true, predicted):
    counts = RegressionCounts()
    assert counts.add(true, predicted) is False
    assert counts.n == 0 and counts.mae is None


def test_a_pair_that_would_overflow_the_sums_is_refused_and_the_state_stays_finite():
    counts = RegressionCounts()
    assert counts.add(1e154, 0.0)  # err² = 1e308, the largest decade a float holds
    assert counts.add(1e154, 0.0) is False  # 2e308 would overflow
    assert counts.n == 1 and math.isfinite(counts.sum_sq)
    assert RegressionCounts.from_state(checkpoint(counts.to_state())) == counts
