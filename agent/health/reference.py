"""The reference distributions drift is measured against.

Three sources (``health.reference``):

- a file: JSON lines or CSV rows (by the suffix: ``.csv`` is CSV, anything
  else JSON lines), e.g. a training sample. A JSON row either holds a
  ``features`` object (and optionally ``prediction``), or is flat: every key
  is a feature except ``prediction`` (the prediction) and ``label``,
  ``request_id``, ``model_name``. CSV: one column per feature, ``prediction``
  as above; cells that read as numbers are numbers. The same reference
  applies to every model. A file that cannot be read is a ConfigError at
  start-up naming the file and line;
- the first ``reference_size`` events of each model (the default): values
  are collected as events arrive, then frozen into bins and written to
  ``<state_dir>/health/reference.json``; kept across restarts, dropped by
  ``modelscribe health reset-reference``;
- ``previous``: bins are made from the first ``reference_size`` events the
  same way, but each window is compared with the previous window's counts.

On-disk format of ``reference.json`` (atomic write: temp file, fsync, rename)::

    {"version": 1,
     "models": {"<model>\\u0000<version>": {"features": {"age": BINS, ...},
                                          "prediction": BINS | null}}}

where BINS is ``NumericBins.to_state()`` / ``CategoricalBins.to_state()``
(``agent.health.drift``). Any other version, or a file that does not parse,
is moved aside (``reference.json.corrupt-<unix-ms>``) and the references are
collected again.

Collection progress (the values gathered so far) is part of the engine's
checkpoint, so a crash during collection neither loses nor doubles values.
"""

from __future__ import annotations

import csv
import os
import time
from typing import Any, Iterable

import orjson

from agent.atomic import write_atomic
from agent.errors import ConfigError, StateError
from agent.health.bins import Bins, bins_from_reference, bins_from_state
from agent.selflog import get_logger

log = get_logger("health")

FORMAT_VERSION = 1
FILE_NAME = "reference.json"
RESET_MARKER = "reference.reset"
PREDICTION = "prediction"
_NOT_FEATURES = frozenset({"prediction", "label", "request_id", "model_name", "model", "timestamp"})


class ModelReference:
    """Frozen bins of one model: per feature, and for the prediction."""

    __slots__ = ("features", "prediction")

    def __init__(self, features: dict[str, Bins], prediction: Bins | None) -> None:
        self.features = features
        self.prediction = prediction

    def to_state(self) -> dict[str, Any]:
        return {"features": {name: bins.to_state() for name, bins in self.features.items()},
                "prediction": self.prediction.to_state() if self.prediction is not None else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ModelReference:
        prediction = state.get("prediction")
        return cls({name: bins_from_state(b) for name, b in state["features"].items()},
                   bins_from_state(prediction) if prediction is not None else None)


def _bins(values: list[Any], max_categories: int) -> Bins | None:
    try:
        return bins_from_reference(values, max_categories)
    except ValueError:
        return None  # no usable value in the reference: no drift for it


def freeze(features: dict[str, list[Any]], predictions: list[Any], max_categories: int) -> ModelReference:
    bins = {name: b for name, values in sorted(features.items())
            if (b := _bins(values, max_categories)) is not None}
    return ModelReference(bins, _bins(predictions, max_categories))


class Collector:
    """Values of the first ``size`` events of one model (checkpointed)."""

    __slots__ = ("size", "seen", "features", "predictions")

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self.features: dict[str, list[Any]] = {}
        self.predictions: list[Any] = []

    def add(self, features: dict[str, Any] | None, prediction: Any, max_features: int) -> bool:
        """Collect one event; True when the reference is complete."""
        index = self.seen
        self.seen += 1
        if features and features.keys() == self.features.keys():
            # The usual event: every column takes its value, none is new or padded
            # (one C-level pass; list.append returns None, so any() runs it to the end).
            any(map(list.append, map(self.features.__getitem__, features), features.values()))
            self.predictions.append(prediction)
            return self.seen >= self.size
        for name, value in (features or {}).items():
            column = self.features.get(name)
            if column is None:
                if len(self.features) >= max_features:
                    continue
                column = self.features[name] = [None] * index
            column.append(value)
        for column in self.features.values():
            if len(column) < self.seen:
                column.append(None)
        self.predictions.append(prediction)
        return self.seen >= self.size

    @property
    def held(self) -> int:
        """Values held: one per event and feature, and the prediction."""
        return self.seen * (len(self.features) + 1)

    def to_state(self) -> dict[str, Any]:
        return {"size": self.size, "seen": self.seen, "features": self.features, "predictions": self.predictions}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Collector:
        collector = cls(int(state["size"]))
        collector.seen = int(state["seen"])
        collector.features = {name: list(values) for name, values in state["features"].items()}
        collector.predictions = list(state["predictions"])
        return collector


def model_id(key: tuple[str, ...]) -> str:
    """References are per model name and version (not per host or service)."""
    return f"{key[0]}\u0000{key[1]}"


def load_store(directory: str) -> dict[str, ModelReference]:
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path, "rb") as handle:
            data = orjson.loads(handle.read())
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            found = data.get("version") if isinstance(data, dict) else "?"
            raise ValueError(f"version {found} is not {FORMAT_VERSION}")
        return {name: ModelReference.from_state(state) for name, state in data["models"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
        aside = f"{path}.corrupt-{int(time.time() * 1000)}"
        log.warning("the reference file is not usable; moved aside, references are collected again",
                    path=path, moved_to=aside, error=str(error))
        try:
            os.replace(path, aside)
        except OSError:
            pass
        return {}


def save_store(directory: str, references: dict[str, ModelReference]) -> None:
    body = orjson.dumps({"version": FORMAT_VERSION,
                         "models": {name: ref.to_state() for name, ref in sorted(references.items())}})
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomic(os.path.join(directory, FILE_NAME), body, prefix=".reference.")
    except OSError as error:
        raise StateError(f"cannot write {os.path.join(directory, FILE_NAME)}: {error.strerror}") from error


def reset(directory: str) -> bool:
    """``modelscribe health reset-reference``: the stored references go, and a
    marker tells a running (or the next) agent to drop what it collected."""
    path = os.path.join(directory, FILE_NAME)
    existed = os.path.exists(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomic(os.path.join(directory, RESET_MARKER), b"reset\n", prefix=".reset.")
        if existed:
            os.unlink(path)
    except OSError as error:
        raise StateError(f"cannot reset the reference in {directory}: {error.strerror}") from error
    return existed


def _cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _split_row(row: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    features = row.get("features")
    if isinstance(features, dict):
        return features, row.get("prediction")
    return {k: v for k, v in row.items() if k not in _NOT_FEATURES}, row.get("prediction")


def _rows(path: str) -> Iterable[tuple[dict[str, Any], Any]]:
    if path.lower().endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                yield _split_row({k: _cell(v or "") for k, v in row.items() if k is not None})
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise ConfigError(f"health.reference {path}: line {number} is not JSON: {error}") from error
            if not isinstance(row, dict):
                raise ConfigError(f"health.reference {path}: line {number} is not a JSON object")
            yield _split_row(row)


def from_file(path: str, max_features: int, max_categories: int) -> ModelReference:
    """The reference of a file (for every model)."""
    collector = Collector(size=1 << 62)
    try:
        for features, prediction in _rows(path):
            collector.add(features, prediction, max_features)
    except OSError as error:
        raise ConfigError(f"health.reference {path}: cannot read the file: {error.strerror}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"health.reference {path}: not readable as CSV/JSON lines: {error}") from error
    if collector.seen == 0:
        raise ConfigError(f"health.reference {path}: the file holds no rows")
    return freeze(collector.features, collector.predictions, max_categories)
