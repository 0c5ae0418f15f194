"""Ray Serve logs (format ``rayserve``): text and JSON, replicas, proxies, controller.

Text (``ServeFormatter``: ``%(levelname)s %(asctime)s COMPONENT COMPONENT_ID``
then the request context, then the message), in the three layouts Ray has
used, each optionally behind the ``(ServeReplica:app:Model pid=42)`` tag a
driver prints before streamed actor output::

    INFO 2024-12-31 01:22:15,889 default_Model 3npxyudx 733674e0-... -- GET / 200 8.1ms     (2.10+)
    INFO 2024-02-27 16:05:11,245 default_Model 256v3hq4 4db9445d-... / replica.py:373 - __CALL__ OK 0.6ms
    INFO 2023-07-20 13:47:54,221 http_proxy 127.0.0.1 123-234 / default http_proxy.py:538 - GET 200 8.9ms
    INFO 2022-08-02 16:17:02,501 SayHello SayHello#kKGBoa replica.py:482 - HANDLE __call__ OK 0.3ms

The message is what follows the prefix and the request context. For a
replica, COMPONENT is the deployment (``model.name``, as Ray writes
it: ``app_Deployment`` since 2.9) and COMPONENT_ID the replica
(``model.worker``); the controller and proxies (``controller``, ``proxy``,
``http_proxy``, ``grpc_proxy``) go to ``labels.component`` /
``labels.component_id`` instead. The request id is ``model.request_id``,
the application (2.7-2.9 text, JSON) ``service.name``. Ray core's driver
lines (``2023-04-10 15:57:32,100<TAB>INFO scripts.py:380 -- Deploying ...``)
are read too. An actor's traceback, every line behind its tag, joins the
log line the actor wrote before it, whatever other actors write in between
(``multiline.PrefixJoiner``: one lane per actor tag); the message is
without the tags.

Access messages (``access_log_msg``: ``[CLIENT ]METHOD ROUTE STATUS N.Nms``;
older ``METHOD STATUS N.Nms`` and ``__CALL__ OK N.Nms``): an HTTP method gives
``http.request.method``, ``url.path`` = the route, a numeric status
``http.response.status_code``; a handle call (``CALL``, ``HANDLE``,
``__CALL__``) gives ``model.operation`` = the called method; OK / ERROR give
``event.outcome``; the latency ``event.duration`` (ns). Ray logs the route
(prefix or pattern), not the request's exact path: it still goes to
``url.path``, the closest field we have.

JSON (``LoggingConfig(encoding="JSON")`` / ``RAY_SERVE_LOG_ENCODING=JSON``):
one object per line with ``levelname``, ``asctime``, ``message``,
``filename``, ``lineno``, ``process``, ``timestamp_ns`` (preferred to
``asctime``: it has a zone), ``exc_text`` (``funcName``, which
``additional_log_standard_attrs`` adds, joins ``filename``/``lineno`` in
``log.origin``; a ``file.py:N - `` message prefix is cut and read there,
and ``filename``/``lineno`` that say the same are not kept in ``extra``) and the Serve keys
``deployment``, ``replica``, ``request_id``, ``route``, ``application``,
``component_name``, ``component_id`` mapped as above; Ray's other context
(``job_id``, ``worker_id``, ``node_id``, ``actor_id``, ``task_id``) and
user keys stay in ``extra``; ECS-shaped keys map as ``--format json`` maps
them (a value whose shape the index mapping refuses stays in ``extra`` under
its dotted key, and objects nested too deep for ``extra`` become JSON text:
``parsing/json_fit``).

Guarantee: never raises; a line of neither shape is plain text (tagged
``parse_failure`` when the format was forced; a ``{`` line that is not a
JSON object with the JSON reason).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from agent.events import TAG_PARSE_FAILURE, Line, Record
from agent.parsing import json_decode, timestamps, tracebacks
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.multiline import Joiner, PrefixJoiner
from agent.parsing.json_fit import cap_extra
from agent.parsing.json_plans import DEFAULT_KEYS, KeyMap, key_map
from agent.parsing.parse_json import failure_reason, map_object
from agent.parsing.parse_text import PlainFormat, parse_plain
from agent.parsing.servers.access import (LEVELS, client_fields, fallback, nanos, outcome, parse_uvicorn, put_request,
                                          strip_ansi)

_ACTOR = re.compile(r"\(([^()]*?) pid=(\d+)(?:, ip=([^)]*))?\) ")
_SERVE = re.compile(r"(" + LEVELS + r") (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) (\S+) ")
# 2.7-2.9 / 2.0-2.6: [context tokens] FILE:LINE - message
_OLD_TAIL = re.compile(r"((?:(?!-- )\S+ ){0,3}?)([^\s:]+\.py|<[^\s>]+>):(\d+) - ")
# 2.10+: [context tokens] -- message
_NEW_TAIL = re.compile(r"((?:\S+ ){0,6}?)-- ")
_CORE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\t(" + LEVELS + r"|SUCC) ([^\s:]+):(\d+) -- ")
_ACCESS = re.compile(r"(?:(\[[^\]]*\]:\d+|[\w.\-]+:\d+) )?([A-Za-z_]+)(?: (\S+))? (\d{3}|[A-Z_]+) "
                     r"(\d+(?:\.\d+)?)ms$")
_JSON_PREFIX = re.compile(r"([^\s:]+\.py|<[^\s>]+>):(\d+) - ")
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"})
_SYSTEM_COMPONENTS = frozenset({"controller", "proxy", "http_proxy", "grpc_proxy", "serve_controller"})
_SERVE_KEYS = ("deployment", "replica", "request_id", "route", "application", "component_name",
               "component_id", "filename", "lineno", "process", "exc_text", "timestamp_ns")


def _origin(file_name: str, line: str) -> dict[str, Any]:
    file: dict[str, Any] = {"name": file_name}
    if line.isdigit() and len(line) < 10:
        file["line"] = int(line)
    return {"file": file}


def put_access(fields: dict[str, Any], model: dict[str, Any], message: str, route_hint: str | None) -> None:
    """Read a Serve access message (``GET / 200 8.1ms``, ``__CALL__ OK 0.6ms``)."""
    match = _ACCESS.match(message)
    if match is None:
        return
    client, method, route, status, latency = match.groups()
    if method in _HTTP_METHODS:
        route = route or route_hint
        code = int(status) if status.isdigit() else None
        if route:
            # The deployment is the model: take only the operation a serving route names.
            routed: dict[str, Any] = {}
            put_request(fields, routed, method, route, None, code)
            fields["url"] = {"path": fields["url"].get("path", route)}  # a route, not the request's URL
            if "operation" in routed:
                model.setdefault("operation", routed["operation"])
        else:
            fields["http"] = {"request": {"method": method}}
            if code is not None:
                fields["http"]["response"] = {"status_code": code}
                fields["event"] = {"outcome": outcome(code)}
    else:
        model["operation"] = route if route else method.lower()
    if not status.isdigit():
        word = "success" if status == "OK" else "failure" if status == "ERROR" else "unknown"
        fields["event"] = {"outcome": word}
        if word == "unknown":
            fields.setdefault("extra", {})["status"] = status
    duration = nanos(float(latency), 1e6)
    if duration is not None:
        fields.setdefault("event", {})["duration"] = duration
    if client:
        parsed = client_fields(client, True)
        if parsed is not None:
            fields["client"] = parsed


def _put_component(fields: dict[str, Any], model: dict[str, Any], component: str, component_id: str) -> None:
    if component in _SYSTEM_COMPONENTS:
        fields["labels"] = {"component": component, "component_id": component_id}
    else:
        model["name"] = component
        model["worker"] = component_id


def text_info(text: str) -> TextInfo | None:
    """TextInfo of a Ray Serve (or Ray core driver) text line, else None.

    (A driver on a terminal colours the actor tag: colour codes are dropped.)
    """
    text = strip_ansi(text)
    fields: dict[str, Any] = {}
    pos = 0
    if text[:1] == "(":
        actor = _ACTOR.match(text)
        if actor is not None:
            if len(actor.group(2)) < 10:
                fields["process"] = {"pid": int(actor.group(2))}
            if actor.group(3):
                fields["extra"] = {"node_ip": actor.group(3)}
            pos = actor.end()
    match = _SERVE.match(text, pos)
    if match is None:
        if pos:  # an actor's other output, e.g. the proxy's uvicorn start-up lines
            parsed = parse_uvicorn(text, pos, "rayserve", fields)
            if parsed is not None:
                return TextInfo(None, parsed[0], (), None, text[parsed[1]:])
            if tracebacks.starts_traceback(text[pos:]):  # an actor's traceback, every line tagged
                fields["model"] = {"server": "rayserve"}
                return TextInfo(None, fields, (), None, text[pos:])
        return _core_info(text, pos, fields)
    level, stamp, component, component_id = match.groups()
    model: dict[str, Any] = {"server": "rayserve"}
    fields["model"] = model
    log: dict[str, Any] = {"level": level.lower()}
    fields["log"] = log
    pos = match.end()
    route = None
    tail = _OLD_TAIL.match(text, pos)
    if tail is not None:
        tokens = tail.group(1).split()
        log["origin"] = _origin(tail.group(2), tail.group(3))
        if tokens:
            model["request_id"] = tokens[0]
        if len(tokens) > 1:
            route = tokens[1]
        if len(tokens) > 2:
            fields["service"] = {"name": tokens[2]}
        pos = tail.end()
    else:
        tail = _NEW_TAIL.match(text, pos)
        if tail is not None:
            tokens = tail.group(1).split()
            if tokens:
                model["request_id"] = tokens[0]
            pos = tail.end()
    message = text[pos:]
    if message[-2:] == "ms":
        put_access(fields, model, message, route)
    _put_component(fields, model, component, component_id)
    return TextInfo(timestamps.parse_string(stamp), fields, (), None, message)


def split_prefix(text: str) -> tuple[str | None, str, str]:
    """``(actor tag, "", rest)`` of a line (``multiline.PrefixJoiner``): the
    ``(ServeReplica:app:Model pid=42) `` tag a driver writes before every
    line of an actor's output (None without one), then the text after it."""
    if "\x1b[" in text:
        text = strip_ansi(text)
    if text[:1] == "(":
        actor = _ACTOR.match(text)
        if actor is not None:
            return actor.group(0), "", text[actor.end():]
    return None, "", text


def _core_info(text: str, pos: int, fields: dict[str, Any]) -> TextInfo | None:
    core = _CORE.match(text, pos)
    if core is None:
        return None
    stamp, level, file_name, line = core.groups()
    fields["model"] = {"server": "rayserve"}
    fields["log"] = {"level": "info" if level == "SUCC" else level.lower(), "origin": _origin(file_name, line)}
    return TextInfo(timestamps.parse_string(stamp), fields, (), None, text[core.end():])


def json_fields(obj: dict[str, Any], keys: KeyMap = DEFAULT_KEYS) -> tuple[str, float | None, dict[str, Any]]:
    """``(message, timestamp, fields)`` of a Ray Serve JSON record (takes ownership).

    Lossless like ``--format json``: a Serve key that could not be used (a
    number where a name belongs, ...) is kept in ``extra``. ``keys``: the
    JSON keys with a meaning (``--map-field`` included), as for ``--format json``.
    """
    serve = {key: obj.pop(key) for key in _SERVE_KEYS if key in obj}
    message, timestamp, fields = map_object(obj, keys)
    model: dict[str, Any] = {"server": "rayserve"}
    existing = fields.get("model")
    if type(existing) is dict:  # an ECS-style "model.*" key in the record: keep it under ours
        existing.update(model)
        model = existing
    else:
        if existing is not None:
            fields.setdefault("extra", {})["model"] = existing
        fields["model"] = model
    names = {key: value for key, value in serve.items() if isinstance(value, str) and value}
    used: set[str] = set()
    if "timestamp_ns" in serve:
        precise = timestamps.parse_value(serve["timestamp_ns"])
        if precise is not None:
            timestamp = precise
            used.add("timestamp_ns")
    log = fields.get("log")
    if type(log) is not dict:
        log = fields["log"] = {} if log is None else log
    origin = log.get("origin") if type(log) is dict else None
    # (``funcName``, which Serve's ``additional_log_standard_attrs`` adds, is
    # in log.origin already: the file and line go beside it.)
    if type(log) is dict and (origin is None or (type(origin) is dict and "file" not in origin)):
        lineno = serve.get("lineno")
        line = str(lineno) if type(lineno) is int else ""
        prefix = _JSON_PREFIX.match(message)
        where: dict[str, Any] | None = None
        if prefix is not None:  # 2.9 wrote "file.py:123 - " into the message
            where = _origin(prefix.group(1), prefix.group(2))
            message = message[prefix.end():]
            if names.get("filename") == prefix.group(1):  # the same place: not kept twice
                used.add("filename")
                if line == prefix.group(2) and "line" in where["file"]:
                    used.add("lineno")
        elif "filename" in names:
            where = _origin(names["filename"], line)
            used.update(("filename", "lineno") if "line" in where["file"] else ("filename",))
        if where is not None:
            if origin is None:
                log["origin"] = where
            else:
                origin.update(where)
    if not log:
        del fields["log"]
    process = serve.get("process")
    if type(process) is int and 0 <= process < 1 << 31 and "process" not in fields:
        fields["process"] = {"pid": process}
        used.add("process")
    for key, leaf in (("deployment", "name"), ("replica", "worker"), ("request_id", "request_id")):
        if key in names and leaf not in model:
            model[leaf] = names[key]
            used.add(key)
    if "application" in names and "service" not in fields:
        fields["service"] = {"name": names["application"]}
        used.add("application")
    component = names.get("component_name")
    if component in _SYSTEM_COMPONENTS and "labels" not in fields:
        fields["labels"] = labels = {"component": component}
        used.add("component_name")
        if "component_id" in names:
            labels["component_id"] = names["component_id"]
            used.add("component_id")
    elif component == "replica" and "deployment" in used:
        used.add("component_name")  # implied by deployment / replica
    stack = names.get("exc_text")
    if stack is not None and "error" not in fields:
        error: dict[str, Any] = {"stack_trace": stack}
        described = tracebacks.describe(stack.rstrip("\n").splitlines(), require_header=False)
        if described is not None and described[0] is not None:
            error["type"] = described[0]
            if described[1] is not None:
                error["message"] = described[1]
        fields["error"] = error
        used.add("exc_text")
    if message[-2:] == "ms":
        put_access(fields, model, message, names.get("route"))
    if "route" in names and "url" not in fields:
        fields["url"] = {"path": names["route"]}
    if "route" in names and fields["url"].get("path") == names["route"]:
        used.add("route")
    leftovers = {key: value for key, value in serve.items() if key not in used}
    if leftovers:
        cap_extra(leftovers)  # (into the flattened extra: at most 50 objects deep, as map_object's)
        extra = fields.get("extra")
        if type(extra) is dict:
            extra.update(leftovers)
        else:
            fields["extra"] = leftovers
    return message, timestamp, fields


@register_format
class RayServeFormat(PlainFormat):
    """``--format rayserve``: Ray Serve text and JSON logs; tracebacks joined."""

    name = "rayserve"
    detect_priority: ClassVar[int] = 40

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._keys = key_map(settings.map_fields)  # the JSON keys with a meaning, --map-field included

    @classmethod
    def detect(cls, text: str) -> bool:
        if text[:1] == "{":
            return '"replica"' in text and '"deployment"' in text and text.rstrip().endswith("}")
        pos = 0
        if text[:1] == "(":
            actor = _ACTOR.match(text)
            if actor is None:
                return False
            pos = actor.end()
        match = _SERVE.match(text, pos)
        if match is None:
            return False
        pos = match.end()
        return _OLD_TAIL.match(text, pos) is not None or _NEW_TAIL.match(text, pos) is not None

    def structured(self, line: Line) -> Record | None:
        text = line.text
        if text[:1] != "{":
            return None
        try:
            obj = json_decode.loads(text)
        except Exception:  # noqa: BLE001 - not JSON: a text line (head says why)
            return None
        if type(obj) is not dict:
            return None
        message, timestamp, fields = json_fields(obj, self._keys)
        tags = line.tags
        if len(tags) > 1:
            tags = tuple(dict.fromkeys(tags))
        return Record(line.source, line.offset, line.end, message, line.read_time, timestamp, fields,
                      tags, text if self.keep_original else None, None, 1)

    def head(self, text: str) -> TextInfo:
        info = text_info(text)
        if info is not None:
            return info
        if text[:1] == "{":
            timestamp, fields = parse_plain(text)
            fields["model"] = {"server": "rayserve"}
            if getattr(self, "strict", True):
                return TextInfo(timestamp, fields, (TAG_PARSE_FAILURE,), failure_reason(text))
            return TextInfo(timestamp, fields)
        return fallback(text, "rayserve", getattr(self, "strict", True))

    def body(self, text: str) -> str:
        """A later line of an event without the actor tag the driver wrote before it."""
        return split_prefix(text)[2] if text[:1] == "(" or text[:1] == "\x1b" else text

    def joiner(self) -> Joiner:
        if self.settings.multiline_start is not None:
            return super().joiner()
        return PrefixJoiner(split_prefix)
