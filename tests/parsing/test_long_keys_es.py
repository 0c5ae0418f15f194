"""JSON lines with key paths longer than a flattened field takes are indexed
on the real Elasticsearch node, with the key cut (agent/transforms/truncate.py
``cut_key_paths``): each line goes through the real JSON parser, enrichment
and transforms, as ``modelscribe run`` does, and is bulk-indexed with the
project's templates installed. Elasticsearch makes one term of a key path
and its value and refuses the document when it passes 32,766 bytes
("Flattened field [extra] contains one immense field whose keyed encoding is
longer than the allowed max length of 32766 bytes"): a key of 40,000 bytes
was a dead letter before."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

import elasticsearch_local
from agent.enrich import Enricher
from agent.events import Line, Source
from agent.parsing import ParseSettings, make_parser
from agent.setup.templates import install_templates
from agent.transforms import TransformSettings, Transforms
from agent.transforms.static import gather
from agent.transforms.truncate import KEY_PATH_MAX, TAG_KEY_TRUNCATED

pytestmark = pytest.mark.elasticsearch

STREAM = "logs-modelscribe-longkeys"
LONG = "feature:https://example.com/" + "p" * 1972  # 2,000 bytes
HUGE = "prompt: " + "why is the sky blue? " * 1905  # 40,013 bytes


def _cut(path: str) -> str:
    return path[:KEY_PATH_MAX - 9] + "~" + hashlib.sha256(path.encode()).hexdigest()[:8]


@pytest.fixture(scope="module")
def indexed(es_node, es_session) -> Any:
    """``indexed(objects) -> [(status, error, _source), ...]`` of the lines as the agent ships them."""
    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return elasticsearch_local.request(es_node, method, path, body)

    install_templates(request)
    source = Source("k" * 16, "/var/log/app/keys.log")
    enricher = Enricher("host-1", "agent-1", False, Transforms(TransformSettings(), gather("host-1")))

    def index(objects: list[dict[str, Any]]) -> list[tuple[int, Any, Any]]:
        parser = make_parser(ParseSettings(format="json"), source)
        records, offset = [], 0
        for obj in objects:
            text = json.dumps({"message": "m", **obj})
            records.extend(parser.feed(Line(source, offset, offset + len(text) + 1, text, 1_767_225_600.0)))
            offset += len(text) + 1
        records.extend(parser.flush())
        events = [enricher.build(record) for record in records]
        body = b"".join(b'{"create":{}}\n' + event.data + b"\n" for event in events)
        status, answer = request("POST", f"/{STREAM}/_bulk?refresh=true", body.decode())
        assert status == 200, answer
        out = []
        for event, item in zip(events, answer["items"]):
            result = item["create"]
            found = None
            if result["status"] == 201:
                found = request("GET", f"/{result['_index']}/_doc/{result['_id']}")[1]["_source"]
            out.append((result["status"], result.get("error"), found))
        return out

    yield index
    es_session.delete_index(STREAM)


def test_a_2000_byte_key_in_extra_is_indexed_under_its_cut_name(indexed, es_session) -> None:
    ((status, error, doc),) = indexed([{LONG: "ok", "n": 1}])
    assert status == 201, error
    assert doc["extra"] == {_cut(LONG): "ok", "n": 1} and doc["tags"] == [TAG_KEY_TRUNCATED]
    # searchable under the cut name, as a flattened field's key
    hits = es_session.ok("POST", f"/{STREAM}/_search", {"query": {"term": {f"extra.{_cut(LONG)}": "ok"}}})
    assert hits["hits"]["total"]["value"] >= 1


def test_keys_the_node_refused_are_indexed(indexed) -> None:
    results = indexed([{HUGE: "v"}, {"features": {HUGE: 0.5}}, {"prediction": {"by_prompt": {HUGE: "yes"}}}])
    assert [status for status, _, _ in results] == [201, 201, 201], [error for _, error, _ in results]
    first, nested, prediction = (doc for _, _, doc in results)
    assert first["extra"] == {_cut(HUGE): "v"}
    assert nested["model"]["input"]["features"] == {_cut(HUGE): 0.5}
    (key,) = prediction["model"]["prediction"]["by_prompt"]
    assert key.startswith("prompt: why") and len(f"by_prompt.{key}".encode()) == KEY_PATH_MAX
    assert prediction["tags"] == [TAG_KEY_TRUNCATED]


def test_keys_with_a_nul_are_indexed_with_a_replacement_character(indexed) -> None:
    # Each was refused whole before ("failed to parse field [extra] of type
    # [flattened]"): Elasticsearch keeps the NUL byte to end a flattened key.
    results = indexed([{"we\0ird": 1}, {"prediction": {"cl\0ass": "x"}}, {"labels": {"t\0eam": "y"}},
                       {"features": {"f\0": 0.5}}, {"k": "a value keeps its \0"}])
    assert [status for status, _, _ in results] == [201] * 5, [error for _, error, _ in results]
    docs = [doc for _, _, doc in results]
    assert docs[0]["extra"] == {"we\ufffdird": 1}
    assert docs[1]["model"]["prediction"] == {"cl\ufffdass": "x"}
    assert docs[2]["labels"] == {"t\ufffdeam": "y"}
    assert docs[3]["model"]["input"]["features"] == {"f\ufffd": 0.5}
    assert docs[4]["extra"] == {"k": "a value keeps its \0"}
