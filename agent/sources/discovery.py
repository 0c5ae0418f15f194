"""Which files to tail: glob patterns, exclusions, and early wake-ups.

The source of truth is the periodic full scan (``expand``: what
``glob.glob(recursive=True)`` gives, but proof against symlink loops, over
every pattern, minus the excludes), which works on any file system,
NFS included. A watchdog observer on the patterns' base directories only
makes things faster: its events are turned into *hints* (this path changed,
this path appeared, rescan) and set a wake-up event, so the tailer reacts in
milliseconds instead of at the next poll or scan. Losing an event (inotify
queue overflow, a missing directory, no watchdog at all) costs latency,
never data.

The agent's own files (``OwnPattern``: the state directory, the spool, the
dead letters, a ``file:`` output) arrive among the excludes, so a scan or a
hint never yields them whatever the globs say; ``own`` also recognises one
reached through a symlink, which the tailer refuses to open.

Guarantees: ``scan`` never raises for file-system reasons (glob swallows
them); ``Watcher`` never raises out of its callbacks, and a directory it
cannot watch is retried at later scans. Every failure of the watcher is
logged with ``error=`` and counted (``watcher_errors`` in ``modelscribe
status``): an exception in the event callback (a bug: logged with its
traceback), a directory that cannot be watched, an event thread that died
(its traceback is printed by Python; the directory is watched again at the
next scan) and an observer that died or cannot start (restarted at the next
scan). Polling never depends on the watcher, so none of these stops reading.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
import threading
from dataclasses import dataclass
from typing import Callable

from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
                             FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from agent.selflog import get_logger
from agent.sources.globs import MAGIC, base_dir, below, translate
from agent.stats import count_error

log = get_logger("tail")


class OwnPattern(str):
    """An exclude standing for one of the agent's own directories or files
    (``agent.config.stages.own_files``). Its text is the fnmatch pattern that
    leaves out that path as written (escaped; ``DIR/*`` for a directory), so
    it travels in ``TailSettings.excludes`` and works wherever excludes do;
    ``root`` (resolved through symlinks) lets ``Discovery.own`` also catch a
    path that reaches it through a symlink."""

    path: str  # as written (absolute, normalised)
    root: str  # resolved through symlinks
    what: str  # "the state directory", "the dead-letter file"...
    directory: bool

    def __new__(cls, path: str, what: str, directory: bool) -> OwnPattern:
        written = os.path.normpath(os.path.abspath(path))
        self = super().__new__(cls, glob.escape(written) + ("/*" if directory else ""))
        self.path = written
        self.root = os.path.realpath(written)
        self.what = what
        self.directory = directory
        return self

    def holds(self, resolved: str) -> bool:
        """Is the resolved path ``resolved`` this file, or inside this directory?"""
        if self.directory:
            return resolved == self.root or resolved.startswith(self.root.rstrip("/") + "/")
        return resolved == self.root


class Discovery:
    """The configured globs and excludes (some of which may be ``OwnPattern``)."""

    def __init__(self, paths: tuple[str, ...], excludes: tuple[str, ...] = ()) -> None:
        self.paths = tuple(os.path.normpath(path) for path in paths)
        self.excludes = excludes
        self._regexes = [translate(path) for path in self.paths]
        self._own = [pattern for pattern in excludes if isinstance(pattern, OwnPattern)]
        self._said_denied: set[str] = set()

    def own(self, path: str) -> OwnPattern | None:
        """The agent's own directory or file that ``path``, resolved through
        symlinks, is or lies in (None: not one of the agent's files). The
        excludes already leave out such a path as written; this catches one
        that reaches it through a symlink, when it is about to be opened."""
        if not self._own:
            return None
        resolved = os.path.realpath(path)
        return next((pattern for pattern in self._own if pattern.holds(resolved)), None)

    def excluded(self, path: str) -> bool:
        # An own directory itself too: ``**`` lists it, and it is no file to tail either.
        return (any(fnmatch.fnmatchcase(path, pattern) for pattern in self.excludes)
                or any(path == pattern.path for pattern in self._own))

    def matches(self, path: str) -> bool:
        """Would a scan list ``path``? (pattern match and not excluded; no I/O)."""
        return any(regex.match(path) for regex in self._regexes) and not self.excluded(path)

    def scan(self) -> list[str]:
        """Every path currently matched by a glob and not excluded: those of the
        first glob first, each glob's sorted. A file reached by two paths (a
        symlink) is opened under the first one listed, and the sink gives it the
        settings of the input that path matches: the globs come in the order of
        precedence of their inputs (``agent.pipeline.tail_settings``), so that is
        the first input that matches it (audit 7: the path that sorted first won)."""
        found: dict[str, None] = {}
        for pattern in self.paths:
            for path in sorted(expand(pattern, self._denied)):
                if path not in found and not self.excluded(path):
                    found[path] = None
        return list(found)

    def unmatched(self) -> list[int]:
        """Positions in ``paths`` of the globs that match no file now (excludes
        applied): what the start-up warning names. Nothing else changes: the
        tailer keeps scanning and watching for them."""
        return [number for number, pattern in enumerate(self.paths)
                if all(self.excluded(path) for path in expand(pattern))]

    def _denied(self, directory: str, error: OSError) -> None:
        """A directory a glob reaches that cannot be listed: said once (its files are not tailed)."""
        if directory not in self._said_denied:
            self._said_denied.add(directory)
            log.warning("cannot list a directory the globs reach; files in it are not tailed",
                        directory=directory, error=error.strerror)


    def watch_dirs(self) -> dict[str, bool]:
        """Directories to watch, and whether recursively."""
        dirs: dict[str, bool] = {}
        for pattern in self.paths:
            directory, recursive = base_dir(pattern)
            dirs[directory] = dirs.get(directory, False) or recursive
        return dirs


def why_unmatched(pattern: str) -> str | None:
    """Why a glob that matches nothing may match nothing: the first directory of
    its fixed part, or that its ``**`` would enter, that exists and cannot be
    listed (glob says nothing of it: audit 4 found "no file matches" for a
    file in a directory of mode 000)."""
    directory, _ = base_dir(pattern)
    parts = directory.split("/")
    for end in range(1, len(parts) + 1):
        prefix = "/".join(parts[:end]) or "/"
        try:
            with os.scandir(prefix):
                pass
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as error:
            return f"cannot list {prefix}: {error.strerror}"
    denied: list[str] = []
    if "**" in pattern.split("/"):  # (a directory below the fixed part, which ``**`` would enter)
        expand(pattern, lambda directory, error: denied.append(f"cannot list {directory}: {error.strerror}"))
    return denied[0] if denied else None


def expand(pattern: str, denied: Callable[[str, OSError], None] | None = None) -> list[str]:
    """What ``glob.glob(pattern, recursive=True)`` returns, except that ``**``
    never enters a directory it is already inside (a symlink to ``.`` or to
    a parent). glob follows such links: two of them under one ``**`` made
    2^40 paths, and the agent never started, or stopped reading while its
    scan ran (audit 4). ``denied``: told of each directory that cannot be
    listed (glob swallows it)."""
    segments = pattern.split("/")
    if "**" not in segments:
        return glob.glob(pattern, recursive=True)
    first = next(index for index, segment in enumerate(segments) if MAGIC.search(segment))
    root = "/".join(segments[:first]) or ("/" if pattern.startswith("/") else "")
    regex = translate(pattern)
    try:
        top = os.stat(root or ".")
    except OSError:
        return []
    if not stat.S_ISDIR(top.st_mode):
        return []
    # (glob lists the directory itself for a trailing ``**`` matching no directory: "root/")
    found: list[str] = [root.rstrip("/") + "/"] if root and segments[first:] == ["**"] else []
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [(root, ((top.st_dev, top.st_ino),))]
    while stack:
        directory, ancestors = stack.pop()
        try:
            with os.scandir(directory or ".") as listing:
                entries = list(listing)
        except OSError as error:
            if denied is not None and error.errno in (errno.EACCES, errno.EPERM):
                denied(directory, error)
            continue
        for entry in entries:
            path = entry.name if not directory else directory.rstrip("/") + "/" + entry.name
            if regex.match(path):
                found.append(path)
            try:
                if not entry.is_dir() or not below(pattern, path):  # (is_dir follows links, as glob does)
                    continue
                identity = entry.stat()
            except OSError:
                continue
            if (identity.st_dev, identity.st_ino) in ancestors:
                continue  # inside itself: a symlink loop
            stack.append((path, ancestors + ((identity.st_dev, identity.st_ino),)))
    return found


@dataclass(frozen=True, slots=True)
class Hint:
    """Something a watchdog event suggests: look at ``path`` now.

    ``appeared`` is True for a file created or moved to ``path``;
    ``rescan`` asks for a full scan (a directory appeared).
    """

    path: str
    appeared: bool = False
    rescan: bool = False


_EVENT_TYPES = [FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                FileClosedEvent, DirCreatedEvent, DirMovedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._watcher._record(event)
        except Exception as error:  # noqa: BLE001 - a bug; the observer thread must not die of it
            count_error("watcher")
            log.error("file-system event not handled; polling will notice the change", exc_info=True,
                      event=getattr(event, "event_type", "-"), path=os.fsdecode(getattr(event, "src_path", "")),
                      error=repr(error))
            self._watcher._wake.set()



class Watcher:
    """A watchdog observer feeding hints and setting ``wake``."""

    def __init__(self, discovery: Discovery, wake: threading.Event) -> None:
        self._discovery = discovery
        self._wake = wake
        self._lock = threading.Lock()
        # Merged by path: a busy file yields one hint per drain, not one per
        # write, so the queue stays bounded while the tailer is blocked.
        self._hints: dict[str, Hint] = {}
        self._handler = _Handler(self)
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._watched: dict[str, tuple[ObservedWatch, int]] = {}  # dir -> (watch, inode)
        self._failed: dict[str, str] = {}

    def start(self) -> None:
        observer = Observer()
        observer.daemon = True
        try:
            observer.start()
        except Exception as error:  # noqa: BLE001 - watchdog is an optimisation only
            count_error("watcher")
            log.warning("file system events unavailable; polling only", error=repr(error))
            return
        self._observer = observer
        self.ensure_watches()

    def _check_threads(self) -> None:
        """Restart an observer whose thread died; forget watches whose event
        thread died, so ``ensure_watches`` schedules them again."""
        observer = self._observer
        if observer is None:
            return
        if not observer.is_alive():
            count_error("watcher")
            log.warning("file system event observer stopped; restarting it (polling meanwhile)",
                        error="the observer thread ended")
            self._observer = None
            self._watched.clear()
            _tear_down(observer.stop, "-")  # it is dead; only its emitters may remain
            self.start()
            return
        alive = {emitter.watch for emitter in list(observer.emitters) if emitter.is_alive()}
        for directory, (watch, inode) in list(self._watched.items()):
            if watch in alive:
                continue
            try:
                same = os.stat(directory).st_ino == inode
            except OSError:
                same = False
            if same:  # not the normal end of a watch whose directory went away
                count_error("watcher")
                log.warning("file system events stopped for a directory; watching it again "
                            "(polling meanwhile)", path=directory, error="the event thread ended")
            del self._watched[directory]
            _tear_down(lambda: observer.unschedule(watch), directory)

    def ensure_watches(self) -> None:
        """Watch the base directories not watched yet (they may appear later).

        A directory deleted and re-created (a deploy replacing /var/log/app)
        is a new inode: inotify's watch on the old one is dead, so re-watch.
        """
        self._check_threads()
        if self._observer is None:
            return
        for directory, recursive in self._discovery.watch_dirs().items():
            try:
                inode = os.stat(directory).st_ino
            except OSError:
                inode = -1
            known = self._watched.get(directory)
            if known is not None:
                if known[1] == inode:
                    continue
                del self._watched[directory]
                _tear_down(lambda: self._observer.unschedule(known[0]), directory)  # type: ignore[union-attr]
            if inode < 0:
                continue
            try:
                watch = self._observer.schedule(self._handler, directory, recursive=recursive,
                                                event_filter=_EVENT_TYPES)
            except Exception as error:  # noqa: BLE001 - inotify limits, races...
                if self._failed.get(directory) != str(error):
                    count_error("watcher")
                    log.warning("cannot watch directory; relying on polling",
                                path=directory, error=str(error))
                self._failed[directory] = str(error)
                continue
            self._failed.pop(directory, None)
            self._watched[directory] = (watch, inode)

    def follow(self, discovery: Discovery) -> None:
        """Watch ``discovery``'s directories from the next ``ensure_watches``
        (the tailer's thread, on a reload). Directories no longer needed stay
        watched: their hints only name paths the tailer no longer matches."""
        self._discovery = discovery

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def drain(self) -> list[Hint]:
        with self._lock:
            hints, self._hints = self._hints, {}
        return list(hints.values())

    def _record(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        hints = []
        if event.is_directory:
            hints.append(Hint(dest or src, rescan=True))
        elif event.event_type == "moved":
            hints.append(Hint(src))
            hints.append(Hint(dest, appeared=True))
        else:
            hints.append(Hint(src, appeared=event.event_type == "created"))
        with self._lock:
            for hint in hints:
                old = self._hints.get(hint.path)
                if old is not None:
                    hint = Hint(hint.path, old.appeared or hint.appeared, old.rescan or hint.rescan)
                self._hints[hint.path] = hint
        self._wake.set()


def _tear_down(action: Callable[[], object], path: str) -> None:
    """Stop part of the watcher that already ended or lost its directory.
    KeyError (watchdog no longer knows the watch) and OSError (the inotify
    watch died with its directory) are expected; anything else is a bug,
    logged with its traceback and counted, and polling carries on."""
    try:
        action()
    except (KeyError, OSError):
        pass
    except Exception as error:  # noqa: BLE001 - the watcher is an optimisation: the reader must live on
        count_error("watcher")
        log.error("cannot stop a file-system watch", exc_info=True, path=path, error=repr(error))


def describe_error(error: OSError) -> str:
    """``Permission denied (EACCES)``: the text for a log line's ``error=`` field."""
    if not error.errno:
        return str(error)
    return f"{os.strerror(error.errno)} ({errno.errorcode.get(error.errno, error.errno)})"


def describe_mode(mode: int) -> str:
    """Why a matched path that is not a regular file is skipped."""
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "something else")
    return f"not a regular file: {kind}"
