"""TorchServe's log files: access, server and model logs, metrics.

TorchServe (``frontend/server/src/main/resources/log4j2.xml``) writes every
file through log4j2 with ``%d{ISO8601}`` (``2024-05-01T10:00:00,123``, the
host's local time, no zone: read as local time like every zone-less stamp),
in one of two layouts, plus StatsD-like metric lines:

    access_log.log, ts_metrics.log, model_metrics.log      "%d{ISO8601} - %m%n"
    2024-05-01T10:00:00,123 - /127.0.0.1:52486 "POST /predictions/resnet-18 HTTP/1.1" 200 25
    2024-05-01T10:00:00,123 - Requests2XX.Count:1.0|#Level:Host|#hostname:ip-10-0-0-7,timestamp:1714557600

    ts_log.log, model_log.log                               "%d{ISO8601} [%-5p] %t %c - %m%n"
    2024-05-01T10:00:00,123 [INFO ] W-9000-resnet-18_1.0-stdout MODEL_LOG - Torch worker started.

One format, ``torchserve``, reads all of them (the shapes do not overlap).

Access lines (``Session.toString``: remote address as Java prints it,
``"METHOD URI PROTOCOL"``, status, milliseconds since the request arrived):
``client.*``, ``http.*``, ``url.*``, ``event.duration`` (ns), ``event.outcome``
and the model a serving path names (``/predictions/NAME[/VERSION]``,
``/explanations/...``, ``/wfpredict/NAME``, KServe's ``/v1/models/NAME:predict``
and ``/v2/models/NAME/infer`` via ``access.model_route``, the management API's
``/models/NAME[/VERSION]``). gRPC calls are logged as ``"gRPC SERVICE/METHOD
HTTP/2.0"`` with the gRPC status code: ``url.path`` is the call's HTTP/2 path,
the status goes to ``extra.grpc_status_code``, not ``http.response.status_code``.

Log lines: ``log.level``, ``process.thread.name``, ``log.logger``, and from a
worker's thread name ``W-PORT-MODEL_VERSION[-stdout|-stderr]``:
``model.worker`` (the port, TorchServe's worker id), ``model.name``,
``model.version``, ``model.stream``. The message is the text after `` - ``.
Lines of ``ACCESS_LOG``, ``TS_METRICS`` and ``MODEL_METRICS`` (which also reach
ts_log.log) are read as access and metric lines too.

Metric lines (``Name.Unit:value|#dims|#hostname:HOST,...``; the frontend
writes ``,requestID:IDS,timestamp:EPOCH``, the Python backend
``,EPOCH[,REQUEST_ID]``): ``event.kind`` metric, ``model.metric.name/unit/value``,
``model.metric.dimensions`` (with ``hostname``), ``model.name`` /
``model.version`` from the ``ModelName`` / ``model_name`` dimensions,
``host.name``, ``model.request_id``; the record's time is the epoch field.

Joining: per thread. A line with the log4j prefix starts an event unless it
continues a Python traceback of the same thread; a line without it (a Java
stack trace, a multi-line message) continues the event of the line before
it. A worker's traceback arrives as one prefixed line per traceback line,
from its ``-stdout`` / ``-stderr`` reader thread, often interleaved with the
frontend's lines (``Backend response time``, the access line) and other
workers'. Each thread's lines are joined as if the others were not there
(see ``multiline``, "Per-thread joining"): the log line and its whole
traceback are one event, whose message is the un-prefixed text, with
``error.type`` / ``error.message`` / ``error.stack_trace``; the frontend's
lines in between are events of their own. Such an event covers
non-contiguous lines; its record's ``end`` is the safe commit point.

Guarantee: total; one anchored regex per shape; per-thread facts cached.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from agent.parsing import timestamps
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.multiline import Joiner, TracebackJoiner
from agent.parsing.parse_text import PlainFormat
from agent.parsing.servers.access import client_fields, fallback, put_request

SERVER = "torchserve"

# The two log4j layouts. Groups: timestamp, level, thread, logger (the last
# three only in the long layout). log4j writes "- " then the message, so an
# empty message leaves a trailing blank; an editor may have stripped it.
_PREFIX = re.compile(
    r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[,.]\d{1,9})?) "
    r"(?:\[([A-Z]+) *\] (\S+) (\S+) )?-(?: |$)",
    re.ASCII,
)
# Name.Unit:value|#dimensions[|#type:TYPE]|#hostname:HOST[,rest]; the unit is
# the last dotted part before the colon (names have no dots in practice).
_METRIC = re.compile(r"\s*([^|:]+)\.([^.|:]+):([^|]*)\|#([^|]*)(?:\|#type:([^|,]*))?\|#hostname:([^,|]*)(?:,(.*))?$")
# Session.toString(): remote "METHOD URI PROTOCOL" status duration_ms.
_ACCESS = re.compile(r'(\S+) "([^"]*)" (-?\d{1,9}) (-?\d{1,12})$')
# WorkerLifeCycle's reader threads and WorkerThread: W-<port>-<name>_<version>.
_WORKER = re.compile(r"W-(\d+)-(.+?)(?:-(stdout|stderr))?$")
_BACKEND = re.compile(r"BackendWorker-(\d+)$")  # TorchServe's early releases

_FULL, _SHORT, _BARE = range(3)
_METRIC_LOGGERS = frozenset({"TS_METRICS", "MODEL_METRICS"})
_MAX_THREADS = 1024  # thread-name cache; names repeat, a hostile file cannot grow it past this


def _metric_shaped(text: str) -> bool:
    return "|#" in text and _METRIC.match(text) is not None


class TorchServeFormat(PlainFormat):
    """``--format torchserve``: every TorchServe log and metrics file."""

    name = SERVER
    detect_priority: ClassVar[int] = 20

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._last_text: str | None = None
        self._last_parts: tuple[Any, ...] | None = None
        self._threads: dict[str, dict[str, Any]] = {}

    # -- detection ------------------------------------------------------------

    @classmethod
    def detect(cls, text: str) -> bool:
        match = _PREFIX.match(text)
        if match is None:
            return _metric_shaped(text)
        logger = match.group(4)
        if logger is not None:  # the long layout is log4j's own; only TorchServe's names claim it
            thread = match.group(3)
            return (logger.startswith("org.pytorch.serve") or logger in ("MODEL_LOG", "ACCESS_LOG")
                    or logger in _METRIC_LOGGERS or _WORKER.match(thread) is not None)
        body = text[match.end():]
        return _ACCESS.match(body) is not None or _metric_shaped(body)

    # -- reading a line -------------------------------------------------------

    def split(self, text: str) -> tuple[Any, ...] | None:
        """``(shape, timestamp text, level, thread, logger, message)`` or None.

        The joiner and ``head`` read the same line one after the other, so the
        last answer is kept.
        """
        if text is self._last_text:
            return self._last_parts
        match = _PREFIX.match(text)
        parts: tuple[Any, ...] | None
        if match is not None:
            stamp, level, thread, logger = match.groups()
            parts = (_SHORT if level is None else _FULL, stamp, level, thread, logger, text[match.end():])
        elif _metric_shaped(text):
            parts = (_BARE, None, None, None, None, text)
        else:
            parts = None
        self._last_text, self._last_parts = text, parts
        return parts

    def head(self, text: str) -> TextInfo:
        parts = self.split(text)
        if parts is None:
            return fallback(text, SERVER, self.strict)
        shape, stamp, level, thread, logger, message = parts
        model: dict[str, Any] = {"server": SERVER}
        fields: dict[str, Any] = {"model": model}
        if shape == _FULL:
            fields["log"] = {"level": level.lower(), "logger": logger}
            fields["process"] = {"thread": {"name": thread}}
            worker = self._thread_facts(thread)
            if worker:
                model.update(worker)
            if logger == "ACCESS_LOG":
                _access(message, fields, model)
            elif logger in _METRIC_LOGGERS:
                _metric(message, fields, model)
        elif shape == _SHORT:
            # The metric files' lines hold "|#"; an access line's URI might, so
            # an access line that fails as a metric is tried as access.
            if "|#" not in message or not _metric(message, fields, model):
                _access(message, fields, model)
        else:
            _metric(message, fields, model)
        timestamp = fields.pop("@timestamp", None)  # a metric's own epoch: when it was taken
        if timestamp is None and stamp is not None:
            timestamp = timestamps.parse_string(stamp)
        return TextInfo(timestamp, fields, message=message)

    def body(self, text: str) -> str:
        parts = self.split(text)
        return text if parts is None else parts[5]

    def joiner(self) -> Joiner:
        if self.settings.multiline_start is not None:
            return super().joiner()
        return ThreadJoiner(self)

    def _thread_facts(self, thread: str) -> dict[str, Any] | None:
        facts = self._threads.get(thread)
        if facts is None:
            facts = {}
            match = _WORKER.match(thread)
            if match is not None:
                port, versioned, stream = match.groups()
                facts["worker"] = port
                # getVersionedModelName(): name + "_" + version; names may hold "_".
                name, sep, version = versioned.rpartition("_")
                if sep and name and version:
                    facts["name"], facts["version"] = name, version
                else:
                    facts["name"] = versioned
                if stream is not None:
                    facts["stream"] = stream
            else:
                match = _BACKEND.match(thread)
                if match is not None:
                    facts["worker"] = match.group(1)
            if len(self._threads) < _MAX_THREADS:
                self._threads[thread] = facts
        return facts


# -- access lines ---------------------------------------------------------------

def _remote(remote: str) -> dict[str, Any] | None:
    """``client.*`` of Java's InetSocketAddress.toString(): ``[host]/ip:port``."""
    host, _, address = remote.rpartition("/")
    client = client_fields(address, ":" in address)
    if client is not None and host:
        client.setdefault("address", host)
    return client


_TS_OPERATIONS = {"predictions": "predict", "explanations": "explain", "wfpredict": "predict"}
_MANAGEMENT = {"GET": "describe", "PUT": "scale", "DELETE": "unregister", "POST": "register"}
_GRPC_OPERATIONS = {"Predictions": "predict", "StreamPredictions": "predict", "StreamPredictions2": "predict",
                    "Ping": "health", "RegisterModel": "register", "UnregisterModel": "unregister",
                    "ScaleWorker": "scale", "DescribeModel": "describe", "ListModels": "list",
                    "SetDefault": "set_default"}


def _access(message: str, fields: dict[str, Any], model: dict[str, Any]) -> bool:
    match = _ACCESS.match(message)
    if match is None:
        return False
    remote, request, status_text, millis = match.groups()
    method, _, rest = request.partition(" ")
    target, _, protocol = rest.rpartition(" ")
    if not target:  # "METHOD URI" without a protocol: keep what is there
        target, protocol = rest, ""
    version = protocol[5:] if protocol[:5] == "HTTP/" else None
    status = int(status_text)
    client = _remote(remote)
    if method == "gRPC":  # Session(remoteIp, gRPCMethod): status is a gRPC code
        fields["url"] = {"path": "/" + target, "original": target}
        if version:
            fields["http"] = {"version": version}
        fields["event"] = {"outcome": "success" if status == 0 else "failure"}
        fields["extra"] = {"grpc_status_code": status}
        operation = _GRPC_OPERATIONS.get(target.rpartition("/")[2])
        if operation is not None:
            model["operation"] = operation
    else:
        put_request(fields, model, method, target, version, status)
        if "operation" not in model:
            key = (fields["url"].get("path", ""), method)
            route = _ROUTES.get(key)
            if route is None:
                route = {}
                _torchserve_route(key[0], method, route)
                if len(_ROUTES) < _MAX_THREADS:
                    _ROUTES[key] = route
            if route:
                model.update(route)
    if client is not None:
        fields["client"] = client
    duration = int(millis)
    if duration >= 0:
        fields["event"]["duration"] = duration * 1_000_000
    return True


_ROUTES: dict[tuple[str, str], dict[str, str]] = {}  # (path, method) -> model facts; paths repeat


def _torchserve_route(path: str, method: str, model: dict[str, Any]) -> None:
    """TorchServe's own APIs (the KServe and health paths are ``model_route``'s)."""
    parts = path.strip("/").split("/")
    first = parts[0]
    operation = _TS_OPERATIONS.get(first)
    if operation is not None:
        if len(parts) >= 2 and parts[1]:
            model.setdefault("name", parts[1])
            if len(parts) >= 3 and parts[2] and first != "wfpredict":
                model.setdefault("version", parts[2])
        model["operation"] = operation
    elif first == "models":
        if len(parts) == 1:
            model["operation"] = "register" if method == "POST" else "list"
            return
        model.setdefault("name", parts[1])
        if len(parts) >= 3 and parts[2]:
            model.setdefault("version", parts[2])
        if parts[-1] == "set-default":
            model["operation"] = "set_default"
        else:
            operation = _MANAGEMENT.get(method)
            if operation is not None:
                model["operation"] = operation
    elif first == "metrics" and len(parts) == 1:
        model["operation"] = "metrics"


# -- metric lines ----------------------------------------------------------------

_NAME_DIMENSIONS = ("ModelName", "model_name")
_VERSION_DIMENSIONS = ("ModelVersion", "model_version")


_DIMENSIONS: dict[str, tuple[dict[str, str], str | None, str | None]] = {}


def _dimensions(text: str) -> tuple[dict[str, str], str | None, str | None]:
    """``(dimensions, model name, model version)``; cached: the same few
    dimension strings repeat on every line (use a copy of the dict)."""
    known = _DIMENSIONS.get(text)
    if known is None:
        dimensions: dict[str, str] = {}
        for item in text.split(","):
            key, sep, dimension = item.partition(":")
            if sep and key:
                dimensions[key] = dimension
        name = next((dimensions[key] for key in _NAME_DIMENSIONS if key in dimensions), None)
        version = next((dimensions[key] for key in _VERSION_DIMENSIONS if key in dimensions), None)
        known = (dimensions, name, version)
        if len(_DIMENSIONS) < _MAX_THREADS:
            _DIMENSIONS[text] = known
    return known


def _metric(message: str, fields: dict[str, Any], model: dict[str, Any]) -> bool:
    """Fill the metric fields (the line's own epoch, if any, as ``@timestamp``
    for ``head`` to take out); False if ``message`` is not a metric line."""
    match = _METRIC.match(message)
    if match is None:
        return False
    name, unit, value_text, dimension_text, metric_type, hostname, tail = match.groups()
    metric: dict[str, Any] = {"name": name.strip(), "unit": unit}
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan
    finite = math.isfinite(value)
    if finite:
        metric["value"] = value
    known, model_name, model_version = _dimensions(dimension_text)
    dimensions = dict(known)
    if model_name is not None:
        model["name"] = model_name
    if model_version is not None:
        model["version"] = model_version
    if hostname:
        dimensions["hostname"] = hostname
        fields["host"] = {"name": hostname}
    if dimensions:
        metric["dimensions"] = dimensions
    model["metric"] = metric
    fields["event"] = {"kind": "metric"}
    if metric_type:
        fields["extra"] = {"metric_type": metric_type}
    if not finite:
        fields.setdefault("extra", {})["metric_value"] = value_text
    if tail:
        epoch, request_id = _metric_tail(tail)
        if request_id:
            model["request_id"] = request_id
        if epoch is not None:
            fields["@timestamp"] = epoch
    return True


def _metric_tail(tail: str) -> tuple[float | None, str | None]:
    """``(epoch, request id)`` from what follows the hostname.

    Frontend (LogMetric): ``[requestID:IDS,]timestamp:EPOCH``. Python backend
    (CachingMetric): ``EPOCH[,REQUEST_ID]``.
    """
    stamp: str | None
    request_id: str | None = None
    if tail.startswith(("requestID:", "timestamp:")) or ",timestamp:" in tail:
        before, _, stamp = tail.rpartition("timestamp:")
        before = before[:-1] if before.endswith(",") else before
        if before.startswith("requestID:"):
            request_id = before[10:]
        elif before:
            request_id = before
    else:
        stamp, _, rest = tail.partition(",")
        request_id = rest or None
    epoch = None
    if stamp and len(stamp) < 25:
        try:
            epoch = timestamps.from_epoch(float(stamp))
        except ValueError:
            epoch = None
    return epoch, request_id


# -- joining -------------------------------------------------------------------

class ThreadJoiner:
    """One lane per thread: each thread's lines joined as ``TracebackJoiner``
    joins a file's, whatever other threads write in between; a line without
    the prefix continues the event of the line before it. See the module doc
    and ``multiline`` ("Per-thread joining")."""

    def __init__(self, fmt: TorchServeFormat) -> None:
        self._fmt = fmt
        # Per thread, the Python view of its latest event (the driver may have
        # emitted that event since: then ``start`` begins afresh).
        self._threads: dict[str | None, TracebackJoiner] = {}
        self._tb = TracebackJoiner()  # the lane of the latest line
        self.lane: str | None = None

    @property
    def in_traceback(self) -> bool:
        return self._tb.in_traceback

    def start(self, text: str) -> None:
        parts = self._fmt.split(text)
        if parts is None:  # no thread: lane None
            self._enter(None, text)
        else:
            self._enter(parts[3] or "", parts[5])

    def continues(self, text: str) -> bool:
        parts = self._fmt.split(text)
        if parts is None:  # no prefix: a continuation of the latest line's event
            self._tb.continues(text)  # (for the Python view only)
            return True
        thread, message = parts[3] or "", parts[5]
        tb = self._threads.get(thread)
        if tb is None:
            self._enter(thread, message)
            return False
        self.lane = thread
        self._tb = tb
        # A prefixed line is a log call of its own, even an empty one,
        # unless it is a blank line inside a traceback.
        if (tb.in_traceback or (message and not message.isspace())) and tb.continues(message):
            return True
        if not tb.in_traceback and (not message or message.isspace()):
            tb.start(message)
        return False

    def reset(self) -> None:
        self._threads.clear()
        self._tb = TracebackJoiner()
        self.lane = None

    def _enter(self, thread: str | None, message: str) -> None:
        tb = TracebackJoiner()
        tb.start(message)
        threads = self._threads
        threads.pop(thread, None)  # oldest event first, like the driver's open events
        if len(threads) >= _MAX_THREADS:
            del threads[next(iter(threads))]
        threads[thread] = tb
        self._tb = tb
        self.lane = thread


register_format(TorchServeFormat)
