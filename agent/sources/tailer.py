"""The tailer: tail every matched file, follow it through rename, truncation and deletion.

One thread runs the ``Tailer``. It holds one file descriptor per open file
(no thread per file) and polls each with a backoff (0.25 s while it grows,
doubling to 2 s when idle, reset by growth or a watchdog event); a full glob
scan runs every ``scan_interval`` and whenever a rename is noticed. Finding,
opening and releasing files, and knowing them by dev/inode across renames, is
``harvesters``' part (a base of ``Tailer``); this module reads them.

Guarantees:

* every complete line of a file is pushed to ``LineSink.line`` once, in file
  order, with byte offsets (see ``reader``); while ``line()`` blocks the tailer
  reads nothing, which is the agent's backpressure;
* a file renamed away is read to its end and closed once it has been idle for
  ``close_inactive``; one renamed out of the globs while the agent was
  stopped is found again at the first scan and finished the same way (see
  ``harvesters``);
* truncation of an open file starts a new content (new key) at 0; nothing of
  the old content is sent again. It is seen when the size is below the read
  position, or when the file's size changed and its first ``fp_len`` bytes
  (the fingerprint, one ``pread``) no longer hash to its key's: a program
  that reopened its log with ``open(path, "w")`` and wrote past the old read
  position between two checks;
* a deleted file is drained, closed, reported with ``LineSink.source_closed``
  and marked gone in the registry, so a reused inode is never resumed;
* a last line without newline is held until its newline arrives, or sent
  tagged ``TAG_PARTIAL`` once the file has not grown for
  ``partial_line_timeout``; later bytes start a new line;
* NUL bytes are left out of the lines (``reader``; logged once per file). A
  file that ends in NULs (a region preallocated, extended by ``ftruncate``,
  or mapped in memory, and written in place later) is read up to them only;
  they are read again once the file's size, its modification time or the
  tail's first byte changed (harvesters: ``_nul_tail_unwritten``), so lines
  written there later are read, at their offsets. A hole the file system
  reports (``SEEK_DATA``) is counted as NULs without reading it.

Limits: a file truncated and rewritten between two checks to exactly its old
size, or with the same first line (a constant header), is read on from the
old position. A file whose path vanished but which still has links (renamed out of the globs;
NFS "silly renames") is treated as rotated, closed after ``close_inactive``.

New settings (a reload, ``apply``) are taken at the start of the reader's
next ``poll``, never in the middle of a file's lines: the ``before`` callback
runs first (the sink switches its parsers there), then new globs are scanned
at once, and an open file the new globs no longer match is read to its
current end (complete lines only), reported with ``source_closed`` and
closed. Its registry entry stays: if a later reload matches it again, it is
resumed at its committed offset like any known file.

The tailer never commits offsets: the registry's offsets advance only when
the output acknowledges (``Registry.commit``). It only records identities
(``track``), paths (``touch``) and deletions (``mark_gone``).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from agent.cuts import CutLog
from agent.events import Line, Source
from agent.registry import Entry, Registry
from agent.selflog import get_logger
from agent.sources.discovery import Discovery, Watcher, describe_error
from agent.sources.harvesters import (_ACTIVE, _DELETED, _RENAMED, _UNMATCHED, MAX_CHECK_INTERVAL,
                                      MIN_CHECK_INTERVAL, CAP_LOG_INTERVAL, Harvesters, IdleFile, _Harvester)
from agent.sources.fileinfo import open_files_budget
from agent.sources.identity import (Fingerprint, hash_prefix, names_file, next_generation, read_fingerprint,
                                    read_prefix, source_key)

log = get_logger("tail")

PAUSE_RECHECK = 0.1  # seconds between two questions to a full sink: has it room again?
TICK_INTERVAL = 0.25  # sink.tick cadence; half the promised 0.5 s for slack
STOP_CHECK_INTERVAL = 0.1  # longest sleep slice, so run() notices stop quickly
READ_BUDGET_CHUNKS = 16  # chunks per file per pass, so one busy file cannot starve the rest



@dataclass(frozen=True)
class TailSettings:
    paths: tuple[str, ...]  # absolute glob patterns; ``**`` allowed
    excludes: tuple[str, ...] = ()  # fnmatch patterns against the absolute path
    scan_interval: float = 10.0
    partial_line_timeout: float = 5.0
    max_line_bytes: int = 1048576
    fingerprint_bytes: int = 1024
    read_chunk_bytes: int = 65536
    close_inactive: float = 300.0
    close_removed_after: float = 300.0  # while the sink is full, a deleted file is released after this long
    use_watchdog: bool = True
    read_from_end: bool = False  # files found at start-up that the registry does not know: skip their lines
    max_open_files: int = 0  # files held open at once; 0: the open-file limit less what the rest needs
    ignore_older: float | None = None  # seconds: skip the lines of unknown files modified longer ago

    def __post_init__(self) -> None:
        # The config module turns user input into these with ConfigError; a
        # bad value reaching here is a programming error.
        for name in ("scan_interval", "max_line_bytes",
                     "fingerprint_bytes", "read_chunk_bytes", "close_inactive", "close_removed_after"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TailSettings.{name} must be positive, got {getattr(self, name)!r}")
        if self.ignore_older is not None and not self.ignore_older > 0:
            raise ValueError(f"TailSettings.ignore_older must be positive or None, got {self.ignore_older!r}")
        if self.partial_line_timeout < 0:  # 0: emit a last line without newline at once
            raise ValueError(f"TailSettings.partial_line_timeout must not be negative, "
                             f"got {self.partial_line_timeout!r}")
        relative = [path for path in self.paths if not os.path.isabs(path)]
        if relative:
            raise ValueError(f"TailSettings.paths must be absolute: {relative}")


class LineSink(Protocol):
    def line(self, line: Line) -> None: ...  # may block: backpressure

    # line() for each, in order (one call per read); ``data``: the bytes read,
    # from file offset ``at``, of which every line that begins at or after
    # ``at`` was cut.
    def extend(self, lines: list[Line], data: bytes | None = None, at: int = 0) -> None: ...

    def tick(self, now: float) -> None: ...  # at least every 0.5 s from the tailer thread

    def source_closed(self, source: Source) -> None: ...  # no more lines for this key


class Tailer(Harvesters):
    """Tails the files matched by ``settings.paths`` into ``sink``."""

    def __init__(self, settings: TailSettings, registry: Registry, sink: LineSink,
                 clock: Clock = SYSTEM_CLOCK, resume_after: Mapping[str, int] | None = None,
                 cuts: CutLog | None = None) -> None:
        self._settings = settings
        self._registry = registry
        # Where partial lines were cut (``agent.cuts``): kept, and cut again in files read again.
        self._cuts = cuts
        self._sink = sink
        # Optional part of the sink protocol: a sink that can be full (the
        # disk spool) says so, and the tailer stops reading instead of
        # blocking, so it can still release deleted files.
        self._accepting: Callable[[], bool] = getattr(sink, "accepting", lambda: True)
        # Per source key, where lines already safely spooled end: reading
        # resumes there instead of at the committed offset.
        self._resume_after = dict(resume_after or {})
        self.lost_bytes = 0  # unread bytes of deleted files released while the sink was full
        self._clock = clock
        self._discovery = Discovery(settings.paths, settings.excludes)
        self._harvesters: dict[tuple[int, int], _Harvester] = {}
        self._by_path: dict[str, _Harvester] = {}
        self._problems: dict[str, tuple[str, str]] = {}  # path -> (message, error) logged
        self._retry_at: dict[str, float] = {}  # path -> no hint-driven reopen before
        self._wake = threading.Event()
        self._stop: threading.Event | None = None
        self._once_stop: Callable[[], bool] | None = None  # run_once's ``stop``, while it runs
        self._watcher: Watcher | None = None
        self._next_scan = float("-inf")
        self._recovered = False  # files rotated away while stopped: looked for at the first scan
        self._idle: dict[tuple[int, int], IdleFile] = {}  # files closed while idle (harvesters)
        self._idle_unseen: set[tuple[int, int]] = set()
        self._found_at_start: set[tuple[int, int]] = set()
        self._max_open = settings.max_open_files or open_files_budget()
        self._waiting: set[str] = set()
        self._decided: dict[str, tuple[int, int, bool]] = {}  # waiting files: dev, inode, read from 0 (_decide_start)
        # poll walks every open file only when one is due (``_due_at``, the
        # earliest check time as of the last such pass), or after a scan or a
        # change of settings; a watcher hint checks the files in ``_soon``
        # alone. With 10,000 files open, each write to one of them walked all
        # of them twice (audit 4: 49 % of a core for 100 lines/s).
        self._soon: set[_Harvester] = set()
        # Files with unread lines that a full sink held back (``_paused``): checked
        # again as soon as the sink has room, which poll asks every PAUSE_RECHECK
        # (one question, not a stat per file); their own checks slow down to 2 s
        # while the file does not grow (a small spool waited that long at every
        # turn: 25,000 lines took 7.5 s with 400 KiB, 1.9 s with 4 MiB).
        self._held_back: set[_Harvester] = set()
        # Path -> the file that was there before, renamed or deleted and still read
        # to its end (``_older_unread``: the file now at that path waits for it).
        self._older: dict[str, _Harvester] = {}
        self._any_depth_globs: tuple[tuple[str, ...], Discovery] | None = None  # (harvesters._any_depth)
        self._linked = False  # (harvesters._on_hint)
        self._due_at = -math.inf
        self._read_once: set[tuple[int, int]] = set()  # run_once: files let go of after reading them
        self._cap_logged_at = -CAP_LOG_INTERVAL
        self._scan_requested = False
        self._last_tick = float("-inf")
        # ``apply``'s slot: the only state another thread touches (under the lock).
        self._apply_lock = threading.Lock()
        self._next_settings: TailSettings | None = None
        self._before: list[Callable[[], None]] = []

    # -- public -----------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tail until ``stop`` is set; then close every file and return."""
        self._stop = stop
        if self._settings.use_watchdog and self._watcher is None:
            self._watcher = Watcher(self._discovery, self._wake)
            self._watcher.start()
        try:
            while not stop.is_set():
                self._sleep(stop, self.poll())
        finally:
            self.close()

    def run_once(self, stop: Callable[[], bool] | None = None) -> None:
        """Scan, read every open file to its size as of now, tick; never waits.

        A trailing partial line is sent (``TAG_PARTIAL``) only if the file's
        mtime is older than ``partial_line_timeout``.

        ``stop`` (``Supervisor.stopping``) is asked before each file and each
        chunk read: once it is true (a stage died), reading stops there, so
        ``--once`` does not read its whole input into a pipeline that can no
        longer deliver it. Lines already handed to the sink stay handed; the
        rest is read at the next run from the committed offsets.
        """
        self._once_stop = stop
        self._read_once.clear()
        try:
            now = self._clock.monotonic()
            self._take_hints(now)
            self._scan(now)
            checked: set[_Harvester] = set()
            while not self._stopping():  # a rotation noticed mid-call opens files: read those too
                todo = [h for h in self._harvesters.values() if h not in checked]
                if not todo and self._waiting and self._make_room(checked):
                    self._scan(now)  # files beyond the open-file budget: their turn
                    todo = [h for h in self._harvesters.values() if h not in checked]
                if not todo:
                    break
                older = set(self._older.values())
                todo.sort(key=lambda h: h not in older)  # files rotated away first (``_older_unread``)
                for harvester in todo:
                    if self._stopping():
                        break
                    checked.add(harvester)
                    self._check(harvester, now, once=True)
            for harvester in self._harvesters.values():
                if harvester.fd >= 0 and harvester.reader.has_pending and not self._stopping():
                    # Held back, not lost: said, or a crashed writer's last words look shipped (audit 9).
                    log.warning("the file ends in a line without a newline, written less than "
                                "--partial-line-timeout ago; it is not shipped by this run (it comes whole once "
                                "finished, or as it is once older than the timeout)", path=harvester.path,
                                offset=harvester.reader.offset,
                                partial_line_timeout=self._settings.partial_line_timeout)
            self._tick(self._clock.monotonic())
        finally:
            self._once_stop = None

    def _make_room(self, read: set[_Harvester]) -> bool:
        """``run_once``: files wait for an open-file slot; let go of the open
        ones already read to their end (never opened again in this run, so
        nothing is read twice). False when none could be let go."""
        done = [h for h in read if h.fd >= 0 and h.state == _ACTIVE]
        for harvester in done:
            self._read_once.add((harvester.dev, harvester.inode))
            if harvester.source is not None:
                self._sink.source_closed(harvester.source)
            self._release(harvester)
        return bool(done)

    def apply(self, settings: TailSettings, before: Callable[[], None] | None = None) -> None:
        """Use ``settings`` from the reader's next ``poll`` (any thread; a reload).

        The reader thread, between two files' reads, calls ``before`` (the
        sink switching its parsers, so no line is read under the new globs
        but parsed under the old rules), then takes the settings: new globs
        are scanned at once; open files they no longer match are read to
        their current end and closed. A second call before the reader took
        the first replaces its settings (both ``before`` callbacks run, in order).
        """
        with self._apply_lock:
            self._next_settings = settings
            if before is not None:
                self._before.append(before)
        self._wake.set()

    def _take_settings(self, now: float) -> None:
        with self._apply_lock:
            settings, self._next_settings = self._next_settings, None
            callbacks, self._before = self._before, []
        if settings is None:
            return
        for callback in callbacks:
            callback()
        self._settings = settings
        self._discovery = Discovery(settings.paths, settings.excludes)
        if self._watcher is not None:
            self._watcher.follow(self._discovery)
        self._scan_requested = True
        log.debug("new tail settings taken", paths=",".join(settings.paths), excludes=",".join(settings.excludes))
        for harvester in list(self._harvesters.values()):
            if harvester.state == _ACTIVE and not self._discovery.matches(harvester.path):
                log.info("file no longer matched; reading it to its end, then closing it", path=harvester.path)
                harvester.state = _UNMATCHED
                harvester.next_check = now

    def poll(self) -> float:
        """One step of the run loop; returns how long it may sleep."""
        now = self._clock.monotonic()
        self._wake.clear()  # before draining, so hints arriving meanwhile wake the next sleep
        self._take_settings(now)  # (new settings ask for a scan: a full pass below)
        self._take_hints(now)
        full = False
        if self._scan_requested or now >= self._next_scan:
            self._scan(now)
            full = True
        full = full or now >= self._due_at
        if self._held_back and self._accepting():
            for harvester in self._held_back:
                harvester.next_check = now
            self._soon.update(self._held_back)
            self._held_back.clear()
        soon, self._soon = self._soon, set()
        for harvester in list(self._harvesters.values()) if full else list(soon):
            if self._stopping():
                self._soon.update(soon)  # (not checked: still due)
                full = False
                break
            if harvester.next_check <= now and harvester.fd >= 0:
                self._check(harvester, now, once=False)
        now = self._clock.monotonic()
        if now - self._last_tick >= TICK_INTERVAL:
            self._tick(now)
        if full:
            self._due_at = min((h.next_check for h in self._harvesters.values() if h.fd >= 0), default=math.inf)
        else:  # (a check moves a file's next check later, never earlier than now)
            self._due_at = min([self._due_at, *(h.next_check for h in soon if h.fd >= 0)])
        wake_at = min(self._next_scan, self._last_tick + TICK_INTERVAL, self._due_at,
                      *(h.next_check for h in self._soon))
        if self._held_back:
            wake_at = min(wake_at, now + PAUSE_RECHECK)
        return 0.0 if self._scan_requested else max(0.0, wake_at - now)

    def open_files(self) -> int:
        return len(self._harvesters)

    def waiting_files(self) -> tuple[int, str | None]:
        """How many matched files wait for an open-file slot, and the first of them by path."""
        waiting = self._waiting  # (another thread's set: a copy, then no size change under min)
        first = min(list(waiting), default=None)
        return len(waiting), first

    def close(self) -> None:
        """Stop the watcher and close every file (idempotent).

        A file found deleted is marked gone in the registry; ``source_closed``
        is not called: the agent is shutting down, not finishing the file.
        """
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for harvester in list(self._harvesters.values()):
            try:
                deleted = os.fstat(harvester.fd).st_nlink == 0
            except OSError:
                deleted = False
            if deleted and harvester.source is not None:
                self._registry.mark_gone(harvester.source.key)
            self._release(harvester)

    def __enter__(self) -> Tailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loop plumbing ----------------------------------------------------

    def _stopping(self) -> bool:
        if self._once_stop is not None:
            return self._once_stop()
        return self._stop is not None and self._stop.is_set()

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        deadline = self._clock.monotonic() + seconds
        while not stop.is_set() and not self._wake.is_set():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return
            self._clock.wait(self._wake, min(remaining, STOP_CHECK_INTERVAL))

    def _tick(self, now: float) -> None:
        self._sink.tick(self._clock.time())
        # From the tick's end: a tick that takes longer than TICK_INTERVAL (a
        # registry save with many files) must not make every next read tick again.
        self._last_tick = max(now, self._clock.monotonic())

    # -- one file -----------------------------------------------------------

    def _check(self, harvester: _Harvester, now: float, once: bool) -> None:
        """Stat one file, read what it has, notice rotation/truncation/deletion."""
        try:
            self._check_file(harvester, now, once)
        except OSError as error:
            # EIO, ESTALE on NFS...: this fd is of no further use.
            # Reopened (at the committed offset) by a later scan; logged once per error.
            self._release(harvester)
            self._problem(harvester.path, now, describe_error(error), "file read failed; closing it")

    def _check_file(self, harvester: _Harvester, now: float, once: bool) -> None:
        info = os.fstat(harvester.fd)
        size = info.st_size
        reader = harvester.reader
        if size < reader.read_pos:
            self._truncated(harvester, size, now)
        elif size != harvester.size and self._rewritten(harvester):
            self._truncated(harvester, size, now, reason="first bytes changed")
        if size != harvester.size:
            harvester.size = size
            harvester.last_growth = now
            harvester.interval = MIN_CHECK_INTERVAL
        else:
            harvester.interval = min(harvester.interval * 2, MAX_CHECK_INTERVAL)
        if info.st_nlink == 0:
            if harvester.state != _DELETED:
                log.info("file deleted; draining it", path=harvester.path)
                harvester.state = _DELETED
                harvester.deleted_at = now
                self._older[harvester.path] = harvester
        elif harvester.state == _ACTIVE and not names_file(harvester.path, harvester.dev, harvester.inode):
            log.info("file renamed away; draining it", path=harvester.path)
            harvester.state = _RENAMED
            self._older[harvester.path] = harvester
            if self._by_path.get(harvester.path) is harvester:
                del self._by_path[harvester.path]
            # Find where it went (so its lines carry the new path) and what replaced it.
            self._scan(now)

        if not once and not self._accepting():
            self._paused(harvester, size, now)
            return
        if self._older and self._older_unread(harvester) and not once:  # (--once reads the older file first)
            harvester.next_check = now  # (the older file reads this pass or the next)
            return
        chunk = self._settings.read_chunk_bytes
        end = size if once else min(size, reader.read_pos + READ_BUDGET_CHUNKS * chunk)
        if harvester.nul_wait is not None and self._nul_tail_unwritten(harvester, info, now):
            end = reader.read_pos  # its NUL tail as it was: nothing to read
        while reader.read_pos < end:
            if self._stopping():
                break
            if reader.trailing_nuls and self._skip_hole(harvester, size):
                continue
            data = os.pread(harvester.fd, min(chunk, end - reader.read_pos), reader.read_pos)
            if not data:
                break  # shrank under us; the next check sees the truncation
            self._deliver(harvester, data)
            if self._clock.monotonic() - self._last_tick >= TICK_INTERVAL:
                self._tick(self._clock.monotonic())

        if reader.read_pos >= size and reader.trailing_nuls:
            self._wait_for_nuls(harvester, size, info.st_mtime_ns)
        if reader.read_pos < size and harvester.nul_wait is None:
            harvester.next_check = now  # budget used up: come back next pass
            return
        if harvester.state == _UNMATCHED:
            # At its end: close it. A last line without newline stays unread
            # (the committed offset is before it): it comes whole if the file
            # is matched again.
            self._finish(harvester)
            return
        if reader.has_pending:
            if once:
                due = self._clock.time() - info.st_mtime >= self._settings.partial_line_timeout
            else:
                due = now - harvester.last_growth >= self._settings.partial_line_timeout
            if due:
                self._flush(harvester)
        idle = now - harvester.last_growth
        if not reader.has_pending and (
                harvester.state == _DELETED
                or (harvester.state == _RENAMED and idle >= self._settings.close_inactive)):
            self._finish(harvester)
            return
        if (harvester.state == _ACTIVE and idle >= self._settings.close_inactive and not once
                and not reader.has_pending and harvester.nul_wait is None and self._delivered(harvester)):
            self._close_idle(harvester, info)
            return
        harvester.next_check = now + harvester.interval
        if reader.has_pending and not once:
            harvester.next_check = min(harvester.next_check,
                                       harvester.last_growth + self._settings.partial_line_timeout)
        if harvester.state == _RENAMED:
            harvester.next_check = min(harvester.next_check,
                                       harvester.last_growth + self._settings.close_inactive)

    def _older_unread(self, harvester: _Harvester) -> bool:
        """Whether the file that was at ``harvester``'s path before it (renamed
        away or deleted, still open) has lines left to read: then this one waits.
        A path's lines come in the order they were written, across a rotation,
        also when the rotated file's rest is found at a restart (model health
        puts events in windows by the order they come: the new file's lines read
        first made the old file's rest late)."""
        older = self._older.get(harvester.path)
        if older is None or older is harvester:
            return False
        if older.nul_wait is not None:
            return False  # (a NUL tail waits for its writer, not for us)
        if older.fd >= 0 and (older.size < 0 or older.reader.read_pos < older.size):  # (size < 0: not checked yet)
            return True
        # Closed, or read to its end once (also where a glob matches it under its
        # new name, as app.log* does app.log.1): the order is kept from here on.
        del self._older[harvester.path]
        flush = getattr(self._sink, "flush_source", None)
        if flush is not None and older.fd >= 0 and older.source is not None:
            # Its last record, held for a continuation, goes first too (audit 10),
            # as its --multiline-timeout would send it.
            flush(older.source)
        return False

    def _paused(self, harvester: _Harvester, size: int, now: float) -> None:
        """The sink is full: read nothing, but never hold a deleted file open
        for longer than close_removed_after (it would fill the disk)."""
        harvester.next_check = now + harvester.interval
        if harvester.reader.read_pos < size:
            self._held_back.add(harvester)
        if harvester.state != _DELETED or harvester.deleted_at is None:
            return
        if now - harvester.deleted_at < self._settings.close_removed_after:
            harvester.next_check = min(harvester.next_check,
                                       harvester.deleted_at + self._settings.close_removed_after)
            return
        lost = size - harvester.reader.offset  # unread bytes and the unfinished line held back
        self.lost_bytes += lost
        log.warning("deleted file released while the output is blocked; its unread lines are lost",
                    path=harvester.path, lost_bytes=lost, close_removed_after=self._settings.close_removed_after)
        self._finish(harvester, blocked=True)

    def _deliver(self, harvester: _Harvester, data: bytes) -> None:
        reader = harvester.reader
        if harvester.source is None and b"\n" in data:
            # (NULs at the end may be written over later: the fingerprint stops before them)
            self._assign_identity(harvester, reader.read_pos + len(data.rstrip(b"\0")))
        at = reader.read_pos
        nuls = reader.nul_bytes
        lines = reader.feed(data, harvester.source, self._clock.time())
        if reader.nul_bytes != nuls:
            self._nuls_left_out(harvester, at)
            data = None  # type: ignore[assignment]  # (the lines are not these bytes' text any more)
        if lines:
            self._sink.extend(lines, data, at)

    def _flush(self, harvester: _Harvester) -> None:
        harvester.reader.unread_trailing_nuls()  # NULs that end a partial line are no part of it
        if not harvester.reader.has_pending:
            return
        if harvester.source is None:
            self._assign_identity(harvester, harvester.reader.read_pos)
        item = harvester.reader.flush(harvester.source, self._clock.time())
        if item is not None:
            if self._cuts is not None:
                self._cuts.add_line(item.source.key, item.end)
            self._sink.line(item)

    def _identity(self, fd: int, dev: int, inode: int, path: str, available: int) -> tuple[str, Fingerprint]:
        """Track the content starting at offset 0 of the open file ``fd`` under a new key."""
        fingerprint: Fingerprint = read_fingerprint(fd, min(self._settings.fingerprint_bytes, available))
        generation = next_generation(self._registry.generations(dev, inode), fingerprint.digest)
        key = source_key(dev, inode, generation, fingerprint.digest)
        self._registry.track(Entry(
            key=key, path=path, dev=dev, inode=inode, fp_len=fingerprint.length, fp_hash=fingerprint.digest,
            generation=generation, offset=0, updated=self._clock.time(), gone=False))
        return key, fingerprint

    def _assign_identity(self, harvester: _Harvester, available: int) -> None:
        """Give the content starting at offset 0 its key (first line about to go out)."""
        key, fingerprint = self._identity(harvester.fd, harvester.dev, harvester.inode, harvester.path, available)
        harvester.source = Source(key, harvester.path)
        harvester.fingerprint = (fingerprint.length, fingerprint.digest)
        self._registry.hold(key)
        if self._cuts is not None:  # a file first read by a run that crashed: cut where it was
            cuts = self._cuts.line_cuts(key)
            if cuts:
                harvester.reader.cut_at(cuts)

    def _rewritten(self, harvester: _Harvester) -> bool:
        """Do the file's first bytes differ from those its key was made of?"""
        if harvester.fingerprint is None:
            return False
        length, digest = harvester.fingerprint
        return hash_prefix(read_prefix(harvester.fd, length)) != digest

    def _truncated(self, harvester: _Harvester, size: int, now: float, reason: str = "smaller than read") -> None:
        log.warning("file truncated", path=harvester.path, offset=harvester.reader.read_pos, size=size,
                    reason=reason)
        old = harvester.source
        if old is not None:
            # Bytes read but not yet sent belong to the old content: send them
            # now rather than lose them; nothing already sent is sent again.
            self._flush(harvester)
            self._registry.mark_gone(old.key)
            self._registry.release(old.key)
            self._sink.source_closed(old)
        harvester.source = None
        harvester.fingerprint = None
        harvester.nul_wait = None
        harvester.reader.reset(0)
        harvester.size = size
        harvester.last_growth = now
        harvester.interval = MIN_CHECK_INTERVAL

    def _finish(self, harvester: _Harvester, blocked: bool = False) -> None:
        """Close a drained file for good: deleted, or renamed away and idle.

        The sink hears ``source_closed`` (and flushes its hand-off) before the
        file is let go, so the file's last lines are safe in the spool by then;
        except when the output is ``blocked``: a full spool must never keep a
        deleted file open, so it is let go first."""
        deleted = harvester.state == _DELETED
        log.info("file closed", path=harvester.path,
                 reason="deleted" if deleted else "no longer matched" if harvester.state == _UNMATCHED
                 else "renamed away and inactive")
        if blocked:
            self._release(harvester)
        if harvester.source is not None:
            if deleted:
                self._registry.mark_gone(harvester.source.key)
            self._sink.source_closed(harvester.source)
        self._release(harvester)
