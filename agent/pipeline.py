"""The daemon: wires tail -> parse -> enrich -> queue -> batch -> output -> acks -> registry.

One delivery path whatever the settings: the reader thread tails, parses,
enriches and hands groups to ``handoff``, whose spool-writer thread appends
them to the queue (the disk spool, or with ``--no-spool`` its memory twin);
the batcher thread takes from the queue, registers events for
acknowledgement and hands batches to ``--workers`` output threads; the main
thread saves the registry every second and acts on signals and stage deaths
(``supervise``). Concurrency model, one for the whole agent: threads joined
by bounded hand-offs.

Guarantees:
- a file's offset is committed only after the output acknowledged every
  event up to it (``acks``); what was read but not acknowledged is read
  again after a restart, and the deterministic ``_id`` makes that re-send
  harmless;
- SIGTERM/SIGINT stop reading, flush what is in memory, save offsets and
  exit 0 within ``--shutdown-timeout`` plus a grace of ``SHUTDOWN_GRACE``
  seconds, in every mode and whatever the output does (down, hung, queue
  full); whatever the output did not confirm by then is simply not committed;
- a stage that dies stops the agent with exit code 1 (``supervise``);
- a registry save that fails (disk full, read-only or immutable state dir,
  EIO) never stops the agent: it is logged (an error at once, then every
  ``SAVE_FAILURE_LOG_INTERVAL`` seconds while it lasts, and ``last_error``
  in ``modelscribe status``) and retried every second; shipping goes on and
  only the offsets on disk lag, so a restart meanwhile re-sends lines under
  the same ids. Stopping would protect nothing and turn a passing ENOSPC into
  an outage. Only the final save at shutdown (or at the end of ``--once``)
  failing changes the exit code: 1, with an error naming the file. Health's
  checkpoint is the same (its journal keeps what it did not save), and so is
  its journal (``agent.health.checkpoint``: the events it cannot record are
  left out of health, counted and logged). Before any of these gives up on a
  full disk (ENOSPC, EDQUOT), as the status file's, the spool is told
  (``DiskQueue.reclaim``): it frees the delivered records it holds there
  (its segment being written, once delivered), and the write is tried again
  at once;
- ``--state-ttl`` below ``MIN_STATE_TTL`` is raised to it with a warning:
  entries of files not open at the moment (a restart, the gap between two
  ``--once`` runs) must outlive a restart, or every file is read again from 0.
  Entries of open files never expire whatever the value (``Registry.hold``);
- ``--once`` reads every file to its current end, waits for every
  acknowledgement and returns the exit code documented in ``errors``;
- SIGHUP re-reads the configuration and applies what can change live, while
  delivery goes on (``agent.reload``); one during start-up is applied once
  ready. No signal, from start-up to exit, meets a default handler (``supervise``).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from agent.acks import AckTracker
from agent.atomic import remove_stale_temps
from agent.clock import SYSTEM_CLOCK, Clock
from agent.config import Config
from agent.config.stages import check_state_dir
from agent.cuts import CutLog
from agent.enrich import Enricher, agent_id
from agent.errors import EXIT_OK, EXIT_OUTPUT, EXIT_REJECTED, EXIT_RUNTIME, ModelscribeError, OutputError, StateError
from agent.events import Event
from agent.outputs import build_output
from agent.outputs.base import Output
from agent.handoff import Handoff
from agent.health.wiring import Health, committed_offsets
from agent.outputs.batcher import Aborted, Batcher
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.sender import Sender
from agent.parsing import ParseSettings
from agent.registry import Registry
from agent.reload import Reloader
from agent.self_metrics import Reading, SelfMetrics, target_for as self_metrics_target
from agent.selflog import get_logger
from agent.sink import Sink
from agent.service import Notifier, status_line
from agent.sources.tailer import Tailer, TailSettings
from agent.spool import DiskQueue, MemoryQueue
from agent.spool.damage import explain_damage
from agent.stats import Stats
from agent.transforms import Transforms, gather, load_or_create_hash_key
from agent.status import mark_stopped, write_status
from agent.state_lock import DirectoryLock
from agent.supervise import FailureStreak, Supervisor

if TYPE_CHECKING:
    from agent.metrics import MetricsServer

log = get_logger("pipeline")
_SAVE_INTERVAL = 1.0
SAVE_FAILURE_LOG_INTERVAL = 60.0  # seconds between two "still cannot save" errors
MIN_STATE_TTL = 3600.0  # long enough to outlive a restart or a reboot
# After --shutdown-timeout, how long the agent still waits for stages it told
# to give up (the abort flag) before it saves offsets and exits without them.
SHUTDOWN_GRACE = 5.0
_INDEXING = ("elasticsearch", "opensearch")  # outputs with a cluster behind them


def tail_settings(config: Config) -> TailSettings:
    from agent.config.stages import tail_excludes  # --exclude and the agent's own files

    # The inputs' globs first, in their order, then --path: the order in which the sink
    # chooses a file's settings (``Discovery.scan`` lists paths in glob order).
    paths = tuple(path for spec in config.inputs for path in spec.paths) + config.paths
    return TailSettings(paths=paths, excludes=tail_excludes(config), scan_interval=config.scan_interval,
                        partial_line_timeout=config.partial_line_timeout,
                        max_line_bytes=config.max_line_bytes, fingerprint_bytes=config.fingerprint_bytes,
                        close_inactive=config.close_inactive, close_removed_after=config.close_removed_after,
                        read_from_end=config.read_from == "end", ignore_older=config.ignore_older)


def parse_settings(config: Config) -> ParseSettings:
    """Every ParseSettings field the Config has (one list: ``agent.config.stages``)."""
    from agent.config.stages import parse_settings as from_config

    return from_config(config)


def build_transforms(config: Config) -> Transforms:
    """The enrichment rules. Their settings were validated when the Config was
    resolved (``agent.config.stages``), so a ValueError here is a bug."""
    from agent.config.stages import transform_settings

    hash_key = config.hash_key
    if config.hash_fields and hash_key is None:
        hash_key = load_or_create_hash_key(config.state_dir)
    return Transforms(transform_settings(config, hash_key), gather(config.host_name))


def build_enricher(config: Config) -> Enricher:
    """The enrichment stage (also what a reload swaps in)."""
    return Enricher(config.host_name, agent_id(config.state_dir), config.keep_original,
                    build_transforms(config), metrics_target(config))


def metrics_target(config: Config) -> str | None:
    """logs-modelscribe-NS -> metrics-modelscribe-NS (only for the logs-* data stream naming)."""
    if config.index is None and config.data_stream.startswith("logs-"):
        return "metrics-" + config.data_stream[len("logs-"):]
    return None


class Pipeline:
    def __init__(self, config: Config, output: Output | None = None, clock: Clock = SYSTEM_CLOCK,
                 reload: Callable[[], Config] | None = None) -> None:
        """``reload``: resolves the settings again from the sources the agent
        started with (SIGHUP); without it a SIGHUP is logged and ignored."""
        self.config = config
        self._clock = clock
        if config.timezone:
            # Parsers read offset-less timestamps in local time: make that the configured zone.
            os.environ["TZ"] = config.timezone
            time.tzset()
        self.stats = Stats()
        self._started = clock.time()
        check_state_dir(config.state_dir, f"--state-dir {config.state_dir}", create=True)  # as resolved: exit 2
        self._locks = [DirectoryLock(config.state_dir, f"--state-dir {config.state_dir}")]
        if config.spool and os.path.realpath(config.spool_path) != os.path.realpath(config.state_dir):
            # The default spool (STATE_DIR/spool) too: another agent may name it with --spool-dir.
            flag = (f"--spool-dir {config.spool_dir}" if config.spool_dir
                    else f"--state-dir {config.state_dir} (its spool, {config.spool_path})")
            check_state_dir(config.spool_path, flag, create=True)
            self._locks.append(DirectoryLock(config.spool_path, flag))
        for lock in self._locks:
            lock.acquire()  # before any state is read: exit 2 if another agent holds it
        # Left by a kill mid-write (the registry's own are removed as it loads).
        remove_stale_temps(config.state_dir, (".status.json.", ".agent_id.", ".cuts.json."))
        ttl = config.state_ttl
        if ttl < MIN_STATE_TTL:
            log.warning("--state-ttl is too short to survive a restart; using the minimum instead",
                        state_ttl=ttl, minimum=MIN_STATE_TTL)
            ttl = MIN_STATE_TTL
        self.registry = Registry(Path(config.state_dir), ttl=ttl, clock=clock)
        self._registry_failing = FailureStreak(log, self._clock, "cannot save the registry; shipping goes on, "
                                               "retried every second", "registry saved again",
                                               SAVE_FAILURE_LOG_INTERVAL)
        self._health_failing = FailureStreak(log, self._clock, "cannot save the health state; shipping goes on, "
                                             "retried every second (its journal keeps what is not saved)",
                                             "health state saved again", SAVE_FAILURE_LOG_INTERVAL)
        self._final_save_failed = False
        self._gave_up_on_disk = False  # (``_hopeless``: logged once)
        self._status_failed = False  # the status file could not be written (logged once)
        self.registry.load()
        self.cuts = CutLog(Path(config.state_dir), self.registry, clock)
        self.cuts.load()
        self.output = output or build_output(config)
        # Model health (issue 10), when the config file asks for it: fed where events are registered.
        self.health = Health.from_config(config, metrics_target(config) or config.index,
                                         agent_id(config.state_dir), clock)
        self.acks = self.health.acks(self.registry.commit) if self.health else AckTracker(self.registry.commit)
        self._abort = threading.Event()  # stop retrying: shutdown deadline passed
        self._stop = threading.Event()   # stop reading
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
                              clock=clock, give_up_to_dead_letters=not config.once)
        self._supervisor = Supervisor()
        self.spool: DiskQueue | MemoryQueue
        if config.spool:
            self.spool = DiskQueue(Path(config.spool_path), config.spool_max_bytes, config.spool_fsync, clock=clock)
        else:
            self.spool = MemoryQueue(config.queue_events, clock)
        recovery = self.spool.open()
        if self.health is not None:
            self.health.recovered(recovery.records)
            # A full disk under health's journal or checkpoint is one under the spool
            # too, most often (the state directory): the spool frees its delivered records.
            self.health.engine.on_disk_full = self.spool.reclaim
        if recovery.records or recovery.damaged_frames:
            log.info("spool recovered", records=recovery.records, segments=recovery.segments,
                     damaged_frames=recovery.damaged_frames, damaged_bytes=recovery.damaged_bytes)
        # Damaged frames: read again from their files, or lost (and counted in lost_bytes).
        self._spool_lost_bytes = explain_damage(recovery, self.registry.get) if recovery.damage else 0
        resume_after = dict(recovery.pending_by_source)
        handoff = Handoff(self.spool, config.when_full, self._abort, self.stats, clock)
        self._batcher = Batcher(self.spool, self._deliver, self.acks, config.bulk_max_docs,
                                config.bulk_max_bytes, config.flush_interval, config.workers,
                                self.stats, clock, on_death=self._supervisor.died)
        self._handoff = handoff
        self._sink = Sink(parse_settings(config), build_enricher(config), handoff, config.inputs, self.cuts)
        self.tailer = Tailer(tail_settings(config), self.registry, self._sink, clock, resume_after, self.cuts)
        if config.self_metrics_interval is not None and config.output in _INDEXING and not config.once:
            self._sink.periodic.append(self._self_metrics(config.self_metrics_interval).due)
        self._reloader = Reloader(config, reload, self.tailer, self._sink, self.output) if reload else None

    def _self_metrics(self, interval: float) -> SelfMetrics:
        # file_lags lives with the Prometheus collector, which reads the same figures.
        from agent.metrics import file_lags

        stats, sink, spool, registry, tailer = self.stats, self._sink, self.spool, self.registry, self.tailer

        def read() -> Reading:
            snap = stats.snapshot()
            return Reading(sink.lines, snap.events_acked, snap.events_retried, snap.events_rejected,
                           snap.events_given_up, spool.used_bytes(), spool.pending(),
                           sum(lag for _, lag in file_lags(registry.entries())), tailer.open_files(),
                           stats.last_ack_time)

        config = self.config
        return SelfMetrics(interval, read, config.host_name or socket.gethostname(), agent_id(config.state_dir),
                           self_metrics_target(config.data_stream), self._clock.time())

    def _deliver(self, events: list[Event]) -> None:
        if self._abort.is_set():
            raise Aborted()  # shutting down past the deadline: leave them unacknowledged
        self._sender.deliver(events)

    # -- entry points --------------------------------------------------------
    def run(self) -> int:
        log.info("modelscribe starting", paths=",".join(self.config.all_paths), output=self.config.output,
                 target=self.config.target if self.config.output in _INDEXING else "-",
                 once=self.config.once, state_dir=self.config.state_dir)
        metrics = None
        try:
            if self.config.once:
                return self._run_once()
            self._supervisor.install_signals()  # before anything slow: the metrics server, the output's check
            if self.config.metrics_addr:  # not for --once: it ends before a scrape would see it
                metrics = self._metrics_server(self.config.metrics_addr)
                metrics.start()  # a taken port is a ConfigError (exit code 2) before anything is read
            return self._run_daemon()
        finally:
            try:
                if metrics is not None:
                    metrics.stop()  # may take a moment (its poll interval): still under our handlers
                self._close_spool()  # idempotent: also when the preflight failed before reading
                self.output.close()
                mark_stopped(self.config.state_dir)
            finally:
                for lock in self._locks:
                    lock.release()
                self._supervisor.close()  # gives the signals back: last, once everything is saved

    def _lost_bytes(self) -> int:
        """Bytes of lines lost: unread bytes of deleted files released while the
        output was blocked, and lines of files gone that a damaged spool held."""
        return self.tailer.lost_bytes + self._spool_lost_bytes

    def _metrics_server(self, address: str) -> "MetricsServer":
        """/metrics and /health, reading this pipeline's counters at scrape time."""
        # Imported here: prometheus-client is of no use to --once, whose start-up time counts.
        from agent.metrics import AgentView, MetricsServer, file_lags, spool_use

        sink, tailer, spool, registry = self._sink, self.tailer, self.spool, self.registry
        return MetricsServer(address, AgentView(
            stats=self.stats,
            live=lambda: {"lines_read": sink.lines, "events_emitted": sink.emitted,
                          "bytes_emitted": sink.emitted_bytes, "lost_bytes": self._lost_bytes()},
            spool=lambda: spool_use(spool), files=lambda: file_lags(registry.entries()),
            open_files=tailer.open_files, waiting_files=lambda: tailer.waiting_files()[0],
            handoff=lambda: self._handoff.events,
            in_flight=self.acks.in_flight,
            deaths=lambda: list(self._supervisor.deaths), started=self._started,
            blocked_after=self.config.health_blocked_after, time=self._clock.time,
            own=lambda: {**self.stats.own(), "events_emitted": sink.own_emitted}),
            origin=self.config.origins.get("metrics_addr"))

    def _preflight(self) -> int | None:
        check = getattr(self.output, "preflight", None)
        if check is None:
            return None
        try:
            check()
        except OutputError as error:
            if self.config.once:  # which stops here: exit code 3
                log.error("the output is not usable, nothing was read", error=str(error))
            else:  # the daemon reads on, into the queue
                log.warning("the output is not usable yet; starting anyway: delivery will be retried until "
                            "it is", error=str(error))
            self.stats.error(str(error))
            return error.exit_code
        return None

    def _run_once(self) -> int:
        failed = self._preflight()
        if failed is not None:
            return failed
        batcher = self._supervisor.thread("batcher", self._batcher.run)
        batcher.start()
        if self.health is not None:
            # Sends each window's documents as it closes: a backlog's documents
            # never pile up in the outbox (beyond caps.outbox they were dropped).
            self.health.start(self._supervisor.thread, self._sender.deliver, wall_clock=False)
        try:
            self.tailer.run_once(stop=self._supervisor.stopping)  # a stage died: read no further
            self._sink.flush_all()
        finally:
            try:
                self._sink.hand_over()
            finally:
                self.tailer.close()
                self._finish_reading(drain=True)
                batcher.join()
                if self.health is not None:
                    self.health.finish_once(self._sender.deliver)
                self._save_state(final=True)
                self._close_spool()
        return self._summary()

    def _finish_reading(self, drain: bool, timeout: float | None = None, grace: float = SHUTDOWN_GRACE) -> None:
        """No more events will be handed over: ``drain`` sends what the queue
        holds; otherwise it stays there (the disk spool keeps it for the next
        start). Bounded by ``timeout`` and then ``grace`` when given."""
        try:
            if not self._handoff.finish(timeout, give_up=self._hopeless if timeout is not None else None):
                # The queue stayed full (output down) past the shutdown deadline, or
                # its disk cannot take them (``_hopeless``): the groups still waiting
                # were never queued nor committed, so they are read again after a restart.
                self._abort.set()
                self._handoff.finish(grace)
        except ModelscribeError as error:  # a failed append, already raised or not: a dead stage
            if not any(dead is error for _, dead in self._supervisor.deaths):
                self._supervisor.died("spool-writer", error)
        finally:
            self._batcher.finish(drain)

    def _hopeless(self) -> bool:
        """At a stop: the spool writer waits for a disk that is full or cannot be
        written, and nothing in flight can free space by its acknowledgement.
        Waiting out --shutdown-timeout then changes nothing (it made a stop on a
        read-only spool take 35 s): the groups not spooled are given up, to be
        read again at the next start, at once. (Logged once.)"""
        if not (self._handoff.waiting_on_disk() and not self.acks.in_flight()):
            return False
        if not self._gave_up_on_disk:
            self._gave_up_on_disk = True
            log.warning(f"stopping while the {self.spool.kind} cannot be written: the lines read and not "
                        "spooled are read again at the next start",
                        directory=str(getattr(self.spool, "directory", "-")))
        return True

    def _close_spool(self) -> None:
        self.spool.close()

    def _summary(self) -> int:
        """The --once summary, a line per way events were not delivered, and the
        exit code of the worst: dropped ones (3) are in no dead-letter file."""
        snap = self.stats.snapshot()
        log.info("run finished", lines=self._sink.lines, events=self._sink.emitted, acked=snap.events_acked,
                 duplicates=snap.events_duplicate, rejected=snap.events_rejected, dropped=snap.events_dropped,
                 unacknowledged=self.acks.in_flight())
        if self._supervisor.deaths or self._final_save_failed:
            return EXIT_RUNTIME
        if self._batcher.failures or self.acks.in_flight():
            error = self._batcher.failures[-1] if self._batcher.failures else None
            log.error("not everything could be delivered; offsets stay before the undelivered lines",
                      unacknowledged=self.acks.in_flight(), error=str(error) if error else "-")
            return error.exit_code if isinstance(error, OutputError) else EXIT_OUTPUT
        if snap.events_dropped:
            log.warning(f"some events were dropped, not delivered: the {self.spool.kind} was full (--when-full "
                        "drop-newest); their lines are not read again (--when-full block makes --once wait)",
                        count=snap.events_dropped)
        if snap.events_rejected:
            where = {"dead_letter_file": self.dead_letters.path}
            if self.dead_letters.index_name:  # (first there; the file holds only what it could not take)
                where = {"dead_letter_index": self.dead_letters.index_name, **where}
            log.error("some documents were rejected by the output; `modelscribe dlq list` shows them",
                      count=snap.events_rejected, **where)
        return EXIT_OUTPUT if snap.events_dropped else EXIT_REJECTED if snap.events_rejected else EXIT_OK

    def _run_daemon(self) -> int:
        supervisor = self._supervisor  # its signal handlers are in place (``run``)
        # In a thread: a SIGTERM during the check (up to 10 s against a hung
        # node) stops the agent at once instead of after it.
        supervisor.call("preflight", self._preflight)  # a failure is logged; NoEntryPipeline is raised
        if supervisor.stopping():
            self._stop.set()  # asked to stop while starting: the reader reads nothing
        elif supervisor.reload_requested:
            log.info("reload requested during start-up; applying it now that the agent is ready")
        reader = supervisor.thread("reader", self.tailer.run, self._stop)
        batcher = supervisor.thread("batcher", self._batcher.run)
        batcher.start()
        reader.start()
        if self.health is not None:
            self.health.start(supervisor.thread, self._sender.deliver)

        def status() -> str:
            spool = self.spool.used_bytes() if isinstance(self.spool, DiskQueue) else None
            return status_line(self.tailer.open_files(), spool, self.stats.snapshot().events_acked)

        # systemd (Type=notify): READY now, watchdog pings only from this loop, STOPPING in _shutdown.
        notifier = self._notifier = Notifier()
        notifier.ready(status())
        try:
            while not supervisor.wait(notifier.wait_bound(_SAVE_INTERVAL)):
                if supervisor.take_reload():
                    self._reload(status)
                self._save_state()
                for stage in (reader, batcher):
                    if not stage.is_alive() and not supervisor.stopping():
                        supervisor.died(stage.name, RuntimeError(f"the {stage.name} thread ended on its own"))
                notifier.tick(status)
            self._shutdown(reader, batcher)
        finally:
            notifier.close()  # the signal handlers stay until ``run`` has stopped everything
        if supervisor.deaths:
            stage, error = supervisor.deaths[0]
            if not isinstance(error, ModelscribeError):  # after a traceback: the reason again, at the end
                log.error("stopped because a stage died", stage=stage, error=repr(error))
            return EXIT_RUNTIME
        return EXIT_RUNTIME if self._final_save_failed else EXIT_OK

    def _reload(self, status: Callable[[], str]) -> None:
        """SIGHUP: re-read the settings, apply what can change live (``agent.reload``)."""
        if self._reloader is None:
            log.warning("reload requested, but this agent was given no way to re-read its settings; ignored")
            return
        self._notifier.reloading()
        self.config = self._reloader.reload()
        # Not ``ready()``: that would push the next watchdog ping back a whole interval.
        self._notifier.send("READY=1", f"STATUS={status()}")

    def reload(self) -> None:
        """Ask a running daemon to reload (what SIGHUP does); any thread."""
        self._supervisor.request_reload()

    def _save_state(self, final: bool = False) -> None:
        """Offsets (what was acknowledged) and the status file for ``modelscribe status``.

        ``final``: the last save before exit; its failure sets the exit code."""
        committed = committed_offsets(self.registry) if self.health is not None else {}
        # After the registry, and only if it was saved: see agent.health.engine.
        if self._save_registry(final) and self.health is not None:
            try:
                self.health.save(self.registry, committed)
            except StateError as error:
                self.stats.error(str(error))
                self._health_failing.failed(error=str(error))
            else:
                self._health_failing.succeeded()
        self.stats.set("lines_read", self._sink.lines)
        self.stats.set("events_emitted", self._sink.emitted)
        self.stats.set("bytes_emitted", self._sink.emitted_bytes)
        self.stats.set("lost_bytes", self._lost_bytes())
        spool = None
        if isinstance(self.spool, DiskQueue):
            spool = {"path": self.config.spool_path, "used_bytes": self.spool.used_bytes(),
                     "max_bytes": self.spool.max_bytes(), "pending": self.spool.pending(),
                     "oldest_unacked_age": self.spool.oldest_unacked_age(),
                     "paused": self._handoff.paused, "held": self._handoff.events,
                     # (audit 12: a full state disk the spool could not free stalled writing
                     # with nothing in status; also ends the episode in the log when due)
                     "disk_full": self.spool.disk_full_episode()}
        try:
            count, first = self.tailer.waiting_files()
            waiting = {"files": count, "first": first} if count else None
            try:
                write_status(self.config.state_dir, self._started, self.stats.snapshot(), spool, waiting)
            except OSError as error:
                if not self._freed_space(error):
                    raise
                write_status(self.config.state_dir, self._started, self.stats.snapshot(), spool, waiting)
        except OSError as error:
            if not self._status_failed:  # once per failing streak, not every second
                log.warning("cannot write the status file", state_dir=self.config.state_dir, error=error.strerror)
            self._status_failed = True
        else:
            self._status_failed = False

    def _freed_space(self, error: BaseException | None) -> bool:
        """A state file could not be written: if for want of space (ENOSPC,
        EDQUOT), the spool frees its delivered records (``DiskQueue.reclaim``);
        True if it freed any, and the write is worth trying again at once.
        (Audit 11: on a 3 MiB state disk the registry and health state failed
        to save for 54 s, idle, next to a 1.5 MB segment of delivered records.)"""
        if not (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)):
            return False
        return self.spool.reclaim()

    def _save_registry(self, final: bool) -> bool:
        """Save the registry; a failure is logged, never raised (see the module docstring)."""
        try:
            try:
                saved = self.registry.save(pace=not final)
            except StateError as error:
                if not self._freed_space(error.__cause__):
                    raise
                saved = self.registry.save()  # once more, in the space the spool freed
            if not saved:
                return False  # (paced: a large registry is not rewritten every second)
        except StateError as error:
            self.stats.error(str(error))
            if final:
                self._final_save_failed = True
                log.error("cannot save offsets before exiting; lines acknowledged since the last save "
                          "will be sent again at the next start", path=str(self.registry.path), error=str(error))
            else:
                self._registry_failing.failed(path=str(self.registry.path), error=str(error))
            return False
        self._registry_failing.succeeded(path=str(self.registry.path))
        return True

    def stop(self) -> None:
        """Ask a running daemon to shut down (what SIGTERM does); any thread."""
        self._supervisor.request_stop()

    def _shutdown(self, reader: threading.Thread, batcher: threading.Thread) -> None:
        """The stop protocol, the same in every mode: stop reading, hand the
        last groups to the queue, stop (disk spool) or drain (memory queue)
        the batcher, wait for batches in flight, save offsets. Each wait is
        bounded by the deadline; past it the abort flag makes every stage give
        up, and the grace bounds how long they get to do so."""
        self._stop.set()
        deadline = self._clock.monotonic() + self.config.shutdown_timeout
        hard_deadline = deadline + SHUTDOWN_GRACE
        signum = self._supervisor.signal
        log.info("shutting down: flushing in-flight events", signal=signal.Signals(signum).name if signum else "-",
                 in_flight=self.acks.in_flight())
        self._notifier.stopping(f"stopping: {self.acks.in_flight()} events in flight")

        def remaining(until: float) -> float:
            return max(0.0, until - self._clock.monotonic())

        while reader.is_alive() and remaining(deadline) > 0 and not self._hopeless():
            reader.join(min(0.5, remaining(deadline)))
        if reader.is_alive():
            self._abort.set()  # a blocked append gives up, and the reader with it
            reader.join(remaining(hard_deadline))
        # What is in memory is lost at exit and read again anyway: send it
        # while there is time. The disk spool keeps its records for the next start.
        self._finish_reading(drain=isinstance(self.spool, MemoryQueue), timeout=remaining(deadline),
                             grace=remaining(hard_deadline))
        batcher.join(remaining(deadline))
        if batcher.is_alive() and not self.acks.in_flight():
            batcher.join(remaining(hard_deadline))  # (nothing in flight: it is only leaving its loop)
        if batcher.is_alive():
            log.warning("shutdown timeout reached; unacknowledged events will be read again on restart",
                        in_flight=self.acks.in_flight())
            self._abort.set()
            self._batcher.quit()
            batcher.join(remaining(hard_deadline))
        if self.health is not None:
            self.health.stop(self._sender.deliver, remaining(deadline))
        self._save_state(final=True)
        self._close_spool()
        log.info("stopped", acked=self.stats.snapshot().events_acked, unacknowledged=self.acks.in_flight(),
                 offsets_saved=not self._final_save_failed)

