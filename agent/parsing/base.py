"""The contract between a line format and the per-source parser.

A format (json, plain, auto, torchserve, triton, ...) answers questions about
a line and nothing else:

- ``structured(line)``: is this line a complete event on its own (a JSON
  object)? Then it returns the finished ``Record``; it is emitted at once and
  never joined with other lines.
- ``head(text)``: for a text line that begins an event, what can be read from
  it (timestamp, fields, a parse-failure reason, and optionally the message
  text when the line carries a prefix that is not part of the message)?
- ``body(text)``: for a later line of the same event, the text it adds to the
  message (default: the line as it is). A format whose every line repeats a
  prefix (TorchServe's log4j layout) strips it here, so a joined traceback
  reads as Python printed it.
- ``detect(text)`` (class method): is this line unmistakably this format's?
  ``--format auto`` offers a source's first lines to every registered format
  in ``detect_priority`` order (lower first: specific shapes before generic
  ones); the first format that claims a line becomes that source's format.
  The default claims nothing. A detector must be total and cheap, and must
  not claim a line another server could plausibly write.

Joining lines into events, caps and timeouts are not the format's business:
``driver.SourceParser`` does that the same way for every format. A format
that needs its own idea of where an event starts overrides ``joiner()``.

``strict``: True when the format was forced (``--format NAME``): a head line
it cannot read is tagged ``parse_failure`` with the reason. Under
auto-detection it is False: such a line is plain text without the tag, as
``auto`` would have made it (a detected file may still mix in other output).

All methods must be total: a format never raises on any text.
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
    ``fields`` must be a new dict each time (the parser adds ``error`` to it;
    the raw parser adds nothing, and its formats share one per name).
    ``message``: the line's contribution to the record's message when it is
    not the whole line (a prefix was read into fields); None: the whole line.
    """

    timestamp: float | None
    fields: dict[str, Any]
    tags: tuple[str, ...] = ()
    error: str | None = None
    message: str | None = None


class LineFormat:
    """Base of every format in the registry; one instance per source."""

    name: ClassVar[str] = ""
    # Lower is offered lines first by --format auto; see ``detect``.
    detect_priority: ClassVar[int] = 100

    def __init__(self, settings: ParseSettings) -> None:
        self.settings = settings
        self.keep_original = settings.keep_original
        self.strict = True

    @classmethod
    def detect(cls, text: str) -> bool:
        """True if ``text`` is unmistakably a line of this format (see module doc)."""
        return False

    def structured(self, line: Line) -> Record | None:
        """The finished record if ``line`` is a self-contained event, else None."""
        return None

    def head(self, text: str) -> TextInfo:
        """What a text line that begins an event says (``fields``: a new dict)."""
        return TextInfo(None, {})

    def body(self, text: str) -> str:
        """The text a continuation line adds to its event's message."""
        return text

    def joiner(self) -> Joiner:
        """How this format's text lines are grouped into events."""
        if self.settings.multiline_start is not None:
            return PatternJoiner(re.compile(self.settings.multiline_start))
        return TracebackJoiner()


def overrides(cls: type, method: str) -> bool:
    """Does ``cls`` define its own ``method`` rather than LineFormat's?"""
    mine = getattr(cls, method, None)
    base = getattr(LineFormat, method)
    return getattr(mine, "__func__", mine) is not getattr(base, "__func__", base)
