"""KServe model-server logs (format ``kserve``).

KServe (``kserve.logging.KSERVE_LOG_CONFIG``)::

    2024-05-01 10:00:00.123 1 kserve INFO [model_server.py:register_model():363] Registering model: iris
    2024-05-01 10:00:00.123 1 kserve.trace requestId: r-1, preprocess_ms: 0.01, explain_ms: 0, predict_ms: 1.2, ...
    2024-05-01 10:00:00.123 1 uvicorn.error INFO:     Started server process [1]
    2024-05-01 10:00:00.456 uvicorn.access INFO:     10.0.0.1:51234 1 - "POST /v2/models/iris/infer HTTP/1.1" 200 OK

and the stock uvicorn lines (``servers.uvicorn``) when KServe's config is
not applied. The message is the text after the line's prefix. The
``kserve`` logger's bracket gives ``log.origin.*`` (older releases print
``[func():line]`` without the file: accepted). A ``kserve.trace`` latency
line gives ``model.request_id`` (unless ``N.A.``), ``model.operation``
(explain when explain ran, else predict), ``event.duration`` = the sum of
the four steps and ``model.stats.{preprocess,explain,predict,postprocess}_ms``.
Access lines are read as uvicorn's (``client.*``, ``http.*``, ``url.*``,
``event.outcome``, the serving route's ``model.name`` / ``model.operation``).

Guarantee: ``head`` never raises; a line matching none of these shapes is read
as plain text (``parse_plain``) and still carries ``model.server``.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from agent.parsing import timestamps
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.parse_text import PlainFormat
from agent.parsing.servers.access import LEVELS, fallback, nanos, parse_uvicorn, strip_ansi
from agent.parsing.servers.uvicorn import uvicorn_info

# "%(asctime)s.%(msecs)03d %(process)s %(name)s " (the access format has no process).
_KSERVE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d{1,6}) (?:(\d+) )?([A-Za-z_][\w.]*) ")
_KSERVE_LOGGER = re.compile(r"(" + LEVELS + r") (?:\[([^\]]*)\] )?")
_TRACE = re.compile(r"requestId: (.*?), preprocess_ms: ([^,\s]+), explain_ms: ([^,\s]+), "
                    r"predict_ms: ([^,\s]+), postprocess_ms: ([^,\s]+)\s*$")
_LEVEL_COLON = re.compile(r"(?:" + LEVELS + r"):\s")
_STEPS = ("preprocess_ms", "explain_ms", "predict_ms", "postprocess_ms")


def _origin(bracket: str) -> dict[str, Any]:
    """``log.origin`` of ``file.py:func():123`` (or ``func():123``)."""
    origin: dict[str, Any] = {}
    file_name = function = line = None
    for part in bracket.split(":"):
        if part.endswith("()"):
            function = part[:-2]
        elif part.isdigit() and part.isascii():
            line = part
        elif part:
            file_name = part
    if file_name:
        origin["file"] = {"name": file_name}
    if line and len(line) < 10:
        origin.setdefault("file", {})["line"] = int(line)
    if function:
        origin["function"] = function
    return origin


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def put_trace(fields: dict[str, Any], model: dict[str, Any], match: re.Match[str]) -> None:
    """The fields of a ``requestId: ..., preprocess_ms: ...`` latency line."""
    request_id = match.group(1)
    if request_id and request_id != "N.A.":
        model["request_id"] = request_id
    stats: dict[str, float] = {}
    for step, raw in zip(_STEPS, match.groups()[1:]):
        value = _number(raw)
        if value is not None:
            stats[step] = value
    if stats:
        model["stats"] = stats
        duration = nanos(sum(stats.values()), 1e6)
        if duration is not None:
            fields["event"] = {"duration": duration}
    # A step that did not run is logged as the int 0, one that ran as a float.
    if match.group(3) != "0":
        model["operation"] = "explain"
    elif match.group(4) != "0":
        model["operation"] = "predict"


def kserve_info(text: str) -> TextInfo | None:
    """TextInfo of a KServe line (or a stock uvicorn one), else None."""
    clean = strip_ansi(text)
    match = _KSERVE.match(clean)
    if match is None:
        return uvicorn_info(clean, "kserve")
    stamp, pid, name = match.groups()
    timestamp = timestamps.parse_string(stamp)
    pos = match.end()
    fields: dict[str, Any] = {"log": {"logger": name}}
    if pid is not None and len(pid) < 10:
        fields["process"] = {"pid": int(pid)}
    if name.startswith("uvicorn"):
        parsed = parse_uvicorn(clean, pos, "kserve", fields)
        if parsed is not None:
            return TextInfo(timestamp, parsed[0], (), None, clean[parsed[1]:])
    model: dict[str, Any] = {"server": "kserve"}
    fields["model"] = model
    level = _KSERVE_LOGGER.match(clean, pos)
    if level is not None:
        fields["log"]["level"] = level.group(1).lower()
        if level.group(2):
            origin = _origin(level.group(2))
            if origin:
                fields["log"]["origin"] = origin
        pos = level.end()
    if "preprocess_ms: " in clean:
        trace = _TRACE.search(clean, pos)
        if trace is not None:
            fields["log"].setdefault("level", "info")  # the trace logger only logs at INFO
            put_trace(fields, model, trace)
    return TextInfo(timestamp, fields, (), None, clean[pos:])


@register_format
class KServeFormat(PlainFormat):
    """``--format kserve``: KServe's model-server, trace and uvicorn lines."""

    name = "kserve"
    detect_priority: ClassVar[int] = 20

    @classmethod
    def detect(cls, text: str) -> bool:
        text = strip_ansi(text)
        match = _KSERVE.match(text)
        if match is None:
            return False
        name = match.group(3)
        if name == "kserve" or name.startswith("kserve."):
            return True
        return name.startswith("uvicorn") and _LEVEL_COLON.match(text, match.end()) is not None

    def head(self, text: str) -> TextInfo:
        info = kserve_info(text)
        return info if info is not None else fallback(text, "kserve", getattr(self, "strict", True))
