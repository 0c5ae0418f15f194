"""The reference distributions drift is measured against.

Three sources (``health.reference``):

- a file: JSON lines or CSV rows (by the suffix: ``.csv`` is CSV, anything
  else JSON lines), e.g. a training sample. A JSON row either holds a
  ``features`` object (and optionally ``prediction``), or is flat: every key
  is a feature except ``prediction`` (the prediction) and ``label``,
  ``request_id``, ``model_name``. CSV: one column per feature, ``prediction``
  as above; cells that read as numbers are numbers. UTF-8, with or without a
  byte order mark (Excel's "CSV UTF-8" writes one). The same reference
  applies to every model. Bounded: the first rows are used, as many as hold
  at most ``caps.reference_values`` values (one per row and column, the
  prediction included); the file is streamed and the rest is not read (logged
  once). A file that cannot be read, a CSV header naming a column twice, a
  CSV row with more or fewer cells than the header, or a line longer than
  ``MAX_LINE`` is a ConfigError at start-up naming the file (and the line or
  column);
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
(``agent.health.drift``). Any other version, a file that does not parse, or
one of another shape (``check_bins`` checks what counting and PSI/JS rely
on) is logged, moved aside (``reference.json.corrupt-<unix-ms>``) and the
references are collected again: never a refusal to start for damage. A file
that cannot be read (no permission, a directory of that name) is not damage:
``run`` stops at start-up with a ConfigError (exit code 2) naming the file and
what to do, and the file is left as it is.

Collection progress (the values gathered so far) is part of the engine's
checkpoint, so a crash during collection neither loses nor doubles values;
``Collector.from_state`` refuses (ValueError) a collector of another shape.
"""

from __future__ import annotations

import codecs
import csv
import math
import os
import time
from typing import Any, Iterable, Iterator, NoReturn

import orjson

from agent.atomic import write_atomic
from agent.errors import ConfigError, StateError
from agent.health.bins import OTHER, Bins, bins_from_reference, bins_from_state
from agent.health.config import Caps
from agent.registry import unusable_state_file
from agent.selflog import get_logger

log = get_logger("health")

FORMAT_VERSION = 1
FILE_NAME = "reference.json"
RESET_MARKER = "reference.reset"
PREDICTION = "prediction"
_NOT_FEATURES = frozenset({"prediction", "label", "request_id", "model_name", "model", "timestamp"})
# The longest line of a reference file (characters of CSV, bytes of JSON lines,
# the line end included): reading is line by line, so this bounds the memory one
# line takes, even in a file with no line break at all.
MAX_LINE = 16 << 20


# -- shape checks of saved state ----------------------------------------------------------
# Each raises ValueError naming where the value is (``models['a\x00'].prediction.edges``)
# and what was expected instead. Used here for reference.json and collectors, and by
# agent.health.checkpoint for state.json: one set of checks for both files.

SHAPE_LIMIT = 1 << 62  # larger counts and offsets are corrupt (and would not serialise again)


def shape_error(where: str, what: str, value: Any) -> NoReturn:
    text = repr(value)
    raise ValueError(f"{where}: expected {what}, got {text if len(text) <= 60 else text[:57] + '...'}")


def expect_object(value: Any, where: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    if value.__class__ is not dict or not all(key in value for key in keys):
        shape_error(where, f"an object with {', '.join(keys)}" if keys else "an object", value)
    return value


def expect_list(value: Any, where: str, size: int | None = None) -> list[Any]:
    if value.__class__ is not list or (size is not None and len(value) != size):
        shape_error(where, "a list" if size is None else f"a list of {size}", value)
    return value


def expect_int(value: Any, where: str, low: int = 0, high: int = SHAPE_LIMIT) -> int:
    if value.__class__ is not int or not low <= value <= high:
        shape_error(where, f"an integer in [{low}, {high}]", value)
    return value


def expect_ints(value: Any, where: str, low: int = 0) -> list[int]:
    if value.__class__ is not list or not set(map(type, value)) <= {int} or \
            (value and not (low <= min(value) and max(value) <= SHAPE_LIMIT)):
        shape_error(where, f"a list of integers >= {low}", value)
    return value


def expect_number(value: Any, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    # (orjson gives finite floats only, and ints within 64 bits)
    if value.__class__ not in (int, float) or not low <= value <= high:
        shape_error(where, f"a number in [{low:g}, {high:g}]", value)
    return value


def expect_str(value: Any, where: str) -> str:
    if value.__class__ is not str:
        shape_error(where, "a string", value)
    return value


def expect_strs(value: Any, where: str) -> list[str]:
    if value.__class__ is not list or not set(map(type, value)) <= {str}:
        shape_error(where, "a list of strings", value)
    return value


def check_bins(state: Any, where: str) -> None:
    """Raise ValueError naming ``where`` unless ``state`` is bins as
    ``to_state`` writes them, with what counting and PSI/JS rely on: one
    reference count per bin, none negative, not all zero; numeric edges
    increasing; categories distinct strings."""
    expect_object(state, where, ("kind", "reference_counts"))
    counts = expect_ints(state["reference_counts"], f"{where}.reference_counts")
    if not sum(counts):
        shape_error(f"{where}.reference_counts", "at least one value", counts)
    if state["kind"] == "numeric":
        edges = expect_list(expect_object(state, where, ("edges", "min", "max"))["edges"], f"{where}.edges")
        for number, edge in enumerate(edges):
            expect_number(edge, f"{where}.edges[{number}]")
        if not edges or any(a >= b for a, b in zip(edges, edges[1:])):
            shape_error(f"{where}.edges", "increasing numbers", edges)
        if expect_number(state["min"], f"{where}.min") > expect_number(state["max"], f"{where}.max"):
            shape_error(where, "min <= max", (state["min"], state["max"]))
        bins = len(edges) + 1
    elif state["kind"] == "categorical":
        categories = expect_strs(expect_object(state, where, ("categories",))["categories"], f"{where}.categories")
        if len(set(categories)) != len(categories) or OTHER in categories:
            shape_error(f"{where}.categories", f"distinct strings other than {OTHER!r}", categories)
        expect_int(state.get("dropped", 0), f"{where}.dropped")
        bins = len(categories) + 1
    else:
        shape_error(f"{where}.kind", "'numeric' or 'categorical'", state["kind"])
    if len(counts) != bins:
        shape_error(f"{where}.reference_counts", f"{bins} counts (one per bin)", counts)


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
    def from_state(cls, state: Any, where: str = "model") -> ModelReference:
        """The reference ``to_state`` wrote; ValueError naming ``where`` for any other shape."""
        features = expect_object(expect_object(state, where, ("features",))["features"], f"{where}.features")
        for name, bins in features.items():
            check_bins(bins, f"{where}.features[{name!r}]")
        prediction = state.get("prediction")
        if prediction is not None:
            check_bins(prediction, f"{where}.prediction")
        return cls({name: bins_from_state(b) for name, b in features.items()},
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
    def from_state(cls, state: Any, where: str = "collector") -> Collector:
        """The collector ``to_state`` wrote; ValueError naming ``where`` for any
        other shape (every column, and the predictions, hold one value per event seen)."""
        expect_object(state, where, ("size", "seen", "features", "predictions"))
        collector = cls(expect_int(state["size"], f"{where}.size", 1))
        collector.seen = seen = expect_int(state["seen"], f"{where}.seen")
        features = expect_object(state["features"], f"{where}.features")
        for name, values in features.items():
            expect_list(values, f"{where}.features[{name!r}]", seen)
        predictions = expect_list(state["predictions"], f"{where}.predictions", seen)
        collector.features = {name: list(values) for name, values in features.items()}
        collector.predictions = list(predictions)
        return collector


def model_id(key: tuple[str, ...]) -> str:
    """References are per model name and version (not per host or service)."""
    return f"{key[0]}\u0000{key[1]}"


def load_store(directory: str) -> dict[str, ModelReference]:
    """The stored references; {} (logged, the file moved aside) when the file is
    damaged. One that cannot be read (no permission: root-owned after a ``sudo
    modelscribe run``; a directory of that name) is not damage: a ConfigError
    (exit code 2) naming the file and what to do, and the file is left as it is."""
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise unusable_state_file(path, error, "the drift reference",
                                  "the references are then collected again") from error
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            found = data.get("version") if isinstance(data, dict) else "?"
            raise ValueError(f"version {found} is not {FORMAT_VERSION}")
        models = expect_object(data.get("models"), "models")
        return {name: ModelReference.from_state(state, f"models[{name!r}]") for name, state in models.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # (ValueError: the shape checks above, and JSONDecodeError; the rest is a second net.)
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


def _lines(handle: Any, path: str) -> Iterator[Any]:
    """The file's lines, each at most MAX_LINE long (a longer one is a ConfigError)."""
    number = 0
    while line := handle.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise ConfigError(f"health.reference {path}: line {number} is longer than {MAX_LINE >> 20} MiB")
        yield line


def _rows(path: str) -> Iterable[tuple[dict[str, Any], Any]]:
    if path.lower().endswith(".csv"):
        # utf-8-sig: a byte order mark would otherwise become part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(_lines(handle, path))
            seen: set[str] = set()
            for name in reader.fieldnames or ():
                if name in seen:  # DictReader would keep the last column of that name, silently
                    raise ConfigError(f"health.reference {path}: the header names the column {name!r} twice")
                seen.add(name)
            columns = len(reader.fieldnames or ())
            for row in reader:
                # DictReader pads a short row with None and puts a long row's extra cells
                # under None: a row shifted by a missing or extra separator, silently.
                if None in row or None in row.values():
                    cells = columns + len(row.get(None) or ()) - sum(v is None for v in row.values())
                    raise ConfigError(f"health.reference {path}: line {reader.line_num} has {cells} "
                                      f"cell{'' if cells == 1 else 's'} where the header has {columns}")
                yield _split_row({k: _cell(v) for k, v in row.items()})
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(_lines(handle, path), 1):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise ConfigError(f"health.reference {path}: line {number} is not JSON: {error}") from error
            if not isinstance(row, dict):
                raise ConfigError(f"health.reference {path}: line {number} is not a JSON object")
            yield _split_row(row)


def from_file(path: str, max_features: int, max_categories: int,
              max_values: int = Caps.reference_values) -> ModelReference:
    """The reference of a file (for every model): its first rows, as many as
    hold at most ``max_values`` values (one per row and column, the
    prediction included; at least one row). What follows is not read."""
    collector = Collector(size=1 << 62)
    rows = _rows(path)
    try:
        for features, prediction in rows:
            # The values held if this row is taken: a row that brings new columns pads
            # them for every earlier row too (Collector.add).
            columns = collector.features.keys()
            if features.keys() != columns:
                columns = columns | features.keys()
            if collector.seen and (collector.seen + 1) * (min(len(columns), max_features) + 1) > max_values:
                log.warning("health: the reference file holds more rows than caps.reference_values allows; "
                            "its first rows are used", path=path, rows=collector.seen, cap=max_values)
                break
            collector.add(features, prediction, max_features)
    except OSError as error:
        raise ConfigError(f"health.reference {path}: cannot read the file: {error.strerror}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"health.reference {path}: not readable as CSV/JSON lines: {error}") from error
    finally:
        rows.close()  # (closes the file now, also when the cap stopped the reading)
    if collector.seen == 0:
        raise ConfigError(f"health.reference {path}: the file holds no rows")
    return freeze(collector.features, collector.predictions, max_categories)
