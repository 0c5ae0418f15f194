"""A disk of a few kilobytes under a spool (tests/ is on pytest's pythonpath).

``small_disk(monkeypatch, directory, capacity)`` makes the spool's writes
(segment data, headers, seals) see a file system of ``capacity`` bytes, of
which the files in ``directory`` take what they hold: a write past the
capacity writes the part that fits, then fails with ENOSPC, as a real full
disk does. Deleting a segment gives its bytes back."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any


class SmallDisk:
    def __init__(self, real: Any, directory: Path, capacity: int) -> None:
        self.real, self.directory, self.capacity = real, directory, capacity
        self.failures = 0

    def free(self) -> int:
        used = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return self.capacity - used

    def __call__(self, fd: int, data: Any) -> None:
        free = self.free()
        if len(data) > free:
            self.failures += 1
            if free > 0:
                os.write(fd, bytes(data)[:free])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(fd, data)


def small_disk(monkeypatch: Any, directory: Path, capacity: int) -> SmallDisk:
    import agent.spool.queue as queue_module
    import agent.spool.segment as segment_module

    disk = SmallDisk(segment_module.write_all, directory, capacity)
    monkeypatch.setattr(queue_module, "write_all", disk)
    monkeypatch.setattr(segment_module, "write_all", disk)
    return disk
