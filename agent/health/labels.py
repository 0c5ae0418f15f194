"""Joining delayed ground truth to predictions by request id.

A prediction with a request id waits here (``remember``) for at most
``label_ttl`` seconds of EVENT time (the largest event time the engine has
seen, so the result does not depend on when the agent runs), and at most
``cap`` predictions wait at once: beyond it the oldest is forgotten and
counted in ``evicted``. A label (``take``) finds its prediction and says in
which window (model key, window start) it is to be counted; a label whose
request id is unknown (never seen, expired or evicted) returns None and is
counted by the caller. A request id seen twice keeps the later prediction.

A label may also come BEFORE its prediction: labels in their own file,
read first in a backlog, or sorted ahead of the predictions' file. Such a
label waits too (``hold``), under the same ``label_ttl`` of event time and
its own ``cap``, and the prediction that names its request id takes it
(``take_label``) and counts it in its own window. So whether a label joins
does not depend on which of the two files the agent reads first, as long as
both are within ``label_ttl`` of the largest event time seen. A waiting label
that expires or is pushed out by the cap is given up: ``given_up`` lists it
until the caller takes it (``drain_given_up``) to count it as unmatched.

Checkpointed as a list in insertion order.

Held as plain tuples ``(request_id, key, start, prediction, time)``, the
checkpoint's rows themselves: a plain tuple of atoms is untracked by the
garbage collector (a NamedTuple never is), so up to ``cap`` waiting
predictions do not make every full collection longer, and ``to_state``
copies no row (it ran for every waiting prediction at every checkpoint).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple


class Waiting(NamedTuple):
    key: tuple[str, str | None, str | None, str | None]
    start: float
    prediction: Any
    time: float


class LabelJoin:
    def __init__(self, ttl: float, cap: int) -> None:
        self.ttl = ttl
        self.cap = cap
        self._waiting: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        # At most the time of the first waiting prediction (insertion order), which
        # ``expire`` compares: -inf when not known, inf when none waits. Lets
        # ``expire``, called for nearly every event, return at once.
        self._oldest = math.inf
        self.expired = 0
        self.evicted = 0
        # Labels before their prediction: request_id -> (request_id, label, key or None, time).
        # Read-only outside; the engine tests it for emptiness per prediction (no call).
        self.early: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._oldest_early = math.inf
        self.given_up: list[tuple[Any, ...]] = []  # early labels expired or evicted, not yet drained

    def __len__(self) -> int:
        return len(self._waiting)

    def remember(self, request_id: str, waiting: Waiting) -> bool:
        """False when the cap made room by forgetting the oldest prediction."""
        return self.wait(request_id, *waiting)

    def wait(self, request_id: str, key: tuple[str, ...], start: float, prediction: Any, time: float) -> bool:
        """``remember(request_id, Waiting(key, start, prediction, time))``, without the Waiting."""
        waiting = self._waiting
        if request_id in waiting:  # (OrderedDict.pop costs more than a dict look-up: most ids are new)
            del waiting[request_id]
            self._oldest = -math.inf  # (it may have been the oldest)
        elif not waiting:
            self._oldest = time
        waiting[request_id] = (request_id, key, start, prediction, time)
        if len(waiting) > self.cap:
            waiting.popitem(last=False)
            self._oldest = -math.inf
            self.evicted += 1
            return False
        return True

    def hold(self, request_id: str, label: Any, key: tuple[str, ...] | None, time: float) -> None:
        """A label whose prediction has not come (yet): it waits as predictions do.
        A second label for the same request id replaces the first, which is given up."""
        early = self.early
        if not math.isfinite(time):  # no time to wait by (a bad time stamp): given up at once
            self.given_up.append((request_id, label, key, time))
            return
        if request_id in early:
            self.given_up.append(early.pop(request_id))
            self._oldest_early = -math.inf
        elif not early:
            self._oldest_early = time
        early[request_id] = (request_id, label, key, time)
        if len(early) > self.cap:
            self.given_up.append(early.popitem(last=False)[1])
            self._oldest_early = -math.inf

    def take_label(self, request_id: str) -> tuple[Any, ...] | None:
        """The waiting label of ``request_id`` (request_id, label, key, time), removed; None if none waits."""
        row = self.early.pop(request_id, None)
        if row is not None:
            self._oldest_early = -math.inf
        return row

    def drain_given_up(self) -> list[tuple[Any, ...]]:
        rows, self.given_up = self.given_up, []
        return rows

    def take(self, request_id: str) -> Waiting | None:
        row = self._waiting.pop(request_id, None)
        if row is None:
            return None
        self._oldest = -math.inf  # (it may have been the oldest)
        return Waiting(*row[1:])

    def expire(self, now: float) -> int:
        """Forget predictions older than ``now - ttl`` (event time). Insertion
        order is close to time order; one that arrived late stays a little
        longer, which is harmless."""
        limit = now - self.ttl
        if limit > self._oldest_early:
            self._expire_early(limit)
        if limit <= self._oldest:  # the first waiting prediction is not older: nothing expires
            return 0
        gone = 0
        oldest = math.inf
        while self._waiting:
            request_id, _, _, _, time = next(iter(self._waiting.values()))
            if time >= limit:
                oldest = time
                break
            del self._waiting[request_id]
            gone += 1
        self._oldest = oldest
        self.expired += gone
        return gone

    def _expire_early(self, limit: float) -> None:
        early = self.early
        oldest = math.inf
        while early:
            row = next(iter(early.values()))
            if row[3] >= limit:
                oldest = row[3]
                break
            del early[row[0]]
            self.given_up.append(row)
        self._oldest_early = oldest

    def to_state(self) -> dict[str, Any]:
        # The rows as they are (orjson writes a tuple as an array): read-only for the caller.
        # Given-up labels are drained by the engine before any checkpoint.
        state: dict[str, Any] = {"waiting": list(self._waiting.values()),
                                 "expired": self.expired, "evicted": self.evicted}
        if self.early:
            state["early"] = list(self.early.values())
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], ttl: float, cap: int) -> LabelJoin:
        join = cls(ttl, cap)
        for rid, key, start, prediction, time in state["waiting"]:
            join._waiting[rid] = (rid, tuple(key), start, prediction, time)
        join._oldest = -math.inf
        for rid, label, key, time in state.get("early", ()):  # (absent in checkpoints written before it)
            if not isinstance(rid, str) or isinstance(time, bool) or not isinstance(time, (int, float)):
                raise ValueError(f"a waiting label of the checkpoint is malformed: {rid!r}")
            join.early[rid] = (rid, label, None if key is None else tuple(key), float(time))
        join._oldest_early = -math.inf
        join.expired = int(state["expired"])
        join.evicted = int(state["evicted"])
        return join
