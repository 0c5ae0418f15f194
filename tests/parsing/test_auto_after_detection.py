"""--format auto after a server format is detected: a JSON-object line is
still parsed as JSON, an event of its own (audit 9, formats #2).

A FastAPI/KServe/Triton app that logs JSON while its server prints its own
start-up lines first: before, the JSON line was the detected format's raw
text (no fields), or joined into the server's previous entry (Triton,
TorchServe).
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import agent.parsing.servers
from agent.events import TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import ParseSettings, make_parser

for _module in pkgutil.iter_modules(agent.parsing.servers.__path__):
    importlib.import_module(f"agent.parsing.servers.{_module.name}")

JSON = '{"message":"prediction failed","level":"error","model_name":"churn","latency_ms":3}'
# A first line each server format claims (from its fixtures and upstream code).
FIRST = {
    "uvicorn": "INFO:     Started server process [1]",
    "kserve": "2024-05-01 10:00:00.101 1 kserve INFO [model_server.py:register_model():363] Registering model: churn",
    "gunicorn": "[2024-05-01 10:00:01 +0000] [7] [INFO] Booting worker with pid: 7",
    "mlflow": "2024/05/01 10:00:00 INFO mlflow.pyfunc.scoring_server: hi",
    "vllm": "INFO 05-01 10:00:00 api_server.py:212] vLLM API server version 0.5.4",
    "triton": 'I0501 09:58:01.004211 1 server.cc:1] "Started HTTPService at 0.0.0.0:8000"',
    "torchserve": "2024-05-01T09:59:58,101 [INFO ] main org.pytorch.serve.ModelServer - Initializing plugins manager...",
    "bentoml": "2024-05-01T10:00:00+0000 [INFO] [cli] Starting production HTTP BentoServer",
    "rayserve": "INFO 2024-12-31 01:22:10,101 default_Model 3npxyudx -- Started initializing replica.",
}


def read(texts: list[str]) -> tuple[object, list[Record]]:
    source = Source("auto-json", "/var/log/app/server.log")
    parser = make_parser(ParseSettings(format="auto"), source)
    records: list[Record] = []
    offset = 0
    for number, text in enumerate(texts):
        end = offset + len(text.encode()) + 1
        records.extend(parser.feed(Line(source, offset, end, text, 1000.0 + number)))
        offset = end
    return parser._format, records + parser.flush()


def json_alone() -> Record:
    _, [record] = read([JSON])
    return record


@pytest.mark.parametrize("server", sorted(FIRST))
def test_a_json_line_after_detection_is_parsed_as_json(server: str) -> None:
    line_format, records = read([FIRST[server], JSON, FIRST[server]])
    assert line_format.detected == server
    assert [record.line_count for record in records] == [1, 1, 1]
    first, parsed, again = records
    assert JSON not in first.message
    assert parsed.message == "prediction failed"
    assert parsed.fields["log"]["level"] == "error"
    assert parsed.fields["model"]["name"] == "churn"
    assert parsed.fields["event"]["duration"] == 3_000_000
    assert TAG_PARSE_FAILURE not in parsed.tags
    if server not in ("bentoml", "rayserve"):  # (those two read JSON themselves, and add model.server)
        assert parsed.fields == json_alone().fields
    # The server's lines after it are read by the detected format still.
    assert again.fields == first.fields and again.message == first.message


@pytest.mark.parametrize("server", ["triton", "torchserve", "uvicorn"])
def test_a_brace_line_that_is_not_an_object_stays_the_formats_text(server: str) -> None:
    _, records = read([FIRST[server], "{ not json", '["a", "list"]'])
    assert TAG_PARSE_FAILURE not in {tag for record in records for tag in record.tags}
    assert "{ not json" in "\n".join(record.message for record in records)


def test_a_json_line_ends_the_entry_before_it() -> None:
    # A Triton table in progress: the JSON line is not one of its lines.
    head = 'I0501 09:58:03.011540 1 server.cc:676] '
    _, records = read([FIRST["triton"], head, "+---+", "| m |", JSON, "+---+"])
    assert [record.line_count for record in records] == [1, 3, 1, 1]
    assert records[2].fields["model"]["name"] == "churn"
