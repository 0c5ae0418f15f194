"""Enrichment: a parsed Record becomes a final Elasticsearch document.

Adds what every document carries (``@timestamp``, ``message``,
``log.file.path``, ``log.offset``, ``host.name``, ``agent.*``, ``tags``,
``error.message``, ``event.original`` with --keep-original), merges the
parser's fields, cuts key paths too long for a flattened field (tag
``key_truncated``, ``agent.transforms.truncate``), applies the transforms
(static fields, model identity from the path, payload stripping and
redaction, sampling, truncation: see ``agent.transforms``), serialises
once and derives the deterministic document id. Redaction happens here,
before the spool: sensitive data never touches the disk. Raw records (``--parse-at elasticsearch``) are joined from
a per-file template of the same bytes (``_Templates``), a read's records in
one loop (``build_all``); their ``modelscribe.raw`` gets ``max_field_bytes``
when --max-field-bytes is not the default, for the cluster's pipelines to
cut the fields they extract as the transforms cut a parsed document's.

Guarantee: the same (source key, offset) always yields the same ``_id``, so a
line re-sent after a crash or a retry is rejected by Elasticsearch as a
duplicate (``op_type: create``) instead of being indexed twice.

Guarantee: no record's time makes enrichment raise. A parser's timestamp
outside what ``@timestamp`` can hold (years 1 - 9999) gives way to the
record's read time, so one line cannot stop the reader (which would read the
same line again after a restart).
"""

from __future__ import annotations

import binascii
import errno
import hashlib
import math
import socket
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import orjson

from agent import AGENT_NAME, __version__
from agent.atomic import write_atomic
from agent.errors import ConfigError, StateError
from agent.registry import owner_hint, unusable_state_file
from agent.selflog import get_logger
from agent.events import TAG_TIMESTAMP_UNUSABLE, Event, LineRun, Record, Source, new, records_of
from agent.parsing.json_plans import TIMESTAMP_KEYS
from agent.transforms import DEFAULT_MAX_FIELD_BYTES, Transforms
from agent.transforms.truncate import KEY_PATH_MAX, TAG_KEY_TRUNCATED, cut_key_paths


log = get_logger("enrich")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _time_left_out(fields: Any) -> bool:
    """Whether the JSON mapping kept a time key in ``extra``: with no time
    parsed, that is a time the line had and the agent could not read."""
    extra = fields.get("extra") if fields else None
    return type(extra) is dict and any(key in extra for key in TIMESTAMP_KEYS)


def document_id(source_key: str, offset: int) -> str:
    """20 URL-safe characters (the length of Elasticsearch's own ids)."""
    digest = hashlib.blake2b(f"{source_key}:{offset}".encode(), digest_size=15).digest()
    return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).decode("ascii")


class _DocumentIds:
    """``document_id``, faster on the hot path: the hash state after the
    source key's bytes is kept per source and copied for each offset (the same
    digest, 40 % less time than hashing the whole text again)."""

    __slots__ = ("_bases",)
    _LIMIT = 4096  # sources; more are hashed again after a clear

    def __init__(self) -> None:
        self._bases: dict[str, Any] = {}

    def __call__(self, source_key: str, offset: int) -> str:
        hasher = self.base(source_key).copy()
        hasher.update(b"%d" % offset)
        return binascii.b2a_base64(hasher.digest(), newline=False).translate(_URLSAFE).decode("ascii")

    def base(self, source_key: str) -> Any:
        """The hash state after ``source_key``'s bytes: copy it, add the
        offset's digits, encode the digest as ``__call__`` does."""
        base = self._bases.get(source_key)
        if base is None:
            if len(self._bases) >= self._LIMIT:
                self._bases.clear()
            base = self._bases[source_key] = hashlib.blake2b(f"{source_key}:".encode(), digest_size=15)
        return base


# Slack added before flooring to the millisecond, in milliseconds: more than
# the float error of a parsed epoch (half an ulp, at most 0.24 µs between 1833
# and 2106, where |epoch| < 2**32) and less than what a microsecond-precise
# value can lie below the next millisecond (1 µs). Beyond that range one ulp
# is the slack, and microseconds near a millisecond's end may round up; so may
# nanoseconds within 0.5-0.75 µs of it anywhere (a float cannot tell them apart).
_SLACK_MS = 0.0005
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SLACK_LIMIT = 2.0 ** 32
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))  # a look-up is 4x cheaper than formatting
# What ``_Timestamps`` can write (datetime's years 1 - 9999, to the
# millisecond). The parsers' timestamps keep to it (agent.parsing.timestamps);
# enrichment checks again so that no time a parser hands over can raise.
_FIRST_EPOCH = -62135596800.0  # 0001-01-01T00:00:00.000Z
_LAST_EPOCH = 253402300799.999  # 9999-12-31T23:59:59.999Z


class _Timestamps:
    """ISO 8601 UTC with milliseconds. The second's prefix is cached: lines
    share seconds, and several files read in turn revisit the same few.

    The millisecond is the one the time falls in (floor), as Elasticsearch's
    ``date`` type and Python's ``%(msecs)03d`` cut finer digits. Flooring the
    float alone would be wrong: ``09.004`` parses to ``09.00399999976…`` and
    must still be written ``.004``, so a little slack (``_SLACK_MS``) is added
    first. The fraction is taken from the second before scaling, which keeps
    the scaling error far below the slack.
    """

    __slots__ = ("_prefixes", "_last", "_text")
    _LIMIT = 4096

    def __init__(self) -> None:
        self._prefixes: dict[int, str] = {}
        # The last answer: lines without a time of their own (raw records,
        # plain text) carry their read's time, the same for a whole chunk.
        self._last: float | None = None
        self._text = ""

    def format(self, epoch: float) -> str:
        """Total: a time outside years 1 - 9999 is written as the nearest
        end of that range, NaN as the epoch's start (a caller with a better
        time to fall back on checks the range first, as ``_build`` does)."""
        if epoch == self._last:
            return self._text
        if not _FIRST_EPOCH <= epoch <= _LAST_EPOCH:
            return self._outside(epoch)
        second = int(epoch // 1)
        slack = _SLACK_MS if -_SLACK_LIMIT < epoch < _SLACK_LIMIT else math.ulp(epoch) * 1000.0
        millis = int((epoch - second) * 1000.0 + slack)
        if millis >= 1000:  # a hair below a whole second
            second += 1
            millis -= 1000
        prefix = self._prefixes.get(second)
        if prefix is None:
            if len(self._prefixes) >= self._LIMIT:
                self._prefixes.clear()
            # Not strftime: glibc writes the year 999 as "999", which is not ISO 8601.
            moment = _EPOCH + timedelta(seconds=second)
            prefix = self._prefixes[second] = (
                f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
                f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
        text = self._text = prefix + _MILLIS[millis]
        self._last = epoch
        return text

    def _outside(self, epoch: float) -> str:
        if epoch != epoch:  # NaN
            return self.format(0.0)
        return self.format(_FIRST_EPOCH if epoch < _FIRST_EPOCH else _LAST_EPOCH)


def format_timestamp(epoch: float) -> str:
    return _Timestamps().format(epoch)


def agent_id(state_dir: str) -> str:
    """A stable id for this installation, kept in STATE_DIR/agent_id.

    Missing: a new id is made (the first run). Damaged (empty, not ASCII, not
    printable, longer than 128 characters): a new id is made and the
    replacement is logged once (the next call reads the new id). A file that
    cannot be read (no permission: root-owned after a ``sudo modelscribe
    run``; a directory of that name) is not damage: a ConfigError (exit code
    2) naming the file and what to do, and the file is left as it is: every
    document would otherwise name a new agent. A new id that cannot be
    written: a ConfigError as well, but a StateError (exit code 1: a restart
    may succeed) when the disk is full."""
    path = Path(state_dir) / "agent_id"
    try:
        raw: bytes | None = path.read_bytes()
    except FileNotFoundError:
        raw = None
    except OSError as error:
        raise unusable_state_file(path, error, "the agent id", "the agent then makes a new id") from error
    damage = None
    if raw is not None:
        try:
            existing = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            damage = "not ASCII"
        else:
            if existing and existing.isprintable() and len(existing) <= 128:
                return existing
            # (zeros a crash left, say)
            damage = ("empty" if not existing else "not printable" if not existing.isprintable()
                      else "longer than 128 characters")
    new = str(uuid.uuid4())
    try:
        write_atomic(path, (new + "\n").encode("ascii"), prefix=".agent_id.")
    except OSError as error:
        message = f"cannot write the agent id {path}: {error.strerror or error}"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StateError(message) from error
        if isinstance(error, PermissionError):
            message += f" ({owner_hint(path)})"
        raise ConfigError(message) from error
    if damage is not None:
        log.warning("the agent id file is damaged; a new id is made", path=str(path), error=damage, agent_id=new)
    return new


# The probe a template is cut from (``_Templates``): values that cannot occur
# elsewhere in a document, found exactly once each or no template is made.
_PROBE_TEXT = "\x00modelscribe template probe\x00"
_PROBE_OFFSET = 7_346_829_105_563_281_907
_PROBE_TIME = 4_102_444_800.777  # 2100-01-01T00:00:00.777Z
# A literal holding one of these bytes could span a template piece and a value;
# one made only of these could match inside a timestamp or an offset.
_JSON_BYTES = frozenset(b'"{}[],:\\')
_NUMBER_BYTES = frozenset(b"0123456789-:.TZ")


class _Template(NamedTuple):
    """A raw record's document cut around its three values: ``head``,
    timestamp, ``middle``, message (JSON), ``before``, offset, ``tail``."""

    shared: Any  # the fields' shared object, held so that its id stays its own
    head: bytes
    middle: bytes
    before: bytes
    tail: bytes
    target: str | None


class _Templates:
    """Raw records (``--parse-at elasticsearch``) differ only in their
    message, offset and read time, so their documents are the same bytes
    around those three values: the general path builds one probe document per
    file and shape, which is cut into a template, and each record's document
    is then joined from it. No document ``dict`` is built and the redaction
    prefilter reads the message only.

    Guarantee: a templated document is byte for byte what the general path
    makes (tests/test_enrich.py compares both on generated records and
    settings). Why it holds: everything in the pieces is the same in every
    document of the template (the transforms' defaults, host and path fields
    depend on the keys and the path), and a template is made only when nothing
    but literals in a document's bytes can set two of them apart
    (``Transforms.template_literals``: no sampling, no field rules) and no
    literal can span a piece and a value or lie inside a timestamp or an
    offset. So a message that may need redaction, or does not serialise, goes
    the general way; the truncation of long fields spares ``message``."""

    __slots__ = ("_make", "_stamps", "_ids", "_check", "_cache", "_source", "_shared", "_template", "_time",
                 "_stamp", "literals")
    _LIMIT = 4096

    def __init__(self, make: Callable[[Record], Event | None], stamps: _Timestamps, ids: _DocumentIds,
                 transforms: Transforms) -> None:
        self._make = make
        self._stamps = stamps
        self._ids = ids
        self._check = transforms.may_redact
        self.literals = transforms.literal_checks()  # (literal, gate byte, search)
        self._cache: dict[tuple[str, int], _Template | None] = {}
        self._source: Any = None  # the last record's source and shared object, and its template
        self._shared: Any = None
        self._template: _Template | None = None
        self._time: float | None = None
        self._stamp = b""

    @staticmethod
    def usable(transforms: Transforms | None) -> bool:
        literals = transforms.template_literals() if transforms is not None else None
        return literals is not None and not any(
            _JSON_BYTES.intersection(literal) or _NUMBER_BYTES.issuperset(literal) for literal in literals)

    def scan(self, data: bytes) -> tuple[bytes, ...]:
        """The prefilter's literals that occur in ``data`` (a read's lines,
        joined, UTF-8): what ``build`` still looks for in the messages of
        records made of those lines. A pattern can only match where its
        literal is; a literal absent from a message's text cannot appear in its
        JSON form except by escaping, which the patterns, matching the text,
        never see."""
        return tuple([literal for literal, gate, search in self.literals
                      if (gate is None or gate in data) and search(data) is not None])

    def build_all(self, records: Sequence[Record | LineRun], present: tuple[bytes, ...] | None, first: int,
                  general: Callable[[Record], Event | None]) -> list[Event]:
        """The events of ``records`` (a run's records read from its lines):
        each templated when it can be, else ``general(record)`` (skipped when
        that gives None: sampled out). ``present``: ``scan``'s answer for the
        lines of the records that begin at or after offset ``first`` (None:
        not known). One loop for a read's records: this runs for every line."""
        events: list[Event] = []
        append = events.append
        dumps, ids, check = orjson.dumps, self._ids, self._check
        last_shared: Any = None  # the last templated record's modelscribe object, and what it gave
        template: _Template | None = None
        prefix = b""  # the template's head, timestamp and middle, joined
        id_source: Any = None  # the source of id_base, the hash state of its key
        id_base: Any = None
        key = ""
        b2a = binascii.b2a_base64
        for item in records:
            run = type(item) is LineRun
            if run:
                fields = item.fields
                rows: Sequence[Any] = item.lines[item.start:item.stop]
            else:
                rows = (item,)
            for record in rows:
                if run:
                    source, offset, end, message, read_time, tags = record
                    templated = not tags
                else:
                    source, offset, end, message, read_time, timestamp, fields, tags, original, error, _ = record
                    templated = (timestamp is None and not tags and fields and len(fields) == 1 and original is None
                                 and error is None)
                if templated:
                    shared = fields.get("modelscribe")
                    if shared is not last_shared or source is not self._source or read_time != self._time:
                        template = self._template_of(source, fields, shared, read_time)
                        if template is not None:
                            last_shared = shared
                            prefix = b"".join((template.head, self._stamp, template.middle))
                        else:
                            last_shared = None
                    if template is not None:
                        try:
                            text = dumps(message)
                            # The redaction prefilter: a pattern may match (the general path then).
                            if present is None or offset < first:
                                clean = not check(text)
                            else:
                                clean = True
                                if present:
                                    for literal in present:
                                        if literal in text:
                                            clean = False
                                            break
                        except TypeError:  # (a lone surrogate: the general path repairs it)
                            clean = False
                        if clean:
                            digits = b"%d" % offset
                            if source is not id_source:
                                id_source, key = source, source.key
                                id_base = ids.base(key)
                            hasher = id_base.copy()  # (the document id, as _DocumentIds: inlined)
                            hasher.update(digits)
                            append(new(Event, (key, offset, end,
                                               b2a(hasher.digest(), newline=False).translate(_URLSAFE).decode("ascii"),
                                               b"".join((prefix, text, template.before, digits, template.tail)),
                                               template.target)))
                            continue
                if run:  # the run's record, built as it goes the general way
                    record = LineRun((record,), 0, 1, fields).records()[0]
                event = general(record)
                if event is not None:  # None: sampled out (offsets still advance past it)
                    append(event)
        return events

    def _template_of(self, source: Source, fields: dict[str, Any], shared: Any,
                     read_time: float) -> _Template | None:
        """The template for a record of ``source`` with ``fields`` (``shared``:
        their modelscribe object), None if it has none; the timestamp of
        ``read_time`` made ready (``_stamp``)."""
        if source is self._source and shared is self._shared:
            template = self._template
        else:
            template = self._find(source, fields, shared)
        if read_time != self._time:
            self._stamp = self._stamps.format(read_time).encode()
            self._time = read_time
        return template

    def _find(self, source: Source, fields: dict[str, Any], shared: Any) -> _Template | None:
        if type(shared) is not dict or len(shared) != 1 or "raw" not in shared:
            return None  # not a raw record's fields
        key = (source.path, id(shared))
        if key in self._cache:
            template = self._cache[key]
        else:
            if len(self._cache) >= self._LIMIT:
                self._cache.clear()
            template = self._cache[key] = self._cut(source, fields)
        self._source, self._shared, self._template = source, shared, template
        return template

    def _cut(self, source: Source, fields: dict[str, Any]) -> _Template | None:
        probe = new(Record, (source, _PROBE_OFFSET, _PROBE_OFFSET + 1, _PROBE_TEXT, _PROBE_TIME, None, fields,
                             (), None, None, 1))
        event = self._make(probe)
        if event is None:
            return None
        data = event.data
        stamp = b'"' + self._stamps.format(_PROBE_TIME).encode() + b'"'
        text = orjson.dumps(_PROBE_TEXT)
        number = b":%d" % _PROBE_OFFSET
        if any(data.count(value) != 1 for value in (stamp, text, number)):
            return None  # a configured value equal to a probe's: where to cut is not certain
        at_stamp, at_text, at_number = data.index(stamp) + 1, data.index(text), data.index(number) + 1
        if not at_stamp < at_text < at_number:
            return None
        return _Template(fields["modelscribe"], data[:at_stamp], data[at_stamp + len(stamp) - 2:at_text],
                         data[at_text + len(text):at_number], data[at_number + len(number) - 1:], event.target)


class Enricher:
    """Builds documents; one per agent, used by the reader thread only."""

    def __init__(self, host_name: str | None, agent_identifier: str, keep_original: bool,
                 transforms: Transforms | None = None, metrics_target: str | None = None,
                 templates: bool = True) -> None:
        self._host = host_name or socket.gethostname()
        self._agent = {"name": AGENT_NAME, "type": AGENT_NAME, "version": __version__,
                       "id": agent_identifier}
        self._keep_original = keep_original
        self._stamps = _Timestamps()
        self._ids = _DocumentIds()
        self._transforms = transforms
        self.samples = transforms is not None and transforms.samples
        # A raw document carries --max-field-bytes when it is not the default
        # (like --log-format): the cluster cuts the fields it extracts to it,
        # and cannot know it otherwise.
        cap = transforms.settings.max_field_bytes if transforms is not None else DEFAULT_MAX_FIELD_BYTES
        self._raw_cap = cap if cap != DEFAULT_MAX_FIELD_BYTES else None
        # The transforms append the host object to a document without one.
        self._host_appended = transforms is not None and transforms.appends_host(self._host)
        if transforms is not None:
            transforms.append_agent(self._agent)
        # Metric events (event.kind: metric) go to the metrics data stream
        # that matches the logs one, when the target is a logs data stream.
        self._metrics_target = metrics_target
        self._templates = (_Templates(self._build, self._stamps, self._ids, transforms)  # type: ignore[arg-type]
                           if templates and _Templates.usable(transforms) else None)
        # For the sink: the redaction prefilter's literals found in a read's
        # lines at once (``_Templates.scan``); None when no template is made.
        self.scan: Callable[[bytes], tuple[bytes, ...]] | None = (
            self._templates.scan if self._templates is not None else None)
        # The bytes a read's lines were cut from may be scanned in place of
        # the lines: every literal is ASCII, and the reader keeps each ASCII
        # byte of a line, in order, as a character of its text (it replaces
        # undecodable bytes, never drops them; it drops a trailing \r).
        self.scan_bytes_read = self._templates is not None and all(
            literal.isascii() for literal, _, _ in self._templates.literals)

    def build(self, record: Record, present: tuple[bytes, ...] | None = None) -> Event | None:
        """The event for ``record``, or None when sampling dropped it.
        ``present``: ``scan``'s answer for lines that hold all of the record's."""
        if self._templates is None:
            return self._build(record)
        events = self._templates.build_all((record,), present, 0, self._build)
        return events[0] if events else None

    def build_all(self, records: Sequence[Record | LineRun], present: tuple[bytes, ...] | None = None,
                  first: int = 0) -> list[Event]:
        """``build`` for each of ``records`` (one source's, in order), without
        those sampling dropped; ``present`` holds for the records that begin at
        or after offset ``first``."""
        if self._templates is not None:
            return self._templates.build_all(records, present, first, self._build)
        events = [self._build(record) for record in records_of(records)]
        return [event for event in events if event is not None]

    def _build(self, record: Record) -> Event | None:
        """``build``, the general way."""
        source, offset, end, message, read_time, timestamp, fields, tags, original, error, _ = record
        # A key path below a flattened field longer than the index takes is
        # cut (agent.transforms.truncate). Keys come from the line, whose
        # bytes span end - offset at least: a shorter line cannot hold one,
        # so the usual line costs this comparison only.
        if end - offset > KEY_PATH_MAX and fields:
            fields, cut = cut_key_paths(fields)
            if cut:
                tags = (*tags, TAG_KEY_TRUNCATED)
        # The parser's dicts are not ours to change: copy on write, one level
        # at a time, only where the agent adds a key.
        doc: dict[str, Any] = dict(fields) if fields else {}
        if self._raw_cap is not None:
            ours = doc.get("modelscribe")
            if type(ours) is dict and type(ours.get("raw")) is dict:
                doc["modelscribe"] = {**ours, "raw": {**ours["raw"], "max_field_bytes": self._raw_cap}}
        # A parser's time outside what can be written (a parser missing a
        # range check) gives way to the read time: one record's time must
        # never stop the reader, which would read the same line again.
        if timestamp is not None and _FIRST_EPOCH <= timestamp <= _LAST_EPOCH:
            doc["@timestamp"] = self._stamps.format(timestamp)
        else:
            doc["@timestamp"] = self._stamps.format(read_time)
            if timestamp is not None or _time_left_out(fields):
                # Said, so that no one takes the read time for the event's: model
                # health counts it as a bad time (audit 9: one such line in a
                # backfill moved a model's windows to "now", the rest came late).
                tags = (*tags, TAG_TIMESTAMP_UNUSABLE)
        doc["message"] = message
        log = doc.get("log")
        path = source.path
        placed = {"file": {"path": path}, "offset": offset}
        doc["log"] = {**log, **placed} if isinstance(log, dict) else placed
        host = doc.get("host")
        if host is not None:
            doc["host"] = {**host, "name": self._host} if isinstance(host, dict) else {"name": self._host}
        elif not self._host_appended:
            doc["host"] = {"name": self._host}
        doc["agent"] = self._agent
        if tags:
            doc["tags"] = list(tags)
        if error:
            known = doc.get("error")
            doc["error"] = {"message": error, **known} if isinstance(known, dict) else {"message": error}
        if self._keep_original and original is not None:
            event = doc.get("event")
            doc["event"] = {**event, "original": original} if isinstance(event, dict) else {"original": original}
        key = source.key
        doc_id = self._ids(key, offset)
        target = None
        if self._metrics_target is not None:
            event_fields = fields.get("event")
            if isinstance(event_fields, dict) and event_fields.get("kind") == "metric":
                target = self._metrics_target
        if self._transforms is not None:
            data = self._transforms.process(doc, path, doc_id)
            if data is None:
                return None
        else:
            data = orjson.dumps(doc, default=str)
        return new(Event, (key, offset, end, doc_id, data, target))
