"""Every document the parsers produce from the fixtures is described by the
schema: no undefined field, no value of the wrong shape. A parser that starts
emitting a new field fails here until fields.yml defines it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agent.enrich import Enricher
from agent.events import Line, Source
from agent.parsing import ParseSettings, make_parser
from agent.schema import undefined_fields, value_problems

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FILES = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and not p.name.startswith("."))


def documents(path: Path, fmt: str = "auto") -> list[dict]:
    source = Source("k" * 16, str(path))
    parser = make_parser(ParseSettings(format=fmt, keep_original=True), source)
    enricher = Enricher("host-1", "agent-1", keep_original=True)
    records, offset = [], 0
    for raw in path.read_bytes().splitlines(keepends=True):
        text = raw.rstrip(b"\n").decode("utf-8", "replace")
        records.extend(parser.feed(Line(source, offset, offset + len(raw), text, 1_767_225_600.0)))
        offset += len(raw)
    records.extend(parser.flush())
    return [orjson.loads(enricher.build(record).data) for record in records]


def test_there_are_fixtures_of_every_server_format():
    servers = {p.parent.name for p in FILES if p.parent.parent.name == "servers"}
    assert {"torchserve", "triton", "bentoml", "uvicorn", "kserve", "gunicorn", "rayserve", "vllm",
            "mlflow"} <= servers


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_documents_use_only_schema_fields(path):
    docs = documents(path)
    assert docs, f"{path} produced no documents"
    for doc in docs:
        assert undefined_fields(doc) == [], (path.name, doc.get("message", "")[:80])
        assert value_problems(doc) == [], (path.name, doc.get("message", "")[:80])
