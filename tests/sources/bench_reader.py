"""Quick throughput check of the line reader (not a test: prints lines/s).

    cd /work/main && python tests/sources/bench_reader.py

Reads a ~300 MB-ish in-memory stream of ~300-byte lines in read_chunk_bytes
chunks through ``LineReader.feed``, the way the tailer does, and also through
a real file with ``os.pread`` to include the system calls, and finally the
whole ``Tailer.run_once`` (scan, identity, registry, sink calls) with a sink
that drops lines.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.clock import FakeClock  # noqa: E402
from agent.events import Source  # noqa: E402
from agent.registry import Registry  # noqa: E402
from agent.sources.reader import LineReader  # noqa: E402
from agent.sources.tailer import Tailer, TailSettings  # noqa: E402

LINE = (b'2026-01-01T00:00:00.000Z INFO model=resnet50 request_id=4f1c2a '
        b'latency_ms=12.5 tokens=512 msg="inference done" ' + b"x" * 180 + b"\n")
CHUNK = 65536


def bench_memory(lines: int) -> float:
    data = LINE * lines
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    reader = LineReader(0, 1 << 20)
    source = Source("k" * 16, "/bench")
    count = 0
    started = time.perf_counter()
    for chunk in chunks:
        count += len(reader.feed(chunk, source, 0.0))
    elapsed = time.perf_counter() - started
    assert count == lines
    return lines / elapsed


def bench_file(lines: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.log")
        with open(path, "wb") as handle:
            handle.write(LINE * lines)
        fd = os.open(path, os.O_RDONLY)
        try:
            reader = LineReader(0, 1 << 20)
            source = Source("k" * 16, path)
            count = 0
            started = time.perf_counter()
            while True:
                data = os.pread(fd, CHUNK, reader.read_pos)
                if not data:
                    break
                count += len(reader.feed(data, source, 0.0))
            elapsed = time.perf_counter() - started
        finally:
            os.close(fd)
    assert count == lines
    return lines / elapsed


class CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def line(self, line) -> None:
        self.count += 1

    def extend(self, lines, data=None, at=0) -> None:
        self.count += len(lines)

    def tick(self, now: float) -> None:
        pass

    def source_closed(self, source) -> None:
        pass


def bench_tailer(lines: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "bench.log"), "wb") as handle:
            handle.write(LINE * lines)
        sink = CountingSink()
        settings = TailSettings(paths=(os.path.join(tmp, "*.log"),), use_watchdog=False)
        with Tailer(settings, Registry(Path(tmp) / "state", clock=FakeClock()), sink, FakeClock()) as tailer:
            started = time.perf_counter()
            tailer.run_once()
            elapsed = time.perf_counter() - started
    assert sink.count == lines
    return lines / elapsed


if __name__ == "__main__":
    print(f"line size: {len(LINE)} bytes")
    for name, bench in (("memory", bench_memory), ("file+pread", bench_file),
                        ("tailer.run_once", bench_tailer)):
        best = max(bench(500_000) for _ in range(3))
        print(f"{name}: {best:,.0f} lines/s")
