"""Helpers shared by the tailing tests: a recording sink and a tailer factory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from agent.clock import Clock, FakeClock
from agent.events import Line, Source
from agent.registry import Registry
from agent.sources.tailer import Tailer, TailSettings


def held_open(path: Path) -> bool | None:
    """Does this process still hold an fd on the (deleted) file? None if /proc is unavailable."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return None
    targets = set()
    for name in os.listdir(fd_dir):
        try:
            targets.add(os.readlink(os.path.join(fd_dir, name)))
        except OSError:
            continue  # the fd listdir itself used
    return f"{path} (deleted)" in targets


class RecordingSink:
    """Records everything the tailer pushes; safe to read from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[Line] = []
        self.ticks: list[float] = []
        self.closed: list[Source] = []
        self.held_at_close: list[bool | None] = []  # was the file still open when it was closed?

    def line(self, line: Line) -> None:
        with self._lock:
            self.lines.append(line)

    def extend(self, lines: list[Line], data=None, at=0) -> None:
        for line in lines:
            self.line(line)

    def tick(self, now: float) -> None:
        with self._lock:
            self.ticks.append(now)

    def source_closed(self, source: Source) -> None:
        with self._lock:
            self.closed.append(source)
            self.held_at_close.append(held_open(Path(source.path)))

    def texts(self, path: str | Path | None = None) -> list[str]:
        with self._lock:
            return [line.text for line in self.lines if path is None or line.source.path == str(path)]

    def by_key(self) -> dict[str, list[Line]]:
        out: dict[str, list[Line]] = {}
        with self._lock:
            for line in self.lines:
                out.setdefault(line.source.key, []).append(line)
        return out

    def commit_all(self, registry: Registry) -> None:
        with self._lock:
            for line in self.lines:
                registry.commit(line.source.key, line.end)


def settings(tmp_path: Path, pattern: str = "*.log", **overrides) -> TailSettings:
    values = dict(paths=(str(tmp_path / pattern),), use_watchdog=False, scan_interval=10.0)
    values.update(overrides)
    return TailSettings(**values)


def make(tmp_path: Path, pattern: str = "*.log", registry: Registry | None = None,
         clock: Clock | None = None, sink: RecordingSink | None = None,
         **overrides) -> tuple[Tailer, RecordingSink, Registry]:
    clock = clock or FakeClock()
    registry = registry or Registry(tmp_path / "state", clock=clock)
    sink = sink or RecordingSink()
    return Tailer(settings(tmp_path, pattern, **overrides), registry, sink, clock), sink, registry


def append(path: Path, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode()
    with open(path, "ab") as handle:
        handle.write(data)


def age(path: Path, clock: Clock, seconds: float = 3600.0) -> None:
    """Make the file look unchanged for ``seconds`` (run_once's partial-line rule)."""
    stamp = clock.time() - seconds
    os.utime(path, (stamp, stamp))


def tiles(lines: list[Line]) -> bool:
    """Do the lines (of one key, in order) cover the file from 0 without gap or overlap?"""
    position = 0
    for line in lines:
        if line.offset != position or line.end <= line.offset:
            return False
        position = line.end
    return True
