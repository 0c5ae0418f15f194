"""A Python ``logging`` format string, compiled into a parser of the lines it writes.

``--log-format '%(asctime)s %(levelname)s %(name)s: %(message)s'`` (setting
``log_format``) tells the agent how a program's text lines are laid out;
``compile_layout`` turns that string, once, into one anchored regex and a
plan of where each attribute goes:

    asctime             @timestamp (ISO 8601 as logging writes it, ``,mmm``;
                        no zone: host local time); with ``%(msecs)d`` too
                        when asctime itself has no fraction
    created             @timestamp (epoch seconds, ``%(created)f``)
    msecs               the milliseconds of a fraction-less asctime
    levelname           log.level, lower-cased (``levelno`` when no levelname)
    name                log.logger
    process / processName           process.pid / process.name
    thread / threadName             process.thread.id / process.thread.name
    filename / pathname             log.origin.file.name (filename wins)
    lineno / funcName               log.origin.file.line / log.origin.function
    module, relativeCreated, taskName   matched, not stored (no schema field)
    message             the record's message: the prefix (and suffix) is stripped

Widths and flags (``%(name)-12s``, ``%(levelname)8s``, ``%(lineno)04d``,
``%(created).3f``) are allowed: the padding is matched and dropped.
``{``-style strings (``{asctime} {levelname:<8} {message}``) are read too
when they hold no ``%(``.

Only the message may hold any text: names, files and paths are read without
blanks (a thread's default "Thread-1 (target)" excepted), and a format with
the message twice is refused, so reading a line, or refusing one that almost
fits, costs about linear time even on a megabyte line.

Guarantees: ``compile_layout`` raises ``ValueError`` with a reason a person
can act on for an unusable string (an unknown attribute, a stray ``%`` or
brace, no ``message`` or two), and the same string is compiled only once per
process. ``LoggingLayout.read`` is total: a line that does not fit the
layout gives None (the caller reads it as plain text), never an exception
(a number no attribute could hold, such as a 5000-digit line number, does
not fit),
and every field it writes is defined in the schema.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from agent.parsing import timestamps
from agent.parsing.base import TextInfo

# The value of each attribute as logging prints it. Only the message may hold
# any text: two fields that could both take blanks would make a line that
# almost fits cost cubic time to refuse. So names and paths have no blanks,
# except the "(target)" Python adds to a thread's default name.
_ISO = (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
        r"(?: ?(?:[Zz]|[+-]\d\d(?::?\d\d)?))?")
_VALUES = {
    "asctime": _ISO,
    "created": r"-?\d+(?:\.\d+)?",
    "msecs": r"\d+(?:\.\d+)?",
    "relativeCreated": r"-?\d+(?:\.\d+)?",
    "levelname": r"[A-Za-z][\w-]*",
    "levelno": r"\d+",
    "name": r"\S+?",
    "module": r"\S+?",
    "filename": r"\S+?",
    "pathname": r"\S+?",
    "funcName": r"\S+?",
    "lineno": r"\d+",
    "process": r"\d+",
    "processName": r"\S+?",
    "thread": r"\d+",
    "threadName": r"\S+?(?: \([^()]*\))?",
    "taskName": r"\S+?",
    "message": r".*?",
}
KNOWN = frozenset(_VALUES)
# LogRecord attributes the logging documentation says not to format yourself.
_UNPRINTABLE = frozenset({"args", "exc_info", "exc_text", "msg", "stack_info"})
_LEVEL_NUMBERS = {"10": "debug", "20": "info", "30": "warning", "40": "error", "50": "critical"}

# %(key)[flags][width][.precision][length]type
_PERCENT = re.compile(r"%(?:\((?P<key>[^()%]*)\)(?P<flags>[#0 +-]*)(?P<width>\d*)(?:\.\d+)?[hlL]?"
                      r"(?P<type>[diouxXeEfFgGcrsa])|(?P<percent>%))")
# {key[:spec]} with str.format's alignment/width spec.
_BRACE = re.compile(r"\{\{|\}\}|\{(?P<key>[^{}:!]*)(?:![rsa])?(?::(?P<spec>[^{}]*))?\}")


class LoggingLayout:
    """A compiled format string; ``read(text)`` parses one line of it."""

    __slots__ = ("format_string", "_match", "_keys")

    def __init__(self, format_string: str, pattern: str, keys: tuple[str, ...]) -> None:
        self.format_string = format_string
        self._match = re.compile(pattern, re.DOTALL).fullmatch
        self._keys = keys

    def read(self, text: str) -> TextInfo | None:
        """What the line says, its prefix moved into fields; None if it does not fit."""
        match = self._match(text)
        if match is None:
            return None
        values = match.groupdict()
        fields: dict[str, Any] = {}
        log: dict[str, Any] = {}
        origin: dict[str, Any] = {}
        process: dict[str, Any] = {}
        thread: dict[str, Any] = {}
        timestamp = None
        keys = self._keys
        if "asctime" in values:
            stamp = values["asctime"]
            timestamp = timestamps.parse_string(stamp)
            msecs = values.get("msecs")
            # asctime without a fraction, then ",%(msecs)03d": add them.
            if msecs is not None and len(stamp) == 19:
                timestamp = _with_millis(stamp, msecs)
        if timestamp is None and "created" in values:
            timestamp = timestamps.parse_string(values["created"])
        if "levelname" in values:
            log["level"] = values["levelname"].lower()
        elif "levelno" in values:
            level = values["levelno"]
            log["level"] = _LEVEL_NUMBERS.get(level, level)
        if "name" in values:
            log["logger"] = values["name"]
        if "filename" in values or "pathname" in values:
            origin["file"] = {"name": values.get("filename") or values["pathname"]}
        if "lineno" in values:
            line = _integer(values["lineno"])
            if line is None:
                return None
            origin.setdefault("file", {})["line"] = line
        if "funcName" in values:
            origin["function"] = values["funcName"]
        if origin:
            log["origin"] = origin
        if log:
            fields["log"] = log
        if "process" in keys:
            pid = _integer(values["process"])
            if pid is None:
                return None
            process["pid"] = pid
        if "processName" in keys:
            process["name"] = values["processName"]
        if "thread" in keys:
            thread_id = _integer(values["thread"])
            if thread_id is None:
                return None
            thread["id"] = thread_id
        if "threadName" in keys:
            thread["name"] = values["threadName"]
        if thread:
            process["thread"] = thread
        if process:
            fields["process"] = process
        return TextInfo(timestamp, fields, (), None, values["message"])


# More significant digits than a thread id (an unsigned 64-bit number) can
# have: no line logging wrote. int() would also refuse a run of over 4300.
_MAX_DIGITS = 20


def _integer(digits: str) -> int | None:
    """The number ``%(lineno)d`` & co. wrote (zero padding allowed), or None
    when no attribute could hold it: the line then does not fit the layout and
    is read as plain text, its text kept whole in the message."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else None


def _with_millis(stamp: str, msecs: str) -> float | None:
    """The epoch of ``asctime`` + ``,msecs``, read as one fraction (no float sum)."""
    whole, _, fraction = msecs.partition(".")
    if len(whole) > 3:
        return None
    return timestamps.parse_string(f"{stamp}.{whole.zfill(3)}{fraction}")


def _value(key: str, align: str, width: str) -> str:
    """The regex of one attribute: its value, with the blanks a width pads it with.

    ``align``: "<" left-justified (blanks after), ">" right (before), "0"
    zero-padded (none), "" either side (a brace spec without alignment).
    """
    value = f"(?P<{key}>{_VALUES[key]})"
    if not width.strip("0") or align == "0":
        return value
    if align == "<":
        return value + " *"
    if align == ">":
        return " *" + value
    return " *" + value + " *"


def _again(key: str) -> str:
    """A repeated attribute: the same text again (the message only once: any
    text twice would make a refused line cost quadratic time)."""
    if key == "message":
        raise ValueError("it has %(message)s twice")
    return f"(?P={key})"


def _check_key(key: str, format_string: str) -> None:
    if key in _UNPRINTABLE:
        raise ValueError(f"attribute {key!r} cannot be read back from a log line")
    if key not in KNOWN:
        known = ", ".join(sorted(KNOWN))
        raise ValueError(f"unknown attribute {key!r} (LogRecord attributes: {known})")


def _compile_percent(format_string: str) -> tuple[str, tuple[str, ...]]:
    parts: list[str] = []
    keys: list[str] = []
    pos = 0
    for match in _PERCENT.finditer(format_string):
        literal = format_string[pos:match.start()]
        if "%" in literal:
            bad = literal.index("%") + pos
            raise ValueError(f"'%' at position {bad} does not start a %(attribute)s conversion "
                             "(unbalanced parenthesis or no type letter?); write %% for a literal '%'")
        parts.append(re.escape(literal))
        pos = match.end()
        if match.group("percent"):
            parts.append("%")
            continue
        key = match.group("key")
        _check_key(key, format_string)
        if key in keys:
            parts.append(_again(key))
            continue
        keys.append(key)
        flags = match.group("flags")
        align = "<" if "-" in flags else ("0" if "0" in flags else ">")
        parts.append(_value(key, align, match.group("width")))
    rest = format_string[pos:]
    if "%" in rest:
        raise ValueError(f"'%' at position {pos + rest.index('%')} does not start a %(attribute)s conversion "
                         "(unbalanced parenthesis or no type letter?); write %% for a literal '%'")
    parts.append(re.escape(rest))
    return "".join(parts), tuple(keys)


def _compile_brace(format_string: str) -> tuple[str, tuple[str, ...]]:
    parts: list[str] = []
    keys: list[str] = []
    pos = 0
    for match in _BRACE.finditer(format_string):
        literal = format_string[pos:match.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(f"unbalanced brace at position {pos + max(literal.find('{'), literal.find('}'))}")
        parts.append(re.escape(literal))
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(re.escape(token[0]))
            continue
        key = match.group("key")
        _check_key(key, format_string)
        if key in keys:
            parts.append(_again(key))
            continue
        keys.append(key)
        spec = match.group("spec") or ""
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        align = "<" if "<" in spec else (">" if ">" in spec or "=" in spec else "")
        parts.append(_value(key, align, width))
    rest = format_string[pos:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"unbalanced brace at position {pos + max(rest.find('{'), rest.find('}'))}")
    parts.append(re.escape(rest))
    return "".join(parts), tuple(keys)


@lru_cache(maxsize=64)
def compile_layout(format_string: str) -> LoggingLayout:
    """The parser of ``format_string``; ValueError with the reason if unusable."""
    if not isinstance(format_string, str) or not format_string.strip():
        raise ValueError("it is empty")
    if "%(" in format_string or "{" not in format_string:
        pattern, keys = _compile_percent(format_string)
    else:
        pattern, keys = _compile_brace(format_string)
    if "message" not in keys:
        raise ValueError("it has no %(message)s")
    last = "(?P<message>" + _VALUES["message"] + ")"
    if pattern.endswith(last):  # the message ends the line: take the rest at once
        pattern = pattern[:-len(last)] + "(?P<message>.*)"
    try:
        return LoggingLayout(format_string, pattern, keys)
    except re.error as error:  # not expected: every part is escaped or ours
        raise ValueError(f"it cannot be compiled: {error}") from error
