"""gunicorn logs (format ``gunicorn``): the access log and the error log.

Access log, gunicorn's default ``access_log_format`` (the combined log
format) or the common log format without referrer and user agent::

    10.0.0.7 - - [01/May/2024:10:00:00 +0000] "POST /predict HTTP/1.1" 200 1234 "-" "curl/8.0"
    10.0.0.7 - alice [01/May/2024:10:00:00 +0000] "GET /ping HTTP/1.0" 200 2

give ``client.ip`` (``client.address`` when %(h)s is no IP literal),
``http.*``, ``url.*``, ``http.response.bytes``, ``http.request.referrer``,
``user_agent.original``, ``event.outcome`` and the serving route's
``model.*``; a %(u)s user goes to ``extra.user``. gunicorn escapes nothing
inside the quotes: the request ends at the first ``" NNN``, the user agent
at the last quote.

Tokens appended after that (``access_log_format = '... %(D)s'``) are read
as the request's duration when they look like one, told apart like this:

    0.012345          a decimal number: %(L)s, seconds
    12ms 850us 1.5s   an explicit unit suffix (ms, us, µs, s): that unit
    12345             a bare integer: %(D)s, MICROseconds (gunicorn's %(M)s
                      milliseconds and %(T)s seconds cannot be told from it;
                      write them with a suffix, e.g. '%(M)sms')
    <12>              %(p)s: process.pid

A decimal or suffixed token wins over bare integers; among bare integers the
last one is taken (so '%(T)s %(D)s' reads D). Other trailing tokens are kept
in ``extra.access_log_trailing``.

Error log (``[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s``)::

    [2024-05-01 10:00:00 +0000] [12] [INFO] Booting worker with pid: 13
    [2024-05-01 10:00:05 +0000] [12] [CRITICAL] WORKER TIMEOUT (pid:13)
    [2024-05-01 10:00:06 +0000] [13] [ERROR] Error handling request /predict   (traceback joined)

gives ``process.pid``, ``log.level`` (the message is what follows the
prefix; an access line is its own message), the worker pid of worker lifecycle
messages as ``model.worker`` and the path of "Error handling request" as
``url.path``. With uvicorn workers (``-k uvicorn.workers.UvicornWorker``)
uvicorn's access records go through gunicorn's access handler as
``127.0.0.1:52345 - "GET /ping HTTP/1.1" 200``: read too.

Guarantee: ``head`` never raises; anything else is plain text (tagged
``parse_failure`` when the format was forced).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from agent.parsing import timestamps
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.parse_text import PlainFormat
from agent.parsing.servers.access import (client_fields, clf_time, fallback, nanos, outcome,
                                          parse_uvicorn_access_body, put_request)

# %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s ["%(f)s" "%(a)s"] [trailing tokens].
# gunicorn does not escape quotes inside "%(r)s" and the headers, so the
# request ends at the first '" NNN ' and the user agent at the last quote.
_ACCESS = re.compile(
    r'(\S+) \S+ (\S+) \[([^\]]+)\] "(.*?)" (\d{3}|-) (\d+|-)'
    r'(?: "(.*?)" "(.*)")?((?: \S+)*) *$'
)
_ERROR = re.compile(r" ?\[(\d+)\] \[([A-Z]+)\] ")
_WORKER_PID = re.compile(r"pid: ?(\d+)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s)?$")
_UNIT_SCALE = {"s": 1e9, "ms": 1e6, "us": 1e3, "µs": 1e3}
_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error", "CRITICAL": "critical"}


def _read_trailing(tokens: str, fields: dict[str, Any]) -> str | None:
    """Read the duration / pid tokens after the combined format; the others, joined."""
    explicit: int | None = None
    bare: int | None = None
    unknown: list[str] = []
    for token in tokens.split():
        if token[0] == "<" and token[-1] == ">" and token[1:-1].isdigit() and len(token) < 12:
            fields["process"] = {"pid": int(token[1:-1])}
            continue
        match = _DURATION.match(token) if len(token) < 24 else None
        if match is None:
            unknown.append(token)
            continue
        number, unit = match.groups()
        if unit is None and "." not in number:
            bare = nanos(float(number), 1e3)  # %(D)s: microseconds
            continue
        value = nanos(float(number), _UNIT_SCALE[unit] if unit else 1e9)  # no unit: %(L)s, seconds
        if explicit is None:
            explicit = value
    duration = explicit if explicit is not None else bare
    if duration is not None:
        fields.setdefault("event", {})["duration"] = duration
    return " ".join(unknown) if unknown else None


def access_info(text: str, server: str) -> TextInfo | None:
    """TextInfo of a common / combined log format line, else None."""
    match = _ACCESS.match(text)
    if match is None:
        return None
    host, user, stamp, request, status, size, referrer, agent, trailing = match.groups()
    model: dict[str, Any] = {"server": server}
    fields: dict[str, Any] = {"model": model}
    method, _, rest = request.partition(" ")
    target, _, version = rest.rpartition(" ")
    if not target:  # "GET /x" without a protocol (HTTP/0.9) or a garbage request line
        target, version = rest, ""
    if method and method.isalpha() and target:
        put_request(fields, model, method, target, version[5:] if version.startswith("HTTP/") else None,
                    int(status) if status != "-" else None)
    elif status != "-":
        code = int(status)
        fields["http"] = {"response": {"status_code": code}}
        fields["event"] = {"outcome": outcome(code)}
    if "http" in fields and size != "-" and len(size) < 19:
        fields["http"].setdefault("response", {})["bytes"] = int(size)
    client = client_fields(host, False)
    if client is not None:
        fields["client"] = client
    if referrer and referrer != "-":
        fields.setdefault("http", {}).setdefault("request", {})["referrer"] = referrer
    if agent and agent != "-":
        fields["user_agent"] = {"original": agent}
    extra: dict[str, Any] = {}
    if user != "-":
        extra["user"] = user  # basic-auth user: no field of ours means it
    if trailing:
        unknown = _read_trailing(trailing, fields)
        if unknown is not None:
            extra["access_log_trailing"] = unknown
    if extra:
        fields["extra"] = extra
    return TextInfo(clf_time(stamp), fields)


def error_info(text: str, server: str) -> TextInfo | None:
    """TextInfo of a ``[time] [pid] [LEVEL] message`` error-log line, else None."""
    timestamp, end = timestamps.match_prefix(text)
    if not end:
        return None
    match = _ERROR.match(text, end)
    if match is None:
        return None
    pid, level = match.groups()
    model: dict[str, Any] = {"server": server}
    fields: dict[str, Any] = {"model": model, "log": {"level": _LEVELS.get(level, level.lower())}}
    if len(pid) < 10:
        fields["process"] = {"pid": int(pid)}
    start = match.end()
    message = text[start:]
    if "pid" in message:
        worker = _WORKER_PID.search(message)
        if worker is not None and ("orker" in message or "WORKER" in message):
            model["worker"] = worker.group(1)
    elif message.startswith("Error handling request "):
        target = message[23:].strip()
        if target.startswith("/"):
            fields["url"] = {"path": target.partition("?")[0]}
    return TextInfo(timestamp, fields, (), None, message)


def gunicorn_info(text: str, server: str) -> TextInfo | None:
    """Any gunicorn line (error log, access log, uvicorn-worker access), else None."""
    first = text[:1]
    if first == "[":
        return error_info(text, server)
    info = access_info(text, server)
    if info is not None:
        return info
    fields = parse_uvicorn_access_body(text, 0, server)
    if fields is not None:
        return TextInfo(None, fields)
    return None


@register_format
class GunicornFormat(PlainFormat):
    """``--format gunicorn``: gunicorn access and error logs; tracebacks joined."""

    name = "gunicorn"
    # The error-log shape is gunicorn's own, but the access log is the
    # common log format any web server writes: offered last.
    detect_priority: ClassVar[int] = 150

    @classmethod
    def detect(cls, text: str) -> bool:
        if text[:1] == "[":
            end = timestamps.match_prefix(text)[1]
            return bool(end) and _ERROR.match(text, end) is not None
        return _ACCESS.match(text) is not None

    def head(self, text: str) -> TextInfo:
        info = gunicorn_info(text, "gunicorn")
        return info if info is not None else fallback(text, "gunicorn", getattr(self, "strict", True))
