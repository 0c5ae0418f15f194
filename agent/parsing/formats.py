"""The registry of line formats, keyed by the name ``--format`` accepts.

    auto   detect each source's format from its first lines (below); a line
           that is a JSON object is parsed as JSON, before and after
           detection (unless the detected format reads it itself: BentoML,
           Ray Serve), any other line as plain text until a format is detected
    json   every line should be a JSON object; others are parse failures
    plain  every line is text
    ...    every format registered later (torchserve, triton, bentoml, ...),
           forced for every source when named

A later format subclasses ``LineFormat`` (usually ``PlainFormat``, overriding
``head``), and calls ``register_format(TheClass)``; ``validate_settings``,
``make_parser`` and auto-detection read this registry, so nothing else in the
stage changes. (The config's ``--format`` choices should be
``sorted(FORMATS)`` too; today they are a literal list in
``agent/config/options.py``.)

The detection rule (``--format auto``), per source, i.e. per SourceParser:

1. Each of the source's first ``DETECT_LINES`` (50) non-blank lines, JSON or
   not, is offered to the ``detect`` of every registered format that has one,
   in order of ``detect_priority`` (lower first), then name.
2. The first format that claims a line becomes the source's format for good
   (sticky: a rotated or truncated file keeps its parser, and so its format).
   That line and every later one are parsed by it, with its joiner; an event
   pending from before the switch is emitted as it was. A later line that is
   a JSON object and that the format's ``structured`` does not take is still
   parsed as JSON, an event of its own (an app that logs JSON after its
   server's own start-up lines): detection never costs a JSON line its fields.
3. Lines before the claim are parsed as ``auto`` always did: JSON objects by
   the JSON mapping, other lines as plain text with Python tracebacks joined.
   If none of the first 50 non-blank lines is claimed, the source stays so.

Detection only ever changes how a line is read: it never holds a line back
beyond the normal joining, and never drops one. A detector that raises (a bug
in that format) is logged with its traceback, counted (``detector_errors``
in ``modelscribe status``) and not offered that source's lines again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.events import TAG_PARSE_FAILURE, Line, Record
from agent.parsing.base import LineFormat, TextInfo, overrides
from agent.parsing.parse_json import JsonFormat, failure_reason
from agent.parsing.parse_text import PlainFormat, parse_plain
from agent.parsing.settings import ParseSettings
from agent.selflog import get_logger
from agent.stats import count_error

if TYPE_CHECKING:
    from agent.parsing.multiline import Joiner

DETECT_LINES = 50

log = get_logger("parsing")


def _starts_with_brace(text: str) -> bool:
    first = text[:1]
    return first == "{" or (first.isspace() and text.lstrip()[:1] == "{")


class AutoFormat(LineFormat):
    """``--format auto`` (the default): detect the source's format, else JSON/plain per line.

    Before (or without) a detected format: a line that starts with ``{`` but
    is not a JSON object is plain text, tagged ``parse_failure`` with the
    reason in ``error``.
    """

    name = "auto"

    def __init__(self, settings: ParseSettings) -> None:
        super().__init__(settings)
        self._json = JsonFormat(settings)
        self._plain = PlainFormat(settings)
        self._detectors = detectors()
        self._budget = DETECT_LINES if self._detectors else 0
        self._target: LineFormat | None = None
        self._target_joiner: Joiner | None = None
        # True from the switch until the first event that begins after it:
        # continuation lines of an event begun before are read the old way.
        self._switching = False

    @property
    def detected(self) -> str | None:
        """The name of the format detected for this source, if any."""
        return None if self._target is None else self._target.name

    def _detect(self, text: str) -> None:
        self._budget -= 1
        for cls in list(self._detectors):
            try:
                if not cls.detect(text):
                    continue
                target = cls(self.settings)
                target_joiner = target.joiner()
            except Exception as error:  # noqa: BLE001 - a bug in one format must not stop the source
                # Logged with its traceback and counted, once per format and
                # source: the format is not offered this source's lines again.
                self._detectors.remove(cls)
                count_error("detector")
                log.error("format detector failed; the format is skipped for this file", exc_info=True,
                          format=cls.name, error=repr(error))
                continue
            target.strict = False
            self._target, self._target_joiner = target, target_joiner
            self._switching = True
            self._budget = 0
            return

    def structured(self, line: Line) -> Record | None:
        target = self._target
        if target is None and self._budget:
            text = line.text
            if text and not text.isspace():
                self._detect(text)
                target = self._target
        if target is not None:
            record = target.structured(line)
            if record is None:
                text = line.text
                first = text[:1]
                if first == "{" or (first.isspace() and text.lstrip()[:1] == "{"):  # as below
                    return self._json.structured(line)
            return record
        text = line.text
        first = text[:1]
        if first == "{" or (first.isspace() and text.lstrip()[:1] == "{"):  # _starts_with_brace, inlined
            return self._json.structured(line)
        return None

    def head(self, text: str) -> TextInfo:
        target = self._target
        if target is not None:
            self._switching = False  # an event begins after the switch
            return target.head(text)
        if _starts_with_brace(text):
            timestamp, fields = parse_plain(text)
            return TextInfo(timestamp, fields, (TAG_PARSE_FAILURE,), failure_reason(text))
        return self._plain.head(text)  # --log-format first, then parse_plain

    def body(self, text: str) -> str:
        target = self._target
        if target is None or self._switching:
            return text
        return target.body(text)

    def joiner(self) -> Joiner:
        return _AutoJoiner(self, super().joiner())


class _AutoJoiner:
    """Delegates to auto's own joiner until a format is detected, then to that
    format's: the line that switched formats always starts a new event.

    ``lane`` is copied from the inner joiner after each call (auto's own
    joiners have none) rather than read through a property: SourceParser
    reads it for every line, and this is the default format.
    """

    lane = None

    def __init__(self, auto: AutoFormat, own: Joiner) -> None:
        self._auto = auto
        self._inner = own
        self._switched = False

    @property
    def in_traceback(self) -> bool:
        return self._inner.in_traceback

    def _switch(self) -> bool:
        """Move to the detected format's joiner, once; True if this call did."""
        if self._switched or self._auto._target_joiner is None:
            return False
        self._inner = self._auto._target_joiner
        self._switched = True
        return True

    def _copy(self) -> None:
        self.lane = getattr(self._inner, "lane", None)

    def start(self, text: str) -> None:
        self._switch()
        self._inner.start(text)
        if self._switched:
            self._copy()

    def continues(self, text: str) -> bool:
        if not self._switched:
            if self._auto._target_joiner is None:
                return self._inner.continues(text)
            self._switch()
            self._inner.start(text)
            self._copy()
            return False
        result = self._inner.continues(text)
        self._copy()
        return result

    def reset(self) -> None:
        self._switch()
        self._inner.reset()
        if self._switched:
            self._copy()


FORMATS: dict[str, type[LineFormat]] = {}


def detectors() -> list[type[LineFormat]]:
    """Registered formats with a ``detect``, in the order auto offers them lines.

    Read afresh for each source (a few microseconds, once per file), so a
    format registered or removed at any time is seen by the next source.
    """
    found = [cls for cls in FORMATS.values() if overrides(cls, "detect")]
    found.sort(key=lambda cls: (cls.detect_priority, cls.name))
    return found


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
