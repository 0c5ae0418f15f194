"""Plain text lines: read a leading timestamp, level and logger, keep the text.

The message is always the full text of the line; nothing is rewritten (richer
per-server parsing is a later format's job). Recognised, each with one
precompiled anchored regex so a line that matches nothing costs a couple of
failed first-character checks:

    2024-05-01 12:00:00,123 ...                Python %(asctime)s (naive: host local time)
    2024-05-01T12:00:00.123+02:00 ...          ISO 8601 / RFC 3339 with T and a zone
    [2024-05-01 12:00:00 +0000] [7] [INFO] ... the same inside brackets (gunicorn)
    ERROR:app.worker:request failed            logging.basicConfig(): level and logger
    INFO:     127.0.0.1:5000 - "GET / ..."     ``LEVEL:`` then spaces (uvicorn): level

and after a timestamp, the first level word among the next 80 characters,
written `` - LEVEL - ``, ``[LEVEL]``, `` LEVEL `` or `` LEVEL:``. Only the
upper-case level names Python's logging (and most servers) print count, so an
ordinary word in the message is not taken for a level.

Guarantee: total (never raises), and cheap enough for the plain-text hot path.
"""

from __future__ import annotations

import re
from typing import Any

from agent.parsing import timestamps
from agent.parsing.base import LineFormat, TextInfo

_LEVELS = r"CRITICAL|FATAL|ERROR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE"
# basicConfig's "%(levelname)s:%(name)s:%(message)s"; logger names have no
# blanks or colons. "LEVEL:" followed by blanks is uvicorn's prefix.
_BASIC = re.compile(r"(" + _LEVELS + r"):(?:([^\s:]+):|\s)")
# A level word after the timestamp: preceded by a blank or '[', followed by a
# blank, ']', ':' or the end of the line. (Starting with the character class
# instead of a look-behind makes the search 2-3x faster.)
_AFTER_TIMESTAMP = re.compile(r"[\s\[](" + _LEVELS + r")(?=[\s\]:]|$)")
_SEARCH_WINDOW = 80


def _ends_word(text: str, index: int) -> bool:
    after = text[index:index + 1]
    return after == "" or after.isspace() or after in "]:"


def parse_plain(text: str) -> tuple[float | None, dict[str, Any]]:
    """``(timestamp, fields)`` read from the start of a plain text line."""
    first = text[:1]
    if first.isdigit() or first == "[":
        timestamp, end = timestamps.match_prefix(text)
        if end:
            match = _AFTER_TIMESTAMP.search(text, end, end + _SEARCH_WINDOW)
            # "$" also matches at the window's edge: reject a word cut there.
            if match is not None and _ends_word(text, match.end()):
                return timestamp, {"log": {"level": match.group(1).lower()}}
            return timestamp, {}
    if "A" <= first <= "W":
        match = _BASIC.match(text)
        if match is not None:
            logger = match.group(2)
            log = {"level": match.group(1).lower()}
            if logger is not None:
                log["logger"] = logger
            return None, {"log": log}
    return None, {}


class PlainFormat(LineFormat):
    """``--format plain``: every line is text; tracebacks are joined."""

    name = "plain"

    def head(self, text: str) -> TextInfo:
        timestamp, fields = parse_plain(text)
        return TextInfo(timestamp, fields)
