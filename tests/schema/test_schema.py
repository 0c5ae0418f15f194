"""The document schema: it loads, defines every field the agent and the
parsers write with the agreed type, builds the mapping from it, checks
documents, and docs/fields.md is generated from it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import schema
from agent.errors import ModelscribeError
from agent.schema import FIELDS, SchemaError

ROOT = Path(__file__).resolve().parents[2]

# The agreed field list (the shared brief), with the agreed types. Fields the
# brief lists without a type are keywords unless ECS says otherwise.
AGREED = {
    # ECS fields parsers emit
    "@timestamp": "date", "message": "match_only_text", "log.level": "keyword",
    "log.logger": "keyword", "log.origin.file.name": "keyword", "log.origin.file.line": "long",
    "log.origin.function": "keyword", "error.type": "keyword", "error.message": "text",
    "error.stack_trace": "match_only_text", "event.duration": "long", "event.outcome": "keyword",
    "event.kind": "keyword", "event.dataset": "keyword", "event.ingested": "date", "http.request.method": "keyword",
    "http.request.bytes": "long", "http.response.status_code": "long", "http.response.bytes": "long",
    "http.version": "keyword", "url.path": "keyword", "url.query": "keyword", "url.original": "keyword",
    "client.ip": "ip", "client.address": "keyword", "client.port": "long",
    "user_agent.original": "keyword", "http.request.referrer": "keyword", "trace.id": "keyword",
    "span.id": "keyword", "transaction.id": "keyword", "process.pid": "long", "process.name": "keyword", "host.os.kernel": "keyword", "host.os.type": "keyword", "service.namespace": "keyword", "service.node.name": "keyword", "cloud.provider": "keyword", "cloud.region": "keyword", "cloud.availability_zone": "keyword", "cloud.account.id": "keyword", "cloud.instance.id": "keyword", "log.original": "keyword",
    "process.thread.name": "keyword", "process.thread.id": "long", "host.name": "keyword",
    "service.name": "keyword", "service.version": "keyword", "labels": "flattened", "tags": "keyword",
    # model
    "model.name": "keyword", "model.version": "keyword", "model.server": "keyword",
    "model.worker": "keyword", "model.stream": "keyword", "model.request_id": "keyword",
    "model.operation": "keyword", "model.batch_size": "long", "model.metric.name": "keyword",
    "model.metric.value": "double", "model.metric.unit": "keyword", "model.metric.dimensions": "flattened",
    "model.prediction": "flattened", "model.input.features": "flattened", "model.target": "flattened",
    "model.monitor.name": "keyword", "model.stats": "object",
    # gen_ai
    "gen_ai.system": "keyword", "gen_ai.request.model": "keyword", "gen_ai.request.max_tokens": "long",
    "gen_ai.request.temperature": "double", "gen_ai.request.top_p": "double",
    "gen_ai.request.top_k": "long", "gen_ai.request.id": "keyword", "gen_ai.usage.input_tokens": "long",
    "gen_ai.usage.output_tokens": "long", "gen_ai.prompt": "match_only_text",
    "gen_ai.completion": "match_only_text",
    # payloads
    "http.request.body.content": "match_only_text", "http.response.body.content": "match_only_text",
    # everything else
    "extra": "flattened",
    # added by the agent itself (enrichment)
    "log.file.path": "keyword", "log.offset": "long", "host.ip": "ip", "host.os.name": "keyword",
    "host.os.version": "keyword", "host.architecture": "keyword", "agent.name": "keyword",
    "agent.type": "keyword", "agent.version": "keyword", "agent.id": "keyword",
    "event.original": "keyword", "service.environment": "keyword", "kubernetes.namespace": "keyword",
    "kubernetes.pod.name": "keyword", "kubernetes.pod.uid": "keyword",
    "kubernetes.container.name": "keyword", "container.name": "keyword", "container.id": "keyword",
    "model.sample_rate": "double", "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword", "data_stream.namespace": "constant_keyword",
    "ecs.version": "keyword",
    # model health (issue 10: agent.health)
    "event.action": "keyword", "model.accuracy.accuracy": "double", "model.accuracy.confusion": "object",
    "model.accuracy.f1_macro": "double", "model.accuracy.n": "long", "model.accuracy.per_class": "object",
    "model.accuracy.precision_macro": "double", "model.accuracy.recall_macro": "double", "model.alert.rule":
    "keyword", "model.alert.state": "keyword", "model.alert.threshold": "double", "model.alert.value": "double",
    "model.drift.alert": "boolean", "model.drift.bin_counts": "long", "model.drift.bin_labels": "keyword",
    "model.drift.count": "long", "model.drift.js": "double", "model.drift.p_value": "double", "model.drift.psi": "double", "model.drift.reference":
    "keyword", "model.drift.window_seconds": "long", "model.feature.kind": "keyword", "model.feature.name":
    "keyword", "model.feature.role": "keyword", "model.health.bad_latency": "long", "model.health.correction":
    "long", "model.health.error_rate": "double", "model.health.errors": "long", "model.health.features_capped":
    "long", "model.health.labelled": "long", "model.health.labelled_share": "double",
    "model.health.labels_unmatched": "long", "model.health.labels_unusable": "long",
    "model.health.labels_capped": "long",
    "model.health.late": "long",
    "model.health.latency.count": "long", "model.health.latency.histogram": "histogram", "model.health.latency.p50":
    "double", "model.health.latency.p90": "double", "model.health.latency.p95": "double",
    "model.health.latency.p99": "double", "model.health.no_prediction": "long", "model.health.requests": "long",
    "model.health.tokens.input": "long", "model.health.tokens.output": "long", "model.health.window_seconds":
    "long", "model.quality.missing": "long", "model.quality.out_of_range": "long", "model.quality.type_mismatch":
    "long", "model.quality.unseen_category": "long", "model.regression.mae": "double", "model.regression.n": "long",
    "model.regression.rmse": "double", "model.regression.sum_abs_error": "double",
    "model.regression.sum_squared_error": "double",
    # the agent's own metric documents (agent.self_metrics)
    "modelscribe.agent.interval_seconds": "double", "modelscribe.agent.lines_read": "long",
    "modelscribe.agent.events_acknowledged": "long", "modelscribe.agent.events_retried": "long",
    "modelscribe.agent.dead_letters": "long", "modelscribe.agent.events_given_up": "long",
    "modelscribe.agent.spool_bytes": "long", "modelscribe.agent.spool_records": "long",
    "modelscribe.agent.file_lag_bytes": "long", "modelscribe.agent.open_files": "long",
    "modelscribe.agent.last_ack_age_seconds": "double",
    # --parse-at elasticsearch: what the ingest pipelines parse (removed by them)
    "modelscribe.raw.format": "keyword", "modelscribe.raw.log_format": "keyword",
}
PAYLOADS = {"gen_ai.prompt", "gen_ai.completion", "http.request.body.content", "http.response.body.content"}


def test_the_schema_defines_exactly_the_agreed_fields_with_their_types():
    assert {name: field.type for name, field in FIELDS.items()} == AGREED


def test_payload_and_ecs_flags():
    assert set(schema.payload_fields()) == PAYLOADS
    for name in ("@timestamp", "message", "error.stack_trace", "client.ip", "labels", "tags",
                 "http.request.body.content", "data_stream.type", "log.file.path"):
        assert FIELDS[name].ecs, name
    for name in ("extra", "log.offset", "kubernetes.pod.name", "gen_ai.prompt"):
        assert not FIELDS[name].ecs, name
    assert all(not f.ecs for f in FIELDS.values() if f.namespace == "model")


def test_closed_value_lists_and_stored_only_original():
    assert FIELDS["event.outcome"].allowed == ("success", "failure", "unknown")
    assert FIELDS["event.kind"].allowed == ("event", "metric", "alert", "pipeline_error")
    assert FIELDS["model.stream"].allowed == ("stdout", "stderr")
    original = FIELDS["event.original"]
    assert (original.index, original.doc_values) == (False, False)
    assert FIELDS["model.stats"].children == "double"


def _mapped(properties: dict, name: str) -> dict:
    node = {"properties": properties}
    for part in name.split("."):
        node = node["properties"][part]
    return node


def test_mappings_carry_the_declared_types():
    body = schema.mappings()
    assert body["dynamic"] is False
    for name, field in FIELDS.items():
        assert _mapped(body["properties"], name)["type"] == field.type, name
    assert _mapped(body["properties"], "event.original") == {"type": "keyword", "index": False,
                                                              "doc_values": False}
    assert _mapped(body["properties"], "url.original")["ignore_above"] == 1024
    assert _mapped(body["properties"], "extra") == {"type": "flattened", "ignore_above": 1024,
                                                    "depth_limit": 50}
    assert _mapped(body["properties"], "model.stats") == {"type": "object", "dynamic": True,
                                                          "subobjects": False}
    assert body["dynamic_templates"] == [{f"{name.replace('.', '_')}_children": {
        "path_match": f"{name}.*", "unmatch_mapping_type": "object", "mapping": {"type": kind}}}
        for name, kind in (("model.accuracy.confusion", "long"), ("model.accuracy.per_class", "double"),
                           ("model.stats", "double"))]


def test_mappings_fall_back_for_types_the_cluster_lacks():
    body = schema.mappings(frozenset({"match_only_text", "constant_keyword"}))
    assert _mapped(body["properties"], "message") == {"type": "text", "norms": False}
    assert _mapped(body["properties"], "error.stack_trace")["type"] == "text"
    assert _mapped(body["properties"], "error.message") == {"type": "text"}
    assert _mapped(body["properties"], "data_stream.namespace")["type"] == "keyword"
    assert schema.family("match_only_text") == "text" and schema.family("constant_keyword") == "keyword"
    assert schema.mappings() == schema.mappings(frozenset())  # pure


def test_example_document_holds_every_field_and_passes_the_checks():
    document = schema.example_document()
    assert schema.undefined_fields(document) == []
    assert schema.value_problems(document) == []
    assert set(_leaf_paths(document, stop=set(FIELDS))) == set(FIELDS)


def _leaf_paths(node: dict, prefix: str = "", stop: set = frozenset()):
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and path not in stop:
            yield from _leaf_paths(value, path, stop)
        else:
            yield path


def test_undefined_fields():
    document = {
        "message": "x", "log.level": "info",  # dotted keys count like nested ones
        "log": {"origin": {"file": {"name": "a.py", "column": 3}}},
        "user": {"name": "alice"},  # an ECS set the schema does not carry: reported once
        "extra": {"anything": {"deep": [1, 2]}},  # free inside
        "model": {"stats": {"num_running_reqs": 3, "nested": {"x": 1}},  # free inside
                  "name": {"oops": 1}},  # a leaf given an object: its keys are undefined
        "http": [{"request": {"method": "GET", "verb": "x"}}],  # arrays of objects are walked
    }
    assert schema.undefined_fields(document) == [
        "http.request.verb", "log.origin.file.column", "model.name.oops", "user"]


def test_value_problems():
    document = {
        "model": {"prediction": 0.93, "input": {"features": [1, 2]}, "batch_size": "8",
                  "stats": {"ok": 1.5, "bad": "abc"}, "metric": {"value": True}},
        "client": {"ip": "gateway.internal", "port": 53712},
        "host": {"ip": ["10.0.0.1", "fe80::1"]},
        "event": {"outcome": "ok", "duration": 12},
        "http": "GET",
        "@timestamp": "yesterday",
        "tags": ["a", 3],
        "labels": None,  # null is "no value": fine
    }
    assert schema.value_problems(document) == [
        "model.prediction: a flattened field takes an object, not float (put a bare value under a key, "
        "e.g. {\"value\": ...})",
        "model.input.features: a flattened field takes an object, not list (put a bare value under a key, "
        "e.g. {\"value\": ...})",
        "model.batch_size: '8' is not an integer",
        "model.stats.bad: 'abc' is not a finite number",
        "model.metric.value: True is not a finite number",
        "client.ip: 'gateway.internal' is not an IPv4 or IPv6 literal",
        "event.outcome: 'ok' is not one of success, failure, unknown",
        "http: 'GET' where an object is declared",
        "@timestamp: 'yesterday' is not an ISO 8601 date",
        "tags: 3 is not a string",
    ]


def test_schema_hash_is_of_the_file():
    import hashlib
    raw = (ROOT / "agent" / "schema" / "fields.yml").read_bytes()
    assert schema.schema_hash() == hashlib.sha256(raw).hexdigest()


GOOD = """
version: 1
fields:
  - name: a.b
    type: keyword
    description: d
    example: x
"""


@pytest.mark.parametrize("text, error", [
    ("version: 1\nfields: [\n", "not valid YAML"),
    ("version: 2\nfields: []\n", "expected 'version: 1'"),
    (GOOD.replace("keyword", "strng"), "unknown type 'strng'"),
    (GOOD.replace("example: x", "example: x\n    exmaple: y"), "unknown key(s) exmaple"),
    (GOOD.replace("    example: x\n", ""), "'example' is missing"),
    (GOOD.replace("description: d", "description: ''"), "'description' must be a non-empty string"),
    (GOOD.replace("name: a.b", "name: A.b"), "not a valid dotted name"),
    (GOOD + GOOD.split("fields:\n")[1], "'a.b' is defined twice"),
    (GOOD + "  - {name: a.b.c, type: long, description: d, example: 1}\n",
     "'a.b.c' is below field 'a.b'"),
    (GOOD.replace("type: keyword", "type: long"), "bad example: 'x' is not an integer"),
    (GOOD.replace("example: x", "example: '2026-01-01'").replace("keyword", "date"), None),
    (GOOD.replace("example: x", "example: 2026-01-01").replace("keyword", "date"),
     "is not an ISO 8601 date"),  # unquoted, YAML makes it a date object
    (GOOD.replace("type: keyword", "type: flattened"), "takes an object"),
    (GOOD.replace("type: keyword", "type: object"), "'children' is required for, and only for"),
    (GOOD.replace("example: x", "example: x\n    allowed: [y]"), "not one of the allowed values"),
    (GOOD.replace("example: x", "example: x\n    index: false").replace("keyword", "long"),
     "index/doc_values may only be turned off for keyword"),
    (GOOD.replace("example: x", "example: x\n    ecs: yes please"), "'ecs' must be true or false"),
])
def test_parse_schema_rejects_mistakes_naming_them(text, error):
    if error is None:
        assert list(schema.parse_schema(text.encode())) == ["a.b"]
        return
    with pytest.raises(SchemaError) as caught:
        schema.parse_schema(text.encode())
    assert error in str(caught.value)


def test_a_broken_schema_file_fails_at_import(tmp_path):
    # A copy of the package with a broken fields.yml, imported under another name.
    package = tmp_path / "broken_schema"
    package.mkdir()
    shutil.copy(ROOT / "agent" / "schema" / "__init__.py", package / "__init__.py")
    text = (ROOT / "agent" / "schema" / "fields.yml").read_text()
    (package / "fields.yml").write_text(text.replace("type: ip", "type: ipv4", 1))
    spec = importlib.util.spec_from_file_location("broken_schema", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["broken_schema"] = module
    try:
        # The copy defines its own SchemaError class; both are ModelscribeErrors.
        with pytest.raises(ModelscribeError, match="field 'client.ip': unknown type 'ipv4'") as caught:
            spec.loader.exec_module(module)
        assert type(caught.value).__name__ == "SchemaError"
    finally:
        del sys.modules["broken_schema"]


def _docs_module():
    spec = importlib.util.spec_from_file_location("gen_field_docs", ROOT / "scripts" / "gen_field_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_field_docs_are_up_to_date():
    docs = _docs_module()
    current = (ROOT / "docs" / "fields.md").read_text(encoding="utf-8")
    assert current == docs.render(), \
        "docs/fields.md is out of date: run `python3 scripts/gen_field_docs.py`"


def test_field_docs_list_every_field_once():
    text = _docs_module().render()
    for name, field in FIELDS.items():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        assert f"`{field.type}`" in rows[0]
        *_, ecs, payload = rows[0].rstrip("|").split("|")
        expected = ("yes" if field.ecs else "", "yes" if field.payload else "")
        assert (ecs.strip(), payload.strip()) == expected, name


_KEYS = st.sampled_from(["model", "stats", "prediction", "http", "request", "log", "level", "extra",
                         "client", "ip", "a", "log.level", "model.stats", ""]) | st.text(max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _JSON, max_size=6))
def test_document_checks_never_raise(document):
    # Parser tests call these on whatever a parser produced.
    assert all(isinstance(path, str) for path in schema.undefined_fields(document))
    assert all(isinstance(problem, str) for problem in schema.value_problems(document))
