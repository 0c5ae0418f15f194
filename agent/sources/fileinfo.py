"""What the tailer asks the file system about a file, beyond ``stat``.

- ``content_end``: where a file's written content ends, before a run of NUL
  bytes at its end (a region preallocated, extended by ``ftruncate``, or
  mapped by a memory-mapped appender and not written yet). Holes are found
  with ``SEEK_DATA``/``SEEK_HOLE`` and never read; NULs the file system
  stores as data are looked at backwards, a chunk at a time.
- ``last_line_end``: where a file's last complete line ends, before such a
  NUL run (``--read-from end``, ``--ignore-older``).
- ``data_after``: where data begins again after a position: a hole before it
  is NULs that need no reading.
- ``inode_generation``: the inode's generation number (``FS_IOC_GETVERSION``;
  ext4, XFS and Btrfs give a new one when an inode number is reused), or
  None where the file system has none: a file deleted and created again on
  the same inode while the agent held no descriptor on it is told apart.
- ``open_files_budget``: how many files the tailer may hold open.

Each is total: an error of the file system gives the answer that reads more,
never one that skips bytes (``content_end`` then says the whole size).
"""

from __future__ import annotations

import array
import errno
import os

_CHUNK = 1 << 20
_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long) on 64-bit Linux
RESERVED_DESCRIPTORS = 256  # for the spool, the output's and /metrics' sockets, the state files


def _data_end(fd: int, size: int) -> int:
    """The end of the file's last data region within ``size`` (after it, a
    hole: NULs never written); ``size`` when the file system cannot tell."""
    end = position = 0
    try:
        while position < size:
            start = os.lseek(fd, position, os.SEEK_DATA)  # (ENXIO: no data from there on)
            if start >= size:
                break
            position = end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
    except OSError as error:
        if error.errno != errno.ENXIO:
            return size
    return end


def content_end(fd: int, size: int) -> int:
    """The offset just after the last byte that is not NUL among the file's first ``size``."""
    end = _data_end(fd, size)
    zeros = bytes(min(_CHUNK, end))
    while end > 0:
        begin = max(0, end - _CHUNK)
        try:
            data = os.pread(fd, end - begin, begin)
        except OSError:
            return size
        if len(data) != end - begin:
            return size  # (shrank under us: let the reader find out)
        if data == zeros[:len(data)]:
            end = begin
            continue
        return begin + len(data.rstrip(b"\0"))
    return 0


def last_line_end(fd: int, size: int, reach: int) -> int:
    """The offset just after the last newline before the file's trailing NULs
    (``content_end``), looked for in the last ``reach`` bytes of its content;
    the content's end when there is none there (an unfinished line longer than
    that is skipped whole), 0 when the content is shorter than ``reach`` and
    has none (its one unfinished line is read)."""
    written = content_end(fd, size)
    position, floor = written, max(0, written - reach)
    while position > floor:
        begin = max(floor, position - 65536)
        found = os.pread(fd, position - begin, begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        position = begin
    return written if floor else 0


def data_after(fd: int, position: int, end: int) -> int:
    """Where the file's data begins again at or after ``position`` (at most
    ``end``): the bytes before it are a hole, NULs without reading them
    (a sparse file's gigabytes). ``position`` when the file system cannot tell."""
    try:
        return min(os.lseek(fd, position, os.SEEK_DATA), end)
    except OSError as error:
        return end if error.errno == errno.ENXIO else position  # ENXIO: a hole up to the end


def inode_generation(fd: int) -> int | None:
    """The generation of the file's inode, None where the file system keeps none."""
    try:
        import fcntl

        answer = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETVERSION, answer, True)
        return int(answer[0])
    except (ImportError, OSError, ValueError):
        return None


def open_files_budget() -> int:
    """How many files the tailer may hold open: the process's open-file limit
    less what the rest of the agent needs (a tailer that took them all made
    the spool fail to open its next segment, and the agent stop)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - RESERVED_DESCRIPTORS)
