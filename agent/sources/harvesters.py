"""The tailer's open files (harvesters): which file is open under which path,
and how a path found by a glob scan or a watcher hint becomes an open file.

``Harvesters`` is a base of ``Tailer`` (see ``tailer``, which runs the read
loop and owns the state annotated here); this module holds the per-file state
(``_Harvester``) and the side of the tailer that finds, opens, renames and
releases files.

Guarantees:

* a file is known by dev/inode, not by path: a file renamed to another matched
  path keeps its harvester (never opened twice); a new file at the old path of
  a renamed one is read from offset 0;
* a known file is resumed at its *committed* offset (``Registry.lookup``), so
  lines not acknowledged before a crash come again with the same key and
  offsets. A file smaller than its committed offset, or whose first bytes
  changed, is a new content: new key, read from 0;
* file-system errors stop at this boundary: an unreadable path, a directory or
  a FIFO matched by a glob, a file gone between glob and open are logged once
  per path and error, retried at later scans, and never stop other files;
* the agent's own files (``Discovery.own``: the state directory, the spool,
  the dead letters, a ``file:`` output) are never opened, also when a glob
  reaches them through a symlink that the excludes, which compare paths as
  written, do not see.

* a file rotated away while the agent was stopped is finished after the
  restart: at the first scan, a live registry entry whose file was not opened
  by it, whose path no longer names that file, and whose file is found under
  another name *in the same directory* (same dev/inode, one ``scandir`` per
  such directory) with more bytes than the committed offset and the same
  first bytes (``Registry.lookup``: an inode reused by another content is
  never read) is read from its committed offset to its end, then closed after
  ``close_inactive``, exactly as a file renamed away while the agent runs
  (``_RENAMED``; its lines keep the path the registry knew). In both cases,
  and for a deleted file still read, the file now at its path waits until it
  is read to its current end (``Tailer._older_unread``). A file still at
  its path but no longer matched (the globs changed) is left alone.

Limits: a file truncated, or deleted and its inode reused with the same first
line, *while the agent is down* and grown past the committed offset is resumed
there. A file rotated into another directory (logrotate ``olddir``) while the
agent was down is not looked for.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Any, Callable

from agent.clock import Clock
from agent.cuts import CutLog
from agent.events import Source
from agent.registry import Entry, Registry
from agent.selflog import get_logger
from agent.sources.discovery import Discovery, Hint, Watcher, describe_error, describe_mode
from agent.sources.fileinfo import data_after, inode_generation, last_line_end
from agent.sources.idle import IdleFile, IdleFiles
from agent.sources.identity import names_file, prefix_hasher
from agent.sources.reader import LineReader

if TYPE_CHECKING:  # only for an annotation: tailer imports this module at run time
    from agent.sources.tailer import TailSettings

log = get_logger("tail")

MIN_CHECK_INTERVAL = 0.25  # seconds between stats of a growing file
MAX_CHECK_INTERVAL = 2.0  # ... and of an idle one
# Names looked at per directory when finding files rotated away while the
# agent was stopped: bounds the start-up cost of a huge directory.
MAX_RECOVERY_NAMES = 100_000
CAP_LOG_INTERVAL = 60.0  # seconds between warnings while files wait for an open-file slot

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_ACTIVE, _RENAMED, _DELETED = "active", "renamed", "deleted"
_UNMATCHED = "unmatched"  # no longer matched after a reload: read to its end, then closed


class _Harvester:
    """The tailer's private state for one open file."""

    __slots__ = ("fd", "dev", "inode", "path", "source", "reader", "state", "size",
                 "last_growth", "next_check", "interval", "deleted_at", "fingerprint", "nul_wait", "nul_warned")

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
        # (fp_len, fp_hash) of the content being read, while it has a key: a
        # growing file whose first bytes no longer match was rewritten.
        self.fingerprint: tuple[int, str] | None = None
        # (size, mtime_ns, racy) when the file ended in NUL bytes, maybe not written
        # yet (``reader``): they are read again only once either changed (or the
        # modification time was too recent to be trusted: racy).
        self.nul_wait: tuple[int, int, bool] | None = None
        self.nul_warned = False


class Harvesters(IdleFiles):
    """The open files of a ``Tailer``, by dev/inode and by path.

    A base class only: ``Tailer.__init__`` sets the state annotated here.
    """

    _settings: TailSettings
    _registry: Registry
    _cuts: CutLog | None
    _resume_after: dict[str, int]
    _discovery: Discovery
    _watcher: Watcher | None
    _harvesters: dict[tuple[int, int], _Harvester]
    _by_path: dict[str, _Harvester]
    _older: dict[str, _Harvester]
    _any_depth_globs: tuple[tuple[str, ...], Discovery] | None
    _problems: dict[str, tuple[str, str]]
    _retry_at: dict[str, float]
    _scan_requested: bool
    _next_scan: float
    _recovered: bool  # the start-up search for rotated files ran
    _clock: Clock
    _assign_identity: Callable[[_Harvester, int], None]
    _identity: Callable[[int, int, int, str, int], tuple[str, Any]]
    _sink: Any  # the tailer's LineSink
    _max_open: int
    _waiting: set[str]  # paths that found no open-file slot, not opened since
    _decided: dict[str, tuple[int, int, bool]]  # of those: the file decided, and whether it is read from 0
    _soon: set  # harvesters opened or hinted since the last pass over all (Tailer.poll)
    _held_back: set  # harvesters with unread lines a full sink held back (Tailer._paused)
    _linked: bool  # a scan found an open file under a second path (a symlink): new files wait for a scan
    _read_once: set[tuple[int, int]]
    _cap_logged_at: float
    # Files the first scan found (--read-from end applies to them, also when
    # one could be opened only later: no open-file slot then, EACCES fixed...).
    _found_at_start: set[tuple[int, int]]

    # -- NUL bytes (see ``tailer``) -------------------------------------------

    def _nuls_left_out(self, harvester: _Harvester, at: int) -> None:
        if not harvester.nul_warned:
            harvester.nul_warned = True
            log.warning("NUL bytes in the file (a preallocated region, or blocks a crash left unwritten); they are "
                        "left out of the lines, and a run of them at the end is read again once the file changes",
                        path=harvester.path, offset=at)

    def _skip_hole(self, harvester: _Harvester, size: int) -> bool:
        """In a NUL run: a hole the file system knows (up to ``size``, past the
        read budget: it costs nothing) is taken as NULs without reading it."""
        reader = harvester.reader
        hole_end = data_after(harvester.fd, reader.read_pos, size)
        if hole_end <= reader.read_pos:
            return False
        lines = reader.skip_zeros(hole_end - reader.read_pos, harvester.source, self._clock.time())
        if lines:
            self._sink.extend(lines)
        return True

    def _nul_tail_unwritten(self, harvester: _Harvester, info: os.stat_result, now: float) -> bool:
        """The file waits on its NUL tail (``nul_wait``): is the tail as it was?
        Then it keeps waiting; else it is read again (and counts as growth)."""
        waiting, harvester.nul_wait = harvester.nul_wait, None
        assert waiting is not None
        if waiting[:2] != (info.st_size, info.st_mtime_ns):  # written in place (or grown)
            harvester.last_growth = now
            harvester.interval = MIN_CHECK_INTERVAL
            return False
        # A store through a memory mapping to a page already dirty changes no
        # mtime: the tail's first byte is looked at too. (Racy: the mtime was too
        # recent to trust: read again.)
        if waiting[2] or os.pread(harvester.fd, 1, harvester.reader.read_pos) not in (b"\0", b""):
            return False
        harvester.nul_wait = waiting
        return True

    def _wait_for_nuls(self, harvester: _Harvester, size: int, mtime_ns: int) -> None:
        """The file ends in NUL bytes: maybe a region not written yet (preallocated,
        memory-mapped). Read up to them only, and read them again once the file changed."""
        harvester.reader.unread_trailing_nuls()
        # A modification time less than a second old may be shared by a write
        # that comes after this read (timestamps move in clock ticks): not to be
        # trusted, so the tail is read again at the next check anyway.
        harvester.nul_wait = (size, mtime_ns, self._clock.time() - mtime_ns / 1e9 < 1.0)

    # -- hints from the watcher ---------------------------------------------

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
            self._soon.add(harvester)
        if (harvester is None or hint.appeared) and self._discovery.matches(hint.path):
            if harvester is None and self._linked and not self._open_inode(hint.path):
                # Files here are reached by several paths (symlinks): a scan lists them
                # in the inputs' order, so a new file is opened under the path of the
                # first input that matches it, not the one this event named (audit 8).
                # (A file open under its other path is not new: no scan at each write.)
                self._scan_requested = True
            elif self._retry_at.get(hint.path, now) <= now:
                self._discover(hint.path, now)

    def _open_inode(self, path: str) -> bool:
        """Whether the file at ``path`` is open already (under this path or another)."""
        try:
            info = os.stat(path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) in self._harvesters

    # -- discovery ----------------------------------------------------------

    def _scan(self, now: float) -> None:
        self._scan_requested = False
        self._next_scan = now + self._settings.scan_interval
        if self._watcher is not None:
            self._watcher.ensure_watches()
        paths = self._discovery.scan()
        self._idle_unseen = set(self._idle)
        self._waiting.intersection_update(paths)  # (a waiting file gone meanwhile waits no more)
        for path in [path for path in self._decided if path not in self._waiting]:
            del self._decided[path]
        for path in paths:
            self._discover(path, now)
        if self._waiting and now >= self._cap_logged_at + CAP_LOG_INTERVAL:  # (once a minute while files wait)
            self._cap_logged_at = now
            log.warning("as many files open as the agent may hold; the others wait for a free one (files "
                        "written no more are closed after --close-inactive; --once lets go of each file it "
                        "has read)", open_files=len(self._harvesters),
                        waiting=len(self._waiting), first=min(self._waiting))
        self._idle_not_found(now)
        matched = set(paths)
        for path in [path for path in self._problems if path not in matched]:
            self._clear_problem(path)  # so the same problem, if it returns, is logged again
        if not self._recovered:  # after the globs: a rotated file they match is simply open
            self._recovered = True
            self._recover_rotated(now)
        for harvester in self._harvesters.values():
            if harvester.source is not None:
                self._registry.touch(harvester.source.key, harvester.path)
        self._registry.settle()  # (files whose existing lines were skipped: their offsets, saved at once)

    def _discover(self, path: str, now: float) -> None:
        """Make sure the file at ``path`` is tailed (opening it if new)."""
        try:
            info = os.stat(path)
        except OSError as error:
            if not (error.errno == errno.ENOENT and self._idle_path_gone(path, now)):
                self._problem(path, now, describe_error(error))
            return
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISDIR(info.st_mode) and self._any_depth(path):
                return  # ``/srv/**`` matches every directory below: nothing to say (audit 9)
            self._problem(path, now, describe_mode(info.st_mode))
            return
        if not self._recovered:  # the first scan: what it finds is "found at start-up" (--read-from end)
            self._found_at_start.add((info.st_dev, info.st_ino))
        if (info.st_dev, info.st_ino) in self._read_once:
            return  # (run_once read it to its end and let go of it to make room)
        known = self._harvesters.get((info.st_dev, info.st_ino))
        if known is not None:
            self._seen_at(known, path)
            self._clear_problem(path, opened=True)
            return
        idle = self._idle.get((info.st_dev, info.st_ino))
        if idle is not None:
            if self._idle_unchanged(idle, path, info):
                return
            del self._idle[(info.st_dev, info.st_ino)]  # it changed (or moved): open it again
        self._open(path, now, idle, (info.st_dev, info.st_ino))

    def _any_depth(self, path: str) -> bool:
        """Whether a glob that ends in ``**`` matches ``path``."""
        paths = self._settings.paths
        if self._any_depth_globs is None or self._any_depth_globs[0] != paths:
            self._any_depth_globs = (paths, Discovery(tuple(p for p in paths if p.endswith("**"))))
        return self._any_depth_globs[1].matches(path)

    def _open(self, path: str, now: float, idle: IdleFile | None = None,
              found: tuple[int, int] | None = None) -> None:
        """Open ``path`` and tail it: resumed at its committed offset when the
        registry knows it, else from where ``_skipped_to`` says. ``idle``: what
        the file was when it was closed for inactivity (its inode's generation
        tells a new file on the same inode from it); ``found``: the dev and
        inode the scan saw at ``path``."""
        own = self._discovery.own(path)
        if own is not None:
            # Reached through a symlink (the excludes leave out the path as
            # written): shipping the agent's own files feeds them back to it.
            where = f"{'in' if own.directory else 'is'} {own.what} {own.path}"
            self._problem(path, now, where, "not tailed: one of the agent's own files")
            return
        if len(self._harvesters) >= self._max_open:
            self._retry_at[path] = now + self._settings.scan_interval
            decided = self._decided.get(path)
            if decided is None or (found is not None and decided[:2] != found):  # (new, or replaced while waiting)
                self._decide_start(path)
            self._waiting.add(path)  # (said at the end of the scan)
            return
        self._waiting.discard(path)
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
            if idle is not None:
                self._idle_reused(idle, fd)  # (before the look-up: a reused inode's entry is marked gone)
            entry = self._registry.lookup(info.st_dev, info.st_ino, prefix_hasher(fd))
        except OSError as error:
            os.close(fd)
            self._problem(path, now, describe_error(error))
            return
        self._clear_problem(path, opened=True)
        source, start, moved = None, 0, False
        if entry is not None and info.st_size < entry.offset:
            log.warning("file truncated", path=path, offset=entry.offset, size=info.st_size)
            self._registry.mark_gone(entry.key)
        elif entry is not None:
            source, start = Source(entry.key, path), max(entry.offset, self._resume_after.pop(entry.key, 0))
            moved = entry.path != path and not entry.gone and info.st_size > start
            self._registry.touch(entry.key, path)
            self._registry.hold(entry.key)
            log.info("resuming file", path=path, offset=start, key=entry.key)
        else:
            start = self._skipped_to(fd, info, path)
        cuts = self._cuts.line_cuts(source.key) if source is not None and self._cuts is not None else None
        harvester = _Harvester(fd, info.st_dev, info.st_ino, path,
                               LineReader(start, self._settings.max_line_bytes, cuts), source, now)
        if source is not None and entry is not None:
            harvester.fingerprint = (entry.fp_len, entry.fp_hash)
        self._harvesters[(info.st_dev, info.st_ino)] = harvester
        if source is not None and moved:
            # Renamed while the agent was stopped (found by a glob that matches
            # its new name): the file now at its old path waits for its rest.
            self._older[entry.path] = harvester  # type: ignore[union-attr]  # (moved: entry is set)
        self._soon.add(harvester)
        self._by_path[path] = harvester
        self._found_at_start.discard((info.st_dev, info.st_ino))
        if source is None and start:
            # Its key and the skipped offset are recorded now (saved at the end
            # of the scan), as if those lines had been shipped: a restart, even
            # before the file's first new line, resumes there instead of
            # skipping what came since.
            self._assign_identity(harvester, start)
            assert harvester.source is not None
            self._registry.commit(harvester.source.key, start)

    def _decide_start(self, path: str) -> None:
        """A file that must wait for an open-file slot starts where it would
        have started had it been opened when found (audit 5: decided when it
        was opened, a waiting file lost what was written meanwhile, with
        ``--read-from end`` even again after a restart, and one found fresh
        was skipped whole once it had waited past ``--ignore-older``). A skip
        is recorded in the registry now, as for an opened file (a restart
        resumes there); a file read from its start is tracked at offset 0
        once it has a complete line (a restart resumes there, not skipping it
        as found then), and remembered, so that its age when opened does not
        count. It is opened a moment for this; a file replaced at the path
        while it waits is decided again."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return  # (said when it is opened)
        try:
            info = os.fstat(fd)
            dev, inode = info.st_dev, info.st_ino
            if not stat.S_ISREG(info.st_mode) or (dev, inode) in self._harvesters or (dev, inode) in self._idle:
                return
            if self._registry.lookup(dev, inode, prefix_hasher(fd)) is not None:
                self._decided[path] = (dev, inode, False)  # (resumed at its offset when opened)
                return
            self._decided.pop(path, None)  # (an earlier file at this path: _skipped_to must not take it)
            start = self._skipped_to(fd, info, path)
            if start:
                key, _ = self._identity(fd, dev, inode, path, start)
                self._registry.commit(key, start)
            else:
                complete = last_line_end(fd, info.st_size,
                                         self._settings.max_line_bytes + self._settings.read_chunk_bytes)
                if complete:
                    self._identity(fd, dev, inode, path, complete)  # (at offset 0: saved at the end of the scan)
            self._found_at_start.discard((dev, inode))
            self._decided[path] = (dev, inode, not start)
        except OSError:
            return  # (said when it is opened)
        finally:
            os.close(fd)

    def _skipped_to(self, fd: int, info: os.stat_result, path: str) -> int:
        """Where a file the registry does not know is read from: 0, or the end
        of its last complete line with ``read_from_end`` (at the first scan
        only) or when it is older than ``ignore_older``."""
        settings = self._settings
        if self._decided.pop(path, None) == (info.st_dev, info.st_ino, True):
            return 0  # (found fresh while it waited for a slot: "new file" was said then)
        age = self._clock.time() - info.st_mtime
        if settings.ignore_older is not None and age > settings.ignore_older:
            reason = f"last modified {age:.0f} s ago (--ignore-older {settings.ignore_older:g} s)"
        elif settings.read_from_end and (info.st_dev, info.st_ino) in self._found_at_start:
            reason = "found at start-up (--read-from end)"
        else:
            log.info("new file", path=path)
            return 0
        start = last_line_end(fd, info.st_size, settings.max_line_bytes + settings.read_chunk_bytes)
        log.info("new file; the lines it already has are not read", path=path, offset=start, reason=reason)
        return start

    # -- files rotated away while the agent was stopped ---------------------

    def _recover_rotated(self, now: float) -> None:
        """Open, to finish them, the files rotated out of the globs while the agent was down."""
        by_dir: dict[str, dict[int, list[Entry]]] = {}
        for entry in self._registry.entries():
            if entry.gone or (entry.dev, entry.inode) in self._harvesters:
                continue
            if names_file(entry.path, entry.dev, entry.inode):
                continue  # still at its path, no longer matched: the globs changed, it was not rotated
            inodes = by_dir.setdefault(os.path.dirname(entry.path), {})
            inodes.setdefault(entry.inode, []).append(entry)
        for directory, inodes in by_dir.items():
            try:
                with os.scandir(directory) as listing:
                    for count, item in enumerate(listing):
                        if count >= MAX_RECOVERY_NAMES:
                            log.warning("directory too large to look for files rotated while the agent was "
                                        "stopped; the rest of it is not looked at", path=directory,
                                        names=MAX_RECOVERY_NAMES)
                            break
                        for entry in inodes.get(item.inode(), ()):  # d_ino: no stat per name
                            self._resume_rotated(item.path, entry, now)
            except OSError as error:  # the directory is gone or unreadable: nothing to finish there
                log.debug("cannot look for rotated files", path=directory, error=describe_error(error))

    def _resume_rotated(self, path: str, entry: Entry, now: float,
                        when: str = "while the agent was stopped", generation: int | None = None) -> None:
        if (entry.dev, entry.inode) in self._harvesters or self._discovery.own(path) is not None:
            return  # (an entry an older agent made for one of its own files)
        try:
            info = os.stat(path, follow_symlinks=False)
            if (not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (entry.dev, entry.inode)
                    or info.st_size <= entry.offset):
                return  # another file with that inode number, or nothing left to read
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return
        try:
            info = os.fstat(fd)
            same = (info.st_dev, info.st_ino) == (entry.dev, entry.inode) and info.st_size > entry.offset
            # The fingerprint: an inode reused by another content must never be read on.
            found = self._registry.lookup(entry.dev, entry.inode, prefix_hasher(fd)) if same else None
        except OSError:
            found = None
        if found is not None and generation is not None and inode_generation(fd) != generation:
            self._registry.mark_gone(entry.key)  # (a new file on the inode of one closed while idle)
            found = None
        if found is None or found.key != entry.key:
            os.close(fd)
            return
        start = max(entry.offset, self._resume_after.pop(entry.key, 0))
        log.info(f"file rotated away {when}; reading it to its end", path=entry.path,
                 now_at=path, offset=start, size=info.st_size, key=entry.key)
        cuts = self._cuts.line_cuts(entry.key) if self._cuts is not None else None
        harvester = _Harvester(fd, entry.dev, entry.inode, entry.path,
                               LineReader(start, self._settings.max_line_bytes, cuts),
                               Source(entry.key, entry.path), now)
        # Not in _by_path: the old path may name the new file by now (which waits for this one).
        harvester.state = _RENAMED
        self._older[entry.path] = harvester
        harvester.fingerprint = (entry.fp_len, entry.fp_hash)
        self._harvesters[(entry.dev, entry.inode)] = harvester
        self._soon.add(harvester)
        self._registry.hold(entry.key)

    def _seen_at(self, harvester: _Harvester, path: str) -> None:
        """An open file was found at ``path`` by a scan or a hint."""
        if harvester.path != path:
            if harvester.state == _ACTIVE and names_file(harvester.path, harvester.dev, harvester.inode):
                self._linked = True
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

    # -- letting go ---------------------------------------------------------

    def _release(self, harvester: _Harvester) -> None:
        if harvester.fd < 0:
            return
        try:
            os.close(harvester.fd)
        except OSError:
            pass
        harvester.fd = -1
        self._held_back.discard(harvester)
        source = harvester.source
        if source is not None and harvester.state != _DELETED:  # (a deleted file is never opened again)
            entry = self._registry.get(source.key)
            if entry is not None and harvester.reader.offset > entry.offset:
                # Lines handed over, not acknowledged yet: opened again in this run (a
                # reload that matches it again, a scan after a read error), the file
                # resumes after them, not at the committed offset (audit 9: a glob
                # removed and put back by two reloads sent those lines twice).
                self._resume_after[source.key] = harvester.reader.offset
        for path in [path for path, older in self._older.items() if older is harvester]:  # (a few at most)
            del self._older[path]
        if harvester.source is not None:
            self._registry.release(harvester.source.key)
        self._harvesters.pop((harvester.dev, harvester.inode), None)
        if self._by_path.get(harvester.path) is harvester:
            del self._by_path[harvester.path]
