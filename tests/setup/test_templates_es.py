"""The templates on the real node: install, idempotency, dry run and refusals
through the same ElasticsearchOutput the CLI uses, then documents holding
every schema field land with the declared types, free-form keys add no
mapped fields, and bad values are ignored rather than rejected.

The session node is the integ-test zip: it lacks match_only_text,
constant_keyword and histogram (their fallbacks are checked here), and it cannot delete
data streams, so each test writes to its own namespace and empties it
afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

import elasticsearch_local
from agent import schema
from agent.config import resolve
from agent.errors import AuthError
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.schema import FIELDS
from agent.setup.templates import (TemplateConflictError, build_templates, install_templates, requester,
                                   unsupported_types)

pytestmark = pytest.mark.elasticsearch

NAMES = ["modelscribe-settings", "modelscribe-mappings", "logs-modelscribe", "metrics-modelscribe"]
HOLDER = "test-holder-modelscribe"
# The integ-test zip has neither mapper-extras nor constant-keyword.
LACKS = ("this cluster lacks constant_keyword (mapped as keyword), histogram (mapped as object), "
         "match_only_text (mapped as text)")
MISSING = frozenset({"match_only_text", "constant_keyword", "histogram"})


def _output(node, **flags) -> ElasticsearchOutput:
    base = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file}
    base.update(flags)
    return ElasticsearchOutput.from_config(resolve(base, {}))


def _ok(es, method: str, path: str, body: Any = None) -> Any:
    status, answer = es.request(method, path, body)
    assert status < 300, (method, path, status, answer)
    return answer


def _snapshot(es) -> tuple:
    """Every index and component template, with their modification times."""
    return (es.request("GET", "/_index_template"), es.request("GET", "/_component_template"))


def _make_fresh(es) -> None:
    """Remove our templates (and the stand-in tests/outputs installs) so an
    install starts from nothing.

    Data streams cannot be deleted on this node, and Elasticsearch refuses to
    delete the last index template matching a data stream: a low-priority
    holder template takes the existing streams over meanwhile.
    """
    _ok(es, "PUT", f"/_index_template/{HOLDER}", {
        "index_patterns": ["logs-modelscribe-*", "metrics-modelscribe-*"], "data_stream": {}, "priority": 1})
    for path in ("/_index_template/logs-modelscribe",
                 "/_index_template/metrics-modelscribe", "/_component_template/modelscribe-settings",
                 "/_component_template/modelscribe-mappings"):
        status, answer = es.request("DELETE", path)
        assert status in (200, 404), (path, answer)


@pytest.fixture(scope="module")
def unsupported(es_node) -> frozenset[str]:
    """Installs the templates (once per module) and returns the types the node lacks."""
    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return elasticsearch_local.request(es_node, method, path, body)

    install_templates(request)
    return unsupported_types(request)


def test_install_lifecycle(es_node, es):
    _make_fresh(es)
    output = _output(es_node)
    request = requester(output)
    try:
        # A template under one of our names that we did not make stops everything.
        _ok(es, "PUT", "/_index_template/metrics-modelscribe",
            {"index_patterns": ["metrics-modelscribe-foreign-*"], "priority": 10})
        before = _snapshot(es)
        with pytest.raises(TemplateConflictError, match="index template 'metrics-modelscribe' exists and is "
                                                        "not managed by modelscribe"):
            install_templates(request)
        assert _snapshot(es) == before
        _ok(es, "DELETE", "/_index_template/metrics-modelscribe")

        before = _snapshot(es)
        dry = install_templates(request, dry_run=True)
        assert [(a.name, a.outcome) for a in dry] == [(name, "would-create") for name in NAMES]
        assert _snapshot(es) == before, "a dry run wrote something"
        assert dry[1].detail == LACKS
        assert dry[2].detail == ("takes over from index template 'test-holder-modelscribe' "
                                 "(patterns logs-modelscribe-*, priority 1)")

        first = install_templates(request)
        assert [(a.name, a.outcome) for a in first] == [(name, "created") for name in NAMES]
        _ok(es, "DELETE", f"/_index_template/{HOLDER}")  # ours hold the streams now
        second = install_templates(request)
        assert [(a.name, a.outcome, a.detail) for a in second] == [
            (NAMES[0], "unchanged", ""), (NAMES[1], "unchanged", LACKS),
            (NAMES[2], "unchanged", ""), (NAMES[3], "unchanged", "")]
        before = _snapshot(es)
        assert [a.outcome for a in install_templates(request, dry_run=True)] == ["unchanged"] * 4
        assert _snapshot(es) == before

        built = {t.name: t.body for t in build_templates(MISSING)}
        logs = _ok(es, "GET", "/_index_template/logs-modelscribe")["index_templates"][0]["index_template"]
        for key in ("_meta", "version", "priority", "index_patterns", "composed_of"):
            assert logs[key] == built["logs-modelscribe"][key], key

        # An older install of one component (another schema) is updated, alone.
        settings = built["modelscribe-settings"]
        _ok(es, "PUT", "/_component_template/modelscribe-settings",
            {**settings, "_meta": {**settings["_meta"], "schema_hash": "0" * 64}})
        third = install_templates(request)
        assert [a.outcome for a in third] == ["updated", "unchanged", "unchanged", "unchanged"]
        assert _ok(es, "GET", "/_component_template/modelscribe-settings")[
            "component_templates"][0]["component_template"]["_meta"] == settings["_meta"]
    finally:
        output.close()
        es.request("DELETE", f"/_index_template/{HOLDER}")


def test_a_template_outranking_ours_is_reported(es_node, es, unsupported):
    _ok(es, "PUT", "/_index_template/test-shadow-modelscribe",
        {"index_patterns": ["logs-modelscribe-shadow-*"], "data_stream": {}, "priority": 900})
    try:
        actions = install_templates(lambda m, p, b=None: es.request(m, p, b), dry_run=True)
    finally:
        _ok(es, "DELETE", "/_index_template/test-shadow-modelscribe")
    assert actions[2].detail == ("outranked by index template 'test-shadow-modelscribe' (patterns "
                                 "logs-modelscribe-shadow-*, priority 900): data streams it matches "
                                 "do not get these mappings")


def test_credentials_without_the_template_privilege_are_named(es_node, es, tmp_path):
    writer = {"index": [{"names": ["logs-modelscribe-*"], "privileges": ["create_doc", "auto_configure"]}]}
    key = _ok(es, "POST", "/_security/api_key",
              {"name": "modelscribe-writer-only", "role_descriptors": {"writer": writer}})
    key_file = tmp_path / "api_key"
    key_file.write_text(key["encoded"] + "\n")
    output = _output(es_node, api_key_file=str(key_file))
    try:
        with pytest.raises(AuthError, match="lack the manage_index_templates cluster privilege"):
            install_templates(requester(output), dry_run=True)
    finally:
        output.close()


# ------------------------------------------------------------------ documents

def _bulk(es, stream: str, documents: list[dict]) -> list[dict]:
    lines = []
    for document in documents:
        lines += [json.dumps({"create": {}}), json.dumps(document)]
    answer = _ok(es, "POST", f"/{stream}/_bulk?refresh=true", "\n".join(lines) + "\n")
    return [item["create"] for item in answer["items"]]


def _example(kind: str, namespace: str) -> dict:
    document = schema.example_document()
    document["data_stream"] = {"type": kind, "dataset": "modelscribe", "namespace": namespace}
    return document


def _mapping(es, stream: str) -> dict:
    (index,) = _ok(es, "GET", f"/{stream}/_mapping").values()
    return index["mappings"]


def _mapped(mappings: dict, name: str) -> dict:
    node = mappings
    for part in name.split("."):
        node = node["properties"][part]
    return node


def _count_fields(node: dict) -> int:
    """Mapped fields (objects included) below a mappings or properties node."""
    properties = node.get("properties", {})
    return sum(1 + _count_fields(child) + len(child.get("fields", {})) for child in properties.values())


@pytest.mark.parametrize("kind", ["logs", "metrics"])
def test_every_schema_field_lands_with_its_declared_type(es, unsupported, kind):
    stream = f"{kind}-modelscribe-test1"
    try:
        (item,) = _bulk(es, stream, [_example(kind, "test1")])
        assert item["status"] == 201, item
        (hit,) = _ok(es, "POST", f"/{stream}/_search", {"query": {"match_all": {}}})["hits"]["hits"]
        assert "_ignored" not in hit, hit["_ignored"]  # every example is a valid value

        caps = _ok(es, "GET", f"/{stream}/_field_caps?fields=*")["fields"]
        for name, field in FIELDS.items():
            expected = schema.family(schema.effective_type(field, unsupported))
            assert list(caps.get(name, {})) == [expected], (name, caps.get(name))
        assert list(caps["event.duration"]) == ["long"]
        assert list(caps["client.ip"]) == ["ip"]
        assert list(caps["http.response.status_code"]) == ["long"]
        assert list(caps["model.name"]) == ["keyword"]
        assert list(caps["model.stats.gpu_kv_cache_usage_perc"]) == ["double"]
        original = caps["event.original"]["keyword"]
        assert (original["searchable"], original["aggregatable"]) == (False, False)

        # Exact types (field_caps only shows families): fallbacks where the node lacks a type.
        mappings = _mapping(es, stream)
        assert mappings["dynamic"] == "false"
        for name, field in FIELDS.items():
            actual = _mapped(mappings, name).get("type", "object")  # objects have no "type"
            assert actual == schema.effective_type(field, unsupported), name
        assert unsupported == MISSING
        assert _mapped(mappings, "message") == {"type": "text", "norms": False}

        # Nothing outside the schema got mapped.
        parents = {".".join(n.split(".")[:i]) for n in FIELDS for i in range(1, n.count(".") + 1)}
        # Keys below model.stats and the like, or below a histogram mapped as an object where the node lacks it.
        open_objects = tuple(name + "." for name, field in FIELDS.items()
                             if field.children or schema.effective_type(field, unsupported) == "object")
        leaked = [name for name in caps if not name.startswith("_") and name not in FIELDS
                  and name not in parents and not name.startswith(open_objects)]
        assert leaked == []
    finally:
        es.delete_index(stream)


def test_free_form_keys_add_no_mapped_fields(es, unsupported):
    stream = "logs-modelscribe-test2"
    try:
        assert _bulk(es, stream, [_example("logs", "test2")])[0]["status"] == 201
        before = _count_fields(_mapping(es, stream))
        wide = _example("logs", "test2")
        wide["extra"] = {f"key_{i}": f"value {i}" for i in range(5000)}
        wide["model"]["input"]["features"] = {f"feature_{i}": i * 0.5 for i in range(5000)}
        wide.update({f"unknown_{i}": {"nested": i} for i in range(50)})  # not in the schema at all
        wide["http"]["request"]["verb"] = "POST"  # an unknown key under a known object
        (item,) = _bulk(es, stream, [wide])
        assert item["status"] == 201, item
        assert _count_fields(_mapping(es, stream)) == before

        # Free-form keys are still searchable, as flattened keys.
        for query in ({"term": {"extra.key_4321": "value 4321"}},
                      {"term": {"model.input.features.feature_17": "8.5"}}):
            assert _ok(es, "POST", f"/{stream}/_count", {"query": query})["count"] == 1, query
        caps = _ok(es, "GET", f"/{stream}/_field_caps?fields=unknown_*,http.request.verb")["fields"]
        assert caps == {}
    finally:
        es.delete_index(stream)


def test_bad_values_are_ignored_and_wrong_shapes_rejected(es, unsupported):
    stream = "logs-modelscribe-test3"
    bad_values = _example("logs", "test3")
    bad_values["client"]["ip"] = "gateway.internal"
    bad_values["event"]["duration"] = "slow"
    bad_values["model"]["batch_size"] = "eight"
    bad_values["model"]["stats"] = {"num_running_reqs": 3, "kv_cache": "n/a"}
    # Elasticsearch cannot index these at all: a flattened field needs an
    # object, an object field cannot take a value.
    bare_prediction = {"@timestamp": "2026-11-27T17:54:34.123Z", "model": {"prediction": 0.93}}
    scalar_object = {"@timestamp": "2026-11-27T17:54:34.123Z", "model": "resnet18"}
    try:
        kept, rejected, clash = _bulk(es, stream, [bad_values, bare_prediction, scalar_object])
        assert kept["status"] == 201, kept
        (hit,) = _ok(es, "POST", f"/{stream}/_search", {"query": {"match_all": {}}})["hits"]["hits"]
        assert sorted(hit["_ignored"]) == ["client.ip", "event.duration", "model.batch_size",
                                           "model.stats.kv_cache"]
        assert [p.split(":")[0] for p in schema.value_problems(bad_values)] == [
            "client.ip", "event.duration", "model.batch_size", "model.stats.kv_cache"]

        assert rejected["status"] == 400 and rejected["error"]["type"] == "document_parsing_exception"
        assert "model.prediction" in rejected["error"]["reason"]
        assert clash["status"] == 400 and "tried to parse field [model] as object" in clash["error"]["reason"]
        assert schema.value_problems(bare_prediction)[0].startswith("model.prediction: a flattened field "
                                                                    "takes an object")
        assert schema.value_problems(scalar_object) == ["model: 'resnet18' where an object is declared"]
    finally:
        es.delete_index(stream)
