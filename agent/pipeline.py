"""The daemon: wires tail -> parse -> enrich -> queue -> batch -> output -> acks -> registry.

Concurrency model (one for the whole agent): threads joined by a bounded
queue. The reader thread tails, parses and enriches; the batcher thread
groups events and hands them to ``--workers`` output threads; the main
thread saves the registry every second and handles signals (the handler
only records the signal; this loop acts on it).

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

import os
import queue
import signal
import threading
from pathlib import Path

from agent.acks import AckTracker
from agent.clock import SYSTEM_CLOCK, Clock
from agent.config import Config
from agent.enrich import Enricher, agent_id
from agent.errors import EXIT_OK, EXIT_OUTPUT, EXIT_REJECTED, OutputError, StateError
from agent.events import Event, Line, Record, Source
from agent.outputs import build_output
from agent.outputs.base import Output
from agent.outputs.batcher import END, Batcher
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.sender import Sender
from agent.parsing import ParseSettings, SourceParser, make_parser
from agent.registry import Registry
from agent.selflog import get_logger
from agent.sources.tailer import Tailer, TailSettings
from agent.stats import Stats
from agent.status import write_status

log = get_logger("pipeline")
_SAVE_INTERVAL = 1.0


def tail_settings(config: Config) -> TailSettings:
    return TailSettings(paths=config.paths, excludes=config.excludes, scan_interval=config.scan_interval,
                        partial_line_timeout=config.partial_line_timeout,
                        max_line_bytes=config.max_line_bytes, fingerprint_bytes=config.fingerprint_bytes,
                        close_inactive=config.close_inactive)


def parse_settings(config: Config) -> ParseSettings:
    return ParseSettings(format=config.format, multiline_start=config.multiline_start,
                         multiline_max_lines=config.multiline_max_lines,
                         multiline_max_bytes=config.multiline_max_bytes,
                         multiline_timeout=config.multiline_timeout, keep_original=config.keep_original)


class _Sink:
    """The tailer's LineSink: parse, enrich, register for acks, enqueue (may block).

    Events are handed to the queue in groups of up to ``_GROUP`` (and at
    every tick, at most 0.5 s apart), so the locks of the queue and the ack
    tracker are taken once per group, not once per line.
    """

    _GROUP = 256

    def __init__(self, settings: ParseSettings, enricher: Enricher, acks: AckTracker,
                 events: "queue.Queue[object]") -> None:
        self._settings = settings
        self._enricher = enricher
        self._acks = acks
        self._queue = events
        self._parsers: dict[str, SourceParser] = {}
        self._pending: list[Event] = []
        self.lines = 0
        self.emitted = 0

    def line(self, line: Line) -> None:
        self.lines += 1
        parser = self._parsers.get(line.source.key)
        if parser is None:
            parser = self._parsers[line.source.key] = make_parser(self._settings, line.source)
        for record in parser.feed(line):
            self._pending.append(self._enricher.build(record))
        if len(self._pending) >= self._GROUP:
            self.hand_over()

    def _emit_all(self, records: list[Record]) -> None:
        for record in records:
            self._pending.append(self._enricher.build(record))

    def hand_over(self) -> None:
        """Register the pending events for acknowledgement and enqueue them."""
        if self._pending:
            group, self._pending = self._pending, []
            self._acks.register(group)
            self._queue.put(group)
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

    def flush_all(self) -> None:
        for key in list(self._parsers):
            self._emit_all(self._parsers.pop(key).flush())
        self.hand_over()


class Pipeline:
    def __init__(self, config: Config, output: Output | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._clock = clock
        self.stats = Stats()
        self._started = clock.time()
        _prepare_state_dir(config.state_dir)
        self.registry = Registry(Path(config.state_dir), ttl=config.state_ttl, clock=clock)
        self.registry.load()
        self.output = output or build_output(config)
        # The queue holds groups of events (see _Sink): bound it in events.
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max(2, config.queue_events // _Sink._GROUP))
        self.acks = AckTracker(self.registry.commit)
        self._abort = threading.Event()  # stop retrying: shutdown deadline passed
        self._stop = threading.Event()   # stop reading
        self._signal: int | None = None
        self.dead_letters = DeadLetters(config.dead_letter_path, config.target)
        self._sender = Sender(self.output, self.acks, self.dead_letters, self.stats, self._abort,
                              config.max_retries, config.backoff_max, retry_permanent=not config.once,
                              clock=clock)
        enricher = Enricher(config.host_name, agent_id(config.state_dir), config.keep_original)
        self._sink = _Sink(parse_settings(config), enricher, self.acks, self._queue)
        self.tailer = Tailer(tail_settings(config), self.registry, self._sink, clock)
        self._batcher = Batcher(self._queue, self._deliver, config.bulk_max_docs, config.bulk_max_bytes,
                                config.flush_interval, config.workers, self.stats, clock)

    def _deliver(self, events: list[Event]) -> None:
        if self._abort.is_set():
            return  # shutting down past the deadline: leave them unacknowledged
        self._sender.deliver(events)

    # -- entry points --------------------------------------------------------
    def run(self) -> int:
        log.info("modelscribe starting", paths=",".join(self.config.paths), output=self.config.output,
                 target=self.config.target if self.config.output == "elasticsearch" else "-",
                 once=self.config.once, state_dir=self.config.state_dir)
        try:
            if self.config.once:
                return self._run_once()
            return self._run_daemon()
        finally:
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
            self._queue.put(END)
            batcher.join()
            self._save_state()
        return self._summary()

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
        try:
            write_status(self.config.state_dir, self._started, self.stats.snapshot(), None)
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
        self._queue.put(END)
        batcher.join(remaining())
        if batcher.is_alive():
            log.warning("shutdown timeout reached; unacknowledged events will be read again on restart",
                        in_flight=self.acks.in_flight())
            self._abort.set()
            batcher.join(10.0)
        self._save_state()
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

