"""Properties that must hold for any input: no raise, no line lost, ranges contiguous.

Lines are drawn from a mix of realistic fragments (log lines, every kind of
traceback line, blank lines, JSON objects and broken JSON) and arbitrary text
(including lone surrogates), with arbitrary tags, under arbitrary valid settings.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import (TAG_INVALID_UTF8, TAG_MULTILINE_SPLIT, TAG_PARTIAL, TAG_TRUNCATED, Line,
                          Record, Source)
from agent.parsing import ParseSettings, make_parser

SOURCE = Source("prop-key", "/var/log/app.log")

FRAGMENTS = [
    "", " ", "\t", "INFO:app:hello", "ERROR:app.worker:failed", "2024-05-01 12:00:00,130 - app - ERROR - x",
    "[2024-05-01 12:00:05 +0000] [7] [INFO] Booting", "Traceback (most recent call last):",
    '  File "/srv/app/x.py", line 3, in f', "    return 1 / 0", "           ~~^~~", "    ^^^^^^^^",
    "ZeroDivisionError: division by zero", "app.errors.Custom: with message", "KeyboardInterrupt",
    "  indented continuation",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
    "  + Exception Group Traceback (most recent call last):", "  |   File \"/x.py\", line 1, in <module>",
    "  | ExceptionGroup: eg (2 sub-exceptions)", "  +-+---------------- 1 ----------------",
    "    | ValueError: a", "    +------------------------------------", "Stack (most recent call last):",
    "SyntaxError: invalid syntax", '{"message": "json", "level": "INFO", "@timestamp": "2024-05-01T12:00:00Z"}',
    '{"msg": "x", "exc_info": "Traceback (most recent call last):\\nValueError: v"}', '{"broken": ', "{",
    "[1, 2]", "  {\"indented\": true}", "é ü 日本語 🙂",
]
TEXT = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12),  # surrogates too
    st.builds(lambda a, b: a + b, st.sampled_from(FRAGMENTS), st.text(max_size=8)),
)
TAGS = st.lists(st.sampled_from([TAG_TRUNCATED, TAG_INVALID_UTF8, TAG_PARTIAL]), max_size=3).map(tuple)
SETTINGS = st.builds(
    ParseSettings,
    format=st.sampled_from(["auto", "json", "plain"]),
    multiline_start=st.sampled_from([None, None, r"^\S", r"^\d{4}-", r"^\[", "Traceback", "^$", ""]),
    multiline_max_lines=st.integers(1, 8) | st.just(500),
    multiline_max_bytes=st.integers(1, 300) | st.just(1048576),
    multiline_timeout=st.floats(0.001, 10.0),
    keep_original=st.booleans(),
)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@st.composite
def line_lists(draw: st.DrawFn) -> list[Line]:
    texts = draw(st.lists(TEXT, max_size=40))
    start = draw(st.integers(0, 10_000))
    lines, offset, clock = [], start, 1000.0
    for text in texts:
        end = offset + utf8_len(text) + 1
        clock += draw(st.sampled_from([0.0, 0.01, 0.5, 3.0]))
        lines.append(Line(SOURCE, offset, end, text, clock, draw(TAGS)))
        offset = end
    return lines


def check_coverage(lines: list[Line], records: list[Record], options: ParseSettings) -> None:
    """Every line in exactly one record, in order; ranges contiguous; tags carried."""
    assert sum(record.line_count for record in records) == len(lines)
    index = 0
    for record in records:
        assert record.line_count >= 1
        mine = lines[index:index + record.line_count]
        index += record.line_count
        assert record.offset == mine[0].offset and record.end == mine[-1].end
        assert record.read_time == mine[0].read_time
        assert record.source == SOURCE
        assert len(set(record.tags)) == len(record.tags)
        for line in mine:
            assert set(line.tags) <= set(record.tags)
        texts = [line.text for line in mine]
        if options.keep_original:
            assert record.original == "\n".join(texts)
        else:
            assert record.original is None
        if record.line_count > 1:
            while texts and (not texts[-1] or texts[-1].isspace()):
                texts.pop()
            # Server formats (picked by auto-detection) move a line prefix into
            # fields on purpose; the raw text is then kept in `original` only.
            # A logging-layout prefix of the first line may be read into fields:
            # the message may drop it, nothing else.
            if options.format in ("plain", "json"):
                whole = "\n".join(texts)
                dropped = len(whole) - len(record.message)
                assert whole.endswith(record.message) and 0 <= dropped <= len(texts[0] if texts else "")
            assert record.line_count <= options.multiline_max_lines
            assert sum(utf8_len(line.text) for line in mine) + len(mine) - 1 <= options.multiline_max_bytes
        else:
            assert isinstance(record.message, str)
        if TAG_MULTILINE_SPLIT not in record.tags:
            assert record.line_count <= options.multiline_max_lines
    for before, after in zip(records, records[1:]):
        assert before.end == after.offset


def feed_all(options: ParseSettings, lines: list[Line], expire_at: list[float | None]) -> list[Record]:
    parser = make_parser(options, SOURCE)
    records: list[Record] = []
    for line, now in zip(lines, expire_at):
        records.extend(parser.feed(line))
        if now is not None:
            records.extend(parser.flush_expired(now))
    records.extend(parser.flush())
    assert not parser.pending()
    return records


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SETTINGS, line_lists(), st.data())
def test_no_input_raises_and_every_line_lands_in_exactly_one_record(
        options: ParseSettings, lines: list[Line], data: st.DataObject) -> None:
    # flush_expired at random points with a realistic clock: records may be
    # emitted early, but never lost, duplicated or reordered.
    expire_at = [data.draw(st.none() | st.floats(line.read_time, line.read_time + 20)) for line in lines]
    check_coverage(lines, feed_all(options, lines, expire_at), options)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SETTINGS, line_lists(), st.data())
def test_flush_expired_interleaving_does_not_matter_when_timeout_is_huge(
        options: ParseSettings, lines: list[Line], data: st.DataObject) -> None:
    huge = ParseSettings(options.format, options.multiline_start, options.multiline_max_lines,
                         options.multiline_max_bytes, 1e9, options.keep_original)
    expire_at = [data.draw(st.none() | st.floats(0.0, 1e6)) for _ in lines]
    without = feed_all(huge, lines, [None] * len(lines))
    assert feed_all(huge, lines, expire_at) == without
    check_coverage(lines, without, huge)


@settings(max_examples=200, deadline=None)
@given(line_lists())
def test_feeding_is_deterministic_across_parsers(lines: list[Line]) -> None:
    options = ParseSettings()
    assert feed_all(options, lines, [None] * len(lines)) == feed_all(options, lines, [None] * len(lines))
