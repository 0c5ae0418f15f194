"""The gunicorn format on real-looking error and access logs, record by record.

Fixtures (tests/fixtures/servers/gunicorn) follow gunicorn's glogging: the
error log's "[time] [pid] [LEVEL]" prefix with worker lifecycle messages and
a request traceback; the access log in the combined and common formats with
appended %(L)s / %(D)s / %(M)sms / %(p)s tokens, an IPv6 client, a unix
socket, an absolute-form target, a "-" request and a uvicorn worker's line.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import agent.parsing.servers.gunicorn as gunicorn_module
from agent.events import TAG_PARSE_FAILURE, Record, Source
import servers_kit
from agent.parsing.servers.access import clf_time

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "servers"
SOURCE = Source("servers-key", "/var/log/gunicorn.log")


def parse_lines(texts: list[str], fmt: str = "gunicorn") -> list[Record]:
    return servers_kit.parse_lines(texts, fmt, SOURCE)


def parse(name: str) -> list[Record]:
    return parse_lines((FIXTURES / name).read_text(encoding="utf-8").split("\n")[:-1])


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def test_error_log() -> None:
    records = parse("gunicorn/error.log")
    assert len(records) == 13
    (starting, listening, using, booting, handling, timeout, exiting, killed, booting2, debug, uvicorn_worker,
     signal, shutdown) = records

    assert starting.timestamp == utc(2024, 5, 1, 10, 0, 0)
    assert starting.message == "Starting gunicorn 22.0.0"
    assert starting.fields == {"model": {"server": "gunicorn"}, "log": {"level": "info"}, "process": {"pid": 1}}
    assert listening.fields["process"] == {"pid": 1}
    assert booting.fields == {"model": {"server": "gunicorn", "worker": "7"}, "log": {"level": "info"},
                              "process": {"pid": 7}}

    assert handling.line_count == 8
    assert handling.message.startswith("Error handling request /predict?verbose=1\nTraceback")
    assert handling.fields["url"] == {"path": "/predict"}
    assert handling.fields["log"] == {"level": "error"}
    assert handling.fields["error"]["type"] == "KeyError"
    assert handling.fields["error"]["message"] == "'instances'"

    assert timeout.fields == {"model": {"server": "gunicorn", "worker": "7"}, "log": {"level": "critical"},
                              "process": {"pid": 1}}
    assert exiting.fields["model"]["worker"] == "7"
    assert killed.fields["model"]["worker"] == "7"
    assert killed.fields["log"]["level"] == "error"
    assert booting2.fields["model"]["worker"] == "21"

    assert debug.timestamp == utc(2024, 5, 1, 10, 6, 0)  # +0200
    assert debug.fields["log"]["level"] == "debug"
    assert uvicorn_worker.message == "Started server process [22]"
    assert uvicorn_worker.fields["process"] == {"pid": 22}
    assert "worker" not in signal.fields["model"]
    assert shutdown.message == "Shutting down: Master"


def test_access_log() -> None:
    records = parse("gunicorn/access.log")
    assert len(records) == 10
    predict, ping, failed, ipv6, unix, suffixed, absolute, dash, uvicorn_worker, garbage = records

    assert predict.timestamp == utc(2024, 5, 1, 10, 0, 0)
    assert predict.message == ('10.0.0.7 - - [01/May/2024:10:00:00 +0000] "POST /predict HTTP/1.1" 200 1234 "-" '
                               '"curl/8.0.1"')
    assert predict.fields == {
        "model": {"server": "gunicorn", "operation": "predict"},
        "event": {"outcome": "success"},
        "http": {"request": {"method": "POST"}, "version": "1.1", "response": {"status_code": 200, "bytes": 1234}},
        "url": {"original": "/predict", "path": "/predict"},
        "client": {"ip": "10.0.0.7"},
        "user_agent": {"original": "curl/8.0.1"},
    }
    assert ping.fields["model"]["operation"] == "health"
    assert ping.fields["user_agent"] == {"original": "kube-probe/1.29"}

    # %(L)s: decimal seconds.
    assert failed.fields["event"] == {"outcome": "failure", "duration": 184302000}
    assert failed.fields["http"]["request"] == {"method": "POST", "referrer": "https://ui.example.com/models"}
    assert failed.fields["url"]["query"] == "format=split"
    assert failed.fields["extra"] == {"user": "alice"}

    # %(D)s: a bare integer is microseconds; %(p)s the pid. The agent's quotes are not escaped by gunicorn.
    assert ipv6.fields["client"] == {"ip": "2001:db8::17"}
    assert ipv6.fields["http"]["version"] == "1.0"
    assert ipv6.fields["user_agent"] == {"original": 'Mozilla/5.0 (X11; Linux x86_64) "quoted"'}
    assert ipv6.fields["event"]["duration"] == 1843000
    assert ipv6.fields["process"] == {"pid": 7}

    # The common log format, a unix socket, another zone.
    assert unix.timestamp == utc(2024, 5, 1, 10, 0, 4)
    assert unix.fields["client"] == {"address": "unix:/run/gunicorn.sock"}
    assert unix.fields["event"] == {"outcome": "unknown"}
    assert "user_agent" not in unix.fields

    # An explicit unit wins; an unknown token is kept.
    assert suffixed.fields["event"]["duration"] == 12000000
    assert suffixed.fields["extra"] == {"access_log_trailing": "extra-token"}
    assert suffixed.fields["model"] == {"server": "gunicorn", "name": "iris", "operation": "ready"}
    assert "user_agent" not in suffixed.fields

    assert absolute.fields["url"] == {"original": "http://10.0.0.1:8000/v2/models/iris/ready",
                                      "path": "/v2/models/iris/ready"}
    assert absolute.fields["model"]["operation"] == "ready"

    assert dash.fields["http"] == {"response": {"status_code": 400}}
    assert dash.fields["event"] == {"outcome": "unknown"}

    assert uvicorn_worker.fields["client"] == {"ip": "127.0.0.1", "port": 52345}
    assert uvicorn_worker.fields["http"]["response"] == {"status_code": 200}

    assert garbage.tags == (TAG_PARSE_FAILURE,)
    assert garbage.error == "not a gunicorn log line"


def test_durations_told_apart() -> None:
    base = '1.2.3.4 - - [01/May/2024:10:00:00 +0000] "GET /x HTTP/1.1" 200 5 "-" "ua"'
    cases = {" 0.5": 500_000_000, " 250": 250_000, " 3ms": 3_000_000, " 40us": 40_000, " 40µs": 40_000,
             " 2s": 2_000_000_000, " 1 250": 250_000, " 250 0.001": 1_000_000, " <9>": None}
    for tail, expected in cases.items():
        (record,) = parse_lines([base + tail])
        assert record.fields["event"].get("duration") == expected, tail


def test_clf_time() -> None:
    assert clf_time("01/May/2024:10:00:00 +0000") == utc(2024, 5, 1, 10, 0, 0)
    assert clf_time("31/Dec/2023:23:59:59 -0130") == utc(2024, 1, 1, 1, 29, 59)
    assert clf_time("31/Apr/2024:10:00:00 +0000") is None
    assert clf_time("01/Foo/2024:10:00:00 +0000") is None
    assert clf_time("01/May/2024:25:00:00 +0000") is None
    assert clf_time("31/Dec/9999:23:59:60 -2359") is None  # beyond what datetime holds
    assert clf_time("29/Feb/2023:10:00:00 +0000") is None


def test_detect() -> None:
    detect = gunicorn_module.GunicornFormat.detect
    assert detect("[2024-05-01 10:00:00 +0000] [1] [INFO] Starting gunicorn 22.0.0")
    assert detect('10.0.0.7 - - [01/May/2024:10:00:00 +0000] "POST /predict HTTP/1.1" 200 1234 "-" "curl/8.0.1"')
    assert not detect("[2024-05-01 10:00:00] INFO something")
    assert not detect('INFO:     127.0.0.1:52345 - "GET / HTTP/1.1" 200 OK')
    assert gunicorn_module.GunicornFormat.detect_priority > 100  # generic: offered late


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["[2024-05-01 10:00:00 +0000] [1] [INFO] ", "[2024-13-45 99:00:00 +9999] [x] [",
                     '1.2.3.4 - - [01/May/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
                     '- - - [99/Zzz/0000:99:99:99 +9999] "" 999 99999999999999999999999',
                     " 1e5 0.0.0 <> <1> 9ms 99999999999999999999999999s 9999999999999999999s 99999999999999999999",
                     '"', "pid: 99999999999999999",
                     "Error handling request ", "Traceback (most recent call last):", ""]),
    st.text(max_size=40)), max_size=15))
def test_never_raises(texts: list[str]) -> None:
    for text in texts:
        gunicorn_module.GunicornFormat.detect(text)
    parse_lines([text.replace("\n", " ") for text in texts])
