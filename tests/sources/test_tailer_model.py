"""The tailer against a model of what must be delivered (hypothesis state machine).

Actions: write lines (LF or CRLF), write an unfinished line, rotate by rename
(to a name the glob still matches, or out of it), copytruncate-style
truncation, delete, re-create (with a shared header line, so fingerprints
collide and reused inodes get exercised), move a file in from outside,
let unfinished lines time out, run the tailer (``run_once``, or ``poll`` with
time passing), and restart it (clean: every
delivered line committed; crash: only some committed, the rest re-read).

The model keeps the bytes of every *content* ("incarnation": a file from its
creation or truncation to its deletion or next truncation). At the end, every
key must map to exactly one incarnation and vice versa, the key's lines must
tile that content from offset 0 with the right text, and cover every complete
line written. Re-deliveries are only allowed after a crash restart, and must
then be identical (same key, offsets and text): that is what keeps document
ids stable.

The tailer is synchronised (``run_once``) before destructive actions: bytes
removed before the tailer ever saw them cannot be delivered by anyone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from agent.clock import FakeClock
from agent.events import TAG_PARTIAL, TAG_TRUNCATED, Line
from agent.registry import Registry
from agent.sources.tailer import Tailer, TailSettings
from tailkit import RecordingSink


@dataclass
class Incarnation:
    path: Path | None  # None once deleted or truncated away
    content: bytearray = field(default_factory=bytearray)
    in_glob: bool = True


def expected_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text[:-1] if text.endswith("\r") else text


class TailerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="tailmodel-"))
        (self.root / "logs").mkdir()
        (self.root / "old").mkdir()
        self.clock = FakeClock(start=time.time())
        self.settings = TailSettings(paths=(str(self.root / "logs" / "app.log*"),),
                                     use_watchdog=False, partial_line_timeout=5.0,
                                     max_line_bytes=64, read_chunk_bytes=16)
        self.sink = RecordingSink()
        self.registry = self._load_registry()
        self.tailer = Tailer(self.settings, self.registry, self.sink, self.clock)
        self.incarnations: list[Incarnation] = []
        self.counter = 0
        self.crashed = False

    # -- helpers -----------------------------------------------------------

    def _load_registry(self) -> Registry:
        registry = Registry(self.root / "state", clock=self.clock)
        registry.load()
        return registry

    def _live(self) -> list[Incarnation]:
        return [inc for inc in self.incarnations if inc.path is not None and inc.in_glob]

    def _app(self) -> Path:
        return self.root / "logs" / "app.log"

    def _at(self, path: Path) -> Incarnation | None:
        return next((inc for inc in self._live() if inc.path == path), None)

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _sync(self) -> None:
        self.tailer.run_once()

    # -- actions -------------------------------------------------------------

    @precondition(lambda self: not self._app().exists())
    @rule(header=st.booleans())
    def create(self, header):
        inc = Incarnation(self._app())
        if header:
            inc.content += b"H\n"
        self._app().write_bytes(bytes(inc.content))
        self.incarnations.append(inc)

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, 50), count=st.integers(1, 4), crlf=st.booleans(),
          long=st.booleans())
    def write_lines(self, pick, count, crlf, long):
        inc = self._live()[pick % len(self._live())]
        data = b""
        for _ in range(count):
            text = f"L{self._next()}" + ("-" * 70 if long else "")
            data += text.encode() + (b"\r\n" if crlf else b"\n")
        with open(inc.path, "ab") as handle:
            handle.write(data)
        inc.content += data

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, 50))
    def write_unfinished(self, pick):
        inc = self._live()[pick % len(self._live())]
        data = f"P{self._next()}".encode()
        with open(inc.path, "ab") as handle:
            handle.write(data)
        inc.content += data

    @precondition(lambda self: self._at(Path(self.root / "logs" / "app.log")) is not None)
    @rule(outside=st.booleans())
    def rotate(self, outside):
        inc = self._at(self._app())
        if outside:
            self._sync()  # a file leaving the globs must have been seen to be followed
            target = self.root / "old" / f"app.log.{self._next()}"
        else:
            target = self.root / "logs" / f"app.log.{self._next()}"
        os.rename(self._app(), target)
        inc.path = target
        inc.in_glob = not outside

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, 50))
    def truncate(self, pick):
        inc = self._live()[pick % len(self._live())]
        self._sync()
        with open(inc.path, "r+b") as handle:
            handle.truncate(0)
        self._sync()  # the tailer sees the size drop before anything regrows it
        self.incarnations.append(Incarnation(inc.path))
        inc.path = None

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, 50))
    def delete(self, pick):
        inc = self._live()[pick % len(self._live())]
        self._sync()
        self._age_all()
        os.unlink(inc.path)
        self._sync()  # drained, closed, marked gone: its inode may now be reused
        inc.path = None

    @precondition(lambda self: not self._app().exists())
    @rule(count=st.integers(0, 3), header=st.booleans())
    def move_in(self, count, header):
        inc = Incarnation(self._app())
        if header:
            inc.content += b"H\n"
        for _ in range(count):
            inc.content += f"M{self._next()}\n".encode()
        staging = self.root / "old" / f"staging{self._next()}.tmp"
        staging.write_bytes(bytes(inc.content))
        os.rename(staging, self._app())
        self.incarnations.append(inc)

    def _age_all(self) -> None:
        stamp = self.clock.time() - 100
        for inc in self.incarnations:
            if inc.path is not None:
                os.utime(inc.path, (stamp, stamp))

    @rule()
    def let_unfinished_lines_time_out(self):
        self._age_all()

    @rule()
    def step(self):
        self.tailer.run_once()

    @rule(seconds=st.sampled_from([0.5, 3.0, 8.0]))
    def poll_for(self, seconds):
        """The daemon's loop with time passing (backoff, partial-line timeout)."""
        elapsed = 0.0
        while elapsed < seconds:
            self.tailer.poll()
            self.clock.advance(0.5)
            elapsed += 0.5

    @rule(crash=st.booleans(), keep=st.integers(0, 3))
    def restart(self, crash, keep):
        if crash:
            self._commit_some(keep)
            self.registry.save()
            self.crashed = True
            self.tailer.close()  # its registry changes are lost: we reload what was saved
        else:
            self.tailer.close()
            self.sink.commit_all(self.registry)
            self.registry.save()
        self.registry = self._load_registry()
        self.tailer = Tailer(self.settings, self.registry, self.sink, self.clock)

    def _commit_some(self, keep: int) -> None:
        for lines in self.sink.by_key().values():
            last_partial = max((i for i, l in enumerate(lines) if TAG_PARTIAL in l.tags), default=-1)
            upto = max(len(lines) - keep, last_partial + 1)
            for line in lines[:upto]:
                self.registry.commit(line.source.key, line.end)

    # -- the verdict ------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._sync()
            self._sync()
            self.check()
        finally:
            self.tailer.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def check(self) -> None:
        unique: dict[tuple[str, int], Line] = {}
        for line in self.sink.lines:
            seen = unique.get((line.source.key, line.offset))
            if seen is None:
                unique[(line.source.key, line.offset)] = line
                continue
            assert self.crashed, f"line delivered twice without a crash: {line}"
            assert (seen.end, seen.text, seen.tags) == (line.end, line.text, line.tags), \
                f"re-delivered line differs: {seen} vs {line}"
        by_key: dict[str, list[Line]] = {}
        for line in unique.values():
            by_key.setdefault(line.source.key, []).append(line)
        for lines in by_key.values():
            lines.sort(key=lambda l: l.offset)

        def fits(lines: list[Line], inc: Incarnation) -> bool:
            content = bytes(inc.content)
            position = 0
            for line in lines:
                if line.offset != position or line.end > len(content):
                    return False
                raw = content[line.offset:line.end]
                partial = TAG_PARTIAL in line.tags
                if not partial:
                    if not raw.endswith(b"\n"):
                        return False
                    raw = raw[:-1]
                if TAG_TRUNCATED in line.tags:
                    if not raw.decode().startswith(line.text) or len(raw) <= 64 and not partial:
                        return False
                elif line.text != expected_text(raw):
                    return False
                position = line.end
            return position >= content.rfind(b"\n") + 1

        keys = sorted(by_key)
        candidates = {key: [i for i, inc in enumerate(self.incarnations) if fits(by_key[key], inc)]
                      for key in keys}
        match: dict[int, str] = {}

        def assign(key: str, seen: set[int]) -> bool:
            for index in candidates[key]:
                if index in seen:
                    continue
                seen.add(index)
                if index not in match or assign(match[index], seen):
                    match[index] = key
                    return True
            return False

        for key in keys:
            assert assign(key, set()), (
                f"key {key} matches no content exactly once: "
                f"{[(l.offset, l.end, l.text) for l in by_key[key]]}; contents: "
                f"{[bytes(i.content) for i in self.incarnations]}")
        for index, inc in enumerate(self.incarnations):
            if b"\n" in inc.content:
                assert index in match, f"content never delivered: {bytes(inc.content)!r}"


TailerModel.TestCase.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_tailer_model = TailerModel.TestCase
