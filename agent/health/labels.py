"""Joining delayed ground truth to predictions by request id.

A prediction with a request id waits here (``remember``) for at most
``label_ttl`` seconds of EVENT time (the largest event time the engine has
seen, so the result does not depend on when the agent runs), and at most
``cap`` predictions wait at once: beyond it the oldest is forgotten and
counted in ``evicted``. A label (``take``) finds its prediction and says in
which window (model key, window start) it is to be counted; a label whose
request id is unknown (never seen, expired or evicted) returns None and is
counted by the caller. A request id seen twice keeps the later prediction.

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

    def to_state(self) -> dict[str, Any]:
        # The rows as they are (orjson writes a tuple as an array): read-only for the caller.
        return {"waiting": list(self._waiting.values()),
                "expired": self.expired, "evicted": self.evicted}

    @classmethod
    def from_state(cls, state: dict[str, Any], ttl: float, cap: int) -> LabelJoin:
        join = cls(ttl, cap)
        for rid, key, start, prediction, time in state["waiting"]:
            join._waiting[rid] = (rid, tuple(key), start, prediction, time)
        join._oldest = -math.inf
        join.expired = int(state["expired"])
        join.evicted = int(state["evicted"])
        return join
