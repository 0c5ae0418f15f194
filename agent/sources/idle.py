"""Files closed while idle: the side of the tailer that lets go of a file
nobody writes any more and notices when it changes, moves or goes.

A file at its path that has not grown for ``close_inactive``, with everything
read of it acknowledged (committed) and no NUL tail waiting to be written in
place, is closed (``_close_idle``): a glob that matches thousands of dated log
files must not hold a descriptor, and a poll, for each. What it was then is
kept (``IdleFile``: path, size, modification time, registry key, the inode's
generation). Guarantees:

* a scan or a file-system event that finds it with another size or
  modification time opens it again (``Harvesters._open``), at its committed
  offset, under the same key; found unchanged, under its path or another
  link to it, it stays closed and its registry entry is kept alive;
* a file deleted and created again on the same inode (ext4 hands the number
  out again at once) is told apart by the inode's generation where the file
  system keeps one (ext4, XFS, Btrfs), and by the deletion event otherwise:
  its old entry is marked gone, so the new file is never resumed at the old
  offset (``_idle_reused``, ``_idle_path_gone``);
* one that the scan no longer finds at its path is looked for by inode in its
  directory (one ``scandir``): found with new bytes, it is read to its end as a
  file rotated away; not found, its entry is marked gone (``_idle_lost``).

Limits: a closed file moved to another directory with new lines before a
scan saw them is not followed; without a generation number and without
file-system events (NFS, polling only), a file deleted and created again on
the same inode with the same first bytes between two scans is resumed at the
old offset, as when the agent is stopped.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from agent.selflog import get_logger
from agent.sources.fileinfo import inode_generation
from agent.sources.identity import names_file

if TYPE_CHECKING:  # annotations only: harvesters imports this module
    from agent.registry import Registry
    from agent.sources.harvesters import _Harvester

log = get_logger("tail")

MAX_NAMES = 100_000  # names looked at per directory for a file closed while idle


class IdleFile(NamedTuple):
    """A file closed while idle, as it was then."""

    path: str
    size: int
    mtime_ns: int
    key: str | None  # None: no line came from it yet
    generation: int | None  # the inode's (fileinfo.inode_generation), None where there is none


class IdleFiles:
    """A base of ``Harvesters``: the files closed while idle. ``Tailer.__init__`` sets the state."""

    _registry: Registry
    _sink: Any  # the tailer's LineSink
    _idle: dict[tuple[int, int], IdleFile]
    _idle_unseen: set[tuple[int, int]]  # of those, the ones the running scan has not found yet

    _release: Callable[[_Harvester], None]  # (Harvesters)
    _resume_rotated: Callable[..., None]  # (Harvesters: path, entry, now, when, generation)

    def _delivered(self, harvester: _Harvester) -> bool:
        """Whether everything read of the file was acknowledged (committed)."""
        if harvester.source is None:
            return harvester.reader.offset == 0
        entry = self._registry.get(harvester.source.key)
        return entry is not None and entry.offset == harvester.reader.offset

    def _close_idle(self, harvester: _Harvester, info: os.stat_result) -> None:
        log.info("file closed", path=harvester.path, reason="inactive; opened again when it changes")
        key = harvester.source.key if harvester.source is not None else None
        self._idle[(harvester.dev, harvester.inode)] = IdleFile(
            harvester.path, info.st_size, info.st_mtime_ns, key, inode_generation(harvester.fd))
        if harvester.source is not None:
            self._sink.source_closed(harvester.source)
        self._release(harvester)

    def _idle_unchanged(self, idle: IdleFile, path: str, info: os.stat_result) -> bool:
        """Found at ``path`` by a scan or an event: as it was closed (it stays
        closed; its entry is kept alive)? Another link to it counts as its path
        while that path still names it (else the file would be reopened under
        each name in turn)."""
        if (idle.size, idle.mtime_ns) != (info.st_size, info.st_mtime_ns):
            return False
        if path != idle.path and not names_file(idle.path, info.st_dev, info.st_ino):
            return False  # moved: opened again under its new name
        self._idle_unseen.discard((info.st_dev, info.st_ino))
        if idle.key is not None:
            self._registry.touch(idle.key, idle.path)  # still there: its entry must not expire
        return True

    def _idle_reused(self, idle: IdleFile, fd: int) -> None:
        """Opened again: a new file on the inode (another generation) is no part of the old one."""
        if idle.key is not None and idle.generation is not None and inode_generation(fd) != idle.generation:
            log.info("file closed while idle was deleted; a new file has its inode", path=idle.path)
            self._registry.mark_gone(idle.key)

    def _idle_path_gone(self, path: str, now: float) -> bool:
        """An event names ``path``, which no longer exists: if it was a file
        closed while idle, it was deleted or renamed (``_idle_lost``). True then."""
        lost = {dev_inode: idle for dev_inode, idle in self._idle.items() if idle.path == path}
        for dev_inode in lost:
            del self._idle[dev_inode]
        self._idle_lost(lost, now)
        return bool(lost)

    def _idle_not_found(self, now: float) -> None:
        """The files closed while idle that the scan did not find at their path."""
        lost = {dev_inode: self._idle.pop(dev_inode) for dev_inode in self._idle_unseen & self._idle.keys()}
        self._idle_lost(lost, now)

    def _idle_lost(self, lost: dict[tuple[int, int], IdleFile], now: float) -> None:
        """Renamed (rotated) or deleted: looked for by inode in their directory;
        one found there with new bytes is read to its end as any file rotated
        away (``_resume_rotated``); one not found is marked gone, so a new file
        on its inode is never resumed at its offset."""
        by_dir: dict[str, dict[int, IdleFile]] = {}
        for (_, inode), idle in lost.items():
            by_dir.setdefault(os.path.dirname(idle.path), {})[inode] = idle
        for directory, inodes in by_dir.items():
            found: set[int] = set()
            try:
                with os.scandir(directory) as listing:
                    for count, item in enumerate(listing):
                        if count >= MAX_NAMES:
                            found = set(inodes)  # not looked at to the end: none is called gone
                            break
                        idle = inodes.get(item.inode())  # (d_ino: no stat per name)
                        if idle is not None:
                            found.add(item.inode())
                            entry = self._registry.get(idle.key) if idle.key is not None else None
                            if entry is not None:
                                self._resume_rotated(item.path, entry, now, "while it was closed for inactivity",
                                                     idle.generation)
            except OSError:
                pass  # the directory is gone: so are its files
            for inode, idle in inodes.items():
                if inode not in found and idle.key is not None:
                    log.info("file closed while idle is gone", path=idle.path)
                    self._registry.mark_gone(idle.key)
