"""The rayserve format on real-looking replica, proxy, driver and JSON logs.

Fixtures (tests/fixtures/servers/rayserve) follow Ray Serve's ServeFormatter
in its three text layouts (2.10+ "-- ", 2.7-2.9 request context with
"file.py:N - ", 2.0-2.6), the driver's "(Actor pid=N)" tags and Ray core
lines, and the JSONFormatter records of LoggingConfig(encoding="JSON").
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.parsing.servers.rayserve as rayserve_module
from agent.events import TAG_PARSE_FAILURE, Record, Source
import lanes_kit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "servers"
SOURCE = Source("servers-key", "/tmp/ray/session_latest/logs/serve/replica.log")


def parse_lines(texts: list[str], **options: object) -> list[Record]:
    return lanes_kit.parse_lines(texts, "rayserve", SOURCE, **options)


def parse(name: str) -> list[Record]:
    return parse_lines((FIXTURES / name).read_text(encoding="utf-8").split("\n")[:-1])


def local(*args: int) -> float:
    *head, millis = args
    return datetime(*head, millis * 1000).timestamp()


REQUEST = "733674e0-298f-41e2-950d-32f82aa1cd55"


def test_replica_log() -> None:
    records = parse("rayserve/replica_default_Model.log")
    assert len(records) == 10
    init, done, started, call, failed_request, call_error, with_client, proxy, controller, printed = records

    assert init.timestamp == local(2024, 12, 31, 1, 22, 10, 101)
    assert init.message == "Started initializing replica."
    assert init.fields == {"model": {"server": "rayserve", "name": "default_Model", "worker": "3npxyudx"},
                           "log": {"level": "info"}}
    assert started.fields["model"]["request_id"] == REQUEST

    assert call.message == "CALL __call__ OK 8.1ms"
    assert call.fields == {
        "model": {"server": "rayserve", "request_id": REQUEST, "operation": "__call__",
                  "name": "default_Model", "worker": "3npxyudx"},
        "log": {"level": "info"},
        "event": {"outcome": "success", "duration": 8100000},
    }

    assert failed_request.line_count == 6
    assert failed_request.message.startswith("Request failed:\nTraceback (most recent call last):")
    assert failed_request.fields["error"]["type"] == "RuntimeError"
    assert failed_request.fields["log"] == {"level": "error"}
    assert call_error.fields["event"] == {"outcome": "failure", "duration": 3200000}

    # RAY_SERVE_LOG_CLIENT_ADDRESS: the client before the method.
    assert with_client.fields["client"] == {"ip": "127.0.0.1", "port": 53122}
    assert with_client.fields["http"] == {"request": {"method": "GET"}, "response": {"status_code": 200}}
    assert with_client.fields["url"] == {"path": "/classify"}
    assert with_client.fields["event"] == {"outcome": "success", "duration": 4000000}

    assert proxy.fields == {
        "model": {"server": "rayserve", "request_id": REQUEST},
        "log": {"level": "info"},
        "event": {"outcome": "success", "duration": 9400000},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200}},
        "url": {"path": "/classify"},
        "labels": {"component": "proxy", "component_id": "10.0.0.5"},
    }
    assert controller.fields["labels"] == {"component": "controller", "component_id": "4242"}
    assert controller.message.startswith("Adding 1 replica")

    assert printed.tags == (TAG_PARSE_FAILURE,)
    assert printed.error == "not a rayserve log line"


def test_driver_log() -> None:
    records = parse("rayserve/driver.log")
    assert len(records) == 8
    deploying, controller, proxy_start, hello, call, http_proxy, handle, success = records

    assert deploying.timestamp == local(2023, 4, 10, 15, 57, 32, 100)
    assert deploying.message == 'Deploying from import path: "monitoring:say_hello".'
    assert deploying.fields == {"model": {"server": "rayserve"},
                                "log": {"level": "info", "origin": {"file": {"name": "scripts.py", "line": 380}}}}

    assert controller.fields["process"] == {"pid": 63503}
    assert controller.fields["labels"] == {"component": "controller", "component_id": "63503"}
    assert controller.fields["log"]["origin"] == {"file": {"name": "deployment_state.py", "line": 1168}}

    assert proxy_start.message == "Started server process [63513]"
    assert proxy_start.fields["process"] == {"pid": 63513}

    assert hello.message == "Hello world!"
    assert hello.fields == {
        "process": {"pid": 63520},
        "model": {"server": "rayserve", "request_id": "HzIYOzaEgN", "name": "SayHello", "worker": "SayHello#kTBlTj"},
        "log": {"level": "info", "origin": {"file": {"name": "monitoring.py", "line": 16}}},
    }
    assert call.fields["model"]["operation"] == "__call__"
    assert call.fields["event"] == {"outcome": "success", "duration": 500000}

    # 2.7's proxy: route and application in the context, "GET 200" without the route.
    assert http_proxy.fields["extra"] == {"node_ip": "10.0.0.3"}
    assert http_proxy.fields["service"] == {"name": "default"}
    assert http_proxy.fields["url"] == {"path": "/"}
    assert http_proxy.fields["http"]["response"] == {"status_code": 200}
    assert http_proxy.fields["labels"] == {"component": "http_proxy", "component_id": "10.0.0.3"}

    assert handle.fields["model"]["operation"] == "__call__"
    assert handle.fields["model"]["worker"] == "SayHello#kKGBoa"
    assert success.fields["log"]["level"] == "info"


def test_json_log() -> None:
    records = parse("rayserve/replica_default_Model.jsonl")
    assert len(records) == 5
    init, call, failed, proxy, broken = records

    assert init.message == "Started initializing replica."
    assert init.timestamp == local(2024, 2, 27, 10, 36, 8, 908)
    assert init.fields == {"log": {"level": "info", "origin": {"file": {"name": "replica.py", "line": 855}}},
                           "model": {"server": "rayserve", "name": "default_Model", "worker": "rdofcrh4"}}

    assert call.fields["model"] == {"server": "rayserve", "name": "default_Model", "worker": "rdofcrh4",
                                    "request_id": "f4f4b3c0-1cca-4424-9002-c887d7858525", "operation": "__call__"}
    assert call.fields["service"] == {"name": "default"}
    assert call.fields["url"] == {"path": "/"}
    assert call.fields["event"] == {"outcome": "success", "duration": 600000}

    assert failed.timestamp == 1735787045678123456 / 1e9  # timestamp_ns, not the naive asctime
    assert failed.message == "POST /predict 500 12.5ms"
    assert failed.fields == {
        "log": {"level": "error", "origin": {"file": {"name": "replica.py", "line": 410}}},
        "extra": {"job_id": "01000000", "worker_id": "a4c9", "node_id": "9e1f", "actor_id": "77ab"},
        "model": {"server": "rayserve", "name": "default_Model", "worker": "x1y2z3", "request_id": "r-1",
                  "operation": "predict"},
        "process": {"pid": 4242},
        "service": {"name": "default"},
        "error": {"stack_trace": 'Traceback (most recent call last):\n  File "/app/model.py", line 9, in predict\n'
                                 '    raise ValueError("bad input")\nValueError: bad input',
                  "type": "ValueError", "message": "bad input"},
        "event": {"outcome": "failure", "duration": 12500000},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 500}},
        "url": {"path": "/predict"},
    }

    assert proxy.fields["labels"] == {"component": "proxy", "component_id": "10.0.0.5"}
    assert proxy.fields["extra"] == {"custom_key": {"nested": True}}
    assert proxy.fields["process"] == {"pid": 311}
    assert "name" not in proxy.fields["model"]

    assert broken.tags == (TAG_PARSE_FAILURE,)
    assert broken.error.startswith("invalid JSON")


def test_keep_original_and_odd_json() -> None:
    records = parse_lines(['{"message": "x", "deployment": 5, "replica": null, "process": "p", "lineno": "7"}',
                           "[1, 2]"], keep_original=True)
    odd, array = records
    assert odd.original.startswith('{"message"')
    assert odd.fields["extra"] == {"deployment": 5, "replica": None, "process": "p", "lineno": "7"}
    assert array.tags == (TAG_PARSE_FAILURE,) and array.error == "not a rayserve log line"


def test_detect() -> None:
    detect = rayserve_module.RayServeFormat.detect
    assert detect(f"INFO 2024-12-31 01:22:15,889 default_Model 3npxyudx {REQUEST} -- GET / 200 8.1ms")
    assert detect("(ServeReplica:SayHello pid=63520) INFO 2023-04-10 15:59:45,403 SayHello SayHello#kTBlTj "
                  "HzIYOzaEgN / replica.py:527 - __CALL__ OK 0.5ms")
    assert detect('{"levelname": "INFO", "deployment": "default_Model", "replica": "r", "message": "m"}')
    assert not detect("INFO 2024-12-31 01:22:15,889 just a message")
    assert not detect('{"level": "info", "message": "m"}')


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["INFO 2024-12-31 01:22:15,889 a b ", "-- ", "x.py:1 - ", "(A pid=1) ", "(A pid=1, ip=) ",
                     "GET / 200 1.0ms", "CALL f OK 99999999999999999999999999999.5ms", "[::1]:1 POST /x 500 2ms",
                     '{"deployment": "d", "replica": "r", "message": "GET / 200 1ms", "timestamp_ns": -5}',
                     '{"exc_text": "Traceback (most recent call last):", "lineno": 1e400}', "{", ""]),
    st.text(max_size=40)), max_size=15))
def test_never_raises(texts: list[str]) -> None:
    for text in texts:
        rayserve_module.RayServeFormat.detect(text)
    parse_lines([text.replace("\n", " ") for text in texts])


def test_json_with_func_name_keeps_file_line_and_access() -> None:
    """Serve's ``additional_log_standard_attrs=["funcName"]`` puts funcName in
    log.origin; the file:line prefix is still cut from the message (and read
    with filename/lineno into log.origin.file, not left in extra), so the
    access fields are read (audit 9, formats #7)."""
    base = {"asctime": "2025-01-02 03:04:05,678", "levelname": "INFO",
            "message": "replica.py:410 - POST /predict 200 12.5ms", "filename": "replica.py", "lineno": 410,
            "deployment": "default_Model", "replica": "x1y2z3", "route": "/predict"}
    with_function, without, elsewhere = parse_lines([
        json.dumps({**base, "funcName": "_handle_request"}),
        json.dumps(base),
        json.dumps({**base, "filename": "other.py", "lineno": 7}),
    ])
    assert with_function.message == "POST /predict 200 12.5ms"
    assert with_function.fields["log"]["origin"] == {"function": "_handle_request",
                                                     "file": {"name": "replica.py", "line": 410}}
    assert with_function.fields["http"] == {"request": {"method": "POST"}, "response": {"status_code": 200}}
    assert with_function.fields["event"]["duration"] == 12500000
    assert "extra" not in with_function.fields
    assert without.fields["log"]["origin"] == {"file": {"name": "replica.py", "line": 410}}
    assert "extra" not in without.fields  # filename/lineno were the prefix's: not kept twice
    # A filename/lineno that is not the prefix's place is kept (lossless).
    assert elsewhere.fields["log"]["origin"] == {"file": {"name": "replica.py", "line": 410}}
    assert elsewhere.fields["extra"] == {"filename": "other.py", "lineno": 7}


@pytest.mark.parametrize("fmt", ["rayserve", "auto"])
def test_actor_tagged_traceback_is_one_record(fmt: str) -> None:
    """A driver writes the actor tag before every line of an actor's output,
    tracebacks included: the traceback joins its log line (audit 9, formats #3)."""
    tag = "(ServeReplica:default:Model pid=63520) "
    other = "(ServeReplica:default:Other pid=7) "
    texts = [other + "INFO 2023-04-10 15:59:45,400 default_Other abc 0 -- started",
             tag + "ERROR 2023-04-10 15:59:45,410 default_Model kTBlTj 733674e0 -- Request failed:",
             tag + "Traceback (most recent call last):",
             other + "INFO 2023-04-10 15:59:45,411 default_Other abc 1 -- another replica in between",
             tag + '  File "/home/ray/app/model.py", line 22, in __call__',
             "\x1b[36m" + tag.rstrip() + "\x1b[0m     return self.model(x)",
             tag + "RuntimeError: CUDA error: device-side assert triggered",
             tag + "ERROR 2023-04-10 15:59:45,411 default_Model kTBlTj 733674e0 -- CALL __call__ ERROR 3.2ms"]
    records = lanes_kit.parse_lines(texts, "rayserve", SOURCE, format=fmt)
    failed = next(record for record in records if record.line_count > 1)
    assert failed.line_count == 5
    assert failed.message == ('Request failed:\nTraceback (most recent call last):\n'
                              '  File "/home/ray/app/model.py", line 22, in __call__\n    return self.model(x)\n'
                              'RuntimeError: CUDA error: device-side assert triggered')
    assert failed.fields["log"]["level"] == "error"
    assert failed.fields["model"]["worker"] == "kTBlTj"
    assert failed.fields["process"] == {"pid": 63520}
    assert failed.fields["error"]["type"] == "RuntimeError"
    assert not any(record.tags for record in records)
    assert len(records) == 4


def test_actor_tagged_traceback_alone() -> None:
    """An actor's uncaught traceback (no log line before it) is one record with the tag's pid."""
    tag = "(ServeReplica:default:Model pid=42) "
    (record,) = parse_lines([tag + "Traceback (most recent call last):", tag + '  File "a.py", line 1, in f',
                             tag + "KeyError: 'k'"])
    assert record.message == "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nKeyError: 'k'"
    assert record.fields["error"]["type"] == "KeyError"
    assert record.fields["process"] == {"pid": 42}
    assert not record.tags
