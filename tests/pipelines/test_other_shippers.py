"""Documents of other shippers, shaped exactly as each writes them by default,
indexed whole into a data stream with our mappings and pipelines (the real
OpenSearch node, ``_bulk`` ``create`` as every shipper writes a data stream).

Stock Fluent Bit puts the line under a string ``log`` (no ``message``), its
nginx and apache parsers give ``agent`` and ``host`` as strings, Vector's
file source gives ``host`` as the hostname string: our mapping has ``log``,
``host`` and ``agent`` as objects, so before the entry pipeline reshaped the
top level (the ``other-shipper-*`` processors of modelscribe-other-shipper) such a document was refused whole
(400 "object mapping for [log] tried to parse field [log] as object, but
found a concrete value"). See docs/pipelines.md, "Documents of other shippers".
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.setup import templates
from agent.setup.pipeline_defs import ENTRY, FINAL

STREAM = "logs-modelscribe-shippers"
TEMPLATE = "modelscribe-test-shippers"
T = "2024-12-04T08:00:00.000Z"

# Fluent Bit's tail input, es output: the line under "log", the output's @timestamp.
FLUENT_BIT_TAIL = {"@timestamp": T, "log": "2024-05-01 12:00:00,123 - app.worker - ERROR - boom"}
# Fluent Bit on Kubernetes: tail with the cri parser (the line, "stream", "logtag",
# "time") and the kubernetes filter (an object of its own keys).
KUBERNETES = {"pod_name": "model-7d9f", "namespace_name": "serving", "pod_id": "0b1c",
              "labels": {"app.kubernetes.io/name": "m1", "pod-template-hash": "7d9f"},
              "annotations": {"prometheus.io/scrape": "true"}, "host": "node-1", "container_name": "server",
              "docker_id": "9a8b", "container_hash": "sha256:abc", "container_image": "registry/model:1"}
FLUENT_BIT_K8S = {"@timestamp": T, "time": "2024-05-01T12:00:00.456789012Z", "stream": "stdout", "logtag": "F",
                  "log": '{"level": "info", "message": "ready", "model_name": "m1", "timestamp": "2024-05-01T12:00:00Z"}',
                  "kubernetes": KUBERNETES}
# Docker's json-file log read by Fluent Bit's docker parser: the line keeps its "\n".
FLUENT_BIT_DOCKER = {"@timestamp": T, "time": "2024-05-01T12:00:00.456789012Z", "stream": "stderr",
                     "log": '{"level": "error", "message": "oom", "model_name": "m3"}\n', "kubernetes": KUBERNETES}
# Fluent Bit's nginx parser: the access line's fields at the top level, no log, no message.
FLUENT_BIT_NGINX = {"@timestamp": T, "remote": "172.17.0.1", "host": "-", "user": "-", "method": "POST",
                    "path": "/v1/models/m1:predict", "code": "200", "size": "612", "referer": "-",
                    "agent": "curl/8.5.0"}
# Vector's file source into the elasticsearch sink, mode data_stream (the one that writes
# a data stream: its "timestamp" renamed to @timestamp, data_stream.* synced).
VECTOR_FILE = {"@timestamp": T, "message": '{"level": "error", "message": "slow", "model": "m2"}',
               "host": "vector-host", "file": "/var/log/model.log", "source_type": "file",
               "data_stream": {"type": "logs", "dataset": "modelscribe", "namespace": "shippers"}}
VECTOR_PLAIN = {**VECTOR_FILE, "message": "2024-05-01 12:00:00,123 - torch - WARNING - slow step"}
# Filebeat (and Elastic Agent): ECS objects, which the mapping always accepted.
FILEBEAT = {"@timestamp": T, "message": '{"message": "hi", "level": "error", "model": "m1"}',
            "agent": {"name": "filebeat", "type": "filebeat", "version": "8.15.0"},
            "log": {"file": {"path": "/var/log/app.log"}, "offset": 5}, "host": {"name": "h1"},
            "input": {"type": "filestream"}, "ecs": {"version": "8.0.0"}}


@pytest.fixture(scope="module")
def stream(ingest: Any) -> Any:
    """``index(docs)``: the documents through ``_bulk`` ``create`` into a data stream
    whose template holds our settings (entry and final pipelines wired) and
    mappings for OpenSearch; returns each item's (status, _source or error)."""
    engine = templates.OPENSEARCH
    body = {"index_patterns": [STREAM], "data_stream": {}, "priority": templates.PRIORITY + 50,
            "template": {"settings": templates.settings((ENTRY, FINAL), engine),
                         "mappings": templates.mappings(templates.unsupported_types(ingest, engine), engine)}}
    ingest("DELETE", f"/_data_stream/{STREAM}")
    status, resp = ingest("PUT", f"/_index_template/{TEMPLATE}", body)
    assert status == 200, resp

    def index(docs: list[dict[str, Any]]) -> list[tuple[int, Any]]:
        lines = "".join(json.dumps({"create": {}}) + "\n" + json.dumps(doc) + "\n" for doc in docs)
        status, resp = ingest("POST", f"/{STREAM}/_bulk?refresh=true", lines)
        assert status == 200, resp
        out = []
        for item in resp["items"]:
            result = item["create"]
            if result["status"] != 201:
                out.append((result["status"], result.get("error")))
                continue
            status, got = ingest("GET", f"/{result['_index']}/_doc/{result['_id']}")
            assert status == 200, got
            out.append((201, got["_source"]))
        return out

    yield index
    ingest("DELETE", f"/_data_stream/{STREAM}")
    ingest("DELETE", f"/_index_template/{TEMPLATE}")


def one(stream: Any, doc: dict[str, Any]) -> dict[str, Any]:
    (status, source), = stream([doc])
    assert status == 201, source
    assert source["event"]["ingested"] and source["event"].get("kind") != "pipeline_error", source
    assert "modelscribe" not in source and "pipeline_error" not in source.get("tags", []), source
    return source


def test_fluent_bit_tail_record(stream: Any) -> None:
    """{"@timestamp", "log": line}: the line becomes the message and is parsed (plain)."""
    doc = one(stream, FLUENT_BIT_TAIL)
    assert doc["message"] == "boom"
    assert doc["log"] == {"level": "error", "logger": "app.worker"}
    assert doc["@timestamp"] == "2024-05-01T12:00:00.123Z"
    assert "extra" not in doc


def test_fluent_bit_kubernetes_record(stream: Any) -> None:
    """The cri parser's line (a JSON object) parsed; the kubernetes filter's object and
    the record's own keys kept as they came."""
    doc = one(stream, FLUENT_BIT_K8S)
    assert doc["message"] == "ready" and doc["log"]["level"] == "info" and doc["model"]["name"] == "m1"
    assert doc["@timestamp"] == "2024-05-01T12:00:00.000Z"
    assert doc["kubernetes"] == KUBERNETES
    assert (doc["stream"], doc["logtag"], doc["time"]) == ("stdout", "F", FLUENT_BIT_K8S["time"])


def test_fluent_bit_docker_record_line_end(stream: Any) -> None:
    """Docker's json-file line keeps its "\\n" under log: cut as the agent's tailer
    cuts a line end, so the JSON line is read as JSON."""
    doc = one(stream, FLUENT_BIT_DOCKER)
    assert doc["message"] == "oom" and doc["log"]["level"] == "error" and doc["model"]["name"] == "m3"
    assert doc["stream"] == "stderr"


def test_fluent_bit_nginx_parser_record(stream: Any) -> None:
    """No line at all (the parser's fields at the top level): host a string ->
    host.name, agent (the user agent) a string -> extra.agent, the rest kept."""
    doc = one(stream, FLUENT_BIT_NGINX)
    assert doc["host"] == {"name": "-"}
    assert doc["extra"] == {"agent": "curl/8.5.0"}
    for key in ("remote", "user", "method", "path", "code", "size", "referer"):
        assert doc[key] == FLUENT_BIT_NGINX[key], key
    assert "message" not in doc and "agent" not in doc


@pytest.mark.parametrize("source, expected", [
    (VECTOR_FILE, {"message": "slow", "log": {"level": "error"}, "model": {"name": "m2"}}),
    (VECTOR_PLAIN, {"message": "slow step", "log": {"level": "warning", "logger": "torch"},
                    "@timestamp": "2024-05-01T12:00:00.123Z"}),
])
def test_vector_file_source(stream: Any, source: dict[str, Any], expected: dict[str, Any]) -> None:
    """host (the hostname string) -> host.name; file and source_type kept; the line parsed."""
    doc = one(stream, source)
    assert doc["host"] == {"name": "vector-host"}
    assert (doc["file"], doc["source_type"]) == ("/var/log/model.log", "file")
    assert doc["data_stream"] == source["data_stream"]
    for key, value in expected.items():
        if isinstance(value, dict):
            assert {name: doc[key].get(name) for name in value} == value, (key, doc)
        else:
            assert doc[key] == value, (key, doc)
    assert "extra" not in doc


def test_scalars_at_object_roots_are_kept_in_extra(stream: Any) -> None:
    """Every root the schema declares as an object or flattened field, given a
    value that is not an object, is kept under extra (a scalar extra under
    extra.extra, a key extra already holds as a list of both); a string log
    next to a message is kept as extra.log. Nothing is dropped."""
    doc = one(stream, {"@timestamp": T, "message": "no prefix at all", "log": "the raw record",
                       "labels": "prod", "extra": "scalar", "event": "started", "error": ["e1", "e2"],
                       "agent": "fluent-bit", "http": 200, "kubernetes": True, "tags": ["a"]})
    assert doc["message"] == "no prefix at all"
    assert doc["extra"] == {"extra": "scalar", "log": "the raw record", "labels": "prod", "event": "started",
                            "error": ["e1", "e2"], "agent": "fluent-bit", "http": 200, "kubernetes": True}
    assert doc["tags"] == ["a"]
    assert "labels" not in doc and "agent" not in doc and "http" not in doc
    doc = one(stream, {"@timestamp": T, "log": "2024-05-01 12:00:00,123 - app - INFO - up",
                       "extra": {"agent": "earlier", "kept": 1}, "agent": "later", "host": "h"})
    assert doc["message"] == "up" and doc["log"] == {"level": "info", "logger": "app"}
    assert doc["extra"] == {"agent": ["earlier", "later"], "kept": 1}
    assert doc["host"] == {"name": "h"}


def test_one_bulk_of_every_shipper_is_indexed_whole(stream: Any) -> None:
    """Filebeat as before (its ECS objects untouched), next to Fluent Bit's and
    Vector's records in one request: every document 201."""
    docs = [FILEBEAT, FLUENT_BIT_TAIL, FLUENT_BIT_K8S, FLUENT_BIT_DOCKER, FLUENT_BIT_NGINX, VECTOR_FILE, VECTOR_PLAIN]
    results = stream(docs)
    assert [status for status, _ in results] == [201] * len(docs), results
    filebeat = results[0][1]
    assert filebeat["message"] == "hi" and filebeat["log"]["level"] == "error" and filebeat["model"]["name"] == "m1"
    assert filebeat["agent"] == FILEBEAT["agent"] and filebeat["host"] == {"name": "h1"}
    assert filebeat["log"]["file"] == {"path": "/var/log/app.log"} and filebeat["log"]["offset"] == 5
    assert filebeat["input"] == {"type": "filestream"} and "extra" not in filebeat
    assert [doc["host"]["name"] for _, doc in results[4:]] == ["-", "vector-host", "vector-host"]


# Integers from 2^63 to 2^64-1: Filebeat's ndjson / decode_json_fields and Vector's JSON
# decoding keep uint64 values (trace and span ids) as numbers. OpenSearch's ingest refuses a
# script processor over a document holding one anywhere ("unexpected value type [class
# java.math.BigInteger]"), and the document was refused whole (400) by the entry pipeline's
# two scripts for other shippers; they are rename/gsub/set processors with conditions now.
BIG = [2 ** 63, 2 ** 64 - 1]


@pytest.mark.parametrize("big", BIG)
def test_a_big_integer_in_a_document_without_a_line_is_indexed_and_reshaped(stream: Any, big: int) -> None:
    """Fluent Bit's nginx parser's shape (no line) and a bare Filebeat record, each
    with a uint64 somewhere: 201, reshaped as the others, the number kept exact."""
    nginx = {**FLUENT_BIT_NGINX, "request_id": big}
    doc = one(stream, nginx)
    assert doc["host"] == {"name": "-"} and doc["extra"] == {"agent": "curl/8.5.0"}
    assert doc["request_id"] == big and "agent" not in doc
    doc = one(stream, {"@timestamp": T, "agent": {"name": "filebeat"}, "n": big,
                       "labels": "prod", "trace": {"id_u64": big}, "http": big})
    assert doc["n"] == big and doc["trace"] == {"id_u64": big}
    assert doc["extra"] == {"labels": "prod", "http": big} and doc["agent"] == {"name": "filebeat"}


@pytest.mark.parametrize("big", BIG)
def test_a_big_integer_next_to_a_line_is_indexed_with_the_line_kept(stream: Any, big: int) -> None:
    """Filebeat (message plus decode_json_fields' json object), Vector's file source
    (a top-level span_id) and Fluent Bit's tail record (the line under log) with a
    uint64: every document 201 and reshaped as the others (log -> message with its
    line end cut, host -> host.name, a scalar root -> extra). The format's pipeline
    still has scripts (json.yml, plain.yml...), which OpenSearch cannot run over
    such a document: the line is kept as it came and the refusal is recorded as
    any pipeline failure (event.kind pipeline_error, error.message), never lost."""
    filebeat = {**FILEBEAT, "json": {"trace_id_u64": big}}
    vector = {**VECTOR_PLAIN, "span_id": big}
    docker = {**FLUENT_BIT_DOCKER, "kubernetes": {**KUBERNETES, "pod_uid_u64": big}, "agent": "fluent-bit"}
    results = stream([filebeat, vector, docker])
    assert [status for status, _ in results] == [201] * 3, results
    (_, fb), (_, vec), (_, dock) = results
    assert fb["json"] == {"trace_id_u64": big} and fb["agent"] == FILEBEAT["agent"] and fb["host"] == {"name": "h1"}
    assert fb["message"] == FILEBEAT["message"]
    assert vec["span_id"] == big and vec["host"] == {"name": "vector-host"} and vec["message"] == VECTOR_PLAIN["message"]
    assert (vec["file"], vec["source_type"]) == ("/var/log/model.log", "file")
    assert dock["kubernetes"]["pod_uid_u64"] == big and dock["message"] == FLUENT_BIT_DOCKER["log"][:-1]
    assert dock["extra"] == {"agent": "fluent-bit"} and "log" not in dock
    for doc in (fb, vec, dock):
        assert "modelscribe" not in doc and doc["event"]["ingested"]
        if doc["event"].get("kind") == "pipeline_error":  # OpenSearch: the format's scripts
            assert "pipeline_error" in doc["tags"] and "BigInteger" in doc["error"]["message"][-1], doc


def test_a_key_extra_holds_already_is_appended_never_refused(stream: Any) -> None:
    """A value that would land on a key extra already has is appended there (a
    list): a string as it is, any other value as its text (a number's digits, a
    list as JSON): rename cannot merge and no script may run."""
    doc = one(stream, {"@timestamp": T, "message": "no prefix at all",
                       "extra": {"http": 5, "error": "x", "log": ["l1"]},
                       "http": 200, "error": ["e1", {"k": 2 ** 64 - 1}], "log": "the record"})
    assert doc["extra"] == {"http": [5, "200"], "error": ["x", '["e1",{"k":18446744073709551615}]'],
                            "log": ["l1", "the record"]}
