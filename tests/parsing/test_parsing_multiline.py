"""Joining lines into events: --multiline-start, caps, timeout, blank lines, safety net."""

from __future__ import annotations

import pytest

from agent.events import (TAG_INVALID_UTF8, TAG_MULTILINE_SPLIT, TAG_PARSE_FAILURE, TAG_PARTIAL,
                          TAG_TRUNCATED, Line, Record, Source)
from agent.parsing import FORMATS, ParseSettings, SourceParser, TextInfo, make_parser
from agent.parsing.parse_text import PlainFormat

SOURCE = Source("ml-key", "/var/log/app.log")

TRACEBACK = [
    "ERROR:app:request failed",
    "Traceback (most recent call last):",
    '  File "/srv/app/x.py", line 3, in handle',
    "    return 1 / 0",
    "           ~~^~~",
    "ZeroDivisionError: division by zero",
]
# Its message: basicConfig's "LEVEL:name:" prefix is read into log.level and
# log.logger, so the message starts after it.
TRACEBACK_MESSAGE = "\n".join(["request failed", *TRACEBACK[1:]])


def make_lines(texts: list[str], start: int = 0, t0: float = 100.0, step: float = 0.5,
               tags: dict[int, tuple[str, ...]] | None = None) -> list[Line]:
    lines, offset = [], start
    for index, text in enumerate(texts):
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        lines.append(Line(SOURCE, offset, end, text, t0 + index * step, (tags or {}).get(index, ())))
        offset = end
    return lines


def run(texts: list[str], **options: object) -> list[Record]:
    parser = make_parser(ParseSettings(**options), SOURCE)
    records = [record for line in make_lines(texts) for record in parser.feed(line)]
    return records + parser.flush()


def groups(records: list[Record]) -> list[int]:
    return [record.line_count for record in records]


# -- feed / pending ------------------------------------------------------------------


def test_plain_line_is_held_until_the_next_line_shows_it_is_complete() -> None:
    parser = make_parser(ParseSettings(format="plain"), SOURCE)
    first, second = make_lines(["INFO:app:one", "INFO:app:two"])
    assert parser.feed(first) == []
    assert parser.pending()
    [record] = parser.feed(second)
    assert record.message == "one"
    assert parser.pending()
    assert [r.message for r in parser.flush()] == ["two"]
    assert not parser.pending()
    assert parser.flush() == []


def test_traceback_is_held_until_a_line_ends_it() -> None:
    parser = make_parser(ParseSettings(), SOURCE)
    lines = make_lines(TRACEBACK + ["INFO:app:next"])
    out = [parser.feed(line) for line in lines]
    assert out[:-1] == [[]] * len(TRACEBACK)
    [record] = out[-1]
    assert record.line_count == len(TRACEBACK)
    assert record.message == TRACEBACK_MESSAGE


def test_json_line_flushes_pending_text_first_and_is_emitted_at_once() -> None:
    parser = make_parser(ParseSettings(), SOURCE)
    lines = make_lines(TRACEBACK[:3] + ['{"msg": "json"}'])
    for line in lines[:3]:
        assert parser.feed(line) == []
    text, json_record = parser.feed(lines[3])
    assert (text.line_count, text.end) == (3, lines[2].end)
    assert text.fields["error"] == {"stack_trace": "\n".join(TRACEBACK[1:3])}  # cut short: no type
    assert (json_record.message, json_record.offset) == ("json", lines[3].offset)
    assert not parser.pending()


def test_stack_info_is_joined_without_error_fields() -> None:
    records = run(["WARNING:app:slow", "Stack (most recent call last):", '  File "/srv/x.py", line 1, in <module>',
                   "    main()", "INFO:app:next"])
    assert groups(records) == [4, 1]
    assert "error" not in records[0].fields


def test_exception_followed_by_stack_info() -> None:
    records = run(TRACEBACK + ["Stack (most recent call last):", '  File "/srv/x.py", line 1, in <module>',
                               "INFO:app:next"])
    assert groups(records) == [8, 1]
    assert records[0].fields["error"]["type"] == "ZeroDivisionError"


def test_two_tracebacks_in_a_row_are_two_records() -> None:
    records = run(TRACEBACK[1:] + TRACEBACK[1:])
    assert groups(records) == [5, 5]


def test_traceback_interrupted_by_a_log_line() -> None:
    records = run(TRACEBACK[:3] + ["2024-05-01 12:00:00,000 INFO restarted"])
    assert groups(records) == [3, 1]
    assert records[1].fields == {"log": {"level": "info"}} and records[1].timestamp is not None


def test_unindented_message_continuation_is_not_joined() -> None:
    # Python prints a message's own newlines unindented (str(exc) as it is:
    # torch's CUDA errors, pydantic's ValidationError); they cannot be told
    # from output printed right after the traceback, so they start records of
    # their own. (Joining them after a logged traceback, tried, took 495 lines
    # of training output into one error.message: audit 10.)
    records = run(TRACEBACK + ["second line of the message", "For debugging consider passing CUDA_LAUNCH_BLOCKING=1.",
                               "2024-05-01 12:00:00,000 INFO next"])
    assert groups(records) == [6, 1, 1, 1]
    assert records[0].fields["error"]["type"] == "ZeroDivisionError"
    records = run(TRACEBACK + [f"epoch {n}: loss 0.{n}" for n in range(600)])
    assert groups(records) == [6] + [1] * 600


def test_with_multiline_start_an_unindented_message_is_the_exceptions() -> None:
    # Joined by the pattern, the first exception line after the frames is the
    # exception and what follows is its message: not an exception named "price".
    pydantic = ["2024-05-01 10:00:00,000 - app - ERROR - predict failed", *TRACEBACK[1:4],
                "pydantic_core._pydantic_core.ValidationError: 1 validation error for Item", "price",
                "  Input should be a valid number [type=float_parsing, input_value='x', input_type=str]",
                "ERROR:app:next"]
    (joined, _) = run(pydantic, multiline_start=r"^(\d{4}-|ERROR:)")
    assert joined.fields["error"]["type"] == "pydantic_core._pydantic_core.ValidationError"
    assert joined.fields["error"]["message"] == ("1 validation error for Item\nprice\n  Input should be a valid "
                                                 "number [type=float_parsing, input_value='x', input_type=str]")


def test_unindented_line_after_a_bare_traceback_is_not_joined() -> None:
    """A blank line ends the message too."""
    records = run(TRACEBACK[1:] + ["second line"])
    assert groups(records) == [5, 1]
    records = run(TRACEBACK + ["", "after a blank"])
    assert groups(records) == [7, 1]


# -- blank lines -----------------------------------------------------------------------


def test_trailing_blank_lines_belong_to_the_previous_event() -> None:
    records = run(["INFO:app:one", "", "   ", "INFO:app:two"])
    assert groups(records) == [3, 1]
    assert records[0].message == "one"
    assert records[0].end == records[1].offset


def test_blank_lines_with_nothing_pending_are_a_record_with_an_empty_message() -> None:
    records = run(["", "", "INFO:app:one"])
    assert groups(records) == [2, 1]
    assert records[0].message == "" and records[0].tags == () and records[0].error is None
    after_json = run(['{"msg": "x"}', "", "INFO:app:one"])
    assert groups(after_json) == [1, 1, 1]
    assert after_json[1].message == ""


def test_traceback_after_a_blank_line_does_not_join_the_line_before_the_blank() -> None:
    records = run(["INFO:app:one", ""] + TRACEBACK[1:])
    assert groups(records) == [2, 5]
    assert records[1].fields["error"]["type"] == "ZeroDivisionError"


def test_blank_lines_after_a_traceback_then_an_unrelated_line() -> None:
    records = run(TRACEBACK + ["", "", "INFO:app:next"])
    assert groups(records) == [8, 1]
    assert records[0].message == TRACEBACK_MESSAGE
    assert records[0].fields["error"]["stack_trace"] == "\n".join(TRACEBACK[1:])


# -- tags -------------------------------------------------------------------------------


def test_line_tags_are_unioned_in_order_without_duplicates() -> None:
    parser = make_parser(ParseSettings(), SOURCE)
    lines = make_lines(TRACEBACK, tags={1: (TAG_TRUNCATED,), 3: (TAG_INVALID_UTF8, TAG_TRUNCATED),
                                        5: (TAG_PARTIAL,)})
    records = [r for line in lines for r in parser.feed(line)] + parser.flush()
    assert groups(records) == [6]
    assert records[0].tags == (TAG_TRUNCATED, TAG_INVALID_UTF8, TAG_PARTIAL)


# -- --multiline-start ----------------------------------------------------------------------

JAVA_STYLE = [
    "not matching, nothing pending",
    "[2024-05-01 12:00:00] ERROR request failed",
    "java.lang.IllegalStateException: boom",
    "\tat com.example.Handler.handle(Handler.java:42)",
    "",
    "[2024-05-01 12:00:01] INFO next",
    "[2024-05-01 12:00:02] INFO last",
    "  continued",
]


def test_multiline_start_negate_match_after() -> None:
    records = run(JAVA_STYLE, multiline_start=r"^\[")
    assert groups(records) == [1, 4, 1, 2]
    assert records[1].message == "\n".join(JAVA_STYLE[1:4])  # the trailing blank is stripped
    assert records[1].end == records[2].offset
    assert records[3].message == "[2024-05-01 12:00:02] INFO last\n  continued"


def test_multiline_start_is_a_search_not_a_match() -> None:
    records = run(["a START", "b", "c START", "d"], multiline_start="START")
    assert groups(records) == [2, 2]


def test_multiline_start_still_reads_python_tracebacks_inside_an_event() -> None:
    records = run(["2024-05-01 12:00:00,000 ERROR failed"] + TRACEBACK[1:] + ["2024-05-01 12:00:01,000 INFO ok"],
                  multiline_start=r"^\d{4}-")
    assert groups(records) == [6, 1]
    assert records[0].fields["error"]["type"] == "ZeroDivisionError"
    assert records[0].fields["log"] == {"level": "error"}


def test_multiline_start_never_joins_json_lines() -> None:
    records = run(["[x] start", '{"msg": "json"}', "continuation"], multiline_start=r"^\[")
    assert groups(records) == [1, 1, 1]
    assert records[1].message == "json"


# -- caps ------------------------------------------------------------------------------------


def test_max_lines_splits_and_tags_every_part() -> None:
    records = run(TRACEBACK + ["INFO:app:next"], multiline_max_lines=4)
    assert groups(records) == [4, 2, 1]
    first, second, after = records
    assert first.tags == (TAG_MULTILINE_SPLIT,) and second.tags == (TAG_MULTILINE_SPLIT,)
    assert after.tags == ()
    assert first.end == second.offset and second.end == after.offset
    assert first.message == "\n".join(["request failed", *TRACEBACK[1:4]])
    assert second.message == "\n".join(TRACEBACK[4:])
    # The head part has the log line's fields; the tail part still reads the exception.
    assert first.fields["log"] == {"level": "error", "logger": "app"}
    assert second.fields["error"]["type"] == "ZeroDivisionError"


def test_max_lines_one_makes_every_line_a_record() -> None:
    records = run(TRACEBACK, multiline_max_lines=1)
    assert groups(records) == [1] * 6
    assert all(TAG_MULTILINE_SPLIT in record.tags for record in records)


def test_max_bytes_counts_utf8_bytes_of_the_joined_message() -> None:
    texts = ["ERROR:a:x", " ü" * 5, " ü" * 5]  # 9 bytes, then two of 15 (5 chars of 2 bytes, 5 blanks)
    records = run(texts, multiline_start=r"^E", multiline_max_bytes=9 + 1 + 15)
    assert groups(records) == [2, 1]
    assert records[0].tags == (TAG_MULTILINE_SPLIT,)
    exact = run(texts, multiline_start=r"^E", multiline_max_bytes=9 + 1 + 15 + 1 + 15)
    assert groups(exact) == [3]


def test_a_single_line_over_the_byte_cap_is_one_record() -> None:
    records = run(["x" * 100, "y" * 100], multiline_max_bytes=10)
    assert groups(records) == [1, 1]
    assert records[0].tags == ()


def test_split_in_pattern_mode_continues_the_same_event() -> None:
    records = run(["[start]", "a", "b", "c", "d", "[next]"], multiline_start=r"^\[", multiline_max_lines=2)
    assert groups(records) == [2, 2, 1, 1]
    assert [TAG_MULTILINE_SPLIT in r.tags for r in records] == [True, True, True, False]


# -- timeout ------------------------------------------------------------------------------------


def test_flush_expired_uses_the_last_line_read_time() -> None:
    parser = make_parser(ParseSettings(multiline_timeout=2.0), SOURCE)
    lines = make_lines(TRACEBACK[:3], t0=100.0, step=1.0)  # read at 100, 101, 102
    for line in lines:
        parser.feed(line)
    assert parser.flush_expired(103.9) == []
    assert parser.flush_expired(104.0) == []  # exactly the timeout: not yet
    [record] = parser.flush_expired(104.01)
    assert record.line_count == 3 and record.read_time == 100.0
    assert not parser.pending()
    assert parser.flush_expired(1e12) == []


def test_after_a_timeout_the_rest_of_a_traceback_is_its_own_record() -> None:
    parser = make_parser(ParseSettings(multiline_timeout=1.0), SOURCE)
    lines = make_lines(TRACEBACK, t0=100.0, step=0.1)
    parser.feed(lines[0])
    [head] = parser.flush_expired(200.0)
    records = [r for line in lines[1:] for r in parser.feed(line)] + parser.flush()
    assert head.message == "request failed"
    assert groups(records) == [5]
    assert records[0].offset == head.end
    assert records[0].fields["error"]["type"] == "ZeroDivisionError"


def test_json_lines_are_never_pending() -> None:
    parser = make_parser(ParseSettings(format="json"), SOURCE)
    for line in make_lines(['{"a": 1}', '{"b": 2}']):
        assert len(parser.feed(line)) == 1
        assert not parser.pending()
    assert parser.flush_expired(1e12) == [] and parser.flush() == []


# -- the safety net -----------------------------------------------------------------------------


class _Exploding(PlainFormat):
    name = "test-exploding"

    def head(self, text: str) -> TextInfo:
        if "boom" in text:
            raise RuntimeError("bug in a format")
        return super().head(text)


def test_a_bug_in_a_format_loses_no_line_and_raises_nothing() -> None:
    parser = SourceParser(ParseSettings(format="plain"), SOURCE, _Exploding(ParseSettings(format="plain")))
    texts = ["INFO:a:ok", "boom line", "  Traceback-ish", "INFO:a:after", "boom again"]
    lines = make_lines(texts)
    records = [r for line in lines for r in parser.feed(line)] + parser.flush()
    assert sum(groups(records)) == len(texts)
    assert [(r.offset, r.end) for r in records] == sorted((r.offset, r.end) for r in records)
    assert records[0].offset == 0 and records[-1].end == lines[-1].end
    assert all(a.end == b.offset for a, b in zip(records, records[1:]))
    failed = [r for r in records if TAG_PARSE_FAILURE in r.tags]
    assert failed and all(r.error == "internal parser error: RuntimeError" for r in failed)
    assert any("boom line" in r.message for r in failed)


def test_registry_lists_the_built_in_formats() -> None:
    assert {"auto", "json", "plain"} <= set(FORMATS)


@pytest.mark.parametrize("fmt", ["auto", "json", "plain"])
def test_empty_input(fmt: str) -> None:
    parser = make_parser(ParseSettings(format=fmt), SOURCE)
    assert parser.flush() == [] and parser.flush_expired(0.0) == [] and not parser.pending()


# -- the next record after a traceback is not swallowed -----------------------

STACK_INFO = ["INFO:     slow request", "Stack (most recent call last):", '  File "/app/main.py", line 3, in <module>',
              '    log.info("slow request", stack_info=True)']


@pytest.mark.parametrize("fmt", ["uvicorn", "plain", "auto"])
def test_an_access_line_after_a_stack_info_block_is_a_record_of_its_own(fmt: str) -> None:
    records = run(STACK_INFO + ['INFO:     127.0.0.1:5000 - "GET / HTTP/1.1" 200 OK', "INFO:     Shutting down"],
                  format=fmt)
    assert groups(records) == [4, 1, 1]
    assert "error" not in records[0].fields


@pytest.mark.parametrize("following", ["app: next record", "KeyboardInterrupt", "ValueError: not this one's"])
def test_a_stack_info_block_ends_at_the_first_unindented_line(following: str) -> None:
    # logging writes the stack last in a record, and no exception line ends it.
    records = run(STACK_INFO + [following], format="plain")
    assert groups(records) == [4, 1]


def test_a_traceback_cut_before_its_exception_line_does_not_take_a_level_line() -> None:
    records = run(["ERROR app crashed", "Traceback (most recent call last):", '  File "/app/main.py", line 3, in f',
                   "WARNING: retrying"], format="plain")
    assert groups(records) == [3, 1]
    assert records[0].fields["error"] == {"stack_trace": "\n".join(
        ["Traceback (most recent call last):", '  File "/app/main.py", line 3, in f'])}


def test_exception_lines_and_their_indented_messages_still_join() -> None:
    records = run(["ERROR app crashed", "Traceback (most recent call last):", '  File "/app/main.py", line 3, in f',
                   "requests.exceptions.HTTPError: y", "  more of the message", " * a bullet of it", "INFO next"],
                  format="plain")
    assert groups(records) == [6, 1]
    assert records[0].fields["error"]["type"] == "requests.exceptions.HTTPError"
    assert records[0].fields["error"]["message"] == "y\n  more of the message\n * a bullet of it"


@pytest.mark.parametrize("notice", [" * Restarting with stat", " * Restarting with watchdog (inotify)",
                                    " * Debugger is active!", " * Debugger PIN: 123-456-789",
                                    " * Running on http://127.0.0.1:5000", " * Detected change in '/app/x.py', reloading"])
def test_a_werkzeug_notice_after_an_exception_line_is_its_own_record(notice: str) -> None:
    records = run(["ERROR app crashed", "Traceback (most recent call last):", '  File "/app/main.py", line 3, in f',
                   "ValueError: boom", notice], format="plain")
    assert groups(records) == [4, 1]
    assert records[0].fields["error"]["message"] == "boom"
    assert records[1].message == notice
