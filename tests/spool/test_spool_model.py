"""The spool against a model: random sequences of append / take / ack /
restart / corrupt on real files.

What must hold (the model keeps just enough to check it):

* take never returns a record that was not appended, and returns exactly the
  appended event;
* within one open, records come in append order, each at most once;
* a record whose ack reached its ack file is not delivered again, unless
  that ack file was damaged or deleted since;
* after a restart, and at the end, every appended record that is not
  acknowledged and whose frame is still intact on disk is delivered;
* resuming a source at ``pending_by_source`` skips no record lost since the
  previous open (what was lost before it, the reader re-read then: that open
  gave it no entry, or an end before the loss).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agent.events import Event
from agent.spool import DiskQueue, RefRun

MAX_BYTES = 12 * 1024  # small: "full" happens often
SEGMENT_BYTES = 4096


def frame(event: Event) -> bytes:
    payload = msgpack.packb([1, event.source_key, event.offset, event.end, event.doc_id,
                             event.data, event.target])
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


class SpoolModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="spool-model-")) / "spool"
        self.cache_bytes = 0
        self.queue: DiskQueue | None = None
        self.order: dict[str, int] = {}  # doc_id -> append sequence number
        self.events: dict[str, Event] = {}
        self.offsets = {"a": 0, "b": 0}
        self.acked: dict[str, int] = {}  # doc_id -> segment id its ack went to
        self.may_return: set[str] = set()  # acked, but that ack file was damaged since
        self.lost: set[str] = set()  # unacked and the frame is no longer intact
        self.newly_lost: set[str] = set()  # ... since the previous open
        self.outstanding: dict[str, RefRun] = {}  # handed out by this open, not acked (one-record refs)
        self.runs: list[tuple[RefRun, list[str]]] = []  # the runs handed out by this open, with their docs
        self.last_seq = -1  # order within this open

    @initialize(cache=st.sampled_from([0, 600, 1 << 20]))
    def start(self, cache: int) -> None:
        self.cache_bytes = cache
        self._open()

    def _open(self) -> None:
        self.queue = DiskQueue(self.directory, MAX_BYTES, fsync="never", segment_bytes=SEGMENT_BYTES,
                               cache_bytes=self.cache_bytes)
        recovery = self.queue.open()
        self.outstanding.clear()
        self.runs.clear()
        self.last_seq = -1
        strict = self._must_come_back()
        assert len(strict) <= recovery.records <= len(strict) + len(self.may_return)
        for key, resume in recovery.pending_by_source.items():
            for doc_id in self.newly_lost:
                event = self.events[doc_id]
                assert not (event.source_key == key and event.end <= resume), (key, resume, event)
        self.newly_lost.clear()

    def _must_come_back(self) -> set[str]:
        return {d for d in self.events if d not in self.acked and d not in self.lost}

    def teardown(self) -> None:
        try:
            if self.queue is not None:
                delivered = set(self.outstanding)
                while True:
                    got = self._take(1000)
                    if not got:
                        break
                    delivered.update(got)
                assert self._must_come_back() <= delivered
                self.queue.close()
        finally:
            shutil.rmtree(self.directory.parent, ignore_errors=True)

    # -- actions -----------------------------------------------------------------

    @rule(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
          keys=st.lists(st.sampled_from("ab"), min_size=5, max_size=5),
          route=st.sampled_from([None, "logs-x"]))
    def append(self, sizes: list[int], keys: list[str], route: str | None) -> None:
        assert self.queue is not None
        batch = []
        offsets = dict(self.offsets)
        for i, size in enumerate(sizes):
            key = keys[i]
            start = offsets[key]
            offsets[key] = start + size + 1
            seq = len(self.order) + len(batch)
            batch.append(Event(key, start, offsets[key], f"{key}-{start}-{seq}",
                               bytes([seq % 256]) * size, route))
        if self.queue.append(batch, timeout=0):
            self.offsets = offsets
            for event in batch:
                self.order[event.doc_id] = len(self.order)
                self.events[event.doc_id] = event

    def _take(self, max_events: int) -> list[str]:
        assert self.queue is not None
        taken = self.queue.take(max_events, 1 << 20, 0)
        got = taken.records()
        assert len(got) == len(taken) == sum(len(run.positions) for run in taken.refs)
        assert taken.nbytes == sum(len(spooled.event.data) for spooled in got)
        docs = iter(spooled.event.doc_id for spooled in got)
        self.runs.extend((run, [next(docs) for _ in run.positions]) for run in taken.refs)
        ids = []
        for spooled in got:
            doc_id = spooled.event.doc_id
            assert self.events.get(doc_id) == spooled.event, "never appended"
            assert doc_id not in self.outstanding, "delivered twice in one open"
            assert self.order[doc_id] > self.last_seq, "out of order"
            self.last_seq = self.order[doc_id]
            if doc_id in self.acked:
                assert doc_id in self.may_return, "acknowledged and persisted, yet delivered again"
                del self.acked[doc_id]
                self.may_return.discard(doc_id)
            self.outstanding[doc_id] = spooled.ref
            ids.append(doc_id)
        return ids

    @rule(max_events=st.integers(1, 12))
    def take(self, max_events: int) -> None:
        self._take(max_events)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        assert self.queue is not None
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.outstanding)), unique=True, min_size=1))
        refs = [self.outstanding.pop(doc_id) for doc_id in chosen]
        self.queue.ack(data.draw(st.permutations(refs)))
        for doc_id, ref in zip(chosen, refs):
            self.acked[doc_id] = ref.segment

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def ack_runs(self, data: st.DataObject) -> None:
        """Whole runs, as the batcher acknowledges them; some of their records
        may have been acknowledged one by one already (then they are repeats)."""
        assert self.queue is not None
        chosen = data.draw(st.lists(st.sampled_from(range(len(self.runs))), unique=True, min_size=1))
        self.queue.ack(self.runs[i][0] for i in chosen)
        for i in chosen:
            run, docs = self.runs[i]
            for doc_id in docs:
                if self.outstanding.pop(doc_id, None) is not None:
                    self.acked[doc_id] = run.segment

    @rule()
    def restart(self) -> None:
        assert self.queue is not None
        self.queue.close()
        self._open()

    @rule(data=st.data(), how=st.sampled_from(["truncate", "flip", "torn tail", "delete acks", "flip acks"]))
    def corrupt(self, data: st.DataObject, how: str) -> None:
        assert self.queue is not None
        self.queue.close()
        segments = sorted(p for p in self.directory.iterdir() if p.name.endswith(".seg"))
        if segments:
            victim = data.draw(st.sampled_from(segments))
            seg_id = int(victim.name[:-4])
            size = victim.stat().st_size
            if how == "truncate":
                os.truncate(victim, data.draw(st.integers(0, max(0, size - 1))))
            elif how == "flip" and size:
                raw = bytearray(victim.read_bytes())
                for pos in data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=4)):
                    raw[pos] ^= data.draw(st.integers(1, 255))
                victim.write_bytes(bytes(raw))
            elif how == "torn tail":
                with open(victim, "ab") as handle:
                    handle.write(frame(Event("a", 0, 1, "torn", b"t" * 50))[:data.draw(st.integers(1, 60))])
            elif how in ("delete acks", "flip acks"):
                ack_file = victim.with_suffix(".ack")
                if ack_file.exists():
                    if how == "delete acks":
                        ack_file.unlink()
                    else:
                        raw = bytearray(ack_file.read_bytes())
                        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 0xFF
                        ack_file.write_bytes(bytes(raw))
                    self.may_return.update(d for d, s in self.acked.items() if s == seg_id)
            contents = b"\0".join(p.read_bytes() for p in self.directory.iterdir() if p.name.endswith(".seg"))
            # Recomputed from scratch: a second flip of the same byte can make
            # a lost frame whole again, and then it must come back.
            lost = {d for d in self.events if d not in self.acked
                    and frame(self.events[d]) not in contents}
            self.newly_lost |= lost - self.lost
            self.lost = lost
        self._open()

    @invariant()
    def bounded(self) -> None:
        if self.queue is not None:
            assert self.queue.used_bytes() <= MAX_BYTES


SpoolModel.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_spool_model = SpoolModel.TestCase
