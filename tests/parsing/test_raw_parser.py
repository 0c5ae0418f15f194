"""``make_raw_parser`` groups lines into events exactly as ``make_parser`` does.

The contract with the cluster's ingest pipelines (``--parse-at
elasticsearch``): for the same settings and the same lines, fed and expired
at the same times, both parsers emit the same records in the same order with
the same ``offset`` (so the same ``_id``), ``end`` (commit point),
``line_count``, ``read_time`` and line tags (the agent parser's own verdict,
``parse_failure``, is not a line tag: the cluster makes it); the raw record's
``message`` is the event's lines joined with ``"\\n"``, which is what the
agent parser keeps in ``original`` with ``keep_original``. Held for every
registered format, on every fixture and on generated inputs made of fixture
lines of every format mixed with tracebacks, JSON, broken JSON and arbitrary
text, under arbitrary caps, timeouts and multi-line patterns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import (TAG_INVALID_UTF8, TAG_PARSE_FAILURE, TAG_PARTIAL, TAG_TRUNCATED, Line, LineRun, Record, Source,
                          records_of)
from agent.parsing import FORMATS, ParseSettings, make_parser, make_raw_parser
from agent.parsing.raw import is_json_object

SOURCE = Source("raw-key", "/var/log/models/app.log")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_FILES = sorted(path for path in FIXTURES.rglob("*") if path.is_file())
FORMAT_NAMES = sorted(FORMATS)


def fixture_texts(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "surrogateescape").split("\n")[:-1]


def as_lines(texts: list[str], gaps: list[float] | None = None, tags: list[tuple[str, ...]] | None = None) -> list[Line]:
    lines, offset, clock = [], 0, 1000.0
    for index, text in enumerate(texts):
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        clock += gaps[index] if gaps else 0.001
        lines.append(Line(SOURCE, offset, end, text, clock, tags[index] if tags else ()))
        offset = end
    return lines


def feed(make, options: ParseSettings, lines: list[Line], expire_at: list[float | None]) -> list[Record]:
    parser = make(options, SOURCE)
    records: list[Record] = []
    for line, now in zip(lines, expire_at):
        records.extend(parser.feed(line))
        if now is not None:
            records.extend(parser.flush_expired(now))
        assert parser.pending() is parser.pending()
    records.extend(parser.flush())
    assert not parser.pending()
    return records


def _has_payload(fields: dict) -> bool:
    """Does a parsed record hold a field the transforms strip (agent.schema's payload fields)?"""
    http = fields.get("http") if isinstance(fields.get("http"), dict) else {}
    bodies = [(http.get(side) or {}).get("body") for side in ("request", "response")
              if isinstance(http.get(side), dict)]
    gen_ai = fields.get("gen_ai") if isinstance(fields.get("gen_ai"), dict) else {}
    return any(isinstance(body, dict) and "content" in body for body in bodies) or \
        "prompt" in gen_ai or "completion" in gen_ai


def _raw_name(record: Record) -> str | None:
    raw = record.fields.get("modelscribe", {}).get("raw") if record.fields else None
    return raw["format"] if raw else None


def assert_same_grouping(options: ParseSettings, lines: list[Line], expire_at: list[float | None]) -> list[Record]:
    """Both parsers on the same input; returns the raw records."""
    parsed = feed(make_parser, dataclasses.replace(options, keep_original=True), lines, expire_at)
    raw = feed(make_raw_parser, options, lines, expire_at)
    assert len(raw) == len(parsed)
    for position, (agent, mine) in enumerate(zip(parsed, raw)):
        where = f"record {position} (offset {agent.offset})"
        # (Every record, raw or not, lists a tag once, even a tag its line repeats.)
        line_tags = tuple(dict.fromkeys(tag for tag in agent.tags if tag != TAG_PARSE_FAILURE))
        assert (mine.source, mine.offset, mine.end, mine.line_count, mine.read_time, mine.tags) == \
            (agent.source, agent.offset, agent.end, agent.line_count, agent.read_time, line_tags), where
        if _has_payload(agent.fields):
            assert _raw_name(mine) is None, f"{where}: a payload would leave the host in a raw record"
        if _raw_name(mine) is None:
            # Parsed at the edge (a line that may carry a payload): the agent's own record.
            assert mine == agent._replace(original=mine.original), where
            continue
        assert mine.message == agent.original, where
        assert mine.timestamp is None and mine.error is None and mine.original is None, where
        expected = {"format": _raw_name(mine)}
        if options.log_format is not None:
            expected["log_format"] = options.log_format
        assert mine.fields == {"modelscribe": {"raw": expected}}, where
        if options.format != "auto":
            assert _raw_name(mine) == options.format, where
    return raw


# -- every fixture, every format -------------------------------------------------

@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: str(path.relative_to(FIXTURES)))
def test_fixture_grouping_is_the_agents(path, name):
    lines = as_lines(fixture_texts(path))
    assert lines
    assert_same_grouping(ParseSettings(format=name), lines, [None] * len(lines))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: str(path.relative_to(FIXTURES)))
def test_auto_names_the_format_the_agent_detects(path):
    """Under auto, the raw format is the format the agent parser detected
    (from the line that claimed it on), else json for a JSON object and plain."""
    lines = as_lines(fixture_texts(path))
    agent = make_parser(ParseSettings(), SOURCE)
    for line in lines:
        agent.feed(line)
    detected = agent._format.detected
    raw = assert_same_grouping(ParseSettings(), lines, [None] * len(lines))
    names = {_raw_name(record) for record in raw} - {None}
    assert names <= {detected, "json", "plain"}
    for record in raw:
        if _raw_name(record) == "json":
            assert record.line_count == 1 and is_json_object(record.message)
    if detected is not None:
        assert _raw_name(raw[-1]) in (detected, None)


def test_torchserve_threads_interleaved_are_joined_per_thread():
    path = FIXTURES / "servers" / "torchserve" / "two_workers.log"
    lines = as_lines(fixture_texts(path))
    raw = assert_same_grouping(ParseSettings(format="torchserve"), lines, [None] * len(lines))
    joined = [record for record in raw if record.line_count > 1]
    assert joined, "the fixture holds tracebacks of two threads"
    # Non-contiguous: a record's lines are not all consecutive in the file.
    assert any(record.end - record.offset > len(record.message.encode()) + 1 for record in joined) or \
        any(a.offset > b.offset for a, b in zip(raw, raw[1:]))


def test_a_json_line_that_may_carry_a_payload_is_parsed_at_the_edge():
    texts = ['{"message": "ok", "level": "info"}',
             '{"message": "call", "http": {"request": {"body": {"content": "secret prompt"}}}}',
             '{"message": "caf\\u00e9"}',
             '{"message": "escaped", "http": {"response": {"body": {"cont\\u0065nt": "secret"}}}}']
    raw = assert_same_grouping(ParseSettings(format="json"), as_lines(texts), [None] * 4)
    assert [_raw_name(record) for record in raw] == ["json", None, "json", None]
    assert raw[3].fields["http"]["response"]["body"]["content"] == "secret"
    assert raw[1].fields["http"]["request"]["body"]["content"] == "secret prompt"  # the transforms strip it
    assert raw[1].message == "call"


def test_map_field_to_a_payload_field_is_parsed_at_the_edge():
    options = ParseSettings(format="json", map_fields=(("req.text", "http.request.body.content"),))
    texts = ['{"message": "a", "req": {"text": "hello"}}', '{"message": "b"}']
    raw = assert_same_grouping(options, as_lines(texts), [None] * 2)
    assert [_raw_name(record) for record in raw] == [None, "json"]


def test_vllm_payload_lines_are_parsed_at_the_edge():
    path = FIXTURES / "servers" / "vllm" / "v1_server.log"
    raw = assert_same_grouping(ParseSettings(format="vllm"), as_lines(fixture_texts(path)), [None] * 1000)
    edge = [record for record in raw if _raw_name(record) is None]
    assert edge and all("prompt: '" not in record.message for record in edge)


def test_log_format_is_passed_on():
    layout = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    texts = ["2024-05-01 12:00:00,130 INFO app: hello", "Traceback (most recent call last):",
             '  File "/x.py", line 1, in <module>', "ValueError: v", '{"message": "j"}']
    raw = assert_same_grouping(ParseSettings(log_format=layout), as_lines(texts), [None] * 5)
    assert raw[0].message == "\n".join(texts[:4])
    assert raw[0].fields == {"modelscribe": {"raw": {"format": "plain", "log_format": layout}}}
    assert raw[1].fields == {"modelscribe": {"raw": {"format": "json", "log_format": layout}}}


def test_trailing_blank_lines_and_prefixes_stay_in_the_raw_message():
    texts = ["ERROR:app:failed", "Traceback (most recent call last):", '  File "/x.py", line 1, in f',
             "ZeroDivisionError: division by zero", "", "  "]
    (record,) = assert_same_grouping(ParseSettings(format="plain"), as_lines(texts), [None] * 6)
    assert record.message == "\n".join(texts) and record.line_count == 6


# -- generated inputs ------------------------------------------------------------

FRAGMENTS = sorted({text for path in FIXTURE_FILES for text in fixture_texts(path)} | {
    "", " ", "\t", "INFO:app:hello", "Traceback (most recent call last):", '  File "/srv/app/x.py", line 3, in f',
    "    return 1 / 0", "ZeroDivisionError: division by zero", "  indented continuation",
    "During handling of the above exception, another exception occurred:",
    "  + Exception Group Traceback (most recent call last):", "  | ExceptionGroup: eg (2 sub-exceptions)",
    "Stack (most recent call last):", '{"message": "json", "level": "INFO"}', '{"broken": ', "{", "[1, 2]",
    '  {"indented": true}', '{"http": {"response": {"body": {"content": "x"}}}}', "é ü 日本語 🙂",
    '{"http": {"request": {"body": {"cont\\u0065nt": "y"}}}}', '{"message": "caf\\u00e9"}',
    '{"http.request.body.content": "z", "prompt": "p"}',
})
TEXT = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.sampled_from(FRAGMENTS),
    st.text(max_size=30),
    st.builds(lambda a, b: a + b, st.sampled_from(FRAGMENTS), st.text(max_size=6)),
)
TAGS = st.lists(st.sampled_from([TAG_TRUNCATED, TAG_INVALID_UTF8, TAG_PARTIAL]), max_size=2).map(tuple)
OPTIONS = st.builds(
    ParseSettings,
    format=st.sampled_from(FORMAT_NAMES + ["auto"] * 4),
    multiline_start=st.sampled_from([None] * 6 + [r"^\S", r"^\d{4}-", r"^\[", "Traceback", ""]),
    multiline_max_lines=st.integers(1, 6) | st.just(500),
    multiline_max_bytes=st.integers(1, 400) | st.just(1048576),
    multiline_timeout=st.floats(0.001, 10.0),
    log_format=st.sampled_from([None, None, "%(levelname)s:%(name)s:%(message)s"]),
    map_fields=st.sampled_from([(), (("prompt", "http.request.body.content"),)]),
)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[list[Line], list[float | None]]:
    texts = draw(st.lists(TEXT, max_size=50))
    gaps = [draw(st.sampled_from([0.0, 0.01, 0.5, 3.0])) for _ in texts]
    tags = [draw(TAGS) for _ in texts]
    lines = as_lines(texts, gaps, tags)
    expire_at = [draw(st.sampled_from([None, None, None, line.read_time + 1.0, line.read_time + 20.0]))
                 for line in lines]
    return lines, expire_at


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(OPTIONS, inputs())
def test_generated_grouping_is_the_agents(options, drawn):
    lines, expire_at = drawn
    assert_same_grouping(options, lines, expire_at)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURE_FILES), st.sampled_from(FORMAT_NAMES), st.integers(1, 4), st.integers(40, 2000),
       st.data())
def test_fixture_lines_under_caps_and_timeouts(path, name, max_lines, max_bytes, data):
    """Whole fixtures, cut by small caps and by the timeout at drawn points."""
    lines = as_lines(fixture_texts(path))
    expire_at = [data.draw(st.sampled_from([None, None, line.read_time + 5.0])) for line in lines]
    options = ParseSettings(format=name, multiline_max_lines=max_lines, multiline_max_bytes=max_bytes)
    assert_same_grouping(options, lines, expire_at)


# -- batches -------------------------------------------------------------------------

JSON_HEAVY = st.one_of(
    st.sampled_from(['{"message": "json", "level": "INFO"}', ' {"a": 1}', '{"a": [1, {"b": "c"}]}',
                     '{"message": "caf\\u00e9"}', '{"message": "\\\\u"}', '{"b": {"content": 1}}']),
    TEXT,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(OPTIONS, st.lists(JSON_HEAVY, max_size=60), st.lists(st.integers(1, 12), min_size=1, max_size=12),
       st.booleans(), st.data())
def test_batches_give_the_records_of_line_by_line(options, texts, sizes, raw, data):
    """``feed_many`` (the sink's hot path, with the raw formats' ``take_run``)
    emits exactly the records that ``feed`` of each line does, for both
    parsers, with the clock's cuts replayed and expiry between batches."""
    make = make_raw_parser if raw else make_parser
    lines = as_lines(texts, tags=[data.draw(TAGS) for _ in texts])
    cuts = data.draw(st.dictionaries(st.sampled_from([line.offset for line in lines] or [0]),
                                     st.sampled_from([line.end for line in lines] or [1]), max_size=3))
    batches, start = [], 0
    while start < len(lines):
        size = sizes[len(batches) % len(sizes)]
        batches.append(lines[start:start + size])
        start += size
    expire = [data.draw(st.sampled_from([None, None, 1000.5, 1010.0])) for _ in batches]

    one, many = make(options, SOURCE), make(options, SOURCE)
    one.cut_at(dict(cuts))
    many.cut_at(dict(cuts))
    by_line: list[Record] = []
    by_batch: list[Record] = []
    for batch, now in zip(batches, expire):
        for line in batch:
            by_line += one.feed(line)
        by_batch += many.feed_many(batch)
        if now is not None:
            by_line += one.flush_expired(now)
            by_batch += many.flush_expired(now)
    by_line += one.flush()
    by_batch += many.flush()
    assert by_batch == by_line
    assert many.timed == one.timed


def test_a_batch_of_json_lines_is_taken_as_one_run():
    """The run itself is used (not only the line-by-line path), and stops where
    a line is not an event of its own: text, a payload line, an edge line."""
    lines = as_lines(['{"a": 1}', '{"b": 2}', "plain text", '{"c": 3}',
                      '{"http": {"request": {"body": {"content": "x"}}}}', '{"d": 4}'])
    parser = make_raw_parser(ParseSettings(format="json"), SOURCE)
    taken: list = []
    assert parser._format.take_run(lines, 0, taken) == 2
    assert [record.offset for record in records_of(taken)] == [lines[0].offset, lines[1].offset]
    assert parser._format.take_run(lines, 3, taken) == 4
    assert [type(item) for item in taken] == [LineRun, LineRun]
    # (the text line is held until the next line: that one is fed on its own)
    assert [type(item) for item in parser.feed_batch(lines)] == [LineRun, Record, Record, Record, LineRun]
    parser = make_raw_parser(ParseSettings(format="json"), SOURCE)
    records = parser.feed_many(lines) + parser.flush()
    assert [record.offset for record in records] == [line.offset for line in lines]
    assert _raw_name(records[4]) is None  # the payload line: parsed at the edge
    assert all(_raw_name(record) == "json" for index, record in enumerate(records) if index != 4)


def test_a_failing_run_falls_back_to_line_by_line(monkeypatch):
    """The never-raise promise holds for the batch: a bug in a run costs no line."""
    lines = as_lines(['{"a": 1}', '{"b": 2}', "text", '{"c": 3}'])
    parser = make_raw_parser(ParseSettings(format="json"), SOURCE)

    def broken(lines, index, out):
        out.append("half a run")
        raise RuntimeError("bug")

    parser._run = broken
    records = parser.feed_many(lines) + parser.flush()
    assert [record.offset for record in records] == [line.offset for line in lines]
    assert parser._run is None


def test_a_json_line_with_a_lone_surrogate_escape_is_an_object_parsed_at_the_edge():
    # Only the lenient decoder reads it (agent.parsing.json_decode): the raw
    # parser groups it as the agent does and leaves it to the agent's parser.
    texts = ['{"message": "ok"}', '{"message": "caf\\udce9.bin", "level": "error"}', '{"message": "ok"}']
    assert is_json_object(texts[1])
    raw = assert_same_grouping(ParseSettings(format="json"), as_lines(texts), [None] * 3)
    assert [_raw_name(record) for record in raw] == ["json", None, "json"]
    assert raw[1].message == "caf\ufffd.bin" and raw[1].fields["log"]["level"] == "error"
