"""NVIDIA Triton Inference Server's log (``--log-file`` or its stderr).

Triton (``triton/common/logging``) writes one of two layouts:

    default   I0501 10:00:00.123456 1 model_lifecycle.cc:441] "successfully loaded 'densenet_onnx'"
    ISO8601   2024-05-01T10:00:00Z I 1 model_lifecycle.cc:441] "successfully loaded 'densenet_onnx'"

level letter (E, W, I; glog's F read too), the time in UTC (``gmtime_r``;
the default layout has month and day but no year: see ``glog_year``), pid,
source file and line, then the message, JSON-encoded (quoted and escaped)
unless the server ran with ``TRITON_SERVER_ESCAPE_LOG_MESSAGES=0``. Tables and
protobuf dumps are multi-line entries: a heading line (often empty after
``] ``), then unprefixed lines until the next entry.

Fields: ``log.level`` (info, warning, error, fatal), ``process.pid``,
``log.origin.file.name`` / ``line``, ``model.server`` triton; the message is
unquoted. ``model.name`` / ``model.version`` / ``model.operation`` (load,
unload) when the message names a model (``successfully loaded 'x' version 1``,
``loading: x:1``, ``AsyncLoad() 'x'``, ``failed to load 'x'``, ``model 'x'``,
``TRITONBACKEND_ModelInitialize: x (version 1)``); a request failure names
the model *instance* (``for model instance 'x_0_0'``, ``for model 'x_0_0'``):
its model is the name without the ``_<n>_<n>`` Triton appends (an instance
of a group the config names gives that name as it is). A verbose ``HTTP request: 2
/v2/models/x/infer`` gives ``http.request.method`` (evhtp's method number),
``url.path`` and the model the path names. A Python traceback in a message
(Python backend errors) gives ``error.type`` / ``error.message`` /
``error.stack_trace``, as does pb_stub's ``message: Type: text`` + ``At:``.

Triton's fatal start-up error, unprefixed at column 0 (``error: creating
server: Internal - failed to load all models``), is an entry of its own:
``log.level`` error, the line as its message.

Joining: a prefixed line or an ``error: `` line starts an entry, and so does
a line another layout reads unmistakably (a Python logging head with a time
or ``LEVEL:name:`` and a level, a uvicorn line, a JSON object: a backend's or
a wrapper's own output, read as the fallback below); any other line
continues the entry (an unprefixed Python traceback from a backend's stub is
read for ``error``).

Detection (``--format auto``): the default layout is glog's, which C++
libraries logging through glog or absl write too, so a line in it claims
the file only with a mark of Triton's own (``_is_triton_line``: one of
Triton's source files, a JSON-encoded message, a message only Triton
writes); a line in the ISO8601 layout, or the container's
``== Triton Inference Server ==`` banner, claims it alone.

Guarantee: total; one anchored regex per layout, cheap substring checks
before the model-name searches. A time is either None or within what
``timestamps.in_range`` accepts (years 1 - 9999).
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, ClassVar

import orjson

from agent.parsing import timestamps, tracebacks
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.multiline import Joiner, TracebackJoiner
from agent.parsing.parse_text import PlainFormat, read_plain
from agent.parsing.servers.access import fallback, is_uvicorn_line, model_route, put_route, url_fields

SERVER = "triton"

_DEFAULT = re.compile(
    r"([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) +(\d{1,10}) ([^\s:\]]+):(\d{1,9})\](?: |$)", re.ASCII)
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z ([IWEF]) +(\d{1,10}) ([^\s:\]]+):(\d{1,9})\](?: |$)",
    re.ASCII)
_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "fatal"}

_QUOTED_MODEL = re.compile(
    r"(successfully loaded|successfully unloaded|ailed to load|ailed to unload|AsyncLoad\(\)|AsyncUnload\(\)"
    r"|request\(s\) for model(?: instance)?|[Mm]odel instance|[Mm]odel) '([^']{1,256})'(?: version (\d{1,19}))?")
# The verbs above that name a model *instance* (python_be's request failures):
# Triton names an instance ``<group>_<n>`` and a group, unless the config
# names it, ``<model>_<n>``; the model is the name without ``_<n>_<n>``.
_INSTANCE_VERBS = frozenset(("request(s) for model", "request(s) for model instance", "model instance",
                             "Model instance"))
_INSTANCE_NAME = re.compile(r"(.+)_[0-9]+_[0-9]+", re.DOTALL)
_LOADING = re.compile(r"(loading|unloading): ([^\s:']{1,256}):(\d{1,19})")
_BACKEND_INIT = re.compile(r"TRITONBACKEND_ModelInitialize: (\S{1,256}) \(version (\d{1,19})\)")
_HTTP_REQUEST = re.compile(r"HTTP request: (\d{1,2}) (\S+)")
_PB_ERROR = re.compile(r"message: ([A-Za-z_][\w.]*): (.*?)\n\nAt:\n", re.DOTALL)
_OPERATIONS = {"successfully loaded": "load", "ailed to load": "load", "AsyncLoad()": "load",
               "successfully unloaded": "unload", "ailed to unload": "unload", "AsyncUnload()": "unload",
               "loading": "load", "unloading": "unload"}
# evhtp's htp_method numbers, as Triton's verbose HTTP log prints them.
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")

# A line stamped up to this far after "now" is still this year (clocks drift).
CLOCK_SKEW = 86400.0


def glog_year(month: int, day: int, now: float) -> int | None:
    """The year of a year-less ``MMDD`` stamp read at ``now`` (epoch seconds, UTC).

    The latest year in which that day is not after today (plus ``CLOCK_SKEW``):
    a line of December 31 read on January 1 belongs to last year, one of
    today to this year. None for a day that does not exist (a February 29
    is placed in the latest leap year, at most four years back).
    """
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    today = datetime.fromtimestamp(now + CLOCK_SKEW, timezone.utc)
    year = today.year if (month, day) <= (today.month, today.day) else today.year - 1
    for candidate in range(year, year - 5, -1):
        if day <= calendar.monthrange(candidate, month)[1]:
            return candidate
    return None


@lru_cache(maxsize=64)
def _year_this_hour(month: int, day: int, hour: int) -> int | None:
    # Lines carry the same month and day for hours on end: decide once per hour.
    return glog_year(month, day, hour * 3600.0)


@lru_cache(maxsize=1024)
def _utc_minute(year: int, month: int, day: int, hour: int, minute: int) -> float | None:
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1] and hour <= 23
            and minute <= 59 and 1 <= year <= 9999):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)))


def _unquote(message: str) -> str:
    """A JSON-encoded message's text; anything else as it is."""
    if len(message) >= 2 and message[0] == '"' and message[-1] == '"':
        try:
            value = orjson.loads(message)
        except orjson.JSONDecodeError:
            return message
        if isinstance(value, str):
            return value
    return message


def _is_head(text: str) -> bool:
    first = text[:1]
    if first in _LEVELS:
        return _DEFAULT.match(text) is not None
    return first.isdigit() and _ISO.match(text) is not None


# Detection: the default layout is glog's, which any C++ library logging
# through glog or absl writes too (PaddlePaddle, TensorFlow Serving, ...), so
# a head in that layout claims the file only with a mark of Triton's own: a
# source file of Triton's (core, server, backends; not those with names as
# common as server.cc or main.cc), a JSON-encoded message (Triton quotes its
# messages, glog does not), or a message only Triton writes. Its ISO8601
# layout is its own.
_TRITON_FILES = frozenset((
    "backend_config.cc", "backend_manager.cc", "backend_memory_manager.cc", "backend_model.cc",
    "backend_model_instance.cc", "backend_input_collector.cc", "backend_output_responder.cc", "cache_manager.cc",
    "cuda_memory_manager.cc", "dynamic_batch_scheduler.cc", "ensemble_scheduler.cc", "ensemble_utils.cc",
    "infer_handler.cc", "stream_infer_handler.cc", "instance_queue.cc", "metric_model_reporter.cc",
    "model_config_utils.cc", "model_lifecycle.cc", "model_repository_manager.cc", "pinned_memory_manager.cc",
    "rate_limiter.cc", "repo_agent.cc", "sequence_batch_scheduler.cc", "shared_memory_manager.cc",
    "tritonserver.cc", "tritoncache.cc", "triton_signal.cc", "python_be.cc", "pb_stub.cc", "stub_launcher.cc",
    "onnxruntime.cc", "libtorch.cc", "tensorrt.cc", "openvino.cc", "dali_backend.cc",
))
_TRITON_MESSAGES = ("Started HTTPService at ", "Started GRPCInferenceService at ", "Started Metrics Service at ",
                    "TRITONBACKEND_", "TRITONSERVER_")
_BANNER = "== Triton Inference Server =="


def _is_triton_line(text: str) -> bool:
    """Detection: a head with a mark of Triton's own (above), or the banner of its container."""
    first = text[:1]
    if first in _LEVELS:
        match = _DEFAULT.match(text)
        if match is None:
            return False
        file_name = match.group(9)
    elif first.isdigit():
        return _ISO.match(text) is not None
    else:
        return text.startswith(_BANNER)
    if file_name in _TRITON_FILES:
        return True
    message = text[match.end():].rstrip("\r")
    if message != _unquote(message):  # JSON-encoded: Triton's escaping
        return True
    return message.startswith(_TRITON_MESSAGES)


# Triton's own fatal start-up errors (main.cc) are written unprefixed at
# column 0: ``error: creating server: Internal - failed to load all models``.
_ERROR = "error: "


def _is_foreign(text: str) -> bool:
    """A line another layout reads unmistakably: a Python logging head (a
    timestamp and a level, or basicConfig's ``LEVEL:name:``), a uvicorn line,
    a JSON object. Such a line begins an event in a Triton file (a Python
    backend's or a wrapper's own output), never a continuation of Triton's."""
    first = text[:1]
    if first == "{":
        if text.rstrip()[-1:] != "}":
            return False
        try:
            return type(orjson.loads(text)) is dict
        except orjson.JSONDecodeError:
            return False
    if first.isdigit() or first == "[" or "A" <= first <= "W":
        timestamp, fields, start = read_plain(text)
        if (timestamp is not None or start) and "level" in fields.get("log", ()):
            return True
        return first != "[" and is_uvicorn_line(text)
    return False


def _starts_entry(text: str) -> bool:
    """The joiner's question: does ``text`` begin an event in a Triton log?"""
    return _is_head(text) or text.startswith(_ERROR) or _is_foreign(text)


class TritonFormat(PlainFormat):
    """``--format triton``: Triton's default or ISO8601 log layout."""

    name = SERVER
    detect_priority: ClassVar[int] = 20

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        # Epoch seconds now; a test replaces it to pin the year of MMDD stamps.
        self.clock: Callable[[], float] = time.time

    @classmethod
    def detect(cls, text: str) -> bool:
        return _is_triton_line(text)

    def head(self, text: str) -> TextInfo:
        first = text[:1]
        if first in _LEVELS:
            match = _DEFAULT.match(text)
            if match is None:
                return fallback(text, SERVER, self.strict)
            letter, month, day, hour, minute, second, micros, pid, file_name, line = match.groups()
            year = _year_this_hour(int(month), int(day), int(self.clock() // 3600))
            base = None if year is None else _utc_minute(year, int(month), int(day), int(hour), int(minute))
            timestamp = (None if base is None or int(second) > 60
                         else timestamps.in_range(base + int(second) + int(micros) / 1e6))
        else:
            match = _ISO.match(text) if first.isdigit() else None
            if match is None:
                if text.startswith(_ERROR):
                    return TextInfo(None, {"log": {"level": "error"}, "model": {"server": SERVER}})
                return fallback(text, SERVER, self.strict)
            year_text, month, day, hour, minute, second, fraction, letter, pid, file_name, line = match.groups()
            base = _utc_minute(int(year_text), int(month), int(day), int(hour), int(minute))
            timestamp = None
            if base is not None and int(second) <= 60:
                # Range-checked after the seconds and fraction are added: a
                # leap second or a fraction near 1 carries 9999-12-31 23:59
                # past the last time a later stage can format.
                timestamp = timestamps.in_range(
                    base + int(second) + (int(fraction) / 10 ** len(fraction) if fraction else 0))
        message = _unquote(text[match.end():])
        model: dict[str, Any] = {"server": SERVER}
        fields: dict[str, Any] = {
            "log": {"level": _LEVELS[letter], "origin": {"file": {"name": file_name, "line": int(line)}}},
            "process": {"pid": int(pid)},
            "model": model,
        }
        if message:
            _read_message(message, fields, model)
        return TextInfo(timestamp, fields, message=message)

    def joiner(self) -> Joiner:
        if self.settings.multiline_start is not None:
            return super().joiner()
        return HeadJoiner(_starts_entry)


def _read_message(message: str, fields: dict[str, Any], model: dict[str, Any]) -> None:
    if "'" in message:
        found = _QUOTED_MODEL.search(message)
        if found is not None:
            verb, name, version = found.groups()
            if verb in _INSTANCE_VERBS:
                instance = _INSTANCE_NAME.fullmatch(name)
                if instance is not None:
                    name = instance.group(1)
            model["name"] = name
            if version is not None:
                model["version"] = version
            operation = _OPERATIONS.get(verb)
            if operation is not None:
                model["operation"] = operation
    elif "loading: " in message:
        found = _LOADING.search(message)
        if found is not None:
            verb, model["name"], model["version"] = found.groups()
            model["operation"] = _OPERATIONS[verb]
    elif "TRITONBACKEND_ModelInitialize: " in message:
        found = _BACKEND_INIT.search(message)
        if found is not None:
            model["name"], model["version"] = found.groups()
    elif message.startswith("HTTP request: "):
        found = _HTTP_REQUEST.match(message)
        if found is not None:
            number, target = found.groups()
            method = int(number)
            if method < len(_HTTP_METHODS):
                fields["http"] = {"request": {"method": _HTTP_METHODS[method]}}
            url = fields["url"] = url_fields(target)
            put_route(model, model_route(url.get("path", "")))
    if "\n" in message:
        _read_error(message, fields)


def _read_error(message: str, fields: dict[str, Any]) -> None:
    """``error.*`` of a Python traceback (or pybind11's ``At:`` form) inside a message."""
    start = message.find(tracebacks.HEADER)
    if start >= 0:
        stack = message[start:].rstrip("\n")
        described = tracebacks.describe(stack.split("\n"))
        if described is None:
            return
        error: dict[str, Any] = {"stack_trace": stack}
        if described[0] is not None:
            error["type"] = described[0]
        if described[1] is not None:
            error["message"] = described[1]
        fields["error"] = error
        return
    found = _PB_ERROR.search(message)
    if found is not None:
        fields["error"] = {"type": found.group(1), "message": found.group(2),
                           "stack_trace": message[found.start(1):].rstrip("\n")}


class HeadJoiner:
    """A head line (``is_head``) starts an event; any other line continues it.

    Continuation lines are also shown to a ``TracebackJoiner`` so that an
    unprefixed Python traceback is known as one (for ``error.*``).
    """

    cut = False
    resumed: tuple[str, ...] | None = None

    def __init__(self, is_head: Callable[[str], bool]) -> None:
        self._is_head = is_head
        self._tb = TracebackJoiner()

    @property
    def in_traceback(self) -> bool:
        return self._tb.in_traceback

    def start(self, text: str) -> None:
        self._tb.start(text)

    def continues(self, text: str) -> bool:
        if self._is_head(text):
            self._tb.start(text)
            return False
        self._tb.continues(text)
        return True

    def reset(self) -> None:
        self._tb.reset()


register_format(TritonFormat)
