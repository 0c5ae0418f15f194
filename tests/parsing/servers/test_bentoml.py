"""BentoML's server log and bentoml.monitor records through the parser.

The fixtures follow bentoml/_internal/log.py (the traced format), the access
middleware's message, and the default monitor's on-disk layout:
LOG_PATH/NAME/data/data.WORKER.log next to LOG_PATH/NAME/schema/schema.WORKER.log.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import ParseSettings, make_parser
from agent.parsing.servers import bentoml  # registers the format
from agent.parsing.servers.bentoml import BentoMLFormat, monitor_layout

FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "servers" / "bentoml"
MONITOR = "monitoring/iris_classifier_prediction"
TRACE = "3f2c8e0a51d24c1e9b7a6d5c4b3a2f10"


def parse_path(path: Path, fmt: str = "bentoml", **options: object) -> tuple[list[Record], list[Line], list[int]]:
    source = Source("bento-" + path.name, str(path))
    lines, starts, offset = [], [0, 0], 0
    for number, raw in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):
        end = offset + len(raw) + 1
        lines.append(Line(source, offset, end, raw.decode(), 1000.0 + number))
        offset = end
        starts.append(end)
    parser = make_parser(ParseSettings(format=fmt, **options), source)
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    assert sum(record.line_count for record in records) == len(lines)
    assert all(a.end == b.offset for a, b in zip(records, records[1:]))
    return records, lines, starts


def covers(record: Record, starts: list[int], first: int, last: int) -> None:
    assert (record.offset, record.end, record.line_count) == (starts[first], starts[last + 1], last - first + 1)


def test_server_log_record_by_record() -> None:
    records, lines, starts = parse_path(FIXTURES / "bentoml_server.log")
    assert len(records) == 7
    cli, classify, ready, exception, failed, runner, warning = records

    assert cli.timestamp == datetime.fromisoformat("2024-05-01T10:00:00+00:00").timestamp()
    assert cli.fields == {"log": {"level": "info"}, "model": {"server": "bentoml"}, "extra": {"component": "cli"}}
    assert cli.message.startswith("Starting production HTTP BentoServer")

    covers(classify, starts, 2, 2)
    assert classify.message == ("127.0.0.1:56134 (scheme=http,method=POST,path=/classify,type=application/json,"
                                "length=20) (status=200,type=application/json,length=3) 12.345ms")
    assert classify.fields == {
        "log": {"level": "info"},
        "model": {"server": "bentoml", "name": "iris_classifier", "worker": "1", "operation": "classify"},
        "service": {"name": "iris_classifier"},
        "trace": {"id": TRACE},
        "span": {"id": "9a1b2c3d4e5f6071"},
        "client": {"ip": "127.0.0.1", "port": 56134},
        "http": {"request": {"method": "POST", "bytes": 20}, "response": {"status_code": 200, "bytes": 3}},
        "url": {"original": "/classify", "path": "/classify"},
        "event": {"outcome": "success", "duration": 12_345_000},
        "extra": {"component": "api_server:iris_classifier:1", "trace_sampled": False, "url_scheme": "http",
                  "request_content_type": "application/json", "response_content_type": "application/json"},
    }

    # Empty type and length of a GET: left out; BentoML's own endpoint: "ready".
    assert ready.fields["http"] == {"request": {"method": "GET"}, "response": {"status_code": 200, "bytes": 1}}
    assert ready.fields["model"]["operation"] == "ready" and ready.fields["model"]["worker"] == "2"
    assert ready.fields["extra"]["response_content_type"] == "text/plain; charset=utf-8"
    assert ready.fields["extra"]["trace_sampled"] is True
    assert ready.fields["event"]["duration"] == 412_000

    # exc_info: the traceback joins its line; the trace suffix is not in the message.
    covers(exception, starts, 4, 10)
    assert exception.message == "\n".join(["Exception on /classify [POST]"] + [line.text for line in lines[4:10]])
    assert exception.fields["error"] == {
        "stack_trace": "\n".join(line.text for line in lines[4:10]),
        "type": "ValueError", "message": "X has 3 features, but SVC is expecting 4 features as input."}
    assert exception.fields["trace"] == {"id": "1" * 32} and exception.fields["log"] == {"level": "error"}

    assert failed.fields["client"] == {"ip": "::1", "port": 56200}  # "{host}:{port}", no brackets
    assert failed.fields["event"]["outcome"] == "failure"
    # A runner: "_" for a client without an address; the runner is the model.
    assert "client" not in runner.fields
    assert runner.fields["model"] == {"server": "bentoml", "name": "iris_clf", "worker": "1", "operation": "predict"}
    assert runner.fields["service"] == {"name": "iris_clf"}
    assert warning.fields["log"] == {"level": "warning"}


@pytest.fixture
def monitor_dir(tmp_path: Path) -> Path:
    root = tmp_path / "monitoring"
    shutil.copytree(FIXTURES / "monitoring", root)
    return root / "iris_classifier_prediction"


def test_monitor_records_with_their_schema(monitor_dir: Path) -> None:
    records, lines, starts = parse_path(monitor_dir / "data" / "data.0.log")
    first, second, third = records
    covers(first, starts, 1, 1)
    assert first.message == ""
    assert first.timestamp == datetime(2024, 5, 1, 10, 0, 2, 118934).timestamp()  # naive: local time
    assert first.fields == {
        "model": {"server": "bentoml", "monitor": {"name": "iris_classifier_prediction"},
                  "input": {"features": {"sepal length": 5.1, "sepal width": 3.5, "petal length": 1.4,
                                         "petal width": 0.2}},
                  "prediction": {"pred": "setosa"}, "target": {"label": "setosa"},
                  "request_id": "8213476905214387731"},
        # The last schema in the file (a restart appended a newer one).
        "service": {"name": "iris_classifier", "version": "qojf5xauugwqtgxi"},
        # The decimal trace id, as the access log prints it.
        "trace": {"id": TRACE},
    }
    # A column of a role BentoML does not define goes to extra; "None" and "0" ids are no ids.
    assert second.fields["extra"] == {"note": "flagged"}
    assert "trace" not in second.fields and "request_id" not in second.fields["model"]
    assert third.fields["extra"] == {"extra_col": [1, 2]}
    assert third.fields["model"]["input"] == {"features": {"sepal length": 5.9}}


def test_monitor_records_without_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "data.0.log"
    shutil.copy(FIXTURES / MONITOR / "data" / "data.0.log", path)
    first = parse_path(path)[0][0]
    assert first.fields == {
        "model": {"server": "bentoml", "request_id": "8213476905214387731"},
        "trace": {"id": TRACE},
        "extra": {"sepal length": 5.1, "sepal width": 3.5, "petal length": 1.4, "petal width": 0.2,
                  "pred": "setosa", "label": "setosa"},
    }


def test_a_monitor_record_lists_a_repeated_line_tag_once(tmp_path: Path) -> None:
    # Found by the raw parser's generated parity test: every record lists a tag once.
    text = (FIXTURES / MONITOR / "data" / "data.0.log").read_text().splitlines()[0]
    source = Source("k", str(tmp_path / "data.0.log"))
    parser = make_parser(ParseSettings(format="bentoml"), source)
    line = Line(source, 0, len(text) + 1, text, 1.0, ("truncated", "invalid_utf8", "truncated"))
    records = parser.feed(line) + parser.flush()
    assert [record.tags for record in records] == [("truncated", "invalid_utf8")]
    assert records[0].fields["model"]["request_id"] == "8213476905214387731"


def test_a_schema_written_later_is_picked_up(monitor_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bentoml, "SCHEMA_RECHECK", 0.0)
    schema = monitor_dir / "schema" / "schema.0.log"
    saved = schema.read_bytes()
    schema.unlink()
    data = monitor_dir / "data" / "data.0.log"
    source = Source("late", str(data))
    parser = make_parser(ParseSettings(format="bentoml"), source)
    text = data.read_text().split("\n")[0]
    [before] = parser.feed(Line(source, 0, len(text) + 1, text, 1.0))
    assert "input" not in before.fields["model"] and before.fields["model"]["monitor"]
    schema.write_bytes(saved)
    [after] = parser.feed(Line(source, len(text) + 1, 2 * len(text) + 2, text, 2.0))
    assert after.fields["model"]["input"]["features"]["sepal length"] == 5.1


def test_the_schema_file_itself() -> None:
    records, _, _ = parse_path(FIXTURES / MONITOR / "schema" / "schema.0.log")
    old, new = records
    assert old.fields["service"] == {"name": "iris_classifier"}  # "not available" is no version
    assert new.fields["service"] == {"name": "iris_classifier", "version": "qojf5xauugwqtgxi"}
    assert new.fields["model"] == {"server": "bentoml"}
    assert [column["role"] for column in new.fields["extra"]["columns"]][-3:] == ["prediction", "target", "comment"]


def test_monitor_layout(tmp_path: Path) -> None:
    assert monitor_layout("/logs/m1/data/data.3.log.2024-05-01") == (
        "m1", ["/logs/m1/schema/schema.3.log"])
    assert monitor_layout("/var/log/app.log") == (None, [])
    (tmp_path / "m2" / "schema").mkdir(parents=True)
    (tmp_path / "m2" / "schema" / "schema.0.log").write_text("")
    name, candidates = monitor_layout(str(tmp_path / "m2" / "data" / "data.1.log"))
    assert name == "m2"
    schema_dir = tmp_path / "m2" / "schema"
    assert candidates == [str(schema_dir / "schema.1.log"), str(schema_dir / "schema.0.log")]


def feed_all(texts: list[str], fmt: str = "bentoml", path: str = "/var/log/bento.log") -> list[Record]:
    source = Source("odd", path)
    parser = make_parser(ParseSettings(format=fmt), source)
    records: list[Record] = []
    offset = 0
    for text in texts:
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        records.extend(parser.feed(Line(source, offset, end, text, 1.0)))
        offset = end
    return records + parser.flush()


def test_other_lines() -> None:
    plain, json_line, broken = feed_all(["hello", '{"msg": "other json", "level": "INFO"}', "{broken"])
    assert plain.tags == (TAG_PARSE_FAILURE,) and plain.error == "not a bentoml log line"
    # Another program's JSON is read as --format json reads it.
    assert json_line.message == "other json"
    assert json_line.fields == {"log": {"level": "info"}, "model": {"server": "bentoml"}}
    assert broken.tags == (TAG_PARSE_FAILURE,)


def test_detect() -> None:
    assert BentoMLFormat.detect("2024-05-01T10:00:00+0000 [INFO] [cli] Starting")
    assert BentoMLFormat.detect('{"a": 1, "timestamp": "2024-05-01T10:00:00", "request_id": "1", "trace_id": "0"}')
    assert BentoMLFormat.detect('{"meta_data": {"bento_name": "x", "bento_version": "y"}, "columns": []}')
    assert not BentoMLFormat.detect('{"message": "x", "trace_id": "0"}')
    assert not BentoMLFormat.detect("2024-05-01 10:00:00,000 [INFO] x")
    assert not BentoMLFormat.detect("[2024-05-01 10:00:00 +0000] [7] [INFO] Booting worker")


_LINE = st.one_of(
    st.builds(lambda level, component, message: f"2024-05-01T10:00:00+0000 [{level}] [{component}] {message}",
              st.sampled_from(["INFO", "ERROR"]), st.sampled_from(["cli", "api_server:svc:1", "", "runner:r"]),
              st.sampled_from(["x", "_ (scheme=http,method=GET,path=/a) (status=200) 1.0ms",
                               "1.2.3.4:5 (scheme=ws,path=/w) - Client connected", "x (trace=ab,span=cd,sampled=0)"])),
    st.sampled_from(['{"timestamp": "x", "request_id": "1", "trace_id": "99"}', '{"trace_id": 1}', "{",
                     '{"meta_data": {"bento_name": 1}, "columns": 2}', "Traceback (most recent call last):",
                     "ValueError: v", ""]),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_LINE, max_size=30), fmt=st.sampled_from(["bentoml", "auto"]))
def test_no_input_raises_and_every_line_is_in_one_record(texts: list[str], fmt: str) -> None:
    records = feed_all(texts, fmt, "/nonexistent/m/data/data.0.log")
    assert sum(record.line_count for record in records) == len(texts)
    assert all(a.end == b.offset for a, b in zip(records, records[1:]))


def test_module_registers_the_format() -> None:
    from agent.parsing import FORMATS
    assert FORMATS["bentoml"] is bentoml.BentoMLFormat


# -- digit runs no field can hold: left in the message, never an error ---------

_ACCESS_LINE = ("2024-05-01T10:00:02+0000 [INFO] [api_server:iris:1] 127.0.0.1:5 (scheme=http,method=POST,"
                "path=/classify,type=application/json,length={request}) (status=200,type=application/json,"
                "length={response}) {millis}ms")


@pytest.mark.parametrize(("request_length", "response_length", "millis"), [
    ("20", "3", "9" * 400),  # float() gives inf: was OverflowError
    ("9" * 5000, "3", "12.3"),  # beyond int()'s digit limit: was ValueError
    ("20", "9" * 5000, "12.3"),
    ("20", "3", "99999999999999.3"),  # 1e20 ns: beyond a long
    ("9" * 19, "3", "12.3"),
])
def test_an_access_line_with_numbers_beyond_a_long_keeps_its_other_fields(
        request_length: str, response_length: str, millis: str) -> None:
    text = _ACCESS_LINE.format(request=request_length, response=response_length, millis=millis)
    source = Source("bento-digits", "/var/log/bentoml/server.log")
    parser = make_parser(ParseSettings(format="bentoml"), source)
    records = parser.feed(Line(source, 0, len(text) + 1, text, 1.0)) + parser.flush()
    assert len(records) == 1
    record = records[0]
    assert record.tags == () and record.error is None
    http = record.fields["http"]
    assert http["response"]["status_code"] == 200
    assert http["request"].get("bytes", 20) == 20 and http["response"].get("bytes", 3) == 3
    duration = record.fields["event"].get("duration")
    assert duration is None or 0 <= duration < 1 << 63
    assert millis + "ms" in record.message


def test_monitor_values_nested_past_the_flattened_limit_become_json_text(monitor_dir: Path) -> None:
    """model.input.features, model.prediction, model.target and extra are
    flattened fields: Elasticsearch refuses an object nested more than 50
    deep in one, so from the 50th level down the value is its JSON text."""
    import json

    from agent.schema import FLATTENED_DEPTH_LIMIT

    def nested(levels: int) -> dict:
        value: dict = {"leaf": 1}
        for _ in range(levels - 1):
            value = {"x": value}
        return value

    def depth(value: object) -> int:
        return 1 + max(map(depth, value.values()), default=0) if isinstance(value, dict) else 0

    data = monitor_dir / "data" / "data.0.log"
    record = {"timestamp": "2024-05-01T10:00:02.118934", "request_id": "1", "trace_id": "0",
              "sepal length": nested(60), "pred": nested(60), "label": "setosa", "other": nested(60)}
    data.write_text(json.dumps(record) + "\n")
    fields = parse_path(data)[0][0].fields
    for flattened in (fields["model"]["input"]["features"], fields["model"]["prediction"], fields["extra"]):
        assert depth(flattened) == FLATTENED_DEPTH_LIMIT
    cut = fields["extra"]["other"]  # extra is level 1, "other" level 2, ...
    for _ in range(FLATTENED_DEPTH_LIMIT - 1):
        cut = cut["x"]
    assert json.loads(cut) == nested(60 - (FLATTENED_DEPTH_LIMIT - 1))  # nothing lost
