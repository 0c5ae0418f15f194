"""Raw records for ``--parse-at elasticsearch``: the agent groups, the cluster parses.

    parser = make_raw_parser(settings, source)   # same interface as make_parser

The parser returned groups a source's lines into events EXACTLY as
``make_parser(settings, source)`` does: the same lines in each record, the
same ``offset`` (so the same document ``_id``), the same ``end`` (commit
point), the same line tags and ``multiline_split`` tags, the same caps,
timeout and per-thread joining (TorchServe), because it is the same driver
(``driver.SourceParser``) fed by the same joiner and the same "is this line
an event of its own" decision. What differs is the record:

- ``message``: the event's lines as read, joined with ``"\\n"`` (no prefix
  stripped, no trailing blank line removed);
- ``timestamp`` None (the document's ``@timestamp`` is the read time until
  the cluster's pipeline parses the line's own), no ``error``, no
  ``original``;
- ``fields``: ``{"modelscribe": {"raw": {"format": NAME}}}``, NAME the
  concrete format the agent would have parsed the event with (under
  ``auto``: "json" for a JSON-object line the detected format does not read
  itself, before and after detection; otherwise the detected format once
  there is one, "plain" before), plus ``"log_format"`` when
  the source's settings have a ``--log-format``. The cluster's entry
  pipeline routes on it.

The exceptions: a line that may carry a payload (a vLLM prompt or output
line; a JSON object with a key ending in ``content``, or one a --map-field
rule sends to a payload field) is parsed here and its record is the
format's own, without ``modelscribe.raw``: payload stripping needs the
parsed fields, and the entry pipeline leaves such documents alone. So is a
BentoML monitor record (its columns' roles are in a schema file on the
host, which the cluster cannot read). Same
grouping, same ``_id``. ``parse_failure`` is never set on a raw record: that
verdict is the cluster's.

Enrichment is the same in both modes (``agent.enrich``): pattern redaction,
static fields, model identity from the path, truncation still run on the
host, before the spool, so a secret never leaves the host. (Field rules,
--redact-field and --hash-field, need parsed fields: the config refuses
them with raw shipping; --sample never drops a raw record, it cannot tell
a successful request from it.)

Why it is cheap: no field is read from any line. The only per-line work
beyond the driver's is the question the grouping needs answered: is this
line a JSON object (one ``orjson.loads``, for lines that start with ``{``),
or for a format whose own ``structured`` is something else (vLLM's payload
lines), that format's answer. And a run of lines that are each an event of
their own (JSON objects, while no event is open) is taken in one loop
(``take_run``, through ``SourceParser.feed_batch``), not line by line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import orjson

from agent.events import TAG_MULTILINE_SPLIT, Line, LineRun, Record, Source, new
from agent.parsing import json_decode
from agent.parsing.base import LineFormat, TextInfo, overrides
from agent.parsing.driver import SourceParser, _union_tags
from agent.parsing.formats import FORMATS, AutoFormat
from agent.parsing.validate import validate_settings

if TYPE_CHECKING:
    from agent.parsing.multiline import Joiner
    from agent.parsing.settings import ParseSettings

_loads = orjson.loads
# A line only the lenient decoder reads (a lone surrogate escape, see
# json_decode) is an object as the formats' own structured() say, and is
# parsed at the edge: the cluster's JSON processor may not read it the same.
_lenient_loads = json_decode.loads


def _dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:  # not for what orjson.loads gave; if ever: the safe side
        return b'content"'  # (parsed at the edge)


def is_json_object(text: str) -> bool:
    """Does ``JsonFormat.structured`` take ``text`` (a JSON object, maybe
    with JSON whitespace around it)?"""
    first = text[:1]
    if first != "{" and not (first in " \t\r\n" and "{" in text):
        return False  # orjson would fail, or give something that is not an object
    return _an_object(text)


def _brace_object(text: str) -> bool:
    """RayServe's and BentoML's rule: a line that starts with ``{`` and is a JSON object."""
    return text[:1] == "{" and _an_object(text)


def _an_object(text: str) -> bool:
    # orjson first, without json_decode's wrapper (this runs for every line
    # in raw mode); the lenient decoder only for a line orjson refused.
    try:
        return type(_loads(text)) is dict
    except Exception:  # noqa: BLE001 - as JsonFormat.structured: any failure is "not an object"
        pass
    try:
        return type(_lenient_loads(text)) is dict
    except Exception:  # noqa: BLE001
        return False


class _Fields:
    """The ``fields`` of a raw record, one dict per format name, shared by
    all the records of that name, and their events' ``TextInfo``: a record's
    fields are never changed in place (``agent.events``: the enrichment
    copies before it adds; ``RawSourceParser._build``, unlike the driver's,
    adds no ``error``)."""

    __slots__ = ("_log_format", "_shared", "_infos")

    def __init__(self, log_format: str | None) -> None:
        self._log_format = log_format
        self._shared: dict[str, dict[str, Any]] = {}
        self._infos: dict[str, TextInfo] = {}

    def __call__(self, name: str) -> dict[str, Any]:
        shared = self._shared.get(name)
        if shared is None:
            raw = {"format": name} if self._log_format is None else {"format": name, "log_format": self._log_format}
            shared = self._shared[name] = {"modelscribe": {"raw": raw}}
        return shared

    def info(self, name: str) -> TextInfo:
        """The ``TextInfo`` of a raw text event of format ``name``."""
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = TextInfo(None, self(name))
        return info


# Formats whose ``structured`` is known to be one of the predicates above.
# A format not listed that overrides ``structured`` (vLLM: a line with a
# prompt or an output in it) is asked itself, and its record is shipped as
# the agent parsed it: such lines carry payloads (see below).
_PREDICATES: dict[str, Callable[[str], bool]] = {
    "json": is_json_object,
    "rayserve": _brace_object,
    "bentoml": _brace_object,
}
# Payload fields (agent.schema: prompts, completions, HTTP bodies) are taken
# out by the enrichment's transforms unless --keep-payloads, which needs the
# parsed fields. A JSON object reaches one only through a key ending in
# ``content`` (http.request.body.content, nested or dotted) or a --map-field
# rule whose target is one: such a line is parsed at the edge, so what the
# agent would strip never leaves the host. A key may be spelt with \u
# escapes: a line with one is looked at again as orjson writes the parsed
# object back (no escapes but the required ones).
_PAYLOAD_NEEDLES = ('content"',)


def _payload_needles(settings: ParseSettings) -> tuple[str, ...]:
    from agent.transforms.schema import PAYLOAD_FIELDS

    extra = tuple(source.rsplit(".", 1)[-1] + '"' for source, target in settings.map_fields
                  if target.split(":", 1)[0] in PAYLOAD_FIELDS)
    return _PAYLOAD_NEEDLES + extra


def _edge_records(name: str) -> Callable[[str, dict[str, Any]], bool] | None:
    """Which JSON objects of format ``name`` the cluster cannot reproduce, so
    they are parsed here and shipped as the agent's own record (like payload
    lines). BentoML's monitor records take their columns' roles from a schema
    file on the host (``servers/bentoml.py``); the schema line itself and
    other JSON lines need nothing from the host and go raw."""
    if name != "bentoml":
        return None
    from agent.parsing.servers.bentoml import _is_record  # (imported late: servers import this package)

    return lambda text, obj: '"trace_id"' in text and _is_record(obj)


# How a format's ``structured`` decides (``_Structured``).
_NEVER, _OBJECT, _BRACE, _ASK = range(4)
_KINDS = {is_json_object: _OBJECT, _brace_object: _BRACE}


class _Structured:
    """What the raw parser does with a line the format reads as an event of
    its own: ``None`` (not one: a text line), a raw record, or the format's
    own record (parsed at the edge: it may carry a payload); ``take_run``, the
    same for a run of lines at once (``SourceParser.feed_batch``)."""

    __slots__ = ("_inner", "_kind", "_needles", "_fields", "_edge")

    def __init__(self, line_format: LineFormat, settings: ParseSettings, fields: _Fields) -> None:
        cls = type(line_format)
        self._inner = line_format
        rule = _PREDICATES.get(cls.name) if cls is FORMATS.get(cls.name) else None
        if rule is not None:
            self._kind = _KINDS[rule]
        else:
            self._kind = _ASK if overrides(cls, "structured") else _NEVER
        self._needles = _payload_needles(settings)
        self._fields = fields
        self._edge = _edge_records(cls.name) if rule is not None else None

    def __call__(self, line: Line, name: str) -> Record | None:
        kind = self._kind
        if kind == _ASK:  # (vLLM) the format's own answer and record
            return self._inner.structured(line)
        if kind == _NEVER:
            return None
        text = line.text
        first = text[:1]
        if first != "{" and (kind == _BRACE or first not in " \t\r\n" or "{" not in text):
            return None  # (is_json_object and _brace_object, inlined)
        try:
            obj = _loads(text)
        except Exception:  # noqa: BLE001 - as the formats' own structured: not an object
            try:
                obj = _lenient_loads(text)
            except Exception:  # noqa: BLE001
                return None
            return self._inner.structured(line) if type(obj) is dict else None
        if type(obj) is not dict:
            return None
        if self._parsed_here(text, obj):
            return self._inner.structured(line)
        return LineRun((line,), 0, 1, self._fields(name)).records()[0]

    def _parsed_here(self, text: str, obj: dict[str, Any]) -> bool:
        """Is the JSON object ``obj`` (of ``text``) parsed at the edge: one the
        cluster cannot reproduce, or one that may carry a payload?"""
        needles = self._needles
        if (self._edge is not None and self._edge(text, obj)) or any(needle in text for needle in needles):
            return True
        if "\\" in text and "\\u" in text:  # (a one-character search first: memchr)
            unescaped = _dumps(obj).decode("utf-8", "surrogatepass")
            return any(needle in unescaped for needle in needles)
        return False

    def take_run(self, lines: Sequence[Line], index: int, out: list[Any], name: str) -> int:
        """Take the lines of ``lines[index:]`` while each is a raw record of
        its own (a JSON object the cluster can parse, see the module doc),
        append them to ``out`` as one ``LineRun``, and return the index of the
        first line that is not one. The check is inlined here: this runs for
        every line."""
        kind = self._kind
        if kind != _OBJECT and kind != _BRACE:
            return index
        brace = kind == _BRACE
        edge, needles = self._edge, self._needles
        needle, more = needles[0], needles[1:]  # (most often one: 'content"')
        stop = len(lines)
        for position in range(index, stop):
            text = lines[position].text
            first = text[:1]
            # (is_json_object and _brace_object, then ``_parsed_here``, inlined)
            if first == "{" or (not brace and first in " \t\r\n" and "{" in text):
                try:
                    obj = _loads(text)
                except Exception:  # noqa: BLE001 - as the formats' own structured: not an object
                    obj = None
                if (type(obj) is dict and (edge is None or not edge(text, obj)) and needle not in text
                        and not (more and any(other in text for other in more))):
                    if "\\" not in text or "\\u" not in text:  # (a one-character search first: memchr)
                        continue
                    unescaped = _dumps(obj).decode("utf-8", "surrogatepass")
                    if not any(each in unescaped for each in needles):
                        continue
            stop = position  # the first line that is not one
            break
        if stop > index:
            out.append(LineRun(lines, index, stop, self._fields(name)))
        return stop


class RawFormat(LineFormat):
    """A forced format (``--format NAME``), raw: its joiner, its grouping, no fields."""

    def __init__(self, inner: LineFormat, settings: ParseSettings) -> None:
        super().__init__(settings)
        self._inner = inner
        self._name = type(inner).name
        self._fields = _Fields(settings.log_format)
        self._structured = _Structured(inner, settings, self._fields)

    def structured(self, line: Line) -> Record | None:
        return self._structured(line, self._name)

    def take_run(self, lines: Sequence[Line], index: int, out: list[Record]) -> int:
        return self._structured.take_run(lines, index, out, self._name)

    def head(self, text: str) -> TextInfo:
        return self._fields.info(self._name)

    def joiner(self) -> Joiner:
        return self._inner.joiner()


class RawAutoFormat(AutoFormat):
    """``--format auto``, raw: the same detection, sticky, on the same lines
    (the first ``DETECT_LINES`` non-blank ones), so the same joiner from the
    same line on; then the detected format's grouping."""

    def __init__(self, settings: ParseSettings) -> None:
        super().__init__(settings)
        self._fields = _Fields(settings.log_format)
        self._json_rule = _Structured(self._json, settings, self._fields)
        self._target_rule: _Structured | None = None

    def structured(self, line: Line) -> Record | None:
        target = self._target
        if target is None and self._budget:
            text = line.text
            if text and not text.isspace():
                self._detect(text)  # AutoFormat's: sets _target and its joiner
                target = self._target
        if target is not None:
            rule = self._target_rule
            if rule is None:
                rule = self._target_rule = _Structured(target, self.settings, self._fields)
            record = rule(line, target.name)
            if record is None:  # as AutoFormat.structured: a JSON object the format does not take is JSON
                text = line.text
                first = text[:1]
                if first == "{" or (first.isspace() and text.lstrip()[:1] == "{"):
                    return self._json_rule(line, "json")
            return record
        text = line.text
        first = text[:1]
        if first == "{" or (first.isspace() and text.lstrip()[:1] == "{"):  # as AutoFormat.structured
            return self._json_rule(line, "json")
        return None

    def take_run(self, lines: Sequence[Line], index: int, out: list[Record]) -> int:
        """``structured``'s raw records for a run of lines, once detection is
        over (before, each line may change what the next ones are). Without a
        target: the JSON rule, which takes only lines ``structured`` would give
        it (a JSON object's first character is ``{`` or JSON whitespace)."""
        target = self._target
        if target is None:
            return index if self._budget else self._json_rule.take_run(lines, index, out, "json")
        rule = self._target_rule
        if rule is None:
            rule = self._target_rule = _Structured(target, self.settings, self._fields)
        return rule.take_run(lines, index, out, target.name)

    def head(self, text: str) -> TextInfo:
        target = self._target
        return self._fields.info("plain" if target is None else target.name)


class RawSourceParser(SourceParser):
    """``SourceParser`` with raw records: the grouping and the commit points
    are the driver's own; only the record built from an event differs."""

    raw_records = True

    def __init__(self, settings: ParseSettings, source: Source, line_format: LineFormat) -> None:
        super().__init__(settings, source, line_format)
        self._raw_fields = _Fields(settings.log_format)

    def _build(self, event: Any, split: bool, end: int) -> Record:
        lines = event.lines
        first = lines[0]
        split = split or event.split
        fields = event.info.fields
        if len(lines) == 1:
            tags = first.tags
            if split or len(tags) > 1:
                tags = _union_tags(lines, (TAG_MULTILINE_SPLIT,) if split else ())
            return new(Record, (first.source, first.offset, end, first.text, first.read_time, None, fields, tags,
                                None, None, 1))
        return Record(first.source, first.offset, end, "\n".join([line.text for line in lines]),
                      first.read_time, None, fields,
                      _union_tags(lines, (TAG_MULTILINE_SPLIT,) if split else ()), None, None, len(lines))

    def _recover(self, error: Exception, line: Line | None) -> None:
        # The driver's safety net emits the lines with empty fields; a raw
        # record still says how the cluster should read it (as plain text:
        # the format that failed here is not trusted with these lines).
        before = len(self._out)
        super()._recover(error, line)
        raw = self._raw_fields
        self._out[before:] = [record._replace(fields=raw("plain")) for record in self._out[before:]]


def make_raw_parser(settings: ParseSettings, source: Source) -> SourceParser:
    """A raw parser for one source (see the module doc). Raises ValueError
    if ``settings`` are unusable, as ``make_parser`` does."""
    validate_settings(settings)
    if FORMATS[settings.format] is AutoFormat:
        line_format: LineFormat = RawAutoFormat(settings)
    else:
        line_format = RawFormat(FORMATS[settings.format](settings), settings)
    return RawSourceParser(settings, source, line_format)
