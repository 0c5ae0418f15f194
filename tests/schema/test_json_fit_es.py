"""JSON log lines whose ECS-shaped keys contradict the mapping are indexed,
not rejected: each line goes through the real JSON parser, enrichment and
transforms (as ``modelscribe run`` does), and the documents are bulk-indexed
into the real node with the project's templates installed. Every bulk item
must be created (no item error): a rejected document would have gone to the
dead letters instead of the index (audit findings 3, 4, 8, 9)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import elasticsearch_local
from agent.enrich import Enricher
from agent.events import Line, Source
from agent.parsing import ParseSettings, make_parser
from agent.schema import FIELDS
from agent.setup.templates import install_templates
from agent.transforms import TransformSettings, Transforms
from agent.transforms.static import gather

pytestmark = pytest.mark.elasticsearch

STREAM = "logs-modelscribe-jsonfit"


def _deep(levels: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# The audit's lines (findings 3, 4, 8, 9) and their neighbours.
BAD = [
    {"http": {"request": {"method": "POST", "body": "{\"x\":1}"}}},
    {"http": {"response": {"body": ["a", {"b": 1}]}}},
    {"url": {"path": "/p", "query": {"a": "1"}}},
    {"process": {"thread": "MainThread"}},
    {"log": {"origin": {"file": "a.py", "line": 3}}},
    {"host": {"os": "linux"}},
    {"service": {"node": "n1"}},
    {"cloud": {"account": "123"}},
    {"log.level": {"name": "INFO"}},
    {"error": {"message": {"code": 1}}},
    {"error": {"stack_trace": {"frames": [1, 2]}}},
    {"event": {"original": {"x": 1}}, "message": "m"},
    {"container": {"name": {"x": 1}}},
    {"trace.id": {"x": 1}},
    {"log": {"level.x": 1}},
    {"log.level.x": 1},
    {"log": {"": 1}},
    {"process": {" ": 1}},
    {"log": {"a.": 1}},
    {"log": {".": 1, "a..b": 2, "\t": 3}},
    {"http": {"request": [1, 2]}},
    {"http": {"request": [{"method": {"x": 1}}]}},
    {"url": {"query": [{"a": 1}]}},
    {"labels": [1, 2]},
    {"labels": "x"},
    {"labels.team": {"a": {"b": 1}}},
    {"log": {"origin.file": {"line": 3}, "origin.function": {"x": 1}}},
    {"http.request.body": "x", "http": {"request": {"body": "y"}}},
    {"log.offset": 1, "log": {"offset": 2}},
    {"log.file": "f", "log": {"file": {"path": "p"}}},
    {"gen_ai.prompt": "SECRET"},
    {"gen_ai": {"prompt": {"text": "SECRET"}, "usage": {"input_tokens": {"x": 1}}}},
    {"deployment": "d", "replica": "r", "log": {"origin": 5}},  # Ray Serve's keys
    {"payload": _deep(55)},
    {"labels": _deep(60)},
    {"prediction": _deep(70)},
    {"extra": _deep(300)},
    {"user": _deep(400), "deep_list": [[[_deep(52)]]]},
]


@pytest.fixture(scope="module")
def bulk(es_node, es_session) -> Any:
    """Installs the templates once; returns ``bulk(lines, fmt, keep_payloads) -> [error, ...]``."""
    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return elasticsearch_local.request(es_node, method, path, body)

    install_templates(request)
    host = gather("host-1")

    def index(lines: list[str], fmt: str = "json", keep_payloads: bool = False) -> list[str]:
        events = _events(lines, fmt, Transforms(TransformSettings(keep_payloads=keep_payloads), host))
        body = b"".join(b'{"create":{}}\n' + event.data + b"\n" for event in events)
        status, answer = request("POST", f"/{STREAM}/_bulk", body.decode())
        assert status == 200, answer
        assert len(answer["items"]) == len(events) >= len(lines) // 20
        return [json.dumps(item["create"].get("error"))[:300] for item in answer["items"]
                if item["create"]["status"] != 201]

    yield index
    es_session.delete_index(STREAM)


def _events(lines: list[str], fmt: str, transforms: Transforms) -> list[Any]:
    source = Source("j" * 16, "/var/log/app/jsonfit.log")
    parser = make_parser(ParseSettings(format=fmt), source)
    enricher = Enricher("host-1", "agent-1", False, transforms)
    records, offset = [], 0
    for text in lines:
        records.extend(parser.feed(Line(source, offset, offset + len(text) + 1, text, 1_767_225_600.0)))
        offset += len(text) + 1
    records.extend(parser.flush())
    return [enricher.build(record) for record in records]


def _lines(objects: list[dict]) -> list[str]:
    return [json.dumps({"message": "m", **obj}) for obj in objects]


@pytest.mark.parametrize("keep_payloads", [False, True])
@pytest.mark.parametrize("fmt", ["json", "rayserve"])
def test_the_audit_lines_are_indexed(bulk, fmt, keep_payloads):
    lines = _lines(BAD)
    # Shapes repeat on a real log: the second pass goes through the compiled loop (json_shapes).
    assert bulk(lines * 20, fmt, keep_payloads) == []


def test_payloads_that_did_not_fit_are_still_stripped(bulk):
    for obj in ({"http": {"request": {"body": "SECRET-BODY-TEXT"}}}, {"gen_ai": {"prompt": {"t": "SECRET-BODY-TEXT"}}},
                {"gen_ai.prompt": "SECRET-BODY-TEXT"}, {"http.response.body": ["SECRET-BODY-TEXT"]}):
        (event,) = _events(_lines([obj]), "json", Transforms(TransformSettings(), gather("host-1")))
        assert b"SECRET-BODY-TEXT" not in event.data, obj
        assert "payload_removed" in orjson.loads(event.data)["tags"]


# -- generated lines -----------------------------------------------------------

_PATHS = sorted({".".join(name.split(".")[:end]) for name in FIELDS for end in range(1, name.count(".") + 2)})
_NAMES = sorted({part for name in FIELDS for part in name.split(".")} | {"", " ", "a.", ".", "x.y", "zz"})
_KEY = st.sampled_from(_PATHS) | st.sampled_from(_NAMES)
_LEAF = st.none() | st.booleans() | st.integers(-10, 10**20) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=6)
_VALUE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY, inner, max_size=4),
                      max_leaves=12) | st.integers(45, 60).map(_deep)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_KEY, _VALUE, min_size=1, max_size=6), min_size=1, max_size=4),
       st.sampled_from(["json", "rayserve"]))
def test_generated_lines_are_indexed(bulk, objects, fmt):
    assert bulk(_lines(objects) * 17, fmt) == []
