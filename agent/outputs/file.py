"""``--output file:PATH``: appends each final document as one NDJSON line —
byte for byte what would be sent to Elasticsearch as the bulk source.

Guarantees:

- A batch is acknowledged after its lines are written and fsynced, so a crash
  after the acknowledgement cannot lose them. (A crash between write and
  acknowledgement may repeat lines on the next run; unlike Elasticsearch a file
  cannot refuse a duplicate ``_id``.)
- A batch is in the file whole or not at all. A write that fails, or that the
  kernel cut short (a nearly full disk writes what fits and says how much), is
  cut back (``ftruncate``) to the file's size before the batch, so the retry
  writes the batch once and no line is left torn. If even the cut fails (an
  append-only file), it is tried again before the next write, which waits
  until it succeeds: nothing is ever appended after a torn line.
- A full disk (ENOSPC, EDQUOT) is a ``TransientOutputError``: the batch is
  retried with backoff until there is room, like an unreachable cluster.
  Other failures (EIO, EROFS, EACCES...) are ``PermanentOutputError``. Both
  messages name the file and the cause.
- The file is reopened when PATH no longer names it: before each batch the
  path is stat'ed, and if it is gone or is another file (logrotate moved it
  away; someone deleted it), the next lines go to a new file at PATH, created
  0600. A batch that finds its file deleted once it is written is written
  again, to the new file, so an acknowledged line is never only in an
  unlinked inode. Renaming needs no signal and no ``copytruncate``.
- Batches are written one at a time (a lock): the cut-back must never remove
  another worker's acknowledged batch.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Sequence

from agent.atomic import write_all
from agent.errors import OutputError, PermanentOutputError, TransientOutputError
from agent.events import Event
from agent.outputs.base import all_created, CheckReport, Response
from agent.selflog import get_logger

log = get_logger("output")

_MODE = 0o600  # like the dead letters: the documents may hold what the logs held
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

# Seams for the tests: a full disk cannot be made without mounting one.
_write = os.write
_fsync = os.fsync
_truncate = os.ftruncate


class FileOutput:
    name = "file"

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._cut_to: int | None = None  # a failed cut-back, to do before the next write
        self._lock = threading.Lock()

    def _error(self, what: str, error: OSError) -> OutputError:
        cause = error.strerror or str(error)
        if error.errno in _DISK_FULL:
            return TransientOutputError(f"--output file:{self._path}: {what}: the disk is full ({cause}); "
                                        f"retried until there is room")
        return PermanentOutputError(f"--output file:{self._path}: {what}: {cause}")

    def _open(self) -> int:
        if self._fd is None:
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _MODE)
            except OSError as error:
                raise self._error("cannot open", error) from error
            info = os.fstat(fd)
            self._fd, self._identity, self._cut_to = fd, (info.st_dev, info.st_ino), None
        return self._fd

    def _still_named(self) -> bool:
        """Does the path still name the open file?"""
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell (a directory we may not search): keep the file we have
        return (info.st_dev, info.st_ino) == self._identity

    def _current(self) -> int:
        """The open file, reopened first if it was moved away or deleted."""
        if self._fd is not None and not self._still_named():
            log.info("the output file was moved away or deleted; writing to a new file at its path",
                     path=self._path)
            self._close()
        return self._open()

    def send(self, events: Sequence[Event]) -> Response:
        body = b"".join(event.data + b"\n" for event in events)
        with self._lock:
            fd = self._current()
            try:
                if self._cut_to is not None:
                    _truncate(fd, self._cut_to)
                    self._cut_to = None
                base = os.fstat(fd).st_size
            except OSError as error:
                raise self._error("cannot cut back a partly written batch", error) from error
            try:
                write_all(fd, body, _write)
                _fsync(fd)
            except OSError as error:
                self._cut_back(fd, base)
                raise self._error("write failed", error) from error
            if os.fstat(fd).st_nlink == 0:
                # Deleted while it was written: the lines exist nowhere. The
                # retry finds the path gone and writes them to a new file.
                raise TransientOutputError(f"--output file:{self._path}: the file was deleted while a batch "
                                           f"was written; the batch is written again to a new file")
        return all_created(events)

    def _cut_back(self, fd: int, base: int) -> None:
        """Remove what a failed write left after ``base`` (with O_APPEND the
        next write goes to the new end)."""
        try:
            _truncate(fd, base)
        except OSError as error:
            self._cut_to = base
            log.error("cannot cut a partly written batch back; retried before the next write",
                      path=self._path, size=base, error=error.strerror or str(error))

    def preflight(self) -> None:
        with self._lock:
            self._open()

    def check(self) -> CheckReport:
        try:
            self.preflight()
        except OutputError as error:
            return CheckReport(False, (("file", f"FAILED: {error}"),))
        return CheckReport(True, (("file", f"ok: appending to {self._path}"),))

    def _close(self) -> None:
        if self._fd is not None:
            if self._cut_to is not None:  # a last chance for the old file not to keep a torn line
                try:
                    _truncate(self._fd, self._cut_to)
                except OSError:
                    pass  # already logged when the cut first failed
            os.close(self._fd)
            self._fd = self._identity = self._cut_to = None

    def close(self) -> None:
        with self._lock:
            self._close()
