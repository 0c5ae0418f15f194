"""The mlflow format on real-looking ``mlflow models serve`` output.

Fixtures (tests/fixtures/servers/mlflow): MLflow's own logger lines, then the
scoring server under uvicorn (MLflow 2.x and later) with /ping, /invocations,
/version, /health and a failed prediction's traceback; and an older release
under gunicorn with its access log enabled.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import agent.parsing.servers.mlflow as mlflow_module
from agent.events import Record, Source
import servers_kit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "servers"
SOURCE = Source("servers-key", "/var/log/mlflow-serve.log")


def parse_lines(texts: list[str]) -> list[Record]:
    return servers_kit.parse_lines(texts, "mlflow", SOURCE)


def parse(name: str) -> list[Record]:
    return parse_lines((FIXTURES / name).read_text(encoding="utf-8").split("\n")[:-1])


def test_uvicorn_scoring_server() -> None:
    records = parse("mlflow/uvicorn_serve.log")
    assert len(records) == 14
    (backend, command, started, waiting, complete, running, ping, invocation, warning, bad_request, failure,
     failed, version, health) = records

    assert backend.timestamp == datetime(2024, 5, 1, 10, 0, 0).timestamp()
    assert backend.message == "Selected backend for flavor 'python_function'"
    assert backend.fields == {"model": {"server": "mlflow"},
                              "log": {"level": "info", "logger": "mlflow.models.flavor_backend_registry"}}
    assert command.fields["log"]["logger"] == "mlflow.pyfunc.backend"
    assert started.fields == {"model": {"server": "mlflow"}, "log": {"level": "info"}, "process": {"pid": 50}}

    assert ping.fields["model"] == {"server": "mlflow", "operation": "health"}
    assert invocation.message == '127.0.0.1:51312 - "POST /invocations HTTP/1.1" 200 OK'
    assert invocation.fields == {
        "model": {"server": "mlflow", "operation": "predict"},
        "log": {"level": "info", "logger": "uvicorn.access"},
        "client": {"ip": "127.0.0.1", "port": 51312},
        "event": {"outcome": "success"},
        "http": {"request": {"method": "POST"}, "version": "1.1", "response": {"status_code": 200}},
        "url": {"original": "/invocations", "path": "/invocations"},
    }
    assert warning.fields["log"] == {"level": "warning", "logger": "mlflow.pyfunc.scoring_server"}
    assert bad_request.fields["event"] == {"outcome": "unknown"}

    assert failure.line_count == 6
    assert failure.message.startswith("Failed to predict\nTraceback (most recent call last):")
    assert failure.fields["error"]["type"] == "mlflow.exceptions.MlflowException"
    assert failure.fields["log"]["level"] == "error"
    assert failed.fields["event"] == {"outcome": "failure"}
    assert failed.fields["model"]["operation"] == "predict"

    assert "operation" not in version.fields["model"]
    assert health.fields["model"]["operation"] == "health"


def test_gunicorn_scoring_server() -> None:
    records = parse("mlflow/gunicorn_serve.log")
    assert len(records) == 7
    backend, command, starting, listening, booting, invocation, ping = records
    assert "gunicorn" in command.message
    assert starting.timestamp == datetime(2023, 2, 1, 9, 0, 1, tzinfo=timezone.utc).timestamp()
    assert starting.fields == {"model": {"server": "mlflow"}, "log": {"level": "info"}, "process": {"pid": 42}}
    assert booting.fields["model"] == {"server": "mlflow", "worker": "43"}
    assert invocation.timestamp == datetime(2023, 2, 1, 9, 0, 5, tzinfo=timezone.utc).timestamp()
    assert invocation.fields["model"] == {"server": "mlflow", "operation": "predict"}
    assert invocation.fields["http"]["response"] == {"status_code": 200, "bytes": 26}
    assert invocation.fields["user_agent"] == {"original": "python-requests/2.28.2"}
    assert ping.fields["model"]["operation"] == "health"


def test_detect() -> None:
    detect = mlflow_module.MlflowFormat.detect
    assert detect("2024/05/01 10:00:00 INFO mlflow.models.flavor_backend_registry: Selected backend")
    assert not detect("2024/05/01 10:00:00 INFO myapp.module: hello")
    assert not detect('INFO:     127.0.0.1:51312 - "POST /invocations HTTP/1.1" 200 OK')


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["2024/05/01 10:00:00 INFO mlflow.x: ", "2024/13/99 99:99:99 INFO m: ", "INFO:     ",
                     '- "POST /invocations HTTP/1.1" 200 OK', "[2024-05-01 10:00:00 +0000] [1] [INFO] ", ""]),
    st.text(max_size=40)), max_size=12))
def test_never_raises(texts: list[str]) -> None:
    joined = ["".join(texts[i:i + 2]).replace("\n", " ") for i in range(0, len(texts), 2)]
    for text in joined:
        mlflow_module.MlflowFormat.detect(text)
    parse_lines(joined)
