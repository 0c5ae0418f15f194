"""The daemon: wires tail -> parse -> enrich -> queue -> batch -> output -> acks -> registry.

Concurrency model (one for the whole agent): threads joined by bounded
hand-offs. The reader thread tails, parses and enriches; with the disk
spool, a spool-writer thread appends its groups one behind it
(``handoff``); the batcher thread groups events and hands them to
``--workers`` output threads; the main thread saves the registry every
second and handles signals (the handler only records the signal; this
loop acts on it).

Guarantees:
- a file's offset is committed only after the output acknowledged every
  event up to it (``acks``); what was read but not acknowledged is read
  again after a restart, and the deterministic ``_id`` makes that re-send
  harmless;
- SIGTERM/SIGINT stop reading, flush what is in memory, save offsets and
  exit 0 within ``--shutdown-timeout``; whatever the output did not confirm
  by then is simply not committed;
- ``--once`` reads every file to its current end, waits for every
  acknowledgement and returns the exit code documented in ``errors``.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import threading
import time
from pathlib import Path

from agent.acks import AckTracker
from agent.clock import SYSTEM_CLOCK, Clock
from agent.config import Config
from agent.config.resolve import InputSpec
from agent.enrich import Enricher, agent_id
from agent.errors import EXIT_OK, EXIT_OUTPUT, EXIT_REJECTED, ConfigError, OutputError, StateError
from agent.events import Event, Line, Record, Source
from agent.outputs import build_output
from agent.outputs.base import Output
from agent.handoff import MemoryHandoff, SpoolHandoff
from agent.outputs.batcher import Aborted, Batcher, SpoolBatcher
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.sender import Sender
from agent.parsing import ParseSettings, SourceParser, make_parser
from agent.registry import Registry
from agent.selflog import get_logger
from agent.sources.discovery import Discovery
from agent.sources.tailer import Tailer, TailSettings
from agent.spool import DiskQueue
from agent.stats import Stats
from agent.transforms import TransformSettings, Transforms, gather, load_or_create_hash_key
from agent.status import write_status

log = get_logger("pipeline")
_SAVE_INTERVAL = 1.0


def tail_settings(config: Config) -> TailSettings:
    return TailSettings(paths=config.all_paths, excludes=config.excludes, scan_interval=config.scan_interval,
                        partial_line_timeout=config.partial_line_timeout,
                        max_line_bytes=config.max_line_bytes, fingerprint_bytes=config.fingerprint_bytes,
                        close_inactive=config.close_inactive, close_removed_after=config.close_removed_after)


def parse_settings(config: Config) -> ParseSettings:
    return ParseSettings(format=config.format, multiline_start=config.multiline_start,
                         multiline_max_lines=config.multiline_max_lines,
                         multiline_max_bytes=config.multiline_max_bytes,
                         multiline_timeout=config.multiline_timeout, keep_original=config.keep_original)


def build_transforms(config: Config) -> Transforms:
    """The enrichment rules. Their settings were validated when the Config was
    resolved (``agent.config.stages``), so a ValueError here is a bug."""
    from agent.config.stages import transform_settings

    hash_key = config.hash_key
    if config.hash_fields and hash_key is None:
        hash_key = load_or_create_hash_key(config.state_dir)
    return Transforms(transform_settings(config, hash_key), gather(config.host_name))


def metrics_target(config: Config) -> str | None:
    """logs-modelscribe-NS -> metrics-modelscribe-NS (only for the logs-* data stream naming)."""
    if config.index is None and config.data_stream.startswith("logs-"):
        return "metrics-" + config.data_stream[len("logs-"):]
    return None


class _Sink:
    """The tailer's LineSink: parse, enrich, hand over (may block).

    Events are handed over in groups (``handoff.group_size``; and at every
    tick, at most 0.5 s apart), so the locks of the queue, the spool and the
    ack tracker, and the spool's fsync, are paid once per group, not per line.
    """

    def __init__(self, settings: ParseSettings, enricher: Enricher, handoff: MemoryHandoff | SpoolHandoff,
                 inputs: tuple[InputSpec, ...] = ()) -> None:
        self._settings = settings
        # Per-input formats of the config file: the first input whose globs
        # match a file decides its format; other files use --format.
        self._inputs = [(Discovery(spec.paths), spec.apply(settings)) for spec in inputs]
        self._enricher = enricher
        self._handoff = handoff
        self._group = handoff.group_size
        self.accepting = handoff.accepting
        self._parsers: dict[str, SourceParser] = {}
        self._pending: list[Event] = []
        self.lines = 0
        self.emitted = 0

    def line(self, line: Line) -> None:
        self.lines += 1
        parser = self._parsers.get(line.source.key)
        if parser is None:
            settings = next((chosen for globs, chosen in self._inputs if globs.matches(line.source.path)),
                            self._settings)
            parser = self._parsers[line.source.key] = make_parser(settings, line.source)
        for record in parser.feed(line):
            event = self._enricher.build(record)
            if event is not None:  # None: sampled out (offsets still advance past it)
                self._pending.append(event)
        if len(self._pending) >= self._group:
            self.hand_over()

    def _emit_all(self, records: list[Record]) -> None:
        for record in records:
            event = self._enricher.build(record)
            if event is not None:
                self._pending.append(event)

    def hand_over(self) -> None:
        """Give the pending events to the sending side."""
        if self._pending:
            group, self._pending = self._pending, []
            self._handoff.put(group)
            self.emitted += len(group)

    def tick(self, now: float) -> None:
        for parser in list(self._parsers.values()):
            self._emit_all(parser.flush_expired(now))
        self.hand_over()

    def source_closed(self, source: Source) -> None:
        parser = self._parsers.pop(source.key, None)
        if parser is not None:
            self._emit_all(parser.flush())
        self.hand_over()
        self._handoff.flush()  # the tailer lets go of the file next: its lines must be safe first

    def flush_all(self) -> None:
        for key in list(self._parsers):
            self._emit_all(self._parsers.pop(key).flush())
        self.hand_over()


class Pipeline:
    def __init__(self, config: Config, output: Output | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._clock = clock
        if config.timezone:
            # Parsers read offset-less timestamps in local time: make that the configured zone.
            os.environ["TZ"] = config.timezone
            time.tzset()
        self.stats = Stats()
        self._started = clock.time()
        _prepare_state_dir(config.state_dir)
        self.registry = Registry(Path(config.state_dir), ttl=config.state_ttl, clock=clock)
        self.registry.load()
        self.output = output or build_output(config)
        self.acks = AckTracker(self.registry.commit)
        self._abort = threading.Event()  # stop retrying: shutdown deadline passed
        self._stop = threading.Event()   # stop reading
        self._signal: int | None = None
        letters_index = None
        if config.dead_letter_index:
            # Imported here: the Elasticsearch client is a third of the start-up
            # time, and other outputs have no use for it.
            from agent.outputs.dead_letter_index import IndexLetters
            from agent.outputs.elasticsearch import ElasticsearchOutput
            if isinstance(self.output, ElasticsearchOutput):
                letters_index = IndexLetters(self.output, config.dead_letter_index)
        self.dead_letters = DeadLetters(config.dead_letter_path, config.target, letters_index)
        self._sender = Sender(self.output, self.acks, self.dead_letters, self.stats, self._abort,
                              config.max_retries, config.backoff_max, retry_permanent=not config.once,
                              clock=clock)
        resume_after: dict[str, int] = {}
        self.spool: DiskQueue | None = None
        self._batcher: Batcher | SpoolBatcher
        if config.spool:
            self.spool = DiskQueue(Path(config.spool_path), config.spool_max_bytes, config.spool_fsync, clock=clock)
            recovery = self.spool.open()
            if recovery.records or recovery.damaged_frames:
                log.info("spool recovered", records=recovery.records, segments=recovery.segments,
                         damaged_frames=recovery.damaged_frames, damaged_bytes=recovery.damaged_bytes)
            resume_after = dict(recovery.pending_by_source)
            handoff: MemoryHandoff | SpoolHandoff = SpoolHandoff(self.spool, config.when_full, self._abort,
                                                                 self.stats, clock)
            self._batcher = SpoolBatcher(self.spool, self._deliver, self.acks, config.bulk_max_docs,
                                         config.bulk_max_bytes, config.flush_interval, config.workers,
                                         self.stats, clock)
        else:
            # The queue holds groups of events (see _Sink): bound it in events.
            events: "queue.Queue[object]" = queue.Queue(maxsize=max(2, config.queue_events // MemoryHandoff.group_size))
            handoff = MemoryHandoff(events, self.acks)
            self._batcher = Batcher(events, self._deliver, config.bulk_max_docs, config.bulk_max_bytes,
                                    config.flush_interval, config.workers, self.stats, clock)
        self._handoff = handoff
        enricher = Enricher(config.host_name, agent_id(config.state_dir), config.keep_original,
                            build_transforms(config), metrics_target(config))
        self._sink = _Sink(parse_settings(config), enricher, handoff, config.inputs)
        self.tailer = Tailer(tail_settings(config), self.registry, self._sink, clock, resume_after)

    def _deliver(self, events: list[Event]) -> None:
        if self._abort.is_set():
            raise Aborted()  # shutting down past the deadline: leave them unacknowledged
        self._sender.deliver(events)

    # -- entry points --------------------------------------------------------
    def run(self) -> int:
        log.info("modelscribe starting", paths=",".join(self.config.all_paths), output=self.config.output,
                 target=self.config.target if self.config.output == "elasticsearch" else "-",
                 once=self.config.once, state_dir=self.config.state_dir)
        try:
            if self.config.once:
                return self._run_once()
            return self._run_daemon()
        finally:
            self._close_spool()  # idempotent: also when the preflight failed before reading
            self.output.close()

    def _preflight(self) -> int | None:
        check = getattr(self.output, "preflight", None)
        if check is None:
            return None
        try:
            check()
        except OutputError as error:
            log.error("the output is not usable, nothing was read", error=str(error))
            self.stats.error(str(error))
            return error.exit_code
        return None

    def _run_once(self) -> int:
        failed = self._preflight()
        if failed is not None:
            return failed
        batcher = threading.Thread(target=self._batcher.run, name="batcher", daemon=True)
        batcher.start()
        try:
            self.tailer.run_once()
            self._sink.flush_all()
        finally:
            self._sink.hand_over()
            self.tailer.close()
            self._finish_reading(drain=True)
            batcher.join()
            self._save_state()
            self._close_spool()
        return self._summary()

    def _finish_reading(self, drain: bool, timeout: float | None = None) -> None:
        """No more events will be handed over: ``drain`` sends what the spool
        holds (--once); otherwise it stays there for the next start."""
        try:
            if not self._handoff.finish(timeout):
                # The spool stayed full (output down) past the shutdown deadline:
                # the groups still waiting were never spooled nor committed, so
                # they are read again after a restart.
                self._abort.set()
                self._handoff.finish(5.0)
        finally:
            if isinstance(self._batcher, SpoolBatcher):
                self._batcher.finish(drain)

    def _close_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def _summary(self) -> int:
        snap = self.stats.snapshot()
        log.info("run finished", lines=self._sink.lines, events=self._sink.emitted, acked=snap.events_acked,
                 duplicates=snap.events_duplicate, rejected=snap.events_rejected,
                 unacknowledged=self.acks.in_flight())
        if self._batcher.failures or self.acks.in_flight():
            error = self._batcher.failures[-1] if self._batcher.failures else None
            log.error("not everything could be delivered; offsets stay before the undelivered lines",
                      unacknowledged=self.acks.in_flight(), error=str(error) if error else "-")
            return error.exit_code if isinstance(error, OutputError) else EXIT_OUTPUT
        if snap.events_rejected:
            log.error("some documents were rejected by the output", count=snap.events_rejected,
                      dead_letter_file=self.dead_letters.path)
            return EXIT_REJECTED
        return EXIT_OK

    def _run_daemon(self) -> int:
        if self._preflight() is not None:
            log.warning("starting anyway: delivery will be retried until the output is usable")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        reader = threading.Thread(target=self.tailer.run, args=(self._stop,), name="reader", daemon=True)
        batcher = threading.Thread(target=self._batcher.run, name="batcher", daemon=True)
        batcher.start()
        reader.start()
        try:
            while not self._stop.is_set():
                self._stop.wait(_SAVE_INTERVAL)
                self._save_state()
                if not reader.is_alive() and not self._stop.is_set():
                    log.error("the reader thread died; shutting down")
                    self._stop.set()
            self._shutdown(reader, batcher)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return EXIT_OK

    def _save_state(self) -> None:
        """Offsets (what was acknowledged) and the status file for ``modelscribe status``."""
        self.registry.save()
        self.stats.set("lines_read", self._sink.lines)
        self.stats.set("events_emitted", self._sink.emitted)
        self.stats.set("lost_bytes", self.tailer.lost_bytes)
        spool = None
        if self.spool is not None:
            spool = {"path": self.config.spool_path, "used_bytes": self.spool.used_bytes(),
                     "max_bytes": self.spool.max_bytes(), "pending": self.spool.pending(),
                     "oldest_unacked_age": self.spool.oldest_unacked_age()}
        try:
            write_status(self.config.state_dir, self._started, self.stats.snapshot(), spool)
        except OSError as error:
            log.warning("cannot write the status file", state_dir=self.config.state_dir, error=error.strerror)

    def stop(self) -> None:
        """Ask a running daemon to shut down (what SIGTERM does)."""
        self._stop.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signal = signum
        self._stop.set()

    def _shutdown(self, reader: threading.Thread, batcher: threading.Thread) -> None:
        deadline = self._clock.monotonic() + self.config.shutdown_timeout
        log.info("shutting down: flushing in-flight events",
                 signal=signal.Signals(self._signal).name if self._signal else "-",
                 in_flight=self.acks.in_flight())

        def remaining() -> float:
            return max(0.0, deadline - self._clock.monotonic())

        reader.join(remaining())
        if reader.is_alive():
            self._abort.set()  # unblocks the reader by draining the queue without sending
            reader.join(5.0)
        self._finish_reading(drain=False, timeout=remaining())
        batcher.join(remaining())
        if batcher.is_alive():
            log.warning("shutdown timeout reached; unacknowledged events will be read again on restart",
                        in_flight=self.acks.in_flight())
            self._abort.set()
            batcher.join(10.0)
        self._save_state()
        self._close_spool()
        log.info("stopped", acked=self.stats.snapshot().events_acked, unacknowledged=self.acks.in_flight())


def _prepare_state_dir(path: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w", encoding="ascii") as handle:
            handle.write("ok")
        os.unlink(probe)
    except OSError as error:
        raise StateError(f"--state-dir {path}: not usable: {error.strerror}") from error

