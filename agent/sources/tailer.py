"""The harvesters: tail every matched file, follow it through rename, truncation and deletion.

One thread runs the ``Tailer``. It holds one file descriptor per open file
(no thread per file) and polls each with a backoff (0.25 s while it grows,
doubling to 2 s when idle, reset by growth or a watchdog event); a full glob
scan runs every ``scan_interval`` and whenever a rename is noticed.

Guarantees:

* every complete line of a file is pushed to ``LineSink.line`` once, in file
  order, with byte offsets (see ``reader``); while ``line()`` blocks the tailer
  reads nothing, which is the agent's backpressure;
* a file is known by dev/inode, not by path: a file renamed to another matched
  path keeps its harvester (never opened twice); a file renamed away is read to
  its end and closed once it has been idle for ``close_inactive``; a new file at
  the old path is read from offset 0;
* a known file is resumed at its *committed* offset (``Registry.lookup``), so
  lines not acknowledged before a crash come again with the same key and
  offsets. A file smaller than its committed offset, or whose first bytes
  changed, is a new content: new key, read from 0;
* truncation of an open file (size below the read position) starts a new
  content (new key) at 0; nothing of the old content is sent again;
* a deleted file is drained, closed, reported with ``LineSink.source_closed``
  and marked gone in the registry, so a reused inode is never resumed;
* a last line without newline is held until its newline arrives, or sent
  tagged ``TAG_PARTIAL`` once the file has not grown for
  ``partial_line_timeout``; later bytes start a new line;
* file-system errors stop at this boundary: an unreadable path, a directory or
  a FIFO matched by a glob, a file gone between glob and open are logged once
  per path and error, retried at later scans, and never stop other files.

Limits: truncation is seen from sizes, so a file truncated and regrown past
the read position between two checks is read on from the old position; a file
truncated, or deleted and its inode reused with the same first line, *while
the agent is down* and grown past the committed offset is resumed there. A
file whose path vanished but which still has links (renamed out of the globs;
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

import os
import stat
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from agent.clock import SYSTEM_CLOCK, Clock
from agent.events import Line, Source
from agent.registry import Entry, Registry
from agent.selflog import get_logger
from agent.sources.discovery import Discovery, Hint, Watcher, describe_error, describe_mode
from agent.sources.identity import (Fingerprint, names_file, next_generation, prefix_hasher,
                                    read_fingerprint, source_key)
from agent.sources.reader import LineReader

log = get_logger("tail")

MIN_CHECK_INTERVAL = 0.25  # seconds between stats of a growing file
MAX_CHECK_INTERVAL = 2.0  # ... and of an idle one
TICK_INTERVAL = 0.25  # sink.tick cadence; half the promised 0.5 s for slack
STOP_CHECK_INTERVAL = 0.1  # longest sleep slice, so run() notices stop quickly
READ_BUDGET_CHUNKS = 16  # chunks per file per pass, so one busy file cannot starve the rest

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_ACTIVE, _RENAMED, _DELETED = "active", "renamed", "deleted"
_UNMATCHED = "unmatched"  # no longer matched after a reload: read to its end, then closed


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

    def __post_init__(self) -> None:
        # The config module turns user input into these with ConfigError; a
        # bad value reaching here is a programming error.
        for name in ("scan_interval", "max_line_bytes",
                     "fingerprint_bytes", "read_chunk_bytes", "close_inactive", "close_removed_after"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TailSettings.{name} must be positive, got {getattr(self, name)!r}")
        if self.partial_line_timeout < 0:  # 0: emit a last line without newline at once
            raise ValueError(f"TailSettings.partial_line_timeout must not be negative, "
                             f"got {self.partial_line_timeout!r}")
        relative = [path for path in self.paths if not os.path.isabs(path)]
        if relative:
            raise ValueError(f"TailSettings.paths must be absolute: {relative}")


class LineSink(Protocol):
    def line(self, line: Line) -> None: ...  # may block: backpressure

    def extend(self, lines: list[Line]) -> None: ...  # line() for each, in order (one call per read)

    def tick(self, now: float) -> None: ...  # at least every 0.5 s from the tailer thread

    def source_closed(self, source: Source) -> None: ...  # no more lines for this key


class _Harvester:
    """The tailer's private state for one open file."""

    __slots__ = ("fd", "dev", "inode", "path", "source", "reader", "state", "size",
                 "last_growth", "next_check", "interval", "deleted_at")

    def __init__(self, fd: int, dev: int, inode: int, path: str, reader: LineReader,
                 source: Source | None, now: float) -> None:
        self.fd = fd
        self.dev = dev
        self.inode = inode
        self.path = path
        self.source = source  # None until the first line is about to be emitted
        self.reader = reader
        self.state = _ACTIVE
        self.size = -1  # file size at the last check
        self.last_growth = now  # monotonic
        self.next_check = now
        self.interval = MIN_CHECK_INTERVAL
        self.deleted_at: float | None = None  # monotonic time the deletion was noticed


class Tailer:
    """Tails the files matched by ``settings.paths`` into ``sink``."""

    def __init__(self, settings: TailSettings, registry: Registry, sink: LineSink,
                 clock: Clock = SYSTEM_CLOCK, resume_after: Mapping[str, int] | None = None) -> None:
        self._settings = settings
        self._registry = registry
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
        self._watcher: Watcher | None = None
        self._next_scan = float("-inf")
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

    def run_once(self) -> None:
        """Scan, read every open file to its size as of now, tick; never waits.

        A trailing partial line is sent (``TAG_PARTIAL``) only if the file's
        mtime is older than ``partial_line_timeout``.
        """
        now = self._clock.monotonic()
        self._take_hints(now)
        self._scan(now)
        checked: set[_Harvester] = set()
        while True:  # a rotation noticed mid-call opens files: read those too
            todo = [h for h in self._harvesters.values() if h not in checked]
            if not todo:
                break
            for harvester in todo:
                checked.add(harvester)
                self._check(harvester, now, once=True)
        self._tick(self._clock.monotonic())

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
        self._take_settings(now)
        self._take_hints(now)
        if self._scan_requested or now >= self._next_scan:
            self._scan(now)
        for harvester in list(self._harvesters.values()):
            if self._stopping():
                break
            if harvester.next_check <= now and harvester.fd >= 0:
                self._check(harvester, now, once=False)
        now = self._clock.monotonic()
        if now - self._last_tick >= TICK_INTERVAL:
            self._tick(now)
        wake_at = min(self._next_scan, self._last_tick + TICK_INTERVAL)
        for harvester in self._harvesters.values():
            wake_at = min(wake_at, harvester.next_check)
        return 0.0 if self._scan_requested else max(0.0, wake_at - now)

    def open_files(self) -> int:
        return len(self._harvesters)

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
        return self._stop is not None and self._stop.is_set()

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        deadline = self._clock.monotonic() + seconds
        while not stop.is_set() and not self._wake.is_set():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return
            self._clock.wait(self._wake, min(remaining, STOP_CHECK_INTERVAL))

    def _tick(self, now: float) -> None:
        self._last_tick = now
        self._sink.tick(self._clock.time())

    def _take_hints(self, now: float) -> None:
        if self._watcher is None:
            return
        for hint in self._watcher.drain():
            self._on_hint(hint, now)

    def _on_hint(self, hint: Hint, now: float) -> None:
        if hint.rescan:
            self._scan_requested = True
            return
        harvester = self._by_path.get(hint.path)
        if harvester is not None:
            harvester.next_check = now
            harvester.interval = MIN_CHECK_INTERVAL
        if (harvester is None or hint.appeared) and self._discovery.matches(hint.path):
            if self._retry_at.get(hint.path, now) <= now:
                self._discover(hint.path, now)

    # -- discovery ----------------------------------------------------------

    def _scan(self, now: float) -> None:
        self._scan_requested = False
        self._next_scan = now + self._settings.scan_interval
        if self._watcher is not None:
            self._watcher.ensure_watches()
        paths = self._discovery.scan()
        for path in paths:
            self._discover(path, now)
        matched = set(paths)
        for path in [path for path in self._problems if path not in matched]:
            self._clear_problem(path)  # so the same problem, if it returns, is logged again
        for harvester in self._harvesters.values():
            if harvester.source is not None:
                self._registry.touch(harvester.source.key, harvester.path)

    def _discover(self, path: str, now: float) -> None:
        """Make sure the file at ``path`` is tailed (opening it if new)."""
        try:
            info = os.stat(path)
        except OSError as error:
            self._problem(path, now, describe_error(error))
            return
        if not stat.S_ISREG(info.st_mode):
            self._problem(path, now, describe_mode(info.st_mode))
            return
        known = self._harvesters.get((info.st_dev, info.st_ino))
        if known is not None:
            self._seen_at(known, path)
            self._clear_problem(path, opened=True)
            return
        self._open(path, now)

    def _open(self, path: str, now: float) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as error:
            self._problem(path, now, describe_error(error))
            return
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # replaced between stat and open
                os.close(fd)
                self._problem(path, now, describe_mode(info.st_mode))
                return
            known = self._harvesters.get((info.st_dev, info.st_ino))
            if known is not None:
                os.close(fd)
                self._seen_at(known, path)
                return
            entry = self._registry.lookup(info.st_dev, info.st_ino, prefix_hasher(fd))
        except OSError as error:
            os.close(fd)
            self._problem(path, now, describe_error(error))
            return
        self._clear_problem(path, opened=True)
        source, start = None, 0
        if entry is not None and info.st_size < entry.offset:
            log.warning("file truncated", path=path, offset=entry.offset, size=info.st_size)
            self._registry.mark_gone(entry.key)
        elif entry is not None:
            source, start = Source(entry.key, path), max(entry.offset, self._resume_after.pop(entry.key, 0))
            self._registry.touch(entry.key, path)
            log.info("resuming file", path=path, offset=start, key=entry.key)
        else:
            log.info("new file", path=path)
        harvester = _Harvester(fd, info.st_dev, info.st_ino, path,
                               LineReader(start, self._settings.max_line_bytes), source, now)
        self._harvesters[(info.st_dev, info.st_ino)] = harvester
        self._by_path[path] = harvester

    def _seen_at(self, harvester: _Harvester, path: str) -> None:
        """An open file was found at ``path`` by a scan or a hint."""
        if harvester.path != path:
            if harvester.state == _ACTIVE and names_file(harvester.path, harvester.dev, harvester.inode):
                return  # a second link to the same file: keep the first name
            log.info("file renamed", path=path, previous=harvester.path)
            self._set_path(harvester, path)
            if harvester.source is not None:
                self._registry.touch(harvester.source.key, path)
        elif self._by_path.get(path) is not harvester:
            self._by_path[path] = harvester  # renamed away, then back
        if harvester.state in (_RENAMED, _UNMATCHED):
            harvester.state = _ACTIVE  # renamed back into a glob, or matched again: tailed as usual

    def _set_path(self, harvester: _Harvester, path: str) -> None:
        if self._by_path.get(harvester.path) is harvester:
            del self._by_path[harvester.path]
        harvester.path = path
        self._by_path[path] = harvester
        if harvester.source is not None:
            harvester.source = Source(harvester.source.key, path)

    def _problem(self, path: str, now: float, error: str,
                 message: str = "cannot tail file; will retry at later scans") -> None:
        self._retry_at[path] = now + self._settings.scan_interval
        if self._problems.get(path) != (message, error):
            self._problems[path] = (message, error)
            log.warning(message, path=path, error=error)

    def _clear_problem(self, path: str, opened: bool = False) -> None:
        self._retry_at.pop(path, None)
        problem = self._problems.get(path)
        # A file that opens but keeps failing to read must not be logged at
        # every scan: read failures are only forgotten when the path goes away.
        if problem is not None and not (opened and problem[0] == "file read failed; closing it"):
            del self._problems[path]

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
        elif harvester.state == _ACTIVE and not names_file(harvester.path, harvester.dev, harvester.inode):
            log.info("file renamed away; draining it", path=harvester.path)
            harvester.state = _RENAMED
            if self._by_path.get(harvester.path) is harvester:
                del self._by_path[harvester.path]
            # Find where it went (so its lines carry the new path) and what replaced it.
            self._scan(now)

        if not once and not self._accepting():
            self._paused(harvester, size, now)
            return
        chunk = self._settings.read_chunk_bytes
        end = size if once else min(size, reader.read_pos + READ_BUDGET_CHUNKS * chunk)
        while reader.read_pos < end:
            if not once and self._stopping():
                break
            data = os.pread(harvester.fd, min(chunk, end - reader.read_pos), reader.read_pos)
            if not data:
                break  # shrank under us; the next check sees the truncation
            self._deliver(harvester, data)
            if self._clock.monotonic() - self._last_tick >= TICK_INTERVAL:
                self._tick(self._clock.monotonic())

        if reader.read_pos < size:
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
        harvester.next_check = now + harvester.interval
        if reader.has_pending and not once:
            harvester.next_check = min(harvester.next_check,
                                       harvester.last_growth + self._settings.partial_line_timeout)
        if harvester.state == _RENAMED:
            harvester.next_check = min(harvester.next_check,
                                       harvester.last_growth + self._settings.close_inactive)

    def _paused(self, harvester: _Harvester, size: int, now: float) -> None:
        """The sink is full: read nothing, but never hold a deleted file open
        for longer than close_removed_after (it would fill the disk)."""
        harvester.next_check = now + harvester.interval
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
        if harvester.source is None and b"\n" in data:
            self._assign_identity(harvester, harvester.reader.read_pos + len(data))
        lines = harvester.reader.feed(data, harvester.source, self._clock.time())
        if lines:
            self._sink.extend(lines)

    def _flush(self, harvester: _Harvester) -> None:
        if harvester.source is None:
            self._assign_identity(harvester, harvester.reader.read_pos)
        item = harvester.reader.flush(harvester.source, self._clock.time())
        if item is not None:
            self._sink.line(item)

    def _assign_identity(self, harvester: _Harvester, available: int) -> None:
        """Give the content starting at offset 0 its key (first line about to go out)."""
        fingerprint: Fingerprint = read_fingerprint(
            harvester.fd, min(self._settings.fingerprint_bytes, available))
        known = self._registry.history(harvester.dev, harvester.inode)
        generation = next_generation(((entry.fp_hash, entry.generation) for entry in known),
                                     fingerprint.digest)
        key = source_key(harvester.dev, harvester.inode, generation, fingerprint.digest)
        self._registry.track(Entry(
            key=key, path=harvester.path, dev=harvester.dev, inode=harvester.inode,
            fp_len=fingerprint.length, fp_hash=fingerprint.digest, generation=generation,
            offset=0, updated=self._clock.time(), gone=False))
        harvester.source = Source(key, harvester.path)

    def _truncated(self, harvester: _Harvester, size: int, now: float) -> None:
        log.warning("file truncated", path=harvester.path, offset=harvester.reader.read_pos, size=size)
        old = harvester.source
        if old is not None:
            # Bytes read but not yet sent belong to the old content: send them
            # now rather than lose them; nothing already sent is sent again.
            self._flush(harvester)
            self._registry.mark_gone(old.key)
            self._sink.source_closed(old)
        harvester.source = None
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

    def _release(self, harvester: _Harvester) -> None:
        if harvester.fd < 0:
            return
        try:
            os.close(harvester.fd)
        except OSError:
            pass
        harvester.fd = -1
        self._harvesters.pop((harvester.dev, harvester.inode), None)
        if self._by_path.get(harvester.path) is harvester:
            del self._by_path[harvester.path]

