"""Plain text lines: read a leading timestamp, level and logger, keep the text.

Recognised, each with precompiled anchored regexes so a line that matches
nothing costs a couple of failed first-character checks:

    2024-05-01 12:00:00,123 ...                Python %(asctime)s (naive: host local time)
    2024-05-01T12:00:00.123+02:00 ...          ISO 8601 / RFC 3339 with T and a zone
    [2024-05-01 12:00:00 +0000] [7] [INFO] ... the same inside brackets (gunicorn)
    ERROR:app.worker:request failed            logging.basicConfig(): level and logger
    INFO:     127.0.0.1:5000 - "POST / ..."    ``LEVEL:`` then spaces (uvicorn): level

After a timestamp, the common logging layouts give the level and the logger
(``LAYOUTS`` below, tried in one regex):

    %(asctime)s - %(name)s - %(levelname)s - %(message)s    the logging cookbook
    %(asctime)s - %(levelname)s - %(name)s - %(message)s
    [%(asctime)s] %(levelname)s [%(name)s] %(message)s      (also without the brackets
    %(asctime)s [%(levelname)s] %(name)s: %(message)s        around the time)
    %(asctime)s %(levelname)s %(name)s %(message)s
    %(asctime)s %(name)-12s %(levelname)-8s %(message)s     (the cookbook's padded one)
    %(asctime)s [%(name)s] %(levelname)s: %(message)s
    TIME | LEVEL    | module:function:line - message          loguru's default

A logger is only taken where the layout says so unmistakably: inside
brackets, between `` - `` separators, or, when it stands bare next to the
level, if it is ``root``, ``__main__`` or a dotted module path (``app.worker``,
not a file name such as ``model.pt``), or padded by a width
(``%(name)-12s``). So "2024-05-01 12:00:00 INFO started worker" has no
logger: a word followed by text is not one. Without a layout, the level is
the first level word among the 80 characters after the timestamp, written
`` - LEVEL - ``, ``[LEVEL]``, `` LEVEL `` or `` LEVEL:``. Only the
upper-case level names Python's logging (and most servers) print count, so
an ordinary word in the message is not taken for a level.

The message: when a layout above, or basicConfig's ``LEVEL:name:``, gave
both the level and the logger, the prefix is unmistakable and ``message``
is the text after it (the prefix's content is in ``@timestamp``,
``log.level`` and ``log.logger``; ``--keep-original`` keeps the whole line
in ``event.original``). When only a timestamp and perhaps a level were
found, the message stays the whole line: a guess must never cost text.
Colour codes (ANSI SGR sequences, ``ESC[...m``: loguru, colorlog and
coloredlogs on a terminal, ``docker run -t``) are removed from a head line
before it is read, and its message is the clean text (``--keep-original``
keeps the line as written).
With ``log_format`` set (``--log-format``), the layout is declared, so a
line that fits it is read by the parser compiled from it (see
``python_logging``); a line that does not fit is read as above.

Guarantee: total (never raises), and cheap enough for the plain-text hot path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from agent.parsing import timestamps
from agent.parsing.base import LineFormat, TextInfo
from agent.parsing.python_logging import LoggingLayout, compile_layout

if TYPE_CHECKING:
    from agent.parsing.settings import ParseSettings

_LEVELS = r"CRITICAL|FATAL|ERROR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE"
# basicConfig's "%(levelname)s:%(name)s:%(message)s"; logger names have no
# blanks or colons. "LEVEL:" followed by blanks is uvicorn's prefix.
_BASIC = re.compile(r"(" + _LEVELS + r"):(?:([^\s:]+):|\s)")
# A level word after the timestamp: preceded by a blank or '[', followed by a
# blank, ']', ':' or the end of the line. (Starting with the character class
# instead of a look-behind makes the search 2-3x faster.)
_AFTER_TIMESTAMP = re.compile(r"[\s\[](" + _LEVELS + r")(?=[\s\]:]|$)")
_SEARCH_WINDOW = 80
# Colour codes (SGR): uvicorn, loguru, colorlog and coloredlogs when writing to a terminal.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# A logger standing bare next to the level: root, __main__ or a dotted module
# path whose last part is not a file extension or a domain ("model.pt",
# "api.example.com" are message words).
_NOT_A_LOGGER_END = ("py", "pt", "pth", "onnx", "json", "yaml", "yml", "txt", "log", "csv", "bin", "pkl", "gz",
                     "zip", "tar", "h5", "cfg", "ini", "toml", "so", "com", "org", "net", "io", "ai", "dev")
_BARE_LOGGER = (r"(?:root|__main__|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\.(?!(?:" + "|".join(_NOT_A_LOGGER_END)
                + r")\b)[A-Za-z_]\w*)")
_BRACKETED_LOGGER = r"\[(?P<{}>[A-Za-z_][^\]\s]*)\]"
# Right after the timestamp (match at its end). Each alternative has its own
# groups: l* = level, n* = logger, and loguru's function and line.
_LAYOUT = re.compile(
    # ts - name - LEVEL - msg
    r" +- +(?P<n1>\S+) +- +(?P<l1>" + _LEVELS + r") +-(?: |$)"
    # ts - LEVEL - name - msg
    r"| +- +(?P<l2>" + _LEVELS + r") +- +(?P<n2>" + _BARE_LOGGER + r") +-(?: |$)"
    # loguru: ts | LEVEL    | name:function:line - msg
    r"| +\| +(?P<l3>" + _LEVELS + r") *\| +(?P<n3>[\w.]+):(?P<f3>[\w<>.]+):(?P<o3>\d+) +- "
    # ts LEVEL [name] msg, ts [LEVEL] name: msg, ts LEVEL name msg
    r"| +\[?(?P<l4>" + _LEVELS + r")\]? +(?:" + _BRACKETED_LOGGER.format("n4") + r"|(?P<m4>" + _BARE_LOGGER
    + r")):?(?: +|$)"
    # ts [name] LEVEL: msg, ts name LEVEL msg, ts name    LEVEL msg (padded)
    r"| +(?:" + _BRACKETED_LOGGER.format("n5") + r"|(?P<m5>" + _BARE_LOGGER + r")|(?P<p5>[A-Za-z_][\w.-]*)(?=  ))"
    r" +(?:- +)?\[?(?P<l5>" + _LEVELS + r")\]?:?(?: +|$)",
    re.ASCII,
)
_LAYOUT_GROUPS = (("l1", "n1"), ("l2", "n2"), ("l3", "n3"), ("l4", "n4"), ("l4", "m4"), ("l5", "n5"),
                  ("l5", "m5"), ("l5", "p5"))


def _ends_word(text: str, index: int) -> bool:
    after = text[index:index + 1]
    return after == "" or after.isspace() or after in "]:"


def strip_ansi(text: str) -> str:
    """``text`` without colour codes."""
    return _ANSI.sub("", text) if "\x1b[" in text else text


def parse_plain(text: str) -> tuple[float | None, dict[str, Any]]:
    """``(timestamp, fields)`` read from the start of a plain text line."""
    timestamp, fields, _ = read_plain(text)
    return timestamp, fields


def read_plain(text: str) -> tuple[float | None, dict[str, Any], int]:
    """``(timestamp, fields, start of the message)``: the start is 0 unless a
    layout gave both level and logger (see the module doc)."""
    first = text[:1]
    if first.isdigit() or first == "[":
        timestamp, end = timestamps.match_prefix(text)
        if end:
            layout = _LAYOUT.match(text, end)
            if layout is not None:
                return timestamp, _layout_fields(layout), layout.end()
            match = _AFTER_TIMESTAMP.search(text, end, end + _SEARCH_WINDOW)
            # "$" also matches at the window's edge: reject a word cut there.
            if match is not None and _ends_word(text, match.end()):
                return timestamp, {"log": {"level": match.group(1).lower()}}, 0
            return timestamp, {}, 0
    if "A" <= first <= "W":
        match = _BASIC.match(text)
        if match is not None:
            logger = match.group(2)
            log = {"level": match.group(1).lower()}
            if logger is not None:
                log["logger"] = logger
                return None, {"log": log}, match.end()
            return None, {"log": log}, 0
    return None, {}, 0


# _LAYOUT_GROUPS as positions in match.groups() (a tuple: groupdict() builds
# a dict of every group, 0.6 µs more per line).
_INDEX = {name: number - 1 for name, number in _LAYOUT.groupindex.items()}
_LAYOUT_POSITIONS = tuple((_INDEX[level], _INDEX[logger], logger == "n3") for level, logger in _LAYOUT_GROUPS)
_FUNCTION3, _LINE3 = _INDEX["f3"], _INDEX["o3"]


def _layout_fields(match: re.Match[str]) -> dict[str, Any]:
    groups = match.groups()
    for level_at, logger_at, loguru in _LAYOUT_POSITIONS:
        logger = groups[logger_at]
        if logger is not None:
            log: dict[str, Any] = {"level": groups[level_at].lower(), "logger": logger}
            if loguru:  # name:function:line
                log["origin"] = {"function": groups[_FUNCTION3], "file": {"line": int(groups[_LINE3])}}
            return {"log": log}
    return {}  # not reached: every alternative has a logger


class PlainFormat(LineFormat):
    """``--format plain``: every line is text; tracebacks are joined.

    With ``log_format`` set, a line that fits it is read by its compiled
    parser first (``layout``; None without the setting).
    """

    name = "plain"

    def __init__(self, settings: ParseSettings) -> None:
        super().__init__(settings)
        log_format = getattr(settings, "log_format", None)
        self.layout: LoggingLayout | None = None if log_format is None else compile_layout(log_format)

    def head(self, text: str) -> TextInfo:
        coloured = "\x1b[" in text
        if coloured:  # loguru, colorlog, a TTY: the layouts are read, and the message kept, without colours
            text = strip_ansi(text)
        layout = self.layout
        if layout is not None:
            info = layout.read(text)
            if info is not None:
                return info
        timestamp, fields, start = read_plain(text)
        return TextInfo(timestamp, fields, message=text[start:] if start or coloured else None)
