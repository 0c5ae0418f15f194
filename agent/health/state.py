"""What one window of one model accumulates: ``WindowState``, and ``LabelState``
(the labelled part alone, which is also what a correction carries).

Every part is mergeable (counts, a fixed-bucket histogram, bin counts fixed
by the reference, confusion counts) and converts to and from plain
JSON/msgpack types for the engine's checkpoint. The bins a window counts
with are the reference's at the time the window opened a feature, saved with
the counts, so a window restored after a reset of the reference still
carries consistent counts.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Sequence

from agent.health.accuracy import ClassificationCounts, RegressionCounts
from agent.health.bins import Bins, as_number, bins_from_state
from agent.health.drift import BULK_MIN, MISSING as MISSING_VALUE, FeatureCounts
from agent.health.extract import BAD_LATENCY, MISSING, Observation
from agent.health.histogram import LatencyHistogram
from agent.health import native



NOT_IN_REFERENCE = "not_in_reference"
NOT_IN_REFERENCE_MESSAGE = ("health: an event carries a feature its model's reference lacks (not in the reference "
                            "file, not in the events the reference was collected from, beyond health.caps.features "
                            "there, or without a usable value); no drift is computed for it")
LABELS_UNUSABLE = "labels_unusable"
LABELS_CAPPED = "labels_capped"
LABELS_CAPPED_MESSAGE = ("health: a window reached its cap of distinct class labels (health.caps.categories); "
                         "labels bringing a new class are counted in model.health.labels_capped, not in the "
                         "accuracy figures")


def is_regression(true: Any, predicted: Any) -> bool:
    """A pair is a regression pair when both are numbers and one is not whole."""
    t, p = as_number(true), as_number(predicted)
    return t is not None and p is not None and (not float(t).is_integer() or not float(p).is_integer())


def not_in_reference(observations: Sequence[Observation], features: dict[str, Bins]) -> list[str]:
    """The feature names the observations carry that ``features`` (a reference's) lacks, sorted."""
    names: set[str] = set().union(*filter(None, map(attrgetter("features"), observations)))
    return sorted(names.difference(features))


class LabelState:
    """Labelled predictions: confusion counts or error sums, and refusals."""

    __slots__ = ("classification", "regression", "unusable", "max_classes")

    def __init__(self, max_classes: int = 50) -> None:
        self.classification: ClassificationCounts | None = None
        self.regression: RegressionCounts | None = None
        self.unusable = 0
        self.max_classes = max_classes

    @property
    def labelled(self) -> int:
        return (self.classification.n if self.classification else 0) + \
            (self.regression.n if self.regression else 0)

    @property
    def capped(self) -> int:
        """Pairs not counted because they would have brought a class beyond the cap."""
        return self.classification.dropped if self.classification else 0

    def add(self, true: Any, predicted: Any) -> str | None:
        """Count one labelled prediction; None when counted, else why not:
        ``LABELS_UNUSABLE`` (counted in ``unusable``) or ``LABELS_CAPPED`` (the
        class cap, ``max_classes``, is reached: counted in ``capped``). The
        caller logs the cap once (``LABELS_CAPPED_MESSAGE``)."""
        # Two strings (class names, the usual labels) are never a regression pair.
        if not (true.__class__ is str and predicted.__class__ is str) and is_regression(true, predicted):
            if self.regression is None:
                self.regression = RegressionCounts()
            if self.regression.add(true, predicted):
                return None
        else:
            counts = self.classification
            if counts is None:
                counts = self.classification = ClassificationCounts(self.max_classes)
            dropped = counts.dropped
            if counts.add(true, predicted):
                return None
            if counts.dropped != dropped:
                return LABELS_CAPPED
        self.unusable += 1
        return LABELS_UNUSABLE

    def to_state(self) -> dict[str, Any]:
        return {"c": self.classification.to_state() if self.classification else None,
                "r": self.regression.to_state() if self.regression else None, "u": self.unusable}

    @classmethod
    def from_state(cls, state: dict[str, Any], max_classes: int = 50) -> LabelState:
        labels = cls(max_classes)
        if state["c"] is not None:
            labels.classification = ClassificationCounts.from_state(state["c"])
        if state["r"] is not None:
            labels.regression = RegressionCounts.from_state(state["r"])
        labels.unusable = int(state["u"])
        return labels


class WindowState:
    """Everything one window of one model counts."""

    __slots__ = ("requests", "errors", "bad_latency", "no_prediction", "input_tokens", "output_tokens",
                 "latency", "features", "features_capped", "prediction", "labels", "unmatched_labels")

    def __init__(self, max_classes: int = 50) -> None:
        self.requests = 0
        self.errors = 0
        self.bad_latency = 0
        self.no_prediction = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.latency = LatencyHistogram()
        self.features: dict[str, FeatureCounts] = {}
        self.features_capped = 0
        self.prediction: FeatureCounts | None = None
        self.labels = LabelState(max_classes)
        self.unmatched_labels = 0

    def add(self, obs: Observation, features: dict[str, Bins] | None, prediction: Bins | None,
            max_features: int) -> list[str]:
        """Count one request; returns the quality kinds it raised (for the once-per-kind log)."""
        self.requests += 1
        if obs.error:
            self.errors += 1
        raised: list[str] = []
        if obs.latency_ms is not None:
            if obs.latency_ms == BAD_LATENCY or not self.latency.add(obs.latency_ms):
                self.bad_latency += 1
                raised.append("bad_latency")
        if obs.input_tokens:
            self.input_tokens += obs.input_tokens
        if obs.output_tokens:
            self.output_tokens += obs.output_tokens
        if obs.prediction is MISSING:
            self.no_prediction += 1
            raised.append("no_prediction")
        if features is not None:
            values = obs.features or {}
            for name, bins in features.items():
                counts = self.features.get(name)
                if counts is None:
                    if len(self.features) >= max_features:
                        self.features_capped += 1
                        continue
                    counts = self.features[name] = FeatureCounts(bins)
                kind = counts.add(values.get(name))
                if kind is not None:
                    raised.append(kind)
            if values and not features.keys() >= values.keys():
                raised.append(NOT_IN_REFERENCE)
        if prediction is not None and obs.prediction is not MISSING:
            if self.prediction is None:
                self.prediction = FeatureCounts(prediction)
            kind = self.prediction.add(obs.prediction)
            if kind is not None:
                raised.append(kind)
        return raised

    def add_many(self, observations: Sequence[Observation], features: dict[str, Bins] | None,
                 prediction: Bins | None, max_features: int) -> list[str]:
        """Count requests as ``add`` of each in turn would (the engine's batch
        path): each feature's values of the batch counted at once, by
        ``FeatureCounts.add_feature``. Returns the quality kinds raised, each once."""
        raised: dict[str, None] = {}
        if native.NATIVE is None and len(observations) < BULK_MIN:  # a few requests: each in turn is cheaper
            for obs in observations:
                raised.update(dict.fromkeys(self.add(obs, features, prediction, max_features)))
            return list(raised)
        self.requests += len(observations)
        # Each figure in one C-level pass over the batch (truthy errors, truthy token counts).
        self.errors += len(list(filter(None, map(attrgetter("error"), observations))))
        # BAD_LATENCY is negative: the histogram refuses it, as it refuses every unusable value.
        refused = self.latency.add_many(list(map(attrgetter("latency_ms"), observations)))
        if refused:
            self.bad_latency += refused
            raised["bad_latency"] = None
        self.input_tokens += sum(filter(None, map(attrgetter("input_tokens"), observations)))
        self.output_tokens += sum(filter(None, map(attrgetter("output_tokens"), observations)))
        predictions = [obs.prediction for obs in observations if obs.prediction is not MISSING]
        if len(predictions) < len(observations):
            self.no_prediction += len(observations) - len(predictions)
            raised["no_prediction"] = None
        if features is not None and observations:
            # One feature at a time over the batch's feature objects (in C when it is built).
            dicts = list(map(attrgetter("features"), observations))
            suspect = False  # a feature of the reference was missing, or not counted (the cap)
            for name, bins in features.items():
                counts = self.features.get(name)
                if counts is None:
                    if len(self.features) >= max_features:
                        self.features_capped += len(dicts)
                        suspect = True
                        continue
                    counts = self.features[name] = FeatureCounts(bins)
                kinds = counts.add_feature(dicts, name)
                if kinds:
                    raised.update(dict.fromkeys(kinds))
                    suspect = suspect or MISSING_VALUE in kinds
            # A feature the reference lacks: an event with more features than the
            # reference, or one where a feature of the reference is missing (else
            # every event holds exactly the reference's names). Checked name by
            # name only then, so the usual batch pays one len() per event.
            present = list(filter(None, dicts))
            if present and (suspect or max(map(len, present)) > len(features)) and \
                    not_in_reference(observations, features):
                raised[NOT_IN_REFERENCE] = None
        if prediction is not None and predictions:
            if self.prediction is None:
                self.prediction = FeatureCounts(prediction)
            raised.update(dict.fromkeys(self.prediction.add_many(predictions)))
        return list(raised)

    def to_state(self) -> dict[str, Any]:
        return {"n": [self.requests, self.errors, self.bad_latency, self.no_prediction, self.input_tokens,
                      self.output_tokens, self.features_capped, self.unmatched_labels],
                "lat": self.latency.to_state(),
                "f": {name: [c.bins.to_state(), c.to_state()] for name, c in self.features.items()},
                "p": [self.prediction.bins.to_state(), self.prediction.to_state()] if self.prediction else None,
                "l": self.labels.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any], max_classes: int = 50) -> WindowState:
        window = cls(max_classes)
        (window.requests, window.errors, window.bad_latency, window.no_prediction, window.input_tokens,
         window.output_tokens, window.features_capped, window.unmatched_labels) = state["n"]
        window.latency = LatencyHistogram.from_state(state["lat"])
        window.features = {name: FeatureCounts.from_state(bins_from_state(b), c) for name, (b, c) in state["f"].items()}
        if state["p"] is not None:
            window.prediction = FeatureCounts.from_state(bins_from_state(state["p"][0]), state["p"][1])
        window.labels = LabelState.from_state(state["l"], max_classes)
        return window
