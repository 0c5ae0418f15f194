"""The kserve format on real-looking logs, record by record.

The fixture (tests/fixtures/servers/kserve) follows KServe's
KSERVE_LOG_CONFIG: the kserve logger with its origin bracket, the
kserve.trace latency lines (and an older release's through the root
logger), KServe's uvicorn access format, the URL-encoded v1 verbs, v2
routes, and stock uvicorn lines where KServe's config was not applied.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import agent.parsing.servers.kserve as kserve_module
from agent.events import Record, Source
import servers_kit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "servers"
SOURCE = Source("servers-key", "/var/log/model.log")


def parse_lines(texts: list[str], fmt: str, **options: object) -> list[Record]:
    return servers_kit.parse_lines(texts, fmt, SOURCE, **options)


def parse(name: str, fmt: str) -> list[Record]:
    return parse_lines((FIXTURES / name).read_text(encoding="utf-8").split("\n")[:-1], fmt)


def local(*args: int) -> float:
    *head, millis = args
    return datetime(*head, millis * 1000).timestamp()


# -- the fixture --------------------------------------------------------------------


def test_kserve_fixture() -> None:
    records = parse("kserve/kserve.log", "kserve")
    assert len(records) == 18
    (download, register, loop, started, waiting, running, trace, access, explain_trace, explain_access,
     bad_request, exception, failed, live, status, old_trace, stock, stopping) = records

    assert register.timestamp == local(2024, 5, 1, 10, 0, 0, 215)
    assert register.message == "Registering model: sklearn-iris"
    assert register.fields == {
        "model": {"server": "kserve"}, "process": {"pid": 1},
        "log": {"logger": "kserve", "level": "info",
                "origin": {"file": {"name": "model_server.py", "line": 363}, "function": "register_model"}},
    }
    assert download.fields["log"]["origin"]["function"] == "_download_local"

    assert started.message == "Started server process [1]"
    assert started.fields == {"log": {"logger": "uvicorn.error", "level": "info"}, "process": {"pid": 1},
                              "model": {"server": "kserve"}}

    assert trace.message.startswith("requestId: 9a1c3f0e-5d2b-4c47-8e61-0b7a2f4d9c10, preprocess_ms:")
    assert trace.fields == {
        "log": {"logger": "kserve.trace", "level": "info"}, "process": {"pid": 1},
        "model": {"server": "kserve", "request_id": "9a1c3f0e-5d2b-4c47-8e61-0b7a2f4d9c10", "operation": "predict",
                  "stats": {"preprocess_ms": 0.012636185, "explain_ms": 0.0, "predict_ms": 1.184225082,
                            "postprocess_ms": 0.001907349}},
        "event": {"duration": 1198769},  # the four steps, 1.198768616 ms, in ns
    }

    assert access.timestamp == local(2024, 5, 1, 10, 0, 5, 121)
    assert access.message == '10.244.0.17:51234 1 - "POST /v1/models/sklearn-iris%3Apredict HTTP/1.1" 200 OK'
    assert access.fields == {
        "log": {"logger": "uvicorn.access", "level": "info"},
        "model": {"server": "kserve", "name": "sklearn-iris", "operation": "predict"},
        "client": {"ip": "10.244.0.17", "port": 51234}, "process": {"pid": 1},
        "event": {"outcome": "success"},
        "http": {"request": {"method": "POST"}, "version": "1.1", "response": {"status_code": 200}},
        "url": {"original": "/v1/models/sklearn-iris%3Apredict", "path": "/v1/models/sklearn-iris:predict"},
    }

    # N.A. is KServe's "no x-request-id": no request id. 2e-06 is a float repr.
    assert "request_id" not in explain_trace.fields["model"]
    assert explain_trace.fields["model"]["operation"] == "explain"
    assert explain_trace.fields["model"]["stats"]["postprocess_ms"] == 2e-06
    assert explain_trace.fields["event"] == {"duration": 35510002}
    assert explain_access.fields["model"]["operation"] == "explain"

    assert bad_request.fields["event"] == {"outcome": "unknown"}
    assert bad_request.fields["model"] == {"server": "kserve", "name": "sklearn-iris", "operation": "infer"}

    assert exception.line_count == 9
    assert exception.message.startswith("Exception:\nTraceback (most recent call last):")
    assert exception.fields["log"]["level"] == "error"
    assert exception.fields["error"]["type"] == "ValueError"
    assert exception.fields["error"]["message"] == "Input contains NaN."

    assert failed.fields["model"] == {"server": "kserve", "name": "sklearn-iris", "version": "3", "operation": "infer"}
    assert failed.fields["event"] == {"outcome": "failure"}
    assert live.fields["model"]["operation"] == "health"
    assert status.fields["model"] == {"server": "kserve", "name": "sklearn-iris", "operation": "ready"}

    # An older release: no file name in the bracket, latency through the root logger.
    assert old_trace.fields["log"] == {"logger": "root", "level": "info",
                                       "origin": {"file": {"line": 148}, "function": "__call__"}}
    assert old_trace.fields["model"]["request_id"] == "5f1e"
    assert old_trace.fields["event"] == {"duration": 4530000}

    # KServe's logging config not applied: stock uvicorn, still model.server kserve.
    assert stock.timestamp is None
    assert stock.fields["http"]["request"] == {"method": "GET"}
    assert stopping.message == "Stopping the model server"


def test_kserve_detect() -> None:
    detect = kserve_module.KServeFormat.detect
    assert detect("2024-05-01 10:00:00.215 1 kserve INFO [model_server.py:register_model():363] Registering model: m")
    assert detect("2024-05-01 10:00:05.120 1 kserve.trace requestId: N.A., preprocess_ms: 0.01, explain_ms: 0, "
                  "predict_ms: 1.2, postprocess_ms: 0.01")
    assert detect('2024-05-01 10:00:05.121 uvicorn.access INFO:     10.0.0.1:5 1 - "GET / HTTP/1.1" 200 OK')
    assert not detect("2024-05-01 10:00:00,215 myapp INFO started")
    assert not detect('INFO:     127.0.0.1:52345 - "GET / HTTP/1.1" 200 OK')


# -- never raises --------------------------------------------------------------

FRAGMENTS = [
    "INFO:     ", 'INFO:     1.2.3.4:5 - "GET / HTTP/1.1" 200 OK', 'INFO:     x - "GET /%zz HTTP/9" 999 ',
    "2024-05-01 10:00:00.215 1 kserve INFO [", "2024-05-01 10:00:00.215 1 kserve.trace requestId: ",
    ", preprocess_ms: nan, explain_ms: inf, predict_ms: -1, postprocess_ms: 1e999",
    "2024-05-01 10:00:00.215 uvicorn.access INFO:     ", " 99999999999 - ", "[::1]:", "\x1b[32m",
    "Traceback (most recent call last):",
    "  File \"x.py\", line 1, in f", "ValueError: v", "", " ",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=30),
                          st.builds(lambda a, b, c: a + b + c, st.sampled_from(FRAGMENTS), st.text(max_size=10),
                                    st.sampled_from(FRAGMENTS))), max_size=20))
def test_never_raises(texts: list[str]) -> None:
    for text in texts:
        kserve_module.KServeFormat.detect(text)
    parse_lines([text.replace("\n", " ") for text in texts], "kserve")
