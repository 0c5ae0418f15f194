"""The ``health:`` block of the config file: what model health computes, and from which fields.

Global, or per input (``inputs: [{paths: [...], health: {...}}]``); an
input's block replaces the global one's ``fields`` for its files, key by key.
Every value is validated here, once, and a bad one raises ConfigError naming
``FILE: health.KEY`` (or ``inputs[N].health.KEY``) and why::

    health:
      enabled: true            # default: on when the block is present
      window: 60               # tumbling windows by event time: seconds, or 60s, 5m, 1h (whole seconds)
      lateness: 30             # how long a window stays open after its end: seconds, or 30s, 2m
      reference: null          # a .jsonl/.csv file, "previous", or null: the first reference_size events
      reference_size: 5000
      label_ttl: 3600          # how long a prediction waits for its label: seconds, or 1h, 90m
      thresholds: {psi: 0.2, js: 0.1, drift_p: 0.001, error_rate: 0.05, p95_ms: null, accuracy_drop: 0.1}
                               # each rule fires when its figure is ABOVE the threshold (drift_p: below): see Thresholds
      caps: {models: 1000, features: 200, categories: 100, pending_labels: 100000,
             reference_values: 2000000, outbox: 50000}
      fields:                  # dotted paths into the parsed document; defaults below
        model: model.name
        features: "model.input.features.*"   # a list of paths, or PATH.* for every key under PATH

``HealthSettings`` is frozen and crosses into the engine; ``FieldPaths`` is
what extraction needs (``agent.health.extract``).
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from agent.config.values import duration
from agent.errors import ConfigError

# Where each health input comes from when nothing is configured: what the
# JSON key catalogue (agent.parsing.json_keys) and the server formats write.
# "model_name", "request_id", "prediction", "features", "latency_ms" of a
# JSON prediction log land on these, so such a log needs no configuration.
DEFAULT_FIELDS: Mapping[str, Any] = {
    "model": "model.name",
    "version": "model.version",
    "request_id": "model.request_id",
    "latency": "event.duration",          # nanoseconds (the catalogue converts latency_ms)
    "error": None,                         # None: event.outcome failure, status >= 500, log.level error
    "prediction": "model.prediction",
    "features": "model.input.features.*",
    "label": "model.target",
}
_FIELD_KEYS = tuple(DEFAULT_FIELDS) + ("latency_unit",)
LATENCY_UNITS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class FieldPaths:
    """Dotted paths of the parsed document (tuples of keys). ``features`` is
    either explicit paths, or one prefix whose every key is a feature
    (``features_under``)."""

    model: tuple[str, ...] = ("model", "name")
    version: tuple[str, ...] | None = ("model", "version")
    request_id: tuple[str, ...] | None = ("model", "request_id")
    latency: tuple[str, ...] | None = ("event", "duration")
    latency_scale: float = 1e-6  # to milliseconds; event.duration is in nanoseconds
    error: tuple[str, ...] | None = None
    prediction: tuple[str, ...] | None = ("model", "prediction")
    features: tuple[tuple[str, ...], ...] = ()
    features_under: tuple[str, ...] | None = ("model", "input", "features")
    label: tuple[str, ...] | None = ("model", "target")

    def describe(self) -> str:
        def dotted(path: tuple[str, ...] | None) -> str:
            return ".".join(path) if path else "-"
        features = (dotted(self.features_under) + ".*") if self.features_under else \
            ",".join(map(dotted, self.features)) or "-"
        return (f"model={dotted(self.model)} version={dotted(self.version)} "
                f"request_id={dotted(self.request_id)} latency={dotted(self.latency)} "
                f"error={dotted(self.error) if self.error else 'outcome/status/level'} "
                f"prediction={dotted(self.prediction)} features={features} label={dotted(self.label)}")


def threshold_problem(name: str, value: float | None) -> str | None:
    """Why ``value`` cannot be the ``name`` threshold, or None. A rule fires when
    its figure is above the threshold, so a threshold at or beyond the largest
    figure never fires and one at 0 fires on nearly every window; both are
    refused. Where a rule can be off (``null``), that is the way to turn it off;
    ``js: 1`` is allowed as the way to leave the drift alert to PSI alone."""
    if value is None:
        return None if name not in ("psi", "js", "drift_p") else "a number is needed (this rule cannot be off)"
    if name in ("psi", "js") and value <= 0:
        return f"{value:g} is not above 0: every window whose distribution differs at all would alert"
    if name == "p95_ms" and value <= 0:
        return f"{value:g} is not above 0: every window with a latency would alert (null turns it off)"
    if name == "drift_p" and not 0 < value <= 1:
        return (f"{value:g} is not a p-value above 0 and at most 1 (1 alerts on any difference above the psi or js "
                "threshold, however few the events)")
    if name == "js" and value > 1:
        return f"{value:g} is above 1, the largest Jensen-Shannon distance (1 leaves the drift alert to PSI)"
    if name in ("error_rate", "accuracy_drop") and value >= 1:
        figure = "error rate" if name == "error_rate" else "accuracy drop"
        return f"{value:g} is not below 1, the largest {figure}: the alert would never fire (null turns it off)"
    return None


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds; each rule fires when its figure is above its threshold
    (``agent.health.alerts``); the drift alert also needs the chi-square
    p-value below ``drift_p``. Ranges (``threshold_problem``): psi > 0,
    0 < js <= 1, 0 < drift_p <= 1, 0 <= error_rate < 1, p95_ms > 0,
    0 <= accuracy_drop < 1; the last three may be None (the rule is off)."""

    psi: float = 0.2
    js: float = 0.1
    # The drift alert also needs the difference to be more than sampling noise: the chi-square
    # test's p-value below this (agent.health.drift.homogeneity_p_value). 1 turns that off.
    drift_p: float = 0.001
    error_rate: float | None = 0.05
    p95_ms: float | None = None
    accuracy_drop: float | None = 0.1

    def __post_init__(self) -> None:
        # The config file's values are checked (with the key named) before this;
        # this keeps a Thresholds built in code within the same ranges, so a
        # division by the psi or js threshold is always defined.
        for item in dataclasses.fields(self):
            problem = threshold_problem(item.name, getattr(self, item.name))
            if problem is not None:
                raise ValueError(f"thresholds.{item.name}: {problem}")


@dataclass(frozen=True)
class Caps:
    models: int = 1000
    features: int = 200
    categories: int = 100
    pending_labels: int = 100_000
    # Values held while references are collected (all models together): a
    # model whose collection would pass it freezes its reference early.
    reference_values: int = 2_000_000
    # Health documents waiting for the output (kept in the checkpoint).
    outbox: int = 50_000


@dataclass(frozen=True)
class HealthSettings:
    enabled: bool = True
    window: int = 60  # whole seconds: windows are aligned on the epoch
    lateness: float = 30.0
    reference: str | None = None  # a file path, "previous", or None: the first reference_size events
    reference_size: int = 5000
    label_ttl: float = 3600.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    caps: Caps = field(default_factory=Caps)
    fields: FieldPaths = field(default_factory=FieldPaths)
    # Field paths per input, by the input's globs (the first input whose globs match a file wins).
    per_input: tuple[tuple[tuple[str, ...], FieldPaths], ...] = ()


def _path(raw: Any, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or any(not part for part in raw.strip().split(".")):
        raise ConfigError(f"{where}: expected a dotted field path such as model.name, got {raw!r}")
    return tuple(raw.strip().split("."))


def _number(raw: Any, where: str, minimum: float = 0.0, allow_none: bool = False,
            integer: bool = False) -> Any:
    if raw is None and allow_none:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw < minimum \
            or (integer and not isinstance(raw, int)):
        kind = "an integer" if integer else "a number"
        hint = ""
        if isinstance(raw, str):
            try:
                float(raw)
                decimal.Decimal(raw.strip())
            except (ValueError, decimal.InvalidOperation):
                pass
            else:  # (YAML 1.1 reads 1e-3, without a dot, as text)
                plain = format(decimal.Decimal(raw.strip()), "f")
                hint = f"; YAML read it as text: write it as a plain number, {plain}"
        raise ConfigError(f"{where}: expected {kind} >= {minimum:g}, got {raw!r}{hint}")
    return raw


def _seconds(raw: Any, where: str) -> float:
    """A duration as every other time setting takes it (``agent.config.values.duration``)."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ConfigError(f"{where}: expected a duration such as 30, 30s, 5m or 1h, got {raw!r}")
    try:
        return duration(raw)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _mapping(raw: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(allowed)}")
    for key in raw:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{extra}; allowed: {', '.join(allowed)}")
    return raw


def parse_fields(raw: Any, where: str, base: FieldPaths | None = None) -> FieldPaths:
    """The ``fields:`` mapping on top of ``base`` (the defaults, or the global block)."""
    given = _mapping(raw, where, _FIELD_KEYS)
    paths = base or FieldPaths()
    changes: dict[str, Any] = {}
    for key in ("model", "version", "request_id", "latency", "error", "prediction", "label"):
        if key in given:
            changes[key] = _path(given[key], f"{where}.{key}")
    if changes.get("model", 1) is None:
        raise ConfigError(f"{where}.model: the model field cannot be empty")
    if "latency_unit" in given:
        unit = given["latency_unit"]
        if not isinstance(unit, str) or unit not in LATENCY_UNITS:
            raise ConfigError(f"{where}.latency_unit: one of {', '.join(LATENCY_UNITS)}, got {unit!r}")
        changes["latency_scale"] = LATENCY_UNITS[unit]
    elif "latency" in given:
        changes["latency_scale"] = 1e-6 if changes["latency"] == ("event", "duration") else 1.0
    if "features" in given:
        features = given["features"]
        if isinstance(features, str) and features.strip().endswith(".*"):
            changes["features_under"] = _path(features.strip()[:-2], f"{where}.features")
            changes["features"] = ()
        elif isinstance(features, list):
            changes["features"] = tuple(_path(item, f"{where}.features[{i}]") for i, item in enumerate(features))
            changes["features_under"] = None
        else:
            raise ConfigError(f"{where}.features: a list of dotted paths, or PATH.* for every key under PATH")
    return dataclasses.replace(paths, **changes)


_KEYS = ("enabled", "window", "lateness", "reference", "reference_size", "label_ttl", "thresholds", "caps",
         "fields")


def parse_health(raw: Any, where: str, base_dir: str | None = None) -> HealthSettings:
    """The global ``health:`` block. ``where`` is ``FILE: health``; a relative
    ``reference`` file is relative to ``base_dir`` (the config file's directory)."""
    if raw is None or raw is True:
        return HealthSettings()
    if raw is False:
        return HealthSettings(enabled=False)
    given = _mapping(raw, where, _KEYS)
    values: dict[str, Any] = {}
    if "enabled" in given:
        if not isinstance(given["enabled"], bool):
            raise ConfigError(f"{where}.enabled: true or false, got {given['enabled']!r}")
        values["enabled"] = given["enabled"]
    if "window" in given:
        window = _seconds(given["window"], f"{where}.window")
        if window < 1 or window != int(window):
            raise ConfigError(f"{where}.window: whole seconds, at least 1 (windows are aligned on the epoch), "
                              f"got {given['window']!r}")
        values["window"] = int(window)
    for key in ("lateness", "label_ttl"):
        if key in given:
            values[key] = _seconds(given[key], f"{where}.{key}")
    if "reference_size" in given:
        values["reference_size"] = _number(given["reference_size"], f"{where}.reference_size", 1, integer=True)
    if "reference" in given and given["reference"] is not None:
        reference = given["reference"]
        if not isinstance(reference, str) or not reference.strip():
            raise ConfigError(f"{where}.reference: a .jsonl or .csv file, or 'previous', got {reference!r}")
        values["reference"] = reference.strip()
        if values["reference"] != "previous" and base_dir is not None:
            path = os.path.expanduser(values["reference"])
            values["reference"] = os.path.normpath(os.path.join(base_dir, path))
    if "thresholds" in given:
        names = tuple(f.name for f in dataclasses.fields(Thresholds))
        spec = _mapping(given["thresholds"], f"{where}.thresholds", names)
        chosen = {key: _number(value, f"{where}.thresholds.{key}", allow_none=key not in ("psi", "js", "drift_p"))
                  for key, value in spec.items()}
        for key, value in chosen.items():
            problem = threshold_problem(key, value)
            if problem is not None:
                raise ConfigError(f"{where}.thresholds.{key}: {problem}")
        values["thresholds"] = Thresholds(**chosen)
    if "caps" in given:
        spec = _mapping(given["caps"], f"{where}.caps", tuple(f.name for f in dataclasses.fields(Caps)))
        values["caps"] = Caps(**{key: _number(value, f"{where}.caps.{key}", 1, integer=True)
                                 for key, value in spec.items()})
    if "fields" in given:
        values["fields"] = parse_fields(given["fields"], f"{where}.fields")
    return HealthSettings(**values)


def check_reference(settings: HealthSettings | None, where: str) -> None:
    """Read the reference file as the engine will at start-up, so ``check
    config`` refuses what ``run`` would; ``where`` names the key
    (``FILE: health.reference``)."""
    if settings is None or not settings.enabled or settings.reference in (None, "previous"):
        return
    from agent.health import reference

    try:
        reference.from_file(settings.reference, settings.caps.features, settings.caps.categories,
                            settings.caps.reference_values)
    except ConfigError as error:
        message = str(error)
        prefix = "health.reference "
        raise ConfigError(f"{where} {message[len(prefix):] if message.startswith(prefix) else message}") from None


def with_inputs(settings: HealthSettings, per_input: list[tuple[tuple[str, ...], Any, str]]) -> HealthSettings:
    """Add the inputs' own ``health: {fields: ...}`` blocks: (globs, raw block, where)."""
    resolved = []
    for globs, raw, where in per_input:
        given = _mapping(raw, where, ("fields",))
        resolved.append((globs, parse_fields(given.get("fields") or {}, f"{where}.fields", settings.fields)))
    return dataclasses.replace(settings, per_input=tuple(resolved))


def from_file(data: dict[str, Any], path: str, inputs: tuple[Any, ...]) -> HealthSettings | None:
    """The ``health:`` block of a config file and its inputs' own blocks
    (``inputs`` are the resolved InputSpecs, in the file's order). None when
    neither the file nor an input has one."""
    raw = data.get("health")
    settings = parse_health(raw, f"{path}: health", os.path.dirname(os.path.abspath(path))) \
        if "health" in data else None
    per_input = []
    for number, (item, spec) in enumerate(zip(data.get("inputs") or [], inputs), 1):
        if isinstance(item, dict) and item.get("health") is not None:
            per_input.append((spec.paths, item["health"], f"{path}: inputs[{number}].health"))
    if not per_input:
        return settings
    return with_inputs(settings or HealthSettings(), per_input)
