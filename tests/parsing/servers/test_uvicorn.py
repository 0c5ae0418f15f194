"""The uvicorn format on real-looking logs, record by record (KServe's: test_kserve).

Fixtures (tests/fixtures/servers/uvicorn) follow uvicorn's LOGGING_CONFIG:
default uvicorn lines, a coloured terminal line, an %(asctime)s prefix, an
ASGI traceback, the URL-encoded v1 verbs, v2 routes. The access helpers
shared with the other servers are tested here too.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import agent.parsing.servers.uvicorn as uvicorn_module
from agent.events import TAG_PARSE_FAILURE, Record, Source
import servers_kit
from agent.parsing import ParseSettings
from agent.parsing.servers.access import client_fields, model_route, url_fields

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "servers"
SOURCE = Source("servers-key", "/var/log/model.log")


def parse_lines(texts: list[str], fmt: str, **options: object) -> list[Record]:
    return servers_kit.parse_lines(texts, fmt, SOURCE, **options)


def parse(name: str, fmt: str) -> list[Record]:
    return parse_lines((FIXTURES / name).read_text(encoding="utf-8").split("\n")[:-1], fmt)


def local(*args: int) -> float:
    *head, millis = args
    return datetime(*head, millis * 1000).timestamp()


# -- uvicorn -------------------------------------------------------------------


def test_uvicorn_fixture() -> None:
    records = parse("uvicorn/uvicorn.log", "uvicorn")
    assert len(records) == 16
    started, waiting, complete, running, predict, ready, v2, no_client, invalid, crash, failed, coloured, \
        stamped, plain, shutting, finished = records

    assert started.message == "Started server process [12]"
    assert started.fields == {"model": {"server": "uvicorn"}, "log": {"level": "info"}, "process": {"pid": 12}}
    assert started.timestamp is None
    assert running.message.startswith("Uvicorn running on http://0.0.0.0:8080")

    assert predict.message == '10.244.1.7:52345 - "POST /v1/models/sklearn-iris%3Apredict HTTP/1.1" 200 OK'
    assert predict.fields == {
        "model": {"server": "uvicorn", "name": "sklearn-iris", "operation": "predict"},
        "log": {"level": "info", "logger": "uvicorn.access"},
        "client": {"ip": "10.244.1.7", "port": 52345},
        "event": {"outcome": "success"},
        "http": {"request": {"method": "POST"}, "version": "1.1", "response": {"status_code": 200}},
        "url": {"original": "/v1/models/sklearn-iris%3Apredict", "path": "/v1/models/sklearn-iris:predict"},
    }
    assert ready.fields["model"] == {"server": "uvicorn", "operation": "health"}

    assert v2.fields["client"] == {"ip": "::1", "port": 40112}
    assert v2.fields["model"] == {"server": "uvicorn", "name": "iris", "version": "2", "operation": "infer"}
    assert v2.fields["url"] == {"original": "/v2/models/iris/versions/2/infer?debug=1",
                                "path": "/v2/models/iris/versions/2/infer", "query": "debug=1"}
    assert v2.fields["event"] == {"outcome": "failure"}
    assert v2.fields["http"]["response"] == {"status_code": 503}

    assert "client" not in no_client.fields  # a unix-socket client logs an empty address
    assert no_client.fields["url"]["path"] == "/metrics"

    assert invalid.fields["log"] == {"level": "warning"}
    assert invalid.message == "Invalid HTTP request received."

    assert crash.line_count == 9
    assert crash.message.startswith("Exception in ASGI application\nTraceback (most recent call last):")
    assert crash.fields["log"] == {"level": "error"}
    assert crash.fields["error"]["type"] == "ValueError"
    assert crash.fields["error"]["message"].startswith("X has 3 features")
    assert failed.fields["event"] == {"outcome": "failure"}

    # Colours are read through; the message is the text without them.
    assert coloured.message == '127.0.0.1:5000 - "GET /docs HTTP/1.1" 200 OK'
    assert coloured.fields["http"]["response"] == {"status_code": 200}

    assert stamped.timestamp == local(2024, 5, 1, 10, 0, 0, 123)
    assert stamped.fields["model"]["operation"] == "health"

    # A forced format tags what it cannot read; the text is kept whole.
    assert plain.message == "model warm-up finished in 1.8s"
    assert plain.tags == (TAG_PARSE_FAILURE,)
    assert plain.error == "not a uvicorn log line"
    assert shutting.fields["log"] == {"level": "info"}
    assert finished.fields["process"] == {"pid": 12}


def test_uvicorn_under_detection_is_not_strict() -> None:
    fmt = uvicorn_module.UvicornFormat(ParseSettings(format="uvicorn"))
    fmt.strict = False
    info = fmt.head("model warm-up finished")
    assert info.tags == () and info.error is None
    assert info.fields == {"model": {"server": "uvicorn"}}
    # A traceback without a log line before it, and blank lines, are never failures.
    strict = uvicorn_module.UvicornFormat(ParseSettings(format="uvicorn"))
    assert strict.head("Traceback (most recent call last):").tags == ()
    assert strict.head("").tags == ()


def test_uvicorn_detect() -> None:
    detect = uvicorn_module.UvicornFormat.detect
    assert detect('INFO:     127.0.0.1:52345 - "POST /v1/models/m%3Apredict HTTP/1.1" 200 OK')
    assert detect("INFO:     Started server process [7]")
    assert detect("ERROR:    Exception in ASGI application")
    assert not detect("INFO:app:hello")  # logging.basicConfig, not uvicorn's padded prefix
    assert not detect("INFO: hello")
    assert not detect('127.0.0.1 - - [01/May/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 2')


# -- shared helpers ------------------------------------------------------------


def test_routes() -> None:
    assert model_route("/v1/models/iris:predict") == ("iris", None, "predict")
    assert model_route("/v1/models/iris/versions/7:classify") == ("iris", "7", "classify")
    assert model_route("/v1/models/iris") == ("iris", None, "ready")
    assert model_route("/v1/models") is None
    assert model_route("/v2/models/iris") == ("iris", None, "metadata")
    assert model_route("/v2/models/iris/ready") == ("iris", None, "ready")
    assert model_route("/v2/models/llm/generate_stream") == ("llm", None, "generate")
    assert model_route("/v2/models/iris/versions/2/explain") == ("iris", "2", "explain")
    assert model_route("/v2/models/iris/stats") is None
    assert model_route("/v2/repository/models/iris/unload") == ("iris", None, "unload")
    assert model_route("/openai/v1/chat/completions") == (None, None, "generate")
    assert model_route("/v1/embeddings") == (None, None, "embed")
    assert model_route("/invocations") == (None, None, "predict")
    assert model_route("/") is None


def test_clients_and_urls() -> None:
    assert client_fields("10.0.0.1:80", True) == {"ip": "10.0.0.1", "port": 80}
    assert client_fields("[2001:db8::1]:443", True) == {"ip": "2001:db8::1", "port": 443}
    assert client_fields("::1:5000", True) == {"ip": "::1", "port": 5000}
    assert client_fields("unix:/run/app.sock", False) == {"address": "unix:/run/app.sock"}
    assert client_fields("fe80::1%eth0", False) == {"address": "fe80::1%eth0"}  # not an ip value
    assert client_fields("-", False) is None
    assert url_fields("/a%20b?x=%20") == {"original": "/a%20b?x=%20", "path": "/a b", "query": "x=%20"}
    assert url_fields("http://h:1/p?q") == {"original": "http://h:1/p?q", "path": "/p", "query": "q"}
    assert url_fields("/%ff%zz") == {"original": "/%ff%zz", "path": "/\ufffd%zz"}


# -- never raises --------------------------------------------------------------

FRAGMENTS = [
    "INFO:     ", 'INFO:     1.2.3.4:5 - "GET / HTTP/1.1" 200 OK', 'INFO:     x - "GET /%zz HTTP/9" 999 ',
    "2024-05-01 10:00:00,215 INFO:     ", " 99999999999 - ", "[::1]:", "\x1b[32m",
    "Traceback (most recent call last):",
    "  File \"x.py\", line 1, in f", "ValueError: v", "", " ",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=30),
                          st.builds(lambda a, b, c: a + b + c, st.sampled_from(FRAGMENTS), st.text(max_size=10),
                                    st.sampled_from(FRAGMENTS))), max_size=20))
def test_never_raises(texts: list[str]) -> None:
    for text in texts:
        uvicorn_module.UvicornFormat.detect(text)
    parse_lines([text.replace("\n", " ") for text in texts], "uvicorn")
