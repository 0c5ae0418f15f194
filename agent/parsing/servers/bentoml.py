"""BentoML: the server's log lines and ``bentoml.monitor`` records.

Server lines (``bentoml/_internal/log.py``: ``%(asctime)s
%(levelname_bracketed)s %(component)s %(message)s%(trace_msg)s``, asctime
``%Y-%m-%dT%H:%M:%S%z``, component ``[type:service:worker]``), the access
ones from ``server/http/access.py``::

    2024-05-01T10:00:00+0000 [INFO] [api_server:iris_classifier:1] 127.0.0.1:56134
      (scheme=http,method=POST,path=/classify,type=application/json,length=20)
      (status=200,type=application/json,length=3) 12.345ms
      (trace=3f2c...,span=9a1b...,sampled=0,service.name=iris_classifier)

(one line). Fields: ``log.level``, ``model.worker`` (the worker index),
``service.name`` and ``model.name`` (the component's service, or a runner's
name), ``trace.id`` / ``span.id`` / ``service.name`` from the trace suffix;
for access lines ``client.*``, ``http.request.method``, ``url.*``,
``http.response.status_code``, ``http.request.bytes`` /
``http.response.bytes`` (the logged content lengths), ``event.duration``
(ns), ``event.outcome``, ``model.operation`` (the API name, or health /
metrics for BentoML's own endpoints). The component, the trace's sampled
flag, content types and the scheme go to ``extra``. The
message is the text after the component, without the trace suffix. Python
tracebacks (``exc_info``) are joined to their line as for plain text.

Monitor records (``monitoring/default.py``): python-json-logger writes each
record as one JSON object to ``LOG_PATH/NAME/data/data.WORKER.log`` (rotated
daily), the columns' roles once to ``LOG_PATH/NAME/schema/schema.WORKER.log``
(``{"meta_data": {"bento_name", "bento_version"}, "columns": [{"name",
"role", "type"}]}``). A record gets ``model.monitor.name`` (NAME, from the
path), ``@timestamp`` from ``timestamp`` (naive local time, as BentoML writes
it), ``model.request_id``, ``trace.id`` (the decimal id BentoML writes,
turned into the 32-digit hex its access log prints). With the schema (the
last one in the file: a restarted server appends a new one): columns of role
feature -> ``model.input.features``, prediction -> ``model.prediction``,
target -> ``model.target``; other roles and unknown keys -> ``extra``;
``service.name`` / ``service.version`` from its meta_data. Without a schema
every column goes to ``extra``. The schema file's own line is a record with
``service.*`` and the columns in ``extra``. Other JSON lines are read as
``--format json`` reads them. The schema is looked up when the
first record is read and looked at again (``stat``) at most every
``SCHEMA_RECHECK`` seconds, so a schema written later or rewritten after a
restart is picked up; reading it never raises.

Guarantee: total; one anchored regex per line shape.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, ClassVar

import orjson

from agent.events import Line, Record
from agent.parsing import json_decode, timestamps
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.json_fit import cap_extra, capped
from agent.parsing.parse_json import JsonFormat
from agent.parsing.parse_text import PlainFormat
from agent.parsing.servers.access import client_fields, fallback, nanos, put_request
from agent.schema import FLATTENED_DEPTH_LIMIT

SERVER = "bentoml"
SCHEMA_RECHECK = 10.0
_SCHEMA_MAX_BYTES = 1 << 20

# asctime with %z, [LEVEL], [component]. Groups: time, level, component.
_PREFIX = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d{1,6})?[+-]\d{4}) \[([A-Z]+)\] \[([^\]\s]*)\] ?", re.ASCII)
# The access message. Groups: client, scheme, method, path, request type,
# request length, status, response type, response length, latency (ms).
_ACCESS = re.compile(
    r"(\S+) \(scheme=(\w*),method=([A-Z]*),path=(.*?)(?:,type=([^,)]*))?(?:,length=(\d*))?\)"
    r" \(status=(\d{1,3})(?:,type=([^,)]*))?(?:,length=(\d*))?\) (\d+(?:\.\d+)?)ms")
_WEBSOCKET = re.compile(r"(\S+) \(scheme=(\w*),path=(.*)\) - (.*)$")
# trace_msg, appended to every message while a request is traced.
_TRACE = re.compile(r" \(trace=([0-9a-fA-F]+),span=([0-9a-fA-F]+),sampled=(\d)(?:,service\.name=([^)]*))?\)$")
_OWN_ENDPOINTS = {"/healthz": "health", "/livez": "health", "/readyz": "ready", "/metrics": "metrics",
                  "/docs.json": "docs", "/schema.json": "docs"}
_MONITOR_KEYS = ("timestamp", "request_id", "trace_id")
_ROLES = {"feature": ("input", "features"), "prediction": ("prediction", None), "target": ("target", None)}


def _component(component: str, fields: dict[str, Any], model: dict[str, Any]) -> None:
    kind, _, rest = component.partition(":")
    name, _, index = rest.partition(":")
    if name:
        model["name"] = name
        if kind != "runner":
            fields["service"] = {"name": name}
    if index.isdigit():
        model["worker"] = index


class BentoMLFormat(PlainFormat):
    """``--format bentoml``: BentoML server lines and monitor data/schema records."""

    name = SERVER
    detect_priority: ClassVar[int] = 30

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._schema: _Schema | None = None
        self._json = JsonFormat(settings)

    @classmethod
    def detect(cls, text: str) -> bool:
        if text[:1] == "{":
            obj = _monitor_object(text)
            return obj is not None and (_is_record(obj) or _is_schema(obj))
        return _PREFIX.match(text) is not None

    # -- monitor records (JSON) -------------------------------------------------

    def structured(self, line: Line) -> Record | None:
        text = line.text
        if text[:1] != "{":
            return None
        obj = _monitor_object(text)
        if obj is not None and _is_schema(obj):
            fields = _schema_fields(obj)
        elif obj is not None and _is_record(obj):
            if self._schema is None:
                self._schema = _Schema(line.source.path)
            fields = self._schema.map(obj)
        else:  # another program's JSON: as --format json reads it
            record = self._json.structured(line)
            if record is not None:  # (the JSON mapping's "model" object, if any, is a dict)
                record.fields.setdefault("model", {})["server"] = SERVER
            return record
        timestamp = fields.pop("@timestamp", None)
        tags = line.tags
        if len(tags) > 1:
            tags = tuple(dict.fromkeys(tags))  # a record lists a tag once, as every format's does
        return Record(line.source, line.offset, line.end, "", line.read_time, timestamp, fields,
                      tags, text if self.keep_original else None, None, 1)

    # -- server lines ---------------------------------------------------------

    def head(self, text: str) -> TextInfo:
        match = _PREFIX.match(text)
        if match is None:
            return fallback(text, SERVER, self.strict)
        stamp, level, component = match.groups()
        timestamp = timestamps.parse_string(stamp)
        model: dict[str, Any] = {"server": SERVER}
        fields: dict[str, Any] = {"log": {"level": level.lower()}, "model": model}
        extra: dict[str, Any] = {}
        if component:
            extra["component"] = component
            _component(component, fields, model)
        message = text[match.end():]
        if message.endswith(")") and " (trace=" in message:
            trace = _TRACE.search(message)
            if trace is not None:
                trace_id, span_id, sampled, service = trace.groups()
                fields["trace"] = {"id": trace_id}
                fields["span"] = {"id": span_id}
                extra["trace_sampled"] = sampled == "1"
                if service:
                    fields["service"] = {"name": service}
                    model.setdefault("name", service)
                message = message[:trace.start()]
        if "(scheme=" in message:
            _access(message, fields, model, extra)
        if extra:
            fields["extra"] = extra
        return TextInfo(timestamp, fields, message=message)


def _access(message: str, fields: dict[str, Any], model: dict[str, Any], extra: dict[str, Any]) -> None:
    match = _ACCESS.match(message)
    if match is None:
        websocket = _WEBSOCKET.match(message)
        if websocket is not None:
            address, scheme, path, _event = websocket.groups()
            client = client_fields(None if address == "_" else address, True)
            if client is not None:
                fields["client"] = client
            fields["url"] = {"path": path}
            if scheme:
                extra["url_scheme"] = scheme
        return
    (address, scheme, method, path, request_type, request_length, status, response_type,
     response_length, millis) = match.groups()
    client = client_fields(None if address == "_" else address, True)
    if client is not None:
        fields["client"] = client
    put_request(fields, model, method, path, None, int(status))
    http = fields["http"]
    # A length of 19 digits or more is no long (and int() refuses very long
    # digit runs): it stays in the message only.
    if request_length and len(request_length) < 19:
        http["request"]["bytes"] = int(request_length)
    if response_length and len(response_length) < 19:
        http["response"]["bytes"] = int(response_length)
    if scheme:
        extra["url_scheme"] = scheme
    if request_type:
        extra["request_content_type"] = request_type
    if response_type:
        extra["response_content_type"] = response_type
    duration = nanos(float(millis), 1e6)  # None beyond a long (float() takes any digit run)
    if duration is not None:
        fields["event"]["duration"] = duration
    if "operation" not in model:
        url_path = fields["url"].get("path", "")
        operation = _OWN_ENDPOINTS.get(url_path)
        if operation is None and url_path.count("/") == 1 and len(url_path) > 1:
            operation = url_path[1:]  # an API endpoint: its name
        if operation is not None:
            model["operation"] = operation


# -- monitor helpers ----------------------------------------------------------------

def _monitor_object(text: str) -> dict[str, Any] | None:
    # Cheap checks first: most JSON lines of other programs are neither shape.
    if '"trace_id"' not in text and '"meta_data"' not in text:
        return None
    try:
        obj = json_decode.loads(text)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def _is_record(obj: dict[str, Any]) -> bool:
    return all(key in obj for key in _MONITOR_KEYS)


def _is_schema(obj: dict[str, Any]) -> bool:
    meta = obj.get("meta_data")
    return type(meta) is dict and "bento_name" in meta and type(obj.get("columns")) is list


def _schema_fields(obj: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": {"server": SERVER}}
    service = _service(obj)
    if service:
        fields["service"] = service
    extra = {key: value for key, value in obj.items() if key != "meta_data"}
    if extra:
        cap_extra(extra)
        fields["extra"] = extra
    return fields


def _service(schema: dict[str, Any]) -> dict[str, str]:
    meta = schema.get("meta_data")
    service: dict[str, str] = {}
    if type(meta) is dict:
        name, version = meta.get("bento_name"), meta.get("bento_version")
        if isinstance(name, str) and name:
            service["name"] = name
        if isinstance(version, str) and version and version != "not available":
            service["version"] = version
    return service


def _trace_hex(value: Any) -> str | None:
    """BentoML writes ``str(trace_id)``, a decimal int; the access log prints it as 032x."""
    if isinstance(value, str) and value.isdigit() and value != "0" and len(value) <= 39:
        number = int(value)
        if 0 < number < 1 << 128:
            return format(number, "032x")
    return None


def monitor_layout(path: str) -> tuple[str | None, list[str]]:
    """``(monitor name, schema files to try, best first)`` for a data file's path.

    ``LOG_PATH/NAME/data/data.WORKER.log[.DATE]`` has its schema in
    ``LOG_PATH/NAME/schema/schema.WORKER.log``; other schema files of the same
    monitor are the fallback (the columns are the same for every worker).
    """
    directory, file_name = os.path.split(path)
    parent, leaf = os.path.split(directory)
    if leaf != "data":
        return None, []
    name = os.path.basename(parent) or None
    schema_dir = os.path.join(parent, "schema")
    first = []
    parts = file_name.split(".")
    if len(parts) >= 3 and parts[0] == "data":
        first.append(os.path.join(schema_dir, f"schema.{parts[1]}.log"))
    try:
        others = sorted(os.path.join(schema_dir, entry) for entry in os.listdir(schema_dir)
                        if entry.startswith("schema.") and ".log" in entry)
    except OSError:
        others = []
    return name, first + [other for other in others if other not in first]


class _Schema:
    """The column roles of one data file, re-read when its schema file changes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._name, _ = monitor_layout(path)
        self._checked = -SCHEMA_RECHECK
        self._stat: tuple[str, int, int] | None = None
        self._roles: dict[str, str] = {}
        self._service: dict[str, str] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < SCHEMA_RECHECK:
            return
        self._checked = now
        _, candidates = monitor_layout(self._path)
        for candidate in candidates:
            try:
                info = os.stat(candidate)
            except OSError:
                continue
            key = (candidate, info.st_mtime_ns, info.st_size)
            if key == self._stat:
                return
            schema = _read_schema(candidate, info.st_size)
            if schema is not None:
                self._stat = key
                self._roles = {column["name"]: column["role"] for column in schema["columns"]
                               if type(column) is dict and isinstance(column.get("name"), str)
                               and isinstance(column.get("role"), str)}
                self._service = _service(schema)
                return

    def map(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._refresh()
        model: dict[str, Any] = {"server": SERVER}
        fields: dict[str, Any] = {"model": model}
        if self._name:
            model["monitor"] = {"name": self._name}
        if self._service:
            fields["service"] = dict(self._service)
        extra: dict[str, Any] = {}
        roles = self._roles
        for key, value in obj.items():
            if key == "timestamp":
                stamp = timestamps.parse_value(value)
                if stamp is not None:
                    fields["@timestamp"] = stamp
                else:
                    extra[key] = value
            elif key == "request_id":
                if isinstance(value, str) and value not in ("", "None"):
                    model["request_id"] = value
                elif value not in ("", "None", None):
                    extra[key] = value
            elif key == "trace_id":
                trace_id = _trace_hex(value)
                if trace_id is not None:
                    fields["trace"] = {"id": trace_id}
                elif value not in ("0", "None", None):
                    extra[key] = value
            else:
                place = _ROLES.get(roles.get(key, ""))
                if place is None:
                    extra[key] = value
                else:
                    outer, inner = place
                    node = model.setdefault(outer, {})
                    if inner is not None:
                        node = node.setdefault(inner, {})
                    node[key] = value
        # The roles' fields are flattened: at most 50 objects deep, their own included.
        features = model.get("input", {}).get("features")
        if features is not None:
            model["input"]["features"] = capped(features, FLATTENED_DEPTH_LIMIT)
        for role in ("prediction", "target"):
            if role in model:
                model[role] = capped(model[role], FLATTENED_DEPTH_LIMIT)
        if extra:
            cap_extra(extra)
            fields["extra"] = extra
        return fields


def _read_schema(path: str, size: int) -> dict[str, Any] | None:
    """The last schema object in the file, or None (unreadable, absent, invalid)."""
    try:
        with open(path, "rb") as handle:
            if size > _SCHEMA_MAX_BYTES:
                handle.seek(size - _SCHEMA_MAX_BYTES)
            data = handle.read(_SCHEMA_MAX_BYTES)
    except OSError:
        return None
    for raw in reversed(data.split(b"\n")):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if type(obj) is dict and _is_schema(obj):
            return obj
    return None


register_format(BentoMLFormat)
