"""The contract between a line format and the per-source parser.

A format (json, plain, auto, and later torchserve, triton, ...) answers two
questions about a line and nothing else:

- ``structured(line)``: is this line a complete event on its own (a JSON
  object)? Then it returns the finished ``Record``; it is emitted at once and
  never joined with other lines.
- ``head(text)``: for a text line that begins an event, what can be read from
  it (timestamp, level, logger, a parse-failure reason)?

Joining lines into events, caps and timeouts are not the format's business:
``multiline.SourceParser`` does that the same way for every format. A format
that needs its own idea of where an event starts overrides ``joiner()``.

Both methods must be total: a format never raises on any text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from agent.parsing.multiline import Joiner, PatternJoiner, TracebackJoiner

if TYPE_CHECKING:
    from agent.events import Line, Record
    from agent.parsing.settings import ParseSettings


class TextInfo(NamedTuple):
    """What the first line of a text event says about the event.

    Immutable like the frozen dataclasses between stages, but a NamedTuple:
    one is built per plain-text record, and it never leaves this package.
    ``fields`` must be a new dict each time (the parser adds ``error`` to it).
    """

    timestamp: float | None
    fields: dict[str, Any]
    tags: tuple[str, ...] = ()
    error: str | None = None


class LineFormat:
    """Base of every format in the registry; one instance per source."""

    name: ClassVar[str] = ""

    def __init__(self, settings: ParseSettings) -> None:
        self.settings = settings
        self.keep_original = settings.keep_original

    def structured(self, line: Line) -> Record | None:
        """The finished record if ``line`` is a self-contained event, else None."""
        return None

    def head(self, text: str) -> TextInfo:
        """What a text line that begins an event says (``fields``: a new dict)."""
        return TextInfo(None, {})

    def joiner(self) -> Joiner:
        """How this format's text lines are grouped into events."""
        if self.settings.multiline_start is not None:
            return PatternJoiner(re.compile(self.settings.multiline_start))
        return TracebackJoiner()
