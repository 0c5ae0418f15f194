"""TorchServe's access, server, model and metrics logs through the parser.

The fixtures follow TorchServe's log4j2.xml layouts, Session.toString() (the
access line), WorkerLifeCycle's reader threads (W-PORT-MODEL_VERSION-stdout)
and the frontend/backend metric line formats (LogMetric, CachingMetric).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import records_kit
from agent.events import TAG_MULTILINE_SPLIT, TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import ParseSettings, SourceParser, TextInfo, make_parser
from agent.parsing.driver import MAX_OPEN
from agent.parsing.servers import torchserve  # registers the format
from agent.parsing.servers.torchserve import TorchServeFormat

FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "servers" / "torchserve"


def load(name: str) -> tuple[Source, list[Line], list[int]]:
    """Lines of a fixture, and starts[n] = byte offset of line n (1-based; one past the end too)."""
    path = FIXTURES / name
    source = Source("ts-" + name, str(path))
    lines, starts, offset = [], [0, 0], 0
    for number, raw in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):
        end = offset + len(raw) + 1
        lines.append(Line(source, offset, end, raw.decode(), 1000.0 + number))
        offset = end
        starts.append(end)
    return source, lines, starts


def parse(name: str, fmt: str = "torchserve", **options: object) -> tuple[list[Record], list[Line], list[int]]:
    source, lines, starts = load(name)
    parser = make_parser(ParseSettings(format=fmt, **options), source)
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    assert not parser.pending()
    return records, lines, starts


def covers(record: Record, starts: list[int], first: int, last: int) -> None:
    """``record`` begins at line ``first`` and has as many lines as first..last
    (its ``end`` is a commit point: see test_ts_log_commit_points)."""
    assert (record.offset, record.line_count) == (starts[first], last - first + 1)


def local(*args: int) -> float:
    """A naive log4j time read as the host's local time, as the parser does."""
    *head, millis = args
    return datetime(*head, millis * 1000).timestamp()


def assert_contiguous(records: list[Record], lines: list[Line]) -> None:
    records_kit.assert_commit_contract(records, lines, consecutive=True)


def numbers(name: str, **options: object) -> list[tuple[Record, list[int]]]:
    """Each record with the (1-based) numbers of its lines, in emission order."""
    records, lines, _ = parse(name, keep_original=True, **options)
    records_kit.assert_commit_contract(records, lines)
    number = {line.offset: n for n, line in enumerate(lines, start=1)}
    return [(record, [number[line.offset] for line in mine])
            for record, mine in zip(records, records_kit.lines_of(records, lines))]


# -- access_log.log ----------------------------------------------------------------------------


def test_access_log_record_by_record() -> None:
    records, lines, starts = parse("access_log.log")
    assert_contiguous(records, lines)
    assert len(records) == 11
    predict, failed, ping, explain, infer, kserve, scale, grpc, bad, java, last = records

    covers(predict, starts, 1, 1)
    assert predict.timestamp == local(2024, 5, 1, 10, 0, 0, 123)
    assert predict.message == '/127.0.0.1:52486 "POST /predictions/resnet-18 HTTP/1.1" 200 25'
    assert predict.fields == {
        "model": {"server": "torchserve", "name": "resnet-18", "operation": "predict"},
        "client": {"ip": "127.0.0.1", "port": 52486},
        "http": {"request": {"method": "POST"}, "version": "1.1", "response": {"status_code": 200}},
        "url": {"original": "/predictions/resnet-18", "path": "/predictions/resnet-18"},
        "event": {"outcome": "success", "duration": 25_000_000},
    }
    assert predict.tags == () and predict.error is None

    assert failed.fields["model"] == {"server": "torchserve", "name": "resnet-18", "version": "2.0",
                                      "operation": "predict"}
    assert failed.fields["event"] == {"outcome": "failure", "duration": 61_000_000}
    assert failed.fields["http"]["response"] == {"status_code": 503}

    # Java 14+ prints an IPv6 remote in brackets.
    assert ping.fields["client"] == {"ip": "0:0:0:0:0:0:0:1", "port": 58122}
    assert ping.fields["model"] == {"server": "torchserve", "operation": "health"}

    # "hostname/ip:port" when the address was resolved.
    assert explain.fields["client"] == {"ip": "10.0.3.9", "port": 33080, "address": "lb-internal.example"}
    assert explain.fields["model"] == {"server": "torchserve", "name": "bert_sentiment", "operation": "explain"}

    assert infer.fields["model"] == {"server": "torchserve", "name": "resnet-18", "operation": "infer"}
    assert kserve.fields["model"] == {"server": "torchserve", "name": "bert_sentiment", "operation": "predict"}
    assert kserve.fields["event"]["outcome"] == "unknown"  # a 4xx is the client's doing

    assert scale.fields["model"] == {"server": "torchserve", "name": "resnet-18", "operation": "scale"}
    assert scale.fields["url"] == {"original": "/models/resnet-18?min_worker=3", "path": "/models/resnet-18",
                                   "query": "min_worker=3"}

    # gRPC: the status is a gRPC code (13 = INTERNAL), not an HTTP status.
    assert grpc.fields == {
        "model": {"server": "torchserve", "operation": "predict"},
        "client": {"ip": "127.0.0.1", "port": 40404},
        "url": {"path": "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions",
                "original": "org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"},
        "http": {"version": "2.0"},
        "event": {"outcome": "failure", "duration": 8_000_000},
        "extra": {"grpc_status_code": 13},
    }

    # No remote address (a Unix socket): "0.0.0.0", no port; the path is decoded.
    assert bad.fields["client"] == {"ip": "0.0.0.0"}
    assert bad.fields["url"]["path"] == "/bad path"
    assert bad.fields["event"] == {"outcome": "unknown", "duration": 0}

    # logger.error(..., e) in NettyUtils: the Java stack trace joins its line.
    covers(java, starts, 10, 13)
    assert java.message == "\n".join([lines[9].text[26:]] + [line.text for line in lines[10:13]])
    assert java.fields == {"model": {"server": "torchserve"}}
    assert java.timestamp == local(2024, 5, 1, 10, 0, 5, 500)
    covers(last, starts, 14, 14)


# -- ts_log.log: the server log, with a worker's traceback interleaved -------------------------


def test_ts_log_start_up_and_threads() -> None:
    records, lines, starts = parse("ts_log.log")
    records_kit.assert_commit_contract(records, lines)
    by_offset = {record.offset: record for record in records}
    plugins, server, versions, started = (by_offset[starts[n]] for n in (1, 2, 7, 8))
    covers(plugins, starts, 1, 1)
    assert plugins.message == "Initializing plugins manager..."
    assert plugins.fields == {
        "model": {"server": "torchserve"},
        "log": {"level": "info", "logger": "org.pytorch.serve.servingsdk.impl.PluginsManager"},
        "process": {"thread": {"name": "main"}},
    }
    # ModelServer logs its configuration as one message starting with a newline.
    covers(server, starts, 2, 6)
    assert server.message == "\n".join(line.text for line in lines[2:6])
    assert server.message.startswith("Torchserve version: 0.10.0\nTS Home:")
    assert versions.fields["log"] == {"level": "debug", "logger": "org.pytorch.serve.wlm.ModelVersionedRefs"}
    assert versions.line_count == 1
    assert started.message == "Torch worker started."
    assert started.fields == {
        "model": {"server": "torchserve", "worker": "9000", "name": "resnet-18", "version": "1.0",
                  "stream": "stdout"},
        "log": {"level": "info", "logger": "MODEL_LOG"},
        "process": {"thread": {"name": "W-9000-resnet-18_1.0-stdout"}},
    }
    assert started.timestamp == local(2024, 5, 1, 9, 59, 59, 913)


def test_ts_log_interleaved_traceback_is_one_event() -> None:
    records, lines, starts = parse("ts_log.log")
    grouped = numbers("ts_log.log")
    assert [group for _, group in grouped] == [
        [1], [2, 3, 4, 5, 6], [8], [9], [14], [17],
        [10, 11, 12, 13, 15, 16, 18],  # the worker's stdout thread, around the frontend's lines
        [7], [19], [20], [21, 22, 23, 24], [25],  # the rest at the flush, oldest first
    ]
    by_offset = {record.offset: record for record in records}
    failed, response, access, metric = (by_offset[starts[n]] for n in (10, 14, 17, 19))

    assert failed.line_count == 7
    assert failed.message == "\n".join(texts_of(lines, 10, 13) + texts_of(lines, 15, 16) + texts_of(lines, 18, 18))
    assert failed.message.startswith("Invoking custom service failed.\nTraceback (most recent call last):\n  File")
    assert failed.tags == ()
    assert failed.fields["error"] == {
        "stack_trace": "\n".join(texts_of(lines, 11, 13) + texts_of(lines, 15, 16) + texts_of(lines, 18, 18)),
        "type": "RuntimeError",
        "message": "stack expects each tensor to be equal size, but got [3, 224, 224] at entry 0 "
                   "and [3, 256, 256] at entry 1",
    }
    assert failed.fields["log"] == {"level": "info", "logger": "MODEL_LOG"}
    # Its commit point: the main thread's line 7 is still open (main never
    # wrote again), so nothing from line 7 on may be committed yet.
    assert failed.end == starts[7]

    covers(response, starts, 14, 14)
    assert response.message == "Backend response time: 19"
    assert response.fields["model"] == {"server": "torchserve", "worker": "9000", "name": "resnet-18",
                                        "version": "1.0"}  # the frontend thread: no stream
    assert response.tags == ()
    assert response.end == starts[7]

    assert access.fields["log"]["logger"] == "ACCESS_LOG"
    assert access.fields["http"]["response"]["status_code"] == 503
    assert access.fields["model"] == {"server": "torchserve", "worker": "9000", "name": "resnet-18",
                                      "version": "1.0", "operation": "predict"}
    assert access.fields["event"]["duration"] == 21_000_000

    # TS_METRICS lines reach ts_log.log too; the metric's own epoch is its time.
    covers(metric, starts, 19, 19)
    assert metric.timestamp == 1714557600.0
    assert metric.fields["event"] == {"kind": "metric"}
    assert metric.fields["model"]["metric"] == {"name": "Requests5XX", "unit": "Count", "value": 1.0,
                                                "dimensions": {"Level": "Host", "hostname": "ip-10-0-3-5"}}
    assert metric.fields["host"] == {"name": "ip-10-0-3-5"}


def test_ts_log_commit_points() -> None:
    records, lines, starts = parse("ts_log.log")
    number = {start: n for n, start in enumerate(starts) if n}
    # Each record's end, as a line number (len + 1: the end of the file), in emission order.
    assert [(number[record.offset], number[record.end]) for record in records] == [
        (1, 2), (2, 7), (8, 7), (9, 7), (14, 7), (17, 7), (10, 7),
        (7, 19), (19, 20), (20, 21), (21, 25), (25, 26),
    ]


def texts_of(lines: list[Line], first: int, last: int) -> list[str]:
    return [line.text.split(" - ", 1)[1] for line in lines[first - 1:last]]


def test_ts_log_stderr_warning_and_java_exception() -> None:
    records, lines, starts = parse("ts_log.log")
    by_offset = {record.offset: record for record in records}
    warning = by_offset[starts[20]]
    assert warning.fields["log"] == {"level": "warn", "logger": "MODEL_LOG"}
    assert warning.fields["model"] == {"server": "torchserve", "worker": "9001", "name": "resnet-18",
                                       "version": "1.0", "stream": "stderr"}
    java = by_offset[starts[21]]
    covers(java, starts, 21, 24)
    # The message was empty after " - ": the record's message starts with the exception.
    assert java.message == "\n".join(line.text for line in lines[21:24])
    assert java.fields["log"] == {"level": "error", "logger": "org.pytorch.serve.http.HttpRequestHandler"}
    assert java.fields["process"] == {"thread": {"name": "epollEventLoopGroup-3-2"}}
    assert by_offset[starts[25]].message == "Backend received inference at: 1714557603"
    assert len(records) == 12


# -- model_log.log -----------------------------------------------------------------------------


def test_model_log_tracebacks_of_interleaved_threads() -> None:
    records, lines, starts = parse("model_log.log")
    grouped = numbers("model_log.log")
    assert [group for _, group in grouped] == [
        [1],
        [2, 3, 4, 5, 6, 7, 8, 10],  # stdout: the log line, its traceback, a blank line after it
        [9, 11, 12, 14, 15],  # stderr: its line, then its traceback around the other threads'
        [13],
    ]
    received, failed, stderr, other_worker = records
    assert received.fields["model"] == {"server": "torchserve", "worker": "9000", "name": "my_text_model",
                                        "version": "2.1", "stream": "stdout"}
    assert failed.message == "\n".join(texts_of(lines, 2, 8))  # the trailing blank: not in the message
    assert failed.tags == ()
    assert failed.fields["error"] == {
        "stack_trace": "\n".join(texts_of(lines, 3, 8)),
        "type": "UnicodeDecodeError",
        "message": "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
    }
    # Like any traceback, the stderr one joins its thread's line before it
    # (as it would have with nothing written in between).
    assert stderr.fields["log"]["level"] == "warn" and stderr.fields["model"]["stream"] == "stderr"
    assert stderr.message == "\n".join(texts_of(lines, 9, 9) + texts_of(lines, 11, 12) + texts_of(lines, 14, 15))
    assert stderr.tags == ()
    assert stderr.fields["error"] == {"stack_trace": "\n".join(texts_of(lines, 11, 12) + texts_of(lines, 14, 15)),
                                      "type": "MemoryError"}
    assert other_worker.fields["model"]["worker"] == "9001"
    # Commit points. Never inside a record: the stdout event (2-10) has lines
    # on both sides of the stderr event's start (9), the stderr one (9-15) on
    # both sides of line 13, so nothing from line 2 on is committed until the
    # last of them is emitted.
    assert [record.end for record in records] == [starts[2], starts[2], starts[2], starts[16]]


def test_keep_original_keeps_the_prefixed_lines() -> None:
    records, lines, _ = parse("model_log.log", keep_original=True)
    assert records[1].original == "\n".join(line.text for line in lines[1:8] + lines[9:10])
    assert records[0].original == lines[0].text


def test_two_workers_fixture() -> None:
    """Two workers fail at once: their tracebacks' lines alternate, with the
    frontend's lines and a chained exception in between."""
    records, lines, starts = parse("two_workers.log")
    grouped = numbers("two_workers.log")
    worker_0 = [n for n, line in enumerate(lines, start=1) if "W-9000-resnet-18_1.0-stdout" in line.text]
    worker_1 = [n for n, line in enumerate(lines, start=1) if "W-9001-resnet-18_1.0-stdout" in line.text]
    assert [group for _, group in grouped if len(group) > 1] == [worker_0[1:-1], worker_1[1:-1]]
    by_offset = {record.offset: record for record in records}
    first, second = by_offset[starts[worker_0[1]]], by_offset[starts[worker_1[1]]]
    assert first.tags == second.tags == ()
    assert first.message.startswith("Invoking custom service failed.\nTraceback (most recent call last):")
    assert first.fields["error"]["type"] == "RuntimeError"
    assert first.fields["error"]["stack_trace"] == "\n".join(texts_of_numbers(lines, worker_0[2:-1]))
    assert first.fields["model"]["worker"] == "9000"
    # The second worker's is chained: the error is the one finally raised.
    assert second.fields["error"]["type"] == "KeyError"
    assert second.fields["error"]["message"] == "'label'"
    assert "During handling of the above exception, another exception occurred:" in second.message
    assert second.fields["model"]["worker"] == "9001"
    # With a cap, each traceback is cut at the cap, per thread, and tagged.
    capped = numbers("two_workers.log", multiline_max_lines=4)
    parts = [group for _, group in capped if set(group) <= set(worker_0[1:-1])]
    assert [number for group in parts for number in group] == worker_0[1:-1]
    assert [len(group) for group in parts] == [4, 3]
    assert all(TAG_MULTILINE_SPLIT in record.tags for record, group in capped if group in parts)


def texts_of_numbers(lines: list[Line], wanted: list[int]) -> list[str]:
    return [line.text.split(" - ", 1)[1] for n, line in enumerate(lines, start=1) if n in wanted]


# -- metrics -----------------------------------------------------------------------------------


def test_ts_metrics() -> None:
    records, lines, starts = parse("ts_metrics.log")
    assert [record.line_count for record in records] == [1, 1, 1, 1]
    requests, latency, cpu, gpu = records
    assert requests.fields == {
        "model": {"server": "torchserve", "metric": {"name": "Requests2XX", "unit": "Count", "value": 1.0,
                                                     "dimensions": {"Level": "Host", "hostname": "ip-10-0-3-5"}}},
        "host": {"name": "ip-10-0-3-5"},
        "event": {"kind": "metric"},
    }
    assert requests.timestamp == 1714557600.0
    assert requests.message == lines[0].text[26:]
    assert latency.fields["model"]["name"] == "resnet-18" and latency.fields["model"]["version"] == "default"
    assert latency.fields["model"]["metric"]["value"] == 24512.7
    assert cpu.timestamp == 1714557660.0
    assert gpu.fields["model"]["metric"]["dimensions"] == {"Level": "Host", "DeviceId": "0", "hostname": "ip-10-0-3-5"}


def test_model_metrics() -> None:
    records, lines, starts = parse("model_metrics.log")
    handler, prediction, nan, legacy = records
    assert handler.fields["model"] == {
        "server": "torchserve", "name": "resnet-18",
        "request_id": "3b1c7e2a-52b4-4f0e-9c1d-8e0b7b6f0a11",
        "metric": {"name": "HandlerTime", "unit": "Milliseconds", "value": 3.21,
                   "dimensions": {"ModelName": "resnet-18", "Level": "Model", "hostname": "ip-10-0-3-5"}},
    }
    assert prediction.fields["extra"] == {"metric_type": "GAUGE"}
    # A value that is not a finite number: kept as written, not as a metric value.
    assert "value" not in nan.fields["model"]["metric"] and nan.fields["extra"] == {"metric_value": "NaN"}
    # The Python backend's own form, without the log4j prefix: ",EPOCH,REQUEST_ID".
    covers(legacy, starts, 4, 4)
    assert legacy.timestamp == 1714557601.0
    assert legacy.message == lines[3].text
    assert legacy.fields["model"]["request_id"] == "5f2d9a40-0001"
    assert legacy.fields["model"]["metric"]["unit"] == "ms"


# -- odd lines, forced and detected ------------------------------------------------------------

SOURCE = Source("odd", "/var/log/torchserve/ts_log.log")


def feed_all(texts: list[str], fmt: str = "torchserve", **options: object) -> list[Record]:
    parser = make_parser(ParseSettings(format=fmt, **options), SOURCE)
    records: list[Record] = []
    offset = 0
    for number, text in enumerate(texts):
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        records.extend(parser.feed(Line(SOURCE, offset, end, text, float(number))))
        offset = end
    return records + parser.flush()


def test_a_line_that_is_not_torchserve_is_a_parse_failure_when_forced() -> None:
    [record] = feed_all(["something else entirely"])
    assert record.tags == (TAG_PARSE_FAILURE,)
    assert record.error == "not a torchserve log line"
    assert record.fields == {"model": {"server": "torchserve"}}
    assert record.message == "something else entirely"


def test_thread_names() -> None:
    fmt = TorchServeFormat(ParseSettings(format="torchserve"))
    head = lambda thread: fmt.head(f"2024-05-01T10:00:00,000 [INFO ] {thread} MODEL_LOG - x").fields["model"]  # noqa: E731
    assert head("W-9003-cls_strong_echoes_resnet50_1.0-stdout") == {
        "server": "torchserve", "worker": "9003", "name": "cls_strong_echoes_resnet50", "version": "1.0",
        "stream": "stdout"}
    assert head("W-9001-noversion") == {"server": "torchserve", "worker": "9001", "name": "noversion"}
    assert head("BackendWorker-9000") == {"server": "torchserve", "worker": "9000"}
    assert head("pool-3-thread-1") == {"server": "torchserve"}


def test_detect() -> None:
    claims = TorchServeFormat.detect
    _, ts_lines, _ = load("ts_log.log")
    _, access_lines, _ = load("access_log.log")
    assert claims(ts_lines[0].text) and claims(access_lines[0].text)
    assert claims("CPUUtilization.Percent:0.0|#Level:Host|#hostname:my-host,timestamp:1714557600")
    # Python's asctime layout, another Java program's log4j layout, plain text: not ours.
    assert not claims("2024-05-01 10:00:00,123 - app - INFO - started")
    assert not claims("2024-05-01T10:00:00,123 [INFO ] main com.example.App - started")
    assert not claims("2024-05-01T10:00:00,123 - started the thing")
    assert not claims("")


def test_a_flush_forgets_open_tracebacks() -> None:
    prefix = "2024-05-01T10:00:00,000 [INFO ] W-9000-m_1.0-stdout MODEL_LOG - "
    other = "2024-05-01T10:00:00,000 [INFO ] W-9001-m_1.0-stdout MODEL_LOG - other"
    parser = make_parser(ParseSettings(format="torchserve"), SOURCE)
    texts = [prefix + "Traceback (most recent call last):", other,
             prefix + '  File "/x.py", line 1, in f', prefix + "ValueError: v"]
    lines = [Line(SOURCE, 100 * n, 100 * (n + 1), text, float(n)) for n, text in enumerate(texts)]
    records = parser.feed(lines[0]) + parser.feed(lines[1]) + parser.flush()  # e.g. the file closed
    records += parser.feed(lines[2]) + parser.feed(lines[3]) + parser.flush()
    assert [(record.offset, record.line_count) for record in records] == [(0, 1), (100, 1), (200, 2)]
    assert [record.end for record in records] == [100, 200, 400]
    # After the flush nothing is continued: the frames are an event of their
    # own, a traceback without its header (read as such: type and message).
    assert records[2].tags == ()
    assert records[2].fields["error"]["type"] == "ValueError"


W0 = "2024-05-01T10:00:00,000 [INFO ] W-9000-m_1.0-stdout MODEL_LOG - "
W1 = "2024-05-01T10:00:00,000 [INFO ] W-9001-m_1.0-stdout MODEL_LOG - "
FRONT = "2024-05-01T10:00:00,000 [INFO ] W-9000-m_1.0 org.pytorch.serve.wlm.WorkerThread - "


def lines_at(texts: list[str], times: list[float] | None = None) -> list[Line]:
    out, offset = [], 0
    for number, text in enumerate(texts):
        end = offset + len(text.encode()) + 1
        out.append(Line(SOURCE, offset, end, text, times[number] if times else float(number)))
        offset = end
    return out


def test_the_timeout_applies_per_thread() -> None:
    lines = lines_at([W0 + "Invoking custom service failed.", W0 + "Traceback (most recent call last):",
                      W1 + "busy", W1 + "still busy", W0 + '  File "/x.py", line 1, in f'],
                     [0.0, 1.0, 2.0, 4.0, 5.0])
    parser = make_parser(ParseSettings(format="torchserve", multiline_timeout=2.0), SOURCE)
    out = [record for line in lines[:4] for record in parser.feed(line)]
    assert [(r.offset, r.line_count) for r in out] == [(lines[2].offset, 1)]  # W1's first line
    assert out[0].end == lines[0].offset  # held back by W0's open traceback
    # At 3.5 only W0's event (last line read at 1.0) has expired; W1's (4.0) has not.
    [expired] = parser.flush_expired(3.5)
    assert (expired.offset, expired.line_count, expired.end) == (0, 2, lines[3].offset)
    assert expired.tags == ()  # cut by the timeout: not tagged, as ever
    assert parser.pending()
    # W0's frame after the timeout begins an event of its own.
    assert parser.feed(lines[4]) == []
    rest = parser.flush()
    assert [(r.offset, r.line_count) for r in rest] == [(lines[3].offset, 1), (lines[4].offset, 1)]
    assert [r.end for r in rest] == [lines[4].offset, lines[4].end]


def test_lines_without_a_thread_continue_the_line_before_and_stay_contiguous() -> None:
    texts = ["java.lang.IllegalStateException: before any prefixed line", "\tat a.B.c(B.java:1)",
             W0 + "Traceback (most recent call last):", "no prefix: continues W0's event",
             W1 + "other", W0 + '  File "/x.py", line 1, in f', W0 + "ValueError: v"]
    parser = make_parser(ParseSettings(format="torchserve", keep_original=True), SOURCE)
    lines = lines_at(texts)
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    # The first two have no thread: one event, ended by the first prefixed line.
    assert [record.original.split("\n") for record in records] == [
        texts[0:2], [texts[2], texts[3], texts[5], texts[6]], [texts[4]]]
    assert records[0].end == lines[2].offset
    assert records[1].fields["error"]["type"] == "ValueError"


class _Exploding(TorchServeFormat):
    name = "test-exploding-torchserve"

    def head(self, text: str) -> TextInfo:
        if text.endswith("boom"):
            raise RuntimeError("bug in a format")
        return super().head(text)


def test_a_bug_while_threads_interleave_loses_no_line() -> None:
    options = ParseSettings(format="torchserve", keep_original=True)
    parser = SourceParser(options, SOURCE, _Exploding(options))
    texts = [W0 + "Invoking custom service failed.", W0 + "Traceback (most recent call last):", W1 + "other",
             W0 + '  File "/x.py", line 1, in f', FRONT + "boom", W1 + "more", W0 + "ValueError: v"]
    lines = lines_at(texts)
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    records_kit.assert_commit_contract(records, lines)
    # The events open at the failure, and the line, are emitted raw, oldest first.
    assert [record.original.split("\n") for record in records[:3]] == [
        [texts[0], texts[1], texts[3]], [texts[2]], [texts[4]]]
    assert all(TAG_PARSE_FAILURE in record.tags for record in records[:3])
    assert records[0].end == lines[0].offset  # W0's raw record straddles W1's line: not past its start
    assert [record.line_count for record in records[3:]] == [1, 1]  # then parsing goes on


def test_at_most_max_open_events_are_held() -> None:
    threads = [f"2024-05-01T10:00:00,000 [INFO ] pool-1-thread-{n} org.x.Y - line {n}" for n in range(MAX_OPEN + 5)]
    parser = make_parser(ParseSettings(format="torchserve"), SOURCE)
    lines = lines_at(threads)
    out = [record for line in lines for record in parser.feed(line)]
    # Each thread wrote one line and never again: the oldest are let go.
    assert [record.offset for record in out] == [line.offset for line in lines[:5]]
    assert [record.end for record in out] == [line.offset for line in lines[1:6]]
    assert len(parser.flush()) == MAX_OPEN


# -- properties -------------------------------------------------------------------------------

_THREADS = ["W-9000-m_1.0-stdout", "W-9000-m_1.0-stderr", "W-9000-m_1.0", "main", "W-9001-m_1.0-stdout"]
_BODIES = ["", "Traceback (most recent call last):", '  File "/x.py", line 3, in f', "    return 1 / 0",
           "ZeroDivisionError: division by zero",
           "During handling of the above exception, another exception occurred:",
           "Backend response time: 3", '/1.2.3.4:5 "GET /ping HTTP/1.1" 200 1',
           "Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1714557600",
           "  + Exception Group Traceback (most recent call last):"]
_LINE = st.one_of(
    st.builds(lambda thread, level, body: f"2024-05-01T10:00:00,123 [{level}] {thread} MODEL_LOG - {body}",
              st.sampled_from(_THREADS), st.sampled_from(["INFO ", "WARN ", "ERROR"]), st.sampled_from(_BODIES)),
    st.builds(lambda body: f"2024-05-01T10:00:00,123 - {body}", st.sampled_from(_BODIES)),
    st.sampled_from(["\tat org.x.Y.z(Y.java:1)", "java.lang.RuntimeException: x", "", "  ", '{"a": 1}',
                     "HandlerTime.ms:1|#ModelName:m|#hostname:h,1714557600,r"]),
    st.text(max_size=30),
)
_SETTINGS = st.builds(ParseSettings, format=st.sampled_from(["torchserve", "auto"]),
                      multiline_start=st.sampled_from([None, None, r"^\d{4}-"]),
                      multiline_max_lines=st.integers(1, 6) | st.just(500),
                      multiline_max_bytes=st.integers(1, 400) | st.just(1048576),
                      keep_original=st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_LINE, max_size=40), options=_SETTINGS)
def test_no_input_raises_and_every_line_is_in_one_record(texts: list[str], options: ParseSettings) -> None:
    parser = make_parser(options, SOURCE)
    lines, offset = [], 0
    for text in texts:
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        lines.append(Line(SOURCE, offset, end, text, 1.0))
        offset = end
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    records_kit.assert_commit_contract(records, lines, consecutive=options.multiline_start is not None)
    for record in records:
        assert TAG_PARSE_FAILURE not in record.tags or record.error
        model = record.fields.get("model")
        assert not isinstance(model, dict) or model.get("server") in (None, "torchserve")


def test_module_registers_the_format() -> None:
    from agent.parsing import FORMATS
    assert FORMATS["torchserve"] is torchserve.TorchServeFormat
