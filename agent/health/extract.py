"""What model health reads from one final document: an ``Observation``.

Reads the document as the agent ships it (the parsed and enriched fields,
not the raw line), along the dotted paths of ``agent.health.config.FieldPaths``.
The defaults are where the JSON key catalogue and the model-server formats
put things, so none of these needs configuration:

- a JSON prediction log: ``model_name`` -> model.name, ``request_id`` ->
  model.request_id, ``prediction`` -> model.prediction (a bare value under
  ``value``), ``features`` -> model.input.features, ``latency_ms`` ->
  event.duration (ns), ``ground_truth`` -> model.target, ``label`` ->
  extra.label;
- BentoML monitor records: role feature -> model.input.features, prediction
  -> model.prediction, target -> model.target (``agent.parsing.servers.bentoml``);
  the model is the monitor's name (model.monitor.name) when there is no
  model.name, and a prediction or target of one column is that column's value;
- the server formats (TorchServe, Triton, KServe, vLLM, ...): model.name,
  model.version, event.duration, event.outcome / http.response.status_code.

A document without a model name and without a label is not a health
observation (``extract`` returns None), nor is a metric line (``event.kind``
other than event) or a line that names a model but carries nothing of a
request (no latency, prediction, request id, features, label, token usage,
HTTP status or outcome: "loading model resnet"). Without configuration the
model is model.name, else BentoML's model.monitor.name, else
gen_ai.request.model (LLM servers). A label record (a request id and a
label, no prediction) may carry no model: the join finds it by request id.

``extractor(paths)`` is what the engine calls per event: for the default
paths, a version with every path walked by hand and each shared object read
once (``model``, ``event``, ``http``); for any other paths, ``extract``
itself. Both give the same observation (a hypothesis test holds them equal).

Total: never raises on any document; a value of the wrong type is passed on
as it is and counted by the statistics (type_mismatch), a NaN, infinite or
negative latency is reported as ``BAD_LATENCY`` and counted by the engine.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable, NamedTuple

from agent.events import TAG_TIMESTAMP_UNUSABLE, new
from agent.health.config import FieldPaths
from agent.health import native
from agent.parsing.json_keys import DURATION_KEYS

MISSING: Any = None
BAD_LATENCY = -1.0  # latency_ms for a value that is not a finite, non-negative number
_DEFAULT_LABEL = ("model", "target")
_LABEL_FALLBACK = ("extra", "label")
_DEFAULT_MODEL = ("model", "name")
_MODEL_FALLBACK = ("model", "monitor", "name")  # BentoML monitor records name the monitor, not the model
_GEN_AI_MODEL = ("gen_ai", "request", "model")  # LLM servers name the model of each request there
# model.operation values of probes, not inference requests (KServe, Triton's HTTP API).
_NOT_REQUESTS = frozenset({"ready", "health", "live", "metadata"})
# ... and of an inference request's own line, a request whatever else it carries
# (Triton's verbose "HTTP request: 2 /v2/models/x/infer" has no status, no latency).
_REQUEST_OPERATIONS = frozenset({"infer", "predict"})


class Observation(NamedTuple):
    """One model event as health sees it (``key`` = model, version, service, host)."""

    time: float
    key: tuple[str, str, str, str]
    request_id: str | None
    latency_ms: float | None        # None: not logged; BAD_LATENCY: logged but unusable
    error: bool
    prediction: Any                  # MISSING (None) when not logged
    features: dict[str, Any] | None  # name -> value as logged (None values: missing)
    label: Any                       # MISSING when not logged
    input_tokens: int | None = None
    output_tokens: int | None = None


def get_path(doc: Any, path: tuple[str, ...] | None) -> Any:
    if path is None:
        return None
    node = doc
    for part in path:
        # None and every non-object end the walk (an exact type check: the
        # parsed document holds plain dicts, and this runs ~10 times an event).
        if node.__class__ is not dict:
            return None
        node = node.get(part)
    return node


def _scalar(value: Any) -> Any:
    """A flattened model.prediction/model.target holds a bare value under
    "value"; an object with a label or class names the predicted class."""
    if isinstance(value, dict):
        for key in ("value", "label", "class", "prediction", "predicted_label"):
            if key in value:
                return _scalar(value[key])
        if len(value) == 1:  # one named column (BentoML: {"pred": "setosa"})
            return _scalar(next(iter(value.values())))
        return MISSING
    if isinstance(value, list):
        return value[0] if len(value) == 1 and not isinstance(value[0], (dict, list)) else MISSING
    return value


# Event times health accepts: 1970 to the year 9999 (a window's @timestamp must be writable);
# a document stamped outside is not a health observation.
_EARLIEST, _LATEST = 0.0, 253_402_300_799.0


_BAD_TIME = math.nan  # a time stamp that is there but unusable: the windows count it (bad_time)


def _time(doc: dict[str, Any]) -> float | None:
    """The event time; NaN for a number or text that is no usable time (counted
    as a bad time by the windows); None when there is no time stamp at all."""
    tags = doc.get("tags")
    if tags.__class__ is list and TAG_TIMESTAMP_UNUSABLE in tags:
        return _BAD_TIME  # (@timestamp is the read time: the line's own was unusable)
    stamp = doc.get("@timestamp")
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        if stamp.__class__ is int and not _EARLIEST <= stamp <= _LATEST:
            return _BAD_TIME  # (float() of an int beyond float range raises)
        when = float(stamp)
    elif isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp).timestamp()
        except (ValueError, OverflowError):
            return _BAD_TIME
    else:
        return None
    return when if _EARLIEST <= when <= _LATEST else _BAD_TIME


def _is_error(doc: dict[str, Any], paths: FieldPaths) -> bool:
    if paths.error is not None:
        value = get_path(doc, paths.error)
        if isinstance(value, str):
            return value.lower() in ("true", "1", "yes", "error", "failure", "failed")
        return bool(value)
    event = doc.get("event")
    if isinstance(event, dict) and event.get("outcome") == "failure":
        return True
    status = get_path(doc, ("http", "response", "status_code"))
    if isinstance(status, int) and not isinstance(status, bool) and status >= 500:
        return True
    level = get_path(doc, ("log", "level"))
    return isinstance(level, str) and level.lower() in ("error", "critical", "fatal")


def _latency(doc: dict[str, Any], paths: FieldPaths) -> float | None:
    latency = _milliseconds(get_path(doc, paths.latency), paths.latency_scale)
    if latency is None and paths.latency == _DEFAULT_PATHS_LATENCY:
        return _refused_latency(doc)
    return latency


def _refused_latency(doc: dict[str, Any]) -> float | None:
    """BAD_LATENCY when the line logged a latency the JSON mapping refused
    (``"latency_ms": "NaN"`` stays in extra, event.duration is not set), else None."""
    extra = doc.get("extra")
    if extra.__class__ is dict and extra:
        for key in DURATION_KEYS:
            if key in extra:
                return BAD_LATENCY
    return None


def _milliseconds(value: Any, scale: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return BAD_LATENCY
    try:
        ms = value * scale
    except OverflowError:  # an int beyond float range
        return BAD_LATENCY
    return ms if math.isfinite(ms) and ms >= 0 else BAD_LATENCY


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _features(doc: dict[str, Any], paths: FieldPaths) -> dict[str, Any] | None:
    if paths.features_under is not None:
        under = get_path(doc, paths.features_under)
        return under if isinstance(under, dict) and under else None
    if not paths.features:
        return None
    return {".".join(path): get_path(doc, path) for path in paths.features}


def _name(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def extract(doc: Any, paths: FieldPaths) -> Observation | None:
    """The observation in ``doc``, or None when it is not about a model."""
    if not isinstance(doc, dict):
        return None
    event = doc.get("event")
    if event.__class__ is dict and event.get("kind") not in (None, "event"):
        return None  # a metric line, an alert, a pipeline error: not a request
    operation = get_path(doc, ("model", "operation"))
    if operation.__class__ is str and operation in _NOT_REQUESTS:  # (a list or object is no probe's name)
        return None
    model = get_path(doc, paths.model)
    if model is None and paths.model == _DEFAULT_MODEL:
        model = get_path(doc, _MODEL_FALLBACK)
        if model is None:
            model = get_path(doc, _GEN_AI_MODEL)
    label = get_path(doc, paths.label)
    if label is not None:
        label = _scalar(label)
    elif paths.label == _DEFAULT_LABEL:
        label = _scalar(get_path(doc, _LABEL_FALLBACK))
    if isinstance(model, (dict, list)):
        model = None
    request_id = get_path(doc, paths.request_id)
    if isinstance(request_id, (dict, list)):
        request_id = None
    if model is None and (label is None or request_id is None) and get_path(doc, paths.prediction) is None:
        return None  # (a prediction that names no model is one: the engine counts it as no_model)
    when = _time(doc)
    if when is None:
        return None
    service = doc.get("service")
    service = service.get("name") if service.__class__ is dict else None
    host = doc.get("host")
    host = host.get("name") if host.__class__ is dict else None
    key = (_name(model), _name(get_path(doc, paths.version)), _name(service), _name(host))
    prediction = get_path(doc, paths.prediction)
    usage = doc.get("gen_ai")
    usage = usage.get("usage") if usage.__class__ is dict else None
    latency = _latency(doc, paths)
    features = _features(doc, paths)
    if (latency is None and prediction is None and request_id is None and features is None and label is None
            and usage is None and get_path(doc, ("http", "response", "status_code")) is None
            and (event.__class__ is not dict or event.get("outcome") is None)
            and get_path(doc, paths.error) is None
            and not (operation.__class__ is str and operation in _REQUEST_OPERATIONS)):
        return None  # a line that names a model but is no request ("loading model resnet")
    return Observation(
        when, key, None if request_id is None else _name(request_id), latency,
        _is_error(doc, paths), MISSING if prediction is None else _scalar(prediction),
        features, label,
        _count(usage.get("input_tokens")) if isinstance(usage, dict) else None,
        _count(usage.get("output_tokens")) if isinstance(usage, dict) else None)


_DEFAULT_PATHS = FieldPaths()
_DEFAULT_PATHS_LATENCY = _DEFAULT_PATHS.latency
_DEFAULT_SCALE = _DEFAULT_PATHS.latency_scale
_ERROR_LEVELS = ("error", "critical", "fatal")
_ATOMS = frozenset({str, int, float, bool})


def extractor(paths: FieldPaths) -> Callable[[Any], Observation | None]:
    """The function that extracts along ``paths`` (``extract`` with them,
    faster for the defaults: in C when it was built, see ``agent.health.native``)."""
    if paths == _DEFAULT_PATHS:
        return native.NATIVE.extract_default if native.NATIVE is not None else _extract_default
    return lambda doc: extract(doc, paths)


def _extract_default(doc: Any) -> Observation | None:
    """``extract(doc, FieldPaths())``, each path walked by hand (the hot path of health)."""
    if doc.__class__ is not dict:
        return extract(doc, _DEFAULT_PATHS)
    event = doc.get("event")
    if event.__class__ is dict:
        kind = event.get("kind")
        if kind is not None and kind != "event":
            return None  # a metric line, an alert, a pipeline error: not a request
        duration = event.get("duration")
    else:
        event = duration = None
    model_obj = doc.get("model")
    if model_obj.__class__ is dict:
        operation = model_obj.get("operation")
        if operation.__class__ is str and operation in _NOT_REQUESTS:
            return None
        model = model_obj.get("name")
        if model is None:
            monitor = model_obj.get("monitor")
            model = monitor.get("name") if monitor.__class__ is dict else None
        label = model_obj.get("target")
        request_id = model_obj.get("request_id")
        version = model_obj.get("version")
        prediction = model_obj.get("prediction")
        inputs = model_obj.get("input")
        features = inputs.get("features") if inputs.__class__ is dict else None
    else:
        model = label = request_id = version = prediction = features = operation = None
    if model is None:
        model = get_path(doc, _GEN_AI_MODEL)
    if label is not None:
        label = _scalar(label)
    else:
        extra = doc.get("extra")
        label = extra.get("label") if extra.__class__ is dict else None
        if label is not None:
            label = _scalar(label)
    if isinstance(model, (dict, list)):
        model = None
    if isinstance(request_id, (dict, list)):
        request_id = None
    if model is None and (label is None or request_id is None) and prediction is None:
        return None
    when = _time(doc)
    if when is None:
        return None
    service = doc.get("service")
    service = service.get("name") if service.__class__ is dict else None
    host = doc.get("host")
    host = host.get("name") if host.__class__ is dict else None
    key = (model if model.__class__ is str else _name(model), version if version.__class__ is str else _name(version),
           service if service.__class__ is str else _name(service), host if host.__class__ is str else _name(host))
    usage = doc.get("gen_ai")
    usage = usage.get("usage") if usage.__class__ is dict else None
    latency = _refused_latency(doc) if duration is None else _milliseconds(duration, _DEFAULT_SCALE)
    if not (isinstance(features, dict) and features):
        features = None
    http = doc.get("http")
    response = http.get("response") if http.__class__ is dict else None
    status = response.get("status_code") if response.__class__ is dict else None
    outcome = None if event is None else event.get("outcome")
    if (latency is None and prediction is None and request_id is None and features is None and label is None
            and usage is None and status is None and outcome is None
            and not (operation.__class__ is str and operation in _REQUEST_OPERATIONS)):
        return None  # a line that names a model but is no request ("loading model resnet")
    if outcome == "failure":
        error = True
    elif isinstance(status, int) and not isinstance(status, bool) and status >= 500:
        error = True
    else:
        level = doc.get("log")
        level = level.get("level") if level.__class__ is dict else None
        error = isinstance(level, str) and level.lower() in _ERROR_LEVELS
    if prediction is None:
        prediction = MISSING
    elif prediction.__class__ is dict and prediction.get("value").__class__ in _ATOMS:
        prediction = prediction["value"]  # _scalar's first rule, the usual shape: {"value": 1}
    else:
        prediction = _scalar(prediction)
    # events.new with all ten fields: Observation(...) without its generated
    # Python-level __new__ (measurable at one call per event).
    return new(Observation, (
        when, key, None if request_id is None else _name(request_id), latency, error, prediction, features, label,
        _count(usage.get("input_tokens")) if isinstance(usage, dict) else None,
        _count(usage.get("output_tokens")) if isinstance(usage, dict) else None))


def _zulu() -> bool:
    """Whether this Python's ``datetime.fromisoformat`` takes a trailing Z (3.11 on)."""
    try:
        datetime.fromisoformat("2000-01-01T00:00:00Z")
    except ValueError:
        return False
    return True


if native.NATIVE is not None:
    # The C version of _extract_default defers to these for what it does not handle itself.
    native.NATIVE.configure(Observation, lambda doc: extract(doc, _DEFAULT_PATHS), _time, _scalar, _name,
                            _milliseconds, _NOT_REQUESTS, _DEFAULT_SCALE, _zulu())
