"""The reader thread's sink: each line read is parsed, enriched and handed over.

    tailer --extend(lines, bytes read)--> Sink --unwrap--parse (per file)--> enrich --group--> Handoff

A read's lines cross the stages together: the parser's ``feed_batch``, then
the enrichment's ``build_all``, then the hand-off in groups of its size.

One ``SourceParser`` per file (``make_parser``, or ``make_raw_parser`` for
the files ``--parse-at elasticsearch`` applies to), chosen by the first
``inputs:`` entry whose globs match the file, else the global settings. A
file that several entries with different settings match is named in one
warning (per file), with the entry that applies and those that do not.
Events go to the hand-off in groups; ``periodic`` producers (the agent's own
metric documents) add theirs at every tick. Only the reader thread calls it.

With ``--sample``, a file whose last record so far was sampled out gets a
marker in the next group (an ``Event`` whose data is ``MARKER``, empty): the
batcher registers it and acknowledges it without sending it, so the offset
can be committed past sampled-out lines at the end of a file (they were lag
forever, and read again at every start).

Container log files (``--container-format``, per input ``container_format``):
a file's lines are unwrapped first (``agent.parsing.container``: the CRI or
Docker json-file wrapping taken off, partial lines joined), so the parser
sees what the application wrote. The mode is decided once per file (``auto``:
on its first non-empty line); a file with nothing to unwrap costs one dict
look-up per read. The bytes read are not the unwrapped lines' text: such a
file's reads are prefiltered on their lines, never on ``data``. A partial
line still waiting for its end reaches no parser, so no record, and no
committed offset, covers it: ``flush_all`` (the end of ``--once``) leaves it
for the next run to read again from the committed offset; a file's close
(``source_closed``) releases it, tagged ``partial_line``.

Before each hand-over, ``CutLog.settle`` makes durable what a restart needs
to rebuild the same events: a new file's registry entry, and the cuts the
clock made (an event emitted by ``--multiline-timeout``, a file's close, a
reload or the stop, which the parser lists in ``timed``); a parser made for
a file read again gets the cuts made in it before (``agent.cuts``).
"""

from __future__ import annotations

import operator
from typing import Any, Callable

from agent.config.resolve import InputSpec
from agent.cuts import CutLog
from agent.enrich import Enricher
from agent.events import MARKER, Event, Line, LineRun, Record, Source, new
from agent.handoff import Handoff
from agent.parsing import ParseSettings, SourceParser, make_parser, make_raw_parser
from agent.parsing.container import Unwrapper
from agent.selflog import get_logger
from agent.sources.discovery import Discovery

log = get_logger("pipeline")
_NEW: Any = object()  # a file not read yet: its unwrapper is not decided
_DATA = operator.attrgetter("data")
# Lines read at once from which the prefilter's literals are looked for in
# all of them together (fewer: one by one, as they are built).
_SCAN_FROM = 8


class Sink:
    """The tailer's LineSink: parse, enrich, hand over (may block).

    Events are handed over in groups (``handoff.group_size``; and at every
    tick, at most 0.5 s apart), so the locks of the queue, the spool and the
    ack tracker, and the spool's fsync, are paid once per group, not per line.
    """

    def __init__(self, settings: ParseSettings, enricher: Enricher, handoff: Handoff,
                 inputs: tuple[InputSpec, ...] = (), cuts: CutLog | None = None) -> None:
        self._settings = settings
        self._cuts = cuts
        # Per-input formats of the config file: the first input whose globs
        # match a file decides its format; other files use --format.
        self._inputs = [(Discovery(spec.paths), spec.apply(settings)) for spec in inputs]
        self._enricher = enricher
        self._handoff = handoff
        self._group = handoff.group_size
        self.accepting = handoff.accepting
        self._parsers: dict[str, SourceParser] = {}
        self._chosen: dict[str, ParseSettings] = {}  # the settings each parser was made with
        # Per file, its container unwrapper; None: nothing to unwrap (off, or
        # auto found no runtime's wrapping). Absent: the file's first read.
        self._unwrappers: dict[str, Unwrapper | None] = {}
        self._specs = inputs
        self._overlaps_named: set[str] = set()  # paths the overlapping-inputs warning named
        self._pending: list[Event] = []
        # --sample: per file, (offset, end) of the last record when sampling dropped it. The
        # group handed over next carries a marker for it (``_markers``): no later event of the
        # file may come to commit past it, and its lines would be lag forever, and read again.
        self._dropped_tail: dict[str, tuple[int, int]] = {}
        # Called at every tick with the time; each may return an event that is
        # not a line's (the agent's own metric document).
        self.periodic: list[Callable[[float], Event | None]] = []
        self.lines = 0
        self.emitted = 0
        self.emitted_bytes = 0  # counted per group, not per line (agent.metrics)
        # The agent's own metric documents: not in ``emitted``, counted apart (agent.self_metrics).
        self.own_emitted = 0
        self.own_emitted_bytes = 0
        self._own_pending = (0, 0)  # (documents, bytes) of them in ``_pending``

    def line(self, line: Line) -> None:
        self.extend([line])

    def extend(self, lines: list[Line], data: bytes | None = None, at: int = 0) -> None:
        """``line`` for each of ``lines`` (one file's, in order), in batches:
        the reader's hot loop. ``data``: the bytes read from file offset
        ``at``, of which every line beginning at or after ``at`` was cut."""
        self.lines += len(lines)
        source = lines[0].source
        unwrapper = self._unwrappers.get(source.key, _NEW)
        if unwrapper is not None:  # (files with nothing to unwrap skip this: one look-up per read)
            if unwrapper is _NEW:
                self._parser(source)  # decides the file's settings, its unwrapper with them
                unwrapper = self._unwrappers[source.key]
            if unwrapper is not None:
                read, lines = lines, unwrapper.feed(lines)
                if unwrapper.off:  # auto found no runtime's wrapping: from now on, as read
                    self._unwrappers[source.key] = None
                if lines is not read:
                    data = None  # the bytes read are not these lines' text
                    if not lines:
                        return  # a partial line's parts, waiting for their end
        parser = self._parser(source)
        # The redaction prefilter's literals looked for in all these lines at
        # once; a record made of them only (it begins at or after ``first``:
        # lines are fed in file order) is checked for those found, if any.
        # (Only raw records are templated: for parsed ones it would be wasted.)
        scan = self._enricher.scan
        present, first = None, 0
        if scan is not None and parser.raw_records and len(lines) >= _SCAN_FROM:
            if data is not None and self._enricher.scan_bytes_read:
                present, first = scan(data), at
            else:
                present = scan("\n".join([line.text for line in lines]).encode("utf-8", "surrogatepass"))
                first = lines[0].offset
        feed, build, group = parser.feed_batch, self._enricher.build_all, self._group
        index, count = 0, len(lines)
        while index < count:
            # As many lines as fill the group: a group is handed over as it
            # fills. (No copy of the lines when the whole read fits.)
            take = max(group - len(self._pending), 1)
            records = feed(lines[index:index + take] if index or take < count else lines)
            index += take
            if records:
                events = build(records, present, first)
                if self._enricher.samples:
                    self._note_tail(records[-1], events)
                self._pending += events
            if len(self._pending) >= group:
                self.hand_over()  # may block (backpressure)

    def _parser(self, source: Source) -> SourceParser:
        parser = self._parsers.get(source.key)
        if parser is None:
            settings = self._settings_for(source.path)
            # --parse-at elasticsearch: the same events, shipped raw for the cluster to parse.
            make = make_raw_parser if settings.parse_at == "elasticsearch" else make_parser
            parser = self._parsers[source.key] = make(settings, source)
            self._chosen[source.key] = settings
            mode = settings.container_format
            self._unwrappers[source.key] = None if mode == "off" else Unwrapper(mode, settings.multiline_max_bytes)
            if self._cuts is not None:
                cuts = self._cuts.event_cuts(source.key)
                if cuts:
                    parser.cut_at(cuts)
        return parser

    def _settings_for(self, path: str) -> ParseSettings:
        """The settings of the first input matching ``path`` (else the global
        ones); warns once per path when later matching inputs differ."""
        matching = [number for number, (globs, _) in enumerate(self._inputs) if globs.matches(path)]
        if not matching:
            return self._settings
        chosen = self._inputs[matching[0]][1]
        ignored = [number for number in matching[1:] if self._inputs[number][1] != chosen]
        if ignored and path not in self._overlaps_named:
            self._overlaps_named.add(path)
            log.warning("file matches inputs with different settings; the first one applies", path=path,
                        applies=self._name(matching[0]), ignored="; ".join(map(self._name, ignored)))
        return chosen

    def _name(self, number: int) -> str:
        return f"inputs[{number + 1}] ({', '.join(self._specs[number].paths)})"

    def _emit_all(self, parser: SourceParser, records: list[Record]) -> None:
        """Enrich the records a flush of ``parser`` emitted; keep the cuts it made."""
        if parser.timed:
            if self._cuts is not None:
                self._cuts.add_events(parser.source.key, parser.timed)
            parser.timed = []
        for record in records:
            event = self._enricher.build(record)
            if event is not None:
                self._pending.append(event)
            if self._enricher.samples:
                self._note_tail(record, [] if event is None else [event])

    def _note_tail(self, last: Record | LineRun, events: list[Event]) -> None:
        """Remember ``last`` (one file's last record so far) when sampling dropped it."""
        if isinstance(last, LineRun):
            line = last.lines[last.stop - 1]
            key, offset, end = line.source.key, line.offset, line.end
        else:
            key, offset, end = last.source.key, last.offset, last.end
        if events and events[-1].source_key == key and events[-1].offset == offset:
            self._dropped_tail.pop(key, None)
        else:
            self._dropped_tail[key] = (offset, end)

    def hand_over(self) -> None:
        """Give the pending events to the sending side."""
        if self._pending or self._dropped_tail:
            group, self._pending = self._pending, []
            (own, own_bytes), self._own_pending = self._own_pending, (0, 0)
            self.emitted += len(group) - own
            self.emitted_bytes += sum(map(len, map(_DATA, group))) - own_bytes
            if own:
                self.own_emitted += own
                self.own_emitted_bytes += own_bytes
            if self._dropped_tail:
                group += [new(Event, (key, offset, end, "", MARKER, None))
                          for key, (offset, end) in self._dropped_tail.items()]
                self._dropped_tail.clear()
            if self._cuts is not None:
                self._cuts.settle()  # before anything of the group can be shipped
            self._handoff.put(group)

    def tick(self, now: float) -> None:
        for parser in list(self._parsers.values()):
            self._emit_all(parser, parser.flush_expired(now))
        for produce in self.periodic:
            event = produce(now)
            if event is not None:
                self._pending.append(event)
                count, size = self._own_pending
                self._own_pending = (count + 1, size + len(event.data))
        self.hand_over()

    def flush_source(self, source: Source) -> None:
        """Emit ``source``'s open multi-line events now, as their timeout would
        (the cut is recorded the same way): the tailer, before the file now at a
        rotated file's path is read, so that the rotated file's last record is
        not held behind it."""
        parser = self._parsers.get(source.key)
        if parser is not None:
            self._emit_all(parser, parser.flush())

    def source_closed(self, source: Source) -> None:
        parser = self._parsers.pop(source.key, None)
        self._chosen.pop(source.key, None)
        unwrapper = self._unwrappers.pop(source.key, None)
        if parser is not None:
            # A partial line whose end never came: no more lines will, so it goes as it is.
            released = unwrapper.release() if unwrapper is not None else []
            self._emit_all(parser, (parser.feed_many(released) if released else []) + parser.flush())
        self.hand_over()
        self._handoff.flush()  # the tailer lets go of the file next: its lines must be safe first

    def flush_all(self) -> None:
        for key in list(self._parsers):
            parser = self._parsers.pop(key)
            self._emit_all(parser, parser.flush())
        self._chosen.clear()
        # Partial lines still waiting are dropped, not emitted: nothing committed
        # covers them, so the next run reads them again and joins them whole.
        self._unwrappers.clear()
        self.hand_over()

    def reconfigure(self, settings: ParseSettings, inputs: tuple[InputSpec, ...],
                    enricher: Enricher | None) -> None:
        """A reload, on the reader thread (``Tailer.apply``): parse by the new
        settings from the next line on. A file whose settings change has its
        parser flushed first (open multi-line events emitted as they stand,
        with the old enrichment); its next line starts a new parser. Other
        files keep their parser and the events it holds open."""
        self._settings = settings
        self._inputs = [(Discovery(spec.paths), spec.apply(settings)) for spec in inputs]
        self._specs = inputs
        self._overlaps_named.clear()  # the inputs changed: a file still in two is named again
        for key, parser in list(self._parsers.items()):
            path = parser.source.path
            if next((chosen for globs, chosen in self._inputs if globs.matches(path)),
                    settings) != self._chosen.get(key):
                log.debug("parse settings changed; the file's parser is flushed and replaced", path=path)
                # A partial line waiting goes as it stands too (tagged partial_line).
                unwrapper = self._unwrappers.pop(key, None)
                released = unwrapper.release() if unwrapper is not None else []
                self._emit_all(parser, (parser.feed_many(released) if released else []) + parser.flush())
                del self._parsers[key]
                self._chosen.pop(key, None)
        self.hand_over()
        if enricher is not None:
            self._enricher = enricher
