"""What Python tracebacks look like, line by line, and what they say.

The shapes recognised (CPython 3.8 - 3.13, ``traceback.print_exception``):

    Traceback (most recent call last):            header
      File "/app/x.py", line 3, in f              frame (indented)
        return d["a"]["b"] * 2                    source (indented)
               ~~~~~~~~~~~~^~~                    3.11+ carets (indented)
    TypeError: unsupported operand ...            exception line (unindented)
      continued message                           indented message continuation

    During handling of the above exception, another exception occurred:
    The above exception was the direct cause of the following exception:
                                                  chain separators, blank lines around

      + Exception Group Traceback (most recent call last):
      |   File ...                                exception groups: every line indented,
      | ExceptionGroup: eg (2 sub-exceptions)     the group's own exception after "  | "
      +-+---------------- 1 ----------------
        | ValueError: a
        +------------------------------------

      File "/app/bad.py", line 1                  a SyntaxError printed without a
        def f(:                                   header (a script that does not
              ^                                   compile)
    SyntaxError: invalid syntax

    Stack (most recent call last):                logging's stack_info=True (frames,
      File ...                                    no exception; always the end of
                                                  its record)

The multi-line joiner uses the predicates; ``describe`` reads the type and
message of the last exception of a chain (the one that was finally raised).
An exception's message may go on over unindented lines (``str(exc)`` is
printed verbatim: torch's CUDA errors, pydantic's ValidationError); such a
line is told from the next record by not looking like a record's head
(``is_head``: a timestamp, a level word, glog's prefix).
Everything here is total: no input raises.
"""

from __future__ import annotations

import re

from agent.parsing import timestamps

HEADER = "Traceback (most recent call last):"
STACK_HEADER = "Stack (most recent call last):"
CHAIN_SEPARATORS = frozenset({
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
})

# A (possibly dotted, possibly nested-class) exception name and its message.
_NAME = r"[^\W\d]\w*(?:\.(?:<locals>|[^\W\d]\w*))*"
_EXCEPTION = re.compile(r"(" + _NAME + r")(?::(?: (.*))?)?")
# The group's own exception line sits right after the "  | " of its level.
_GROUP_EXCEPTION = re.compile(r"  \| (" + _NAME + r")(?::(?: (.*))?)?")
_GROUP_HEADER = re.compile(r"\s*\+ Exception Group Traceback \(most recent call last\):")
_FILE_FRAME = re.compile(r"\s+File \"[^\"]*\", line \d+")
# Level names as logging and servers print them ("INFO:     127.0.0.1 ..."):
# a line starting with one is the next record, never an exception line,
# even right after frames (a cut traceback, logging's stack_info).
_LEVEL_WORDS = frozenset({"CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "TRACE", "NOTSET"})


def is_indented(text: str) -> bool:
    return text[:1] in (" ", "\t") and not text.isspace()


def is_group_header(text: str) -> bool:
    return text.endswith("(most recent call last):") and _GROUP_HEADER.fullmatch(text) is not None


def is_file_frame(text: str) -> bool:
    """``  File "...", line N``: a frame, or the start of a header-less SyntaxError."""
    return text[:1] in (" ", "\t") and _FILE_FRAME.match(text) is not None


def exception_line(text: str) -> tuple[str, str | None] | None:
    """``(type, message)`` when ``text`` reads like an unindented exception
    line (``ValueError: x``, ``requests.exceptions.HTTPError: y``,
    ``KeyboardInterrupt``); not when its "type" is a level name (``INFO:``)."""
    if not text or text[0] in (" ", "\t"):
        return None
    match = _EXCEPTION.fullmatch(text)
    if match is None or match.group(1) in _LEVEL_WORDS:
        return None
    return match.group(1), match.group(2)


# A line that begins a log record of its own: a timestamp (any layout
# ``timestamps.match_prefix`` reads), a level word first (``ERROR:app:``,
# ``INFO:     ...``, vLLM's ``ERROR 05-01 ...``, ``[ERROR]``), or glog's ``E0804 16:25:25``.
_HEAD_WORD = re.compile(r"\[?(?:" + "|".join(sorted(_LEVEL_WORDS)) + r")\b|[IWEF]\d{4} \d\d:", re.ASCII)


def is_head(text: str) -> bool:
    """Does ``text`` begin the way a log record's first line does (see ``_HEAD_WORD``)?"""
    if not text:
        return False
    first = text[0]
    if first.isdigit() or first == "[":
        if timestamps.match_prefix(text)[1]:
            return True
    return "A" <= first <= "[" and _HEAD_WORD.match(text) is not None


def continues_message(text: str) -> bool:
    """Can this unindented line be more of an exception's message (CPython
    prints ``str(exc)`` verbatim: torch's CUDA errors and pydantic's
    ValidationError have unindented lines), rather than what follows the
    traceback? Not blank, not indented, not a traceback's own line (header,
    chain separator, logging's stack header) and not a log record's head."""
    if not text or text[0] in (" ", "\t") or text.isspace():
        return False
    if text == HEADER or text == STACK_HEADER or text in CHAIN_SEPARATORS:
        return False
    return not is_head(text)


def starts_traceback(text: str) -> bool:
    """Can this line open a traceback (one that may follow the log line before it)?"""
    if text == HEADER or text == STACK_HEADER:
        return True
    if text[:1] not in (" ", "\t"):
        return False
    return is_group_header(text) or is_file_frame(text)


def describe(lines: list[str], require_header: bool = True) -> tuple[str | None, str | None] | None:
    """Type and message of the last exception in a traceback's text lines.

    Returns None when ``lines`` do not hold a Python exception traceback
    (with ``require_header``, they must start with a header, a group header or
    a ``File`` frame); ``(None, None)`` when it is one but its exception line
    is missing (cut by a cap or a crash); otherwise ``(type, message)`` with
    message None when the exception had none. A multi-line message keeps its
    continuation lines up to a blank line: indented ones, and unindented
    ones that do not begin a log record (``continues_message``), so
    ``ValidationError: 1 validation error for Item`` / ``price`` is the
    ValidationError's message, not an exception named ``price``.
    """
    if not lines:
        return None
    first = lines[0]
    if require_header and not (first == HEADER or is_group_header(first) or is_file_frame(first)):
        return None
    found: tuple[str, str | None] | None = None
    in_group = False
    continuing = False  # the previous line was the exception line or its continuation
    closed = False  # a log record's head (or the stack header) after the exception: the traceback ended
    for text in lines:
        if text == HEADER or text in CHAIN_SEPARATORS:
            # A new link in the chain: only what follows can be the last exception.
            found, in_group, continuing, closed = None, False, False, False
        elif text.startswith("  + ") and is_group_header(text):
            found, in_group, continuing, closed = None, True, False, False
        elif closed:
            pass
        elif in_group:
            if found is None:
                match = _GROUP_EXCEPTION.fullmatch(text)
                if match is not None:
                    found = (match.group(1), match.group(2))
        elif continuing and found is not None and (is_indented(text) or continues_message(text)):
            # (An unindented line too: the first exception line after the last
            # link's frames is the exception; what follows is its message.)
            exc_type, message = found
            found = (exc_type, text if message is None else message + "\n" + text)
        else:
            exc = exception_line(text)
            continuing = exc is not None
            if exc is not None:
                found = exc
            elif found is not None and (text == STACK_HEADER or is_head(text)):
                closed = True
    if found is None:
        return (None, None)
    return found
