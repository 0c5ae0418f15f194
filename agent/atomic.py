"""Atomic file replacement, the one way the agent rewrites a state file;
and ``write_all``, the one way it appends bytes that must land whole.

``write_atomic(path, body)``: a temp file in the same directory (mode 0600
from mkstemp), write, fsync, rename over ``path``, fsync the directory. A
crash at any point leaves either the old file or the new one, never a mix;
a leftover temp file carries ``prefix`` so its owner can clean it up.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import Callable


def write_all(fd: int, data: bytes, write: Callable[[int, memoryview], int] = os.write) -> None:
    """Write all of ``data``: on a nearly full disk the kernel writes what fits
    and returns a short count (no error); the next call writes the rest or
    raises. The caller cuts a failed write back (``ftruncate``) so no torn
    record is left. ``write``: the seam a test replaces."""
    view = memoryview(data)
    while view:
        written = write(fd, view)
        if written <= 0:  # never for a regular file; a loop that cannot end otherwise
            raise OSError(errno.EIO, "write wrote nothing")
        view = view[written:]


def write_atomic(path: str | os.PathLike[str], body: bytes, prefix: str = ".tmp-", suffix: str = ".tmp") -> None:
    """Replace ``path`` with ``body``; raises OSError (callers translate it)."""
    directory = os.path.dirname(os.path.abspath(path))
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
        fsync_directory(directory)
    finally:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass


def remove_stale_temps(directory: str | os.PathLike[str], prefixes: tuple[str, ...], suffix: str = ".tmp") -> None:
    """Delete the temp files ``write_atomic`` left in ``directory`` with one of
    ``prefixes`` (a crash between mkstemp and rename). Only for the files a
    process writes alone (under the state lock): another's temp file would
    be taken from under it. Best effort: what cannot be listed or deleted stays."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.endswith(suffix) and name.startswith(prefixes):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new link in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
