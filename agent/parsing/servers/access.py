"""Shared pieces of the model-server formats: HTTP access lines and uvicorn's prefix.

Used by the uvicorn, kserve, gunicorn, rayserve, vllm and mlflow formats:

- ``put_request`` turns (method, target, version, status) into ECS ``http.*``,
  ``url.*``, ``event.outcome`` and, through ``model_route``, ``model.name`` /
  ``model.version`` / ``model.operation`` for the serving URL conventions
  below.
- ``client_fields`` fills ``client.ip`` only with a valid IP literal
  (``client.address`` otherwise) and ``client.port``.
- ``parse_uvicorn`` reads a line written by uvicorn's default formatters
  (``LEVEL:`` padded to 9 characters, then either the access line
  ``CLIENT - "METHOD TARGET HTTP/V" STATUS PHRASE`` or a server message).
- ``fallback`` describes a line none of a format's shapes matched.
- ``clf_time`` reads the ``[01/May/2024:10:00:00 +0000]`` timestamp of the
  common log format.

Decisions shared by every format:

- ``url.path`` is percent-decoded (uvicorn logs ``urllib.parse.quote(path)``,
  so KServe's ``/v1/models/iris:predict`` shows as ``iris%3Apredict``);
  ``url.original`` is the target exactly as logged, ``url.query`` the part
  after ``?`` (not decoded).
- ``event.outcome``: status >= 500 is ``failure``, < 400 ``success``, a 4xx
  ``unknown`` (a client's mistake is not the server failing, nor a success).
- Durations are ``event.duration`` in integer nanoseconds.

Serving URL conventions read by ``model_route`` (decoded path, no query):

    /v1/models/NAME[/versions/V]:VERB     KServe v1 / TF Serving: VERB (predict, explain, ...)
    /v1/models/NAME                       model status: ready
    /v2/models/NAME[/versions/V]/OP       Open Inference Protocol: infer, ready, explain,
                                          generate (generate, generate_stream)
    /v2/models/NAME[/versions/V]          model metadata: metadata
    /v2/repository/models/NAME/load       load / unload
    /v2/health/live, /v2/health/ready     health
    /invocations, /predict                predict (MLflow, SageMaker, Flask apps)
    /ping, /health, /healthz              health
    [/openai]/v1/completions, [/openai]/v1/chat/completions   generate
    [/openai]/v1/embeddings               embed

Every function here is total: it returns None (or leaves a field out) rather
than raise.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from agent.events import TAG_PARSE_FAILURE
from agent.parsing import timestamps, tracebacks
from agent.parsing.base import TextInfo
from agent.parsing.parse_text import parse_plain, strip_ansi  # noqa: F401 - strip_ansi: the servers import it from here

# -- clients ----------------------------------------------------------------

_IP_CACHE: dict[str, bool] = {}
_MAX_CACHE = 4096


def is_ip(text: str) -> bool:
    """Is ``text`` an IPv4 or IPv6 literal (what Elasticsearch's ip type takes)?"""
    known = _IP_CACHE.get(text)
    if known is None:
        try:
            ipaddress.ip_address(text)
            known = "%" not in text  # a scoped IPv6 address is not an ip value
        except ValueError:
            known = False
        if len(_IP_CACHE) < _MAX_CACHE:  # client addresses repeat; past the cap, decide each time
            _IP_CACHE[text] = known
    return known


def client_fields(addr: str | None, with_port: bool) -> dict[str, Any] | None:
    """``client.*`` of ``HOST:PORT`` (``[V6]:PORT``, uvicorn's bare ``V6:PORT``) or ``HOST``."""
    if not addr or addr == "-":
        return None
    host, port = addr, None
    if with_port:
        if addr[0] == "[":
            end = addr.find("]")
            if end > 0 and addr[end + 1:end + 2] == ":" and addr[end + 2:].isdigit():
                host, port = addr[1:end], addr[end + 2:]
        else:
            head, sep, tail = addr.rpartition(":")
            if sep and head and tail.isdigit() and tail.isascii():
                host, port = head, tail
    client: dict[str, Any] = {"ip": host} if is_ip(host) else {"address": host}
    if port is not None and len(port) <= 5:
        client["port"] = int(port)
    return client


# -- requests ---------------------------------------------------------------

def outcome(status: int) -> str:
    if status >= 500:
        return "failure"
    if status < 400:
        return "success"
    return "unknown"


_VERSIONED = "/versions/"


def model_route(path: str) -> tuple[str | None, str | None, str] | None:
    """``(model name, model version, operation)`` named by a serving URL path."""
    if path.startswith("/v1/models/"):
        rest = path[11:]
        name, sep, verb = rest.rpartition(":")
        if not sep:
            return (rest, None, "ready") if rest and "/" not in rest else None
        version = None
        if _VERSIONED in name:
            name, _, version = name.partition(_VERSIONED)
        return (name, version, verb) if name and verb.isidentifier() else None
    if path.startswith("/v2/"):
        return _v2_route(path)
    if path.startswith("/openai/"):
        path = path[7:]
    return _FIXED_ROUTES.get(path)


_FIXED_ROUTES: dict[str, tuple[str | None, str | None, str]] = {
    "/invocations": (None, None, "predict"),
    "/predict": (None, None, "predict"),
    "/ping": (None, None, "health"),
    "/health": (None, None, "health"),
    "/healthz": (None, None, "health"),
    "/v1/completions": (None, None, "generate"),
    "/v1/chat/completions": (None, None, "generate"),
    "/v1/embeddings": (None, None, "embed"),
}
_V2_OPERATIONS = {"infer": "infer", "ready": "ready", "explain": "explain", "generate": "generate",
                  "generate_stream": "generate"}


def _v2_route(path: str) -> tuple[str | None, str | None, str] | None:
    parts = path[4:].split("/")
    kind = parts[0]
    if kind == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        return None, None, "health"
    if kind == "repository" and len(parts) == 4 and parts[1] == "models" and parts[3] in ("load", "unload"):
        return (parts[2], None, parts[3]) if parts[2] else None
    if kind != "models" or len(parts) < 2 or not parts[1]:
        return None
    name, version, rest = parts[1], None, parts[2:]
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    if not rest:
        return name, version, "metadata"
    operation = _V2_OPERATIONS.get(rest[0]) if len(rest) == 1 else None
    return (name, version, operation) if operation else None


def put_request(fields: dict[str, Any], model: dict[str, Any], method: str, target: str,
                version: str | None, status: int | None) -> None:
    """Fill ``http``, ``url``, ``event.outcome`` and the route's ``model.*`` from a request."""
    http: dict[str, Any] = {"request": {"method": method}}
    if version:
        http["version"] = version
    if status is not None:
        http["response"] = {"status_code": status}
        fields["event"] = {"outcome": outcome(status)}
    fields["http"] = http
    path, query, route = _read_target(target)
    url: dict[str, Any] = {"original": target}
    if path:
        url["path"] = path
    if query:
        url["query"] = query
    fields["url"] = url
    put_route(model, route)


def put_route(model: dict[str, Any], route: tuple[str | None, str | None, str] | None) -> None:
    """``model.name`` / ``model.version`` / ``model.operation`` from a ``model_route`` result."""
    if route is not None:
        name, model_version, operation = route
        if name:
            model["name"] = name
        if model_version:
            model["version"] = model_version
        model["operation"] = operation


# A server sees few distinct targets: decoding and routing each once saves
# most of an access line's cost. Unbounded inputs (query strings) stop being
# cached past the cap instead of growing the cache.
_TARGETS: dict[str, tuple[str | None, str | None, tuple[str | None, str | None, str] | None]] = {}


def _read_target(target: str) -> tuple[str | None, str | None, tuple[str | None, str | None, str] | None]:
    known = _TARGETS.get(target)
    if known is None:
        url = url_fields(target)
        path = url.get("path")
        known = (path, url.get("query"), model_route(path) if path else None)
        if len(_TARGETS) < _MAX_CACHE:
            _TARGETS[target] = known
    return known


def url_fields(target: str) -> dict[str, Any]:
    """``url.original`` as logged, ``url.path`` percent-decoded, ``url.query``."""
    url: dict[str, Any] = {"original": target}
    path, sep, query = target.partition("?")
    if path[:1] != "/" and "://" in path:  # absolute-form target (a proxy's request)
        try:
            path = urlsplit(path).path
        except ValueError:
            return url
    if "%" in path:
        path = unquote(path)
    if path:
        url["path"] = path
    if sep and query:
        url["query"] = query
    return url


_MAX_LONG = float(1 << 63)


def nanos(value: float, scale: float) -> int | None:
    """``value`` (in units of ``scale`` ns) as integer ns for ``event.duration``;
    None if negative, not finite or beyond a long."""
    result = value * scale
    if not 0 <= result < _MAX_LONG:  # (False for NaN too)
        return None
    return int(round(result))


# -- uvicorn ----------------------------------------------------------------

LEVELS = "CRITICAL|FATAL|ERROR|WARNING|WARN|INFO|DEBUG|TRACE"
# ColourizedFormatter's %(levelprefix)s: "INFO:" padded to 9, then the format's space.
_LEVELPREFIX = re.compile(r"(" + LEVELS + r"):\s+")
# AccessFormatter: '%(client_addr)s - "%(request_line)s" %(status_code)s' with
# status_code "200 OK" (a bare "200" when the record went through gunicorn's
# access handler); KServe adds %(process)s after the client.
_UVICORN_ACCESS = re.compile(r'(?:(\S+) )?(?:(\d+) )?- "([A-Za-z]+) (\S+) HTTP/(\d(?:\.\d)?)" (\d{3})(?: .*)?$')
_SERVER_PROCESS = re.compile(r"(?:Started|Finished) server process \[(\d+)\]")


def parse_uvicorn(text: str, pos: int, server: str,
                  fields: dict[str, Any] | None = None) -> tuple[dict[str, Any], int] | None:
    """``(fields, where the message starts)`` of a uvicorn line whose level
    prefix starts at ``pos``, else None. ``fields`` may hold what a prefix
    before ``pos`` already gave."""
    match = _LEVELPREFIX.match(text, pos)
    if match is None:
        return None
    if fields is None:
        fields = {}
    model: dict[str, Any] = {"server": server}
    fields["model"] = model
    log = fields.get("log")
    if log is None:
        log = fields["log"] = {}
    log["level"] = match.group(1).lower()
    end = match.end()
    if text.find('- "', end, end + 80) >= 0:  # cheaper than letting the access regex fail
        access = _UVICORN_ACCESS.match(text, end)
        if access is not None:
            log.setdefault("logger", "uvicorn.access")
            client_addr, pid, method, target, version, status = access.groups()
            client = client_fields(client_addr, True)
            if client is not None:
                fields["client"] = client
            if pid is not None and len(pid) < 10:
                fields["process"] = {"pid": int(pid)}
            put_request(fields, model, method, target, version, int(status))
            return fields, end
    process = _SERVER_PROCESS.match(text, end)
    if process is not None and len(process.group(1)) < 10:
        fields["process"] = {"pid": int(process.group(1))}
    return fields, end


def parse_uvicorn_access_body(text: str, pos: int, server: str) -> dict[str, Any] | None:
    """A bare uvicorn access message (no level prefix, as gunicorn's access log writes it)."""
    access = _UVICORN_ACCESS.match(text, pos)
    if access is None:
        return None
    client_addr, pid, method, target, version, status = access.groups()
    model: dict[str, Any] = {"server": server}
    fields: dict[str, Any] = {"model": model, "log": {"logger": "uvicorn.access"}}
    client = client_fields(client_addr, True)
    if client is not None:
        fields["client"] = client
    put_request(fields, model, method, target, version, int(status))
    return fields


def is_uvicorn_line(text: str) -> bool:
    """Detection: a uvicorn access line or one of uvicorn's own start-up lines."""
    text = strip_ansi(text)
    match = _LEVELPREFIX.match(text)
    if match is None or match.end() - match.start() < 9:  # the padding is uvicorn's mark
        return False
    end = match.end()
    return (_UVICORN_ACCESS.match(text, end) is not None
            or text.startswith(_UVICORN_MESSAGES, end))


_UVICORN_MESSAGES = ("Started server process [", "Finished server process [", "Uvicorn running on ",
                     "Waiting for application startup.", "Application startup complete.",
                     "Exception in ASGI application", "Shutting down")


# -- lines no shape matched --------------------------------------------------

def fallback(text: str, server: str, strict: bool) -> TextInfo:
    """A line none of a format's shapes matched: plain text plus ``model.server``.

    Forced formats (``strict``) tag it ``parse_failure`` with the reason;
    blank lines and a traceback with no log line before it are not failures.
    """
    timestamp, fields = parse_plain(text)
    fields["model"] = {"server": server}
    if strict and text and not text.isspace() and not tracebacks.starts_traceback(text):
        return TextInfo(timestamp, fields, (TAG_PARSE_FAILURE,), f"not a {server} log line")
    return TextInfo(timestamp, fields)


# -- common log format time -------------------------------------------------

_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_CLF_TIME = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d)(?: ([+-]\d{4}))?$", re.ASCII)


@lru_cache(maxsize=512)
def _clf_minute(day: int, month: int, year: int, hour: int, minute: int, zone: str | None) -> float | None:
    # Through the ISO parser: it validates the date and keeps the result in
    # the range every later stage can format. No zone: host local time.
    return timestamps.parse_string(f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00{zone or ''}")


def clf_time(text: str) -> float | None:
    """Epoch seconds of ``01/May/2024:10:00:00 +0000`` (the inside of CLF's brackets)."""
    match = _CLF_TIME.match(text)
    if match is None:
        return None
    day, month_name, year, hour, minute, second, zone = match.groups()
    month = _MONTHS.get(month_name)
    if month is None or int(second) > 60:
        return None
    base = _clf_minute(int(day), month, int(year), int(hour), int(minute), zone)
    if base is None or base + 60 > _LAST_EPOCH:  # (a leap second of 9999-12-31 23:59)
        return None
    return base + int(second)


_LAST_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z, the last time datetime can hold
