"""The registry of line formats, keyed by the name ``--format`` accepts.

    auto   a line that is a JSON object is parsed as JSON, any other as plain
           text (decided per line, not per file)
    json   every line should be a JSON object; others are parse failures
    plain  every line is text

A later format (torchserve, triton, vllm, ...) subclasses ``LineFormat``
(usually ``PlainFormat``, overriding ``head``), and calls
``register_format(TheClass)``; ``validate_settings`` and ``make_parser``
read this registry, so nothing else in the stage changes. (The config's
``--format`` choices should be ``sorted(FORMATS)`` too; today they are a
literal list in ``agent/config/options.py``.)
"""

from __future__ import annotations

from agent.events import TAG_PARSE_FAILURE, Line, Record
from agent.parsing.base import LineFormat, TextInfo
from agent.parsing.parse_json import JsonFormat, failure_reason
from agent.parsing.parse_text import PlainFormat, parse_plain
from agent.parsing.settings import ParseSettings


def _starts_with_brace(text: str) -> bool:
    first = text[:1]
    return first == "{" or (first.isspace() and text.lstrip()[:1] == "{")


class AutoFormat(LineFormat):
    """``--format auto`` (the default): JSON objects as JSON, the rest as text.

    A line that starts with ``{`` but is not a JSON object is plain text,
    tagged ``parse_failure`` with the reason in ``error``.
    """

    name = "auto"

    def __init__(self, settings: ParseSettings) -> None:
        super().__init__(settings)
        self._json = JsonFormat(settings)

    def structured(self, line: Line) -> Record | None:
        text = line.text
        first = text[:1]
        if first == "{" or (first.isspace() and text.lstrip()[:1] == "{"):  # _starts_with_brace, inlined
            return self._json.structured(line)
        return None

    def head(self, text: str) -> TextInfo:
        timestamp, fields = parse_plain(text)
        if _starts_with_brace(text):
            return TextInfo(timestamp, fields, (TAG_PARSE_FAILURE,), failure_reason(text))
        return TextInfo(timestamp, fields)


FORMATS: dict[str, type[LineFormat]] = {}


def register_format(cls: type[LineFormat], *, replace: bool = False) -> type[LineFormat]:
    """Add a format under ``cls.name``; usable as a class decorator.

    Registering a different class under a taken name is refused unless
    ``replace`` is set, so two formats cannot silently shadow each other.
    """
    name = cls.name
    if not name or not isinstance(name, str):
        raise ValueError(f"format class {cls.__name__} has no name")
    if name in FORMATS and FORMATS[name] is not cls and not replace:
        raise ValueError(f"format {name!r} is already registered by {FORMATS[name].__name__}")
    FORMATS[name] = cls
    return cls


for _cls in (AutoFormat, JsonFormat, PlainFormat):
    register_format(_cls)
