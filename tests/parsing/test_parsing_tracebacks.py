"""The traceback vocabulary: which lines belong to one, and what it says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.parsing import tracebacks


@pytest.mark.parametrize(("text", "expected"), [
    ("ValueError: bad", ("ValueError", "bad")),
    ("json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
     ("json.decoder.JSONDecodeError", "Expecting value: line 1 column 1 (char 0)")),
    ("KeyboardInterrupt", ("KeyboardInterrupt", None)),
    ("__main__.f.<locals>.Local: x", ("__main__.f.<locals>.Local", "x")),
    ("Érreur: accentuée", ("Érreur", "accentuée")),
    ("ValueError:", ("ValueError", None)),
    ("  ValueError: indented", None),
    ("ERROR:root:msg", None),
    ("Traceback (most recent call last):", None),
    ("During handling of the above exception, another exception occurred:", None),
    ("2024-05-01 x", None),
    ("", None),
])
def test_exception_line(text: str, expected: tuple[str, str | None] | None) -> None:
    assert tracebacks.exception_line(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Traceback (most recent call last):", True),
    ("Stack (most recent call last):", True),
    ("  + Exception Group Traceback (most recent call last):", True),
    ('  File "/srv/app/plugin.py", line 1', True),
    ('\tFile "/srv/app/plugin.py", line 12, in f', True),
    ("  File something else", False),
    ("Traceback (most recent call last): extra", False),
    (" Traceback (most recent call last):", False),
    ("ValueError: x", False),
    ("", False),
])
def test_starts_traceback(text: str, expected: bool) -> None:
    assert tracebacks.starts_traceback(text) is expected


CHAIN = [
    "Traceback (most recent call last):",
    '  File "/x.py", line 1, in <module>',
    "ValueError: first",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "/x.py", line 3, in <module>',
    "RuntimeError: second",
    "  with a second line",
]


def test_describe_reports_the_last_exception_of_a_chain() -> None:
    assert tracebacks.describe(CHAIN) == ("RuntimeError", "second\n  with a second line")


def test_describe_without_an_exception_line() -> None:
    assert tracebacks.describe(CHAIN[:2]) == (None, None)


def test_describe_requires_a_header_unless_told_otherwise() -> None:
    assert tracebacks.describe(["INFO:app:x", "ValueError: y"]) is None
    assert tracebacks.describe(['  File "/x.py", line 1', "ValueError: y"], require_header=False) == ("ValueError", "y")
    assert tracebacks.describe(CHAIN[7:], require_header=False) == ("RuntimeError", "second\n  with a second line")
    assert tracebacks.describe(["Stack (most recent call last):", '  File "/x.py", line 1']) is None
    assert tracebacks.describe([]) is None


def test_describe_a_group_uses_the_groups_own_line_not_a_sub_exception() -> None:
    group = [
        "  + Exception Group Traceback (most recent call last):",
        '  |   File "/x.py", line 1, in <module>',
        "  | ExceptionGroup: eg (2 sub-exceptions)",
        "  +-+---------------- 1 ----------------",
        "    | ValueError: a",
        "    +------------------------------------",
    ]
    assert tracebacks.describe(group) == ("ExceptionGroup", "eg (2 sub-exceptions)")


@given(st.lists(st.text(max_size=30), max_size=12), st.booleans())
def test_describe_never_raises(lines: list[str], require_header: bool) -> None:
    result = tracebacks.describe(lines, require_header)
    assert result is None or len(result) == 2


@pytest.mark.parametrize("text", [
    'INFO:     127.0.0.1:5000 - "GET / HTTP/1.1" 200 OK', "WARNING: low disk", "ERROR: failed", "DEBUG",
    "CRITICAL: down", "WARN: x", "FATAL: y",
])
def test_a_level_name_is_not_an_exception_type(text: str) -> None:
    # Read as one, the next record after a traceback without its exception
    # line (a cut one, logging's stack_info) was joined to it.
    assert tracebacks.exception_line(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("requests.exceptions.HTTPError: y", ("requests.exceptions.HTTPError", "y")),
    ("Info: x", ("Info", "x")),  # a class of that name in another case is still one
    ("INFOError: x", ("INFOError", "x")),
    ("app.INFO: x", ("app.INFO", "x")),
])
def test_names_near_a_level_name_are_still_exception_types(text: str, expected: tuple[str, str]) -> None:
    assert tracebacks.exception_line(text) == expected


def test_describe_takes_unindented_message_lines() -> None:
    """The first exception line after the frames is the exception; unindented
    lines after it that do not begin a log record are its message, up to a
    blank line (audit 9, formats #4)."""
    frames = ["Traceback (most recent call last):", '  File "a.py", line 1, in f', "    g()"]
    assert tracebacks.describe(frames + ["ValidationError: 1 validation error for Item", "price",
                                         "  Input should be a valid number"]) == \
        ("ValidationError", "1 validation error for Item\nprice\n  Input should be a valid number")
    assert tracebacks.describe(frames + ["RuntimeError: CUDA error", "CUDA kernel errors might be ...", "",
                                         "KeyError: 'k'"]) == ("KeyError", "'k'")
    assert tracebacks.describe(frames + ["ValueError: x", "INFO:     127.0.0.1 - next", "more"]) == ("ValueError", "x")
    assert tracebacks.describe(frames + ["ValueError", "price"]) == ("ValueError", "price")
    assert tracebacks.describe(frames + ["ValueError: x", "Stack (most recent call last):", '  File "b.py"']) == \
        ("ValueError", "x")


@pytest.mark.parametrize(("text", "head"), [
    ("2024-05-01 10:00:00,000 - app - INFO - x", True), ("[2024-05-01 12:00:05 +0000] [7] [INFO] x", True),
    ("ERROR:app:x", True), ("INFO:     x", True), ("ERROR 05-01 10:00:00 a.py:1] x", True), ("[ERROR] x", True),
    ("WARNING x", True), ("E0804 16:25:25.154521 20984 a.cc:610] x", True),
    ("price", False), ("CUDA kernel errors", False), ("Information", False), ("ERRORS: 3", False),
    ("2024-05-01 is a date", False), ("[1, 2]", False), ("", False), ("E080 1", False),
])
def test_is_head(text: str, head: bool) -> None:
    assert tracebacks.is_head(text) is head
    assert tracebacks.continues_message(text) is (bool(text) and not head)
