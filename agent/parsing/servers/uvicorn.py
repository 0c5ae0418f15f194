"""uvicorn model-server logs (format ``uvicorn``; KServe's in ``kserve``).

uvicorn (``uvicorn.config.LOGGING_CONFIG``, colourless when not on a tty)::

    INFO:     127.0.0.1:52345 - "POST /v1/models/iris%3Apredict HTTP/1.1" 200 OK
    INFO:     Started server process [12]
    ERROR:    Exception in ASGI application          (a traceback follows; joined)
    2024-05-01 10:00:00,123 INFO:     127.0.0.1:... (a %(asctime)s prefix, any ISO form)

The message is the text after the level prefix, without colour codes
(uvicorn colours when writing to a terminal). Access lines give ``client.*``, ``http.*``, ``url.*``,
``event.outcome``, ``log.logger`` = ``uvicorn.access`` and the serving
route's ``model.name`` / ``model.operation`` (see ``access``).

Guarantee: ``head`` never raises; a line matching none of these shapes is read
as plain text (``parse_plain``) and still carries ``model.server``.
"""

from __future__ import annotations

from typing import ClassVar

from agent.parsing import timestamps
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.parse_text import PlainFormat
from agent.parsing.servers.access import fallback, is_uvicorn_line, parse_uvicorn, strip_ansi


def uvicorn_info(text: str, server: str) -> TextInfo | None:
    """TextInfo of a stock uvicorn line (optionally after an ISO timestamp), else None.

    The message is what follows the level prefix (colour codes removed).
    """
    clean = strip_ansi(text)
    timestamp = None
    pos = 0
    first = clean[:1]
    if first.isdigit() or first == "[":
        timestamp, pos = timestamps.match_prefix(clean)
        while clean[pos:pos + 1] == " ":
            pos += 1
    parsed = parse_uvicorn(clean, pos, server)
    if parsed is None:
        return None
    fields, start = parsed
    return TextInfo(timestamp, fields, (), None, clean[start:])


@register_format
class UvicornFormat(PlainFormat):
    """``--format uvicorn``: uvicorn's access and server lines; tracebacks joined."""

    name = "uvicorn"
    detect_priority: ClassVar[int] = 60

    @classmethod
    def detect(cls, text: str) -> bool:
        return is_uvicorn_line(text)

    def head(self, text: str) -> TextInfo:
        info = uvicorn_info(text, "uvicorn")
        return info if info is not None else fallback(text, "uvicorn", getattr(self, "strict", True))
