"""Tumbling event-time windows per model, closed by an event-time watermark.

What it is for: the health statistics of each model are gathered per window
of ``window_seconds`` (aligned on the epoch: ``[k·w, (k+1)·w)``); the caller
adds each event into the state object ``observe`` returns, and turns each
``ClosedWindow`` from ``close_due`` into a window document.

What it guarantees:

- Determinism. Which window an event lands in, whether it is late, and the
  content of every window closed by the watermark depend only on the sequence
  of (key, event time) observed — not on when ``close_due`` is called nor on
  the wall clock. So replaying the same lines after a SIGKILL and a restore of
  ``to_state`` gives the same windows as an uninterrupted run.
- The watermark of a key is the largest event time seen for it. A window is
  due once ``watermark − lateness ≥ window end``; from then on it takes no
  event. An event for a due (or already closed) window is LATE: ``observe``
  returns None, and the late event is counted on the key's current window — the
  window holding the watermark (or, after an idle close, the first window not
  closed yet), created if needed — so it appears in a window document as
  ``late`` and is never silently dropped. ``late`` also counts it globally.
- The one wall-clock rule: a key with open windows and no event for more than
  ``window_seconds + lateness_seconds`` on the clock seam has all its open
  windows closed (``reason="idle"``); later events for those windows are late.
  Without it the last window of a model that stopped logging would never be
  reported. The idle timer is not saved: ``from_state`` re-arms it, so a
  restart never closes a window before the replay had a chance to fill it.
- Bad input never raises: a NaN/±inf/non-number event time is counted in
  ``bad_time`` (there is no window to put it in), and so is a time before
  1970 or less than one window before the end of the year 9999
  (``latest_time``): a window document's ``@timestamp`` is its window's
  start, and an event may count in the window after its own (a late event
  after an idle close counts in the first window not closed), so a window
  could otherwise start where no document can be written; a ``now`` that is not finite
  in ``bad_clock``; a clock that went backwards in ``clock_backwards`` (the idle
  timers restart from the new time).
- Bounded: at most ``max_models`` keys; an event of a new key beyond the cap
  returns None and adds to ``over_cap`` (the caller logs it once). Per key, at
  most about ``lateness/window + 2`` windows take events; due windows wait in
  memory only until the next ``close_due``. A key with no open window and idle
  for ``forget_after_seconds`` (default one day) is forgotten, which frees its
  slot — an event older than its old watermark arriving after that opens a
  window again (a known, documented limit).
- An event stamped far in the future moves the watermark: the key's open
  windows become due and the events that follow are late (counted, not lost).

State (``to_state``): plain dicts, lists, ints, finite floats, strings and
None (msgpack- and JSON-able), with the per-window state objects serialised by
the caller's ``state_of`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent.clock import SYSTEM_CLOCK, Clock

_STATE_VERSION = 1
DEFAULT_MAX_MODELS = 200
# Module-level names for observe, which runs for every event (no attribute lookups).
_floor = math.floor
_INF = math.inf
_NEG_INF = -math.inf
_UNKNOWN = math.inf  # an idle timer started while the clock gave no usable time
LATEST_DOCUMENT_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last @timestamp a document can carry


class ModelKey(NamedTuple):
    """What windows are kept per: model name and version, service and host when present.

    A NamedTuple, not a frozen dataclass: every event looks its key up in a
    dict, and a dataclass's generated ``__hash__`` runs Python code each time."""

    model: str
    version: str | None = None
    service: str | None = None
    host: str | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.model, self.version or "", self.service or "", self.host or "")

    def to_list(self) -> list[str | None]:
        return [self.model, self.version, self.service, self.host]

    @classmethod
    def from_list(cls, values: list[str | None]) -> ModelKey:
        return cls(*values)


@dataclass(frozen=True)
class ClosedWindow:
    key: ModelKey
    start: float  # seconds since the epoch (an int when window_seconds is)
    end: float
    state: Any  # the object new_state() made, with everything added into it
    late: int  # late events counted on this window
    reason: str  # "watermark", "idle" or "final"


@dataclass(frozen=True)
class WindowCounters:
    late: int
    over_cap: int
    bad_time: int
    bad_clock: int
    clock_backwards: int
    idle_closes: int
    forgotten: int


class _Slot:
    __slots__ = ("state", "late")

    def __init__(self, state: Any, late: int = 0) -> None:
        self.state = state
        self.late = late


class _Key:
    __slots__ = ("watermark", "frontier", "last_wall", "open")

    def __init__(self, last_wall: float) -> None:
        self.watermark: float | None = None  # the largest event time seen
        self.frontier = -math.inf  # every window index below it was closed (idle or final)
        self.last_wall = last_wall
        self.open: dict[int, _Slot] = {}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Windows:
    """The window manager: ``observe`` each event, ``close_due`` periodically."""

    def __init__(self, window_seconds: int = 60, lateness_seconds: float = 30, *,
                 new_state: Callable[[], Any] = dict, max_models: int = DEFAULT_MAX_MODELS,
                 clock: Clock = SYSTEM_CLOCK, forget_after_seconds: float = 86400) -> None:
        if isinstance(window_seconds, bool) or not isinstance(window_seconds, int) or window_seconds <= 0:
            raise ValueError(f"window_seconds must be a positive whole number of seconds, got {window_seconds!r}")
        lateness = _finite(lateness_seconds)
        if lateness is None or lateness < 0:
            raise ValueError(f"lateness_seconds must be a finite number ≥ 0, got {lateness_seconds!r}")
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models!r}")
        self.window_seconds = window_seconds
        self.lateness_seconds = lateness_seconds
        self.latest_time = LATEST_DOCUMENT_TIME - window_seconds  # the latest event time observe takes
        self.max_models = max_models
        self.forget_after_seconds = forget_after_seconds
        self._new_state = new_state
        self._clock = clock
        self._now = clock.time  # (bound once: observe reads the clock for every event)
        self._keys: dict[ModelKey, _Key] = {}
        self.late = 0
        self.over_cap = 0
        self.bad_time = 0
        self.bad_clock = 0
        self.clock_backwards = 0
        self.idle_closes = 0
        self.forgotten = 0

    # -- events ---------------------------------------------------------------

    def _wall(self, fallback: float) -> float:
        now = _finite(self._clock.time())
        return fallback if now is None else now

    def _closed_below(self, k: _Key) -> float:
        """Window indexes below this are due or closed: they take no more events."""
        assert k.watermark is not None
        due_below = math.floor((k.watermark - self.lateness_seconds) / self.window_seconds)
        return max(due_below, k.frontier)

    def _slot(self, k: _Key, index: int) -> _Slot:
        slot = k.open.get(index)
        if slot is None:
            slot = k.open[index] = _Slot(self._new_state())
        return slot

    def observe(self, key: ModelKey, event_time: float) -> Any | None:
        """The state of ``event_time``'s window for ``key``, to add the event into;
        None when the event is late, its time is not a finite number from 1970
        to ``latest_time``, or ``key`` is a new model beyond ``max_models`` (see
        the counters)."""
        t = event_time if event_time.__class__ is float else _finite(event_time)
        if t is None or not (0.0 <= t <= self.latest_time):  # also false for NaN
            self.bad_time += 1
            return None
        k = self._keys.get(key)
        if k is None:
            if len(self._keys) >= self.max_models:
                self.over_cap += 1
                return None
            k = self._keys[key] = _Key(self._wall(_UNKNOWN))
        else:
            now = self._now()
            if _NEG_INF < now < _INF:
                k.last_wall = now
        watermark = k.watermark
        if watermark is None or t > watermark:
            k.watermark = watermark = t
        w = self.window_seconds
        index = _floor(t / w)
        # Inlined _closed_below(): this runs for every event on the hot path.
        closed_below = _floor((watermark - self.lateness_seconds) / w)
        if k.frontier > closed_below:
            closed_below = k.frontier
        if index < closed_below:
            self.late += 1
            current = max(math.floor(watermark / w), closed_below)
            self._slot(k, int(current)).late += 1
            return None
        slot = k.open.get(index)
        if slot is None:
            slot = k.open[index] = _Slot(self._new_state())
        return slot.state

    def open_state(self, key: ModelKey, event_time: float) -> Any | None:
        """The state of ``key``'s window holding ``event_time`` while that window
        still takes events; None when it is due, closed or was never opened.

        Counts nothing and moves nothing (no watermark, no idle timer, no late
        count): it is for adding a fact that arrives later about an earlier
        event — a label joined to its prediction — to that event's window."""
        t = _finite(event_time)
        k = self._keys.get(key)
        if t is None or k is None or k.watermark is None:
            return None
        index = math.floor(t / self.window_seconds)
        if index < self._closed_below(k):
            return None
        slot = k.open.get(index)
        return None if slot is None else slot.state

    def watermark(self, key: ModelKey) -> float | None:
        """The largest event time seen for ``key`` (None for an unknown key)."""
        k = self._keys.get(key)
        return None if k is None else k.watermark

    # -- closing --------------------------------------------------------------

    def _closed(self, key: ModelKey, index: int, slot: _Slot, reason: str) -> ClosedWindow:
        w = self.window_seconds
        return ClosedWindow(key, index * w, (index + 1) * w, slot.state, slot.late, reason)

    def close_due(self, now: float | None = None, wall_clock: bool = True) -> list[ClosedWindow]:
        """Close every window the watermark has passed, and the open windows of
        keys idle longer than window + lateness on the clock (``now``, default
        the clock's time). Sorted by start, then key. Without ``wall_clock``
        only the watermark closes windows (``--once``: its documents must not
        depend on how fast it reads)."""
        wall = None
        if wall_clock:
            wall = _finite(self._clock.time() if now is None else now)
            if wall is None:
                self.bad_clock += 1
        went_backwards = False
        closed: list[ClosedWindow] = []
        for key in list(self._keys):
            k = self._keys[key]
            idle = False
            if wall is not None:
                if k.last_wall == _UNKNOWN:  # the clock was unusable when the timer started
                    k.last_wall = wall
                elif wall < k.last_wall:
                    went_backwards = True
                    k.last_wall = wall
                elif wall - k.last_wall > self.window_seconds + self.lateness_seconds:
                    idle = bool(k.open)
            if k.open:
                closed_below = self._closed_below(k)
                for index in sorted(k.open):
                    if index < closed_below:
                        closed.append(self._closed(key, index, k.open.pop(index), "watermark"))
                    elif idle:
                        closed.append(self._closed(key, index, k.open.pop(index), "idle"))
                        k.frontier = max(k.frontier, index + 1)
                        self.idle_closes += 1
            elif wall is not None and wall - k.last_wall > self.forget_after_seconds:
                del self._keys[key]
                self.forgotten += 1
        if went_backwards:
            self.clock_backwards += 1
        closed.sort(key=lambda c: (c.start, c.key.sort_key()))
        return closed

    def close_all(self) -> list[ClosedWindow]:
        """Close every open window (``reason="final"``), e.g. at the end of a
        ``--once`` run; later events for them are late."""
        closed: list[ClosedWindow] = []
        for key, k in self._keys.items():
            for index in sorted(k.open):
                closed.append(self._closed(key, index, k.open.pop(index), "final"))
                k.frontier = max(k.frontier, index + 1)
        closed.sort(key=lambda c: (c.start, c.key.sort_key()))
        return closed

    # -- introspection --------------------------------------------------------

    @property
    def models(self) -> int:
        return len(self._keys)

    @property
    def open_windows(self) -> int:
        return sum(len(k.open) for k in self._keys.values())

    def counters(self) -> WindowCounters:
        return WindowCounters(self.late, self.over_cap, self.bad_time, self.bad_clock, self.clock_backwards,
                              self.idle_closes, self.forgotten)

    # -- checkpoints ----------------------------------------------------------

    def to_state(self, state_of: Callable[[Any], Any]) -> dict[str, Any]:
        """Everything but the idle timers, with each window's state through ``state_of``."""
        keys = []
        for key in sorted(self._keys, key=ModelKey.sort_key):
            k = self._keys[key]
            keys.append({
                "key": key.to_list(),
                "watermark": k.watermark,
                "frontier": None if k.frontier == -math.inf else int(k.frontier),
                "open": [[index, state_of(k.open[index].state), k.open[index].late] for index in sorted(k.open)],
            })
        counters = self.counters()
        return {"v": _STATE_VERSION, "window_seconds": self.window_seconds,
                "lateness_seconds": self.lateness_seconds, "keys": keys,
                "counters": {name: getattr(counters, name) for name in WindowCounters.__dataclass_fields__}}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, new_state: Callable[[], Any],
                   state_from: Callable[[Any], Any], max_models: int = DEFAULT_MAX_MODELS,
                   clock: Clock = SYSTEM_CLOCK, forget_after_seconds: float = 86400) -> Windows:
        """The manager ``to_state`` saved. The window and lateness are the saved
        ones (they define the saved windows): a caller whose configuration
        changed compares ``window_seconds``/``lateness_seconds`` and decides.
        Keys beyond a lowered ``max_models`` are kept (their windows are not
        dropped); new keys are refused until there is room."""
        if state.get("v") != _STATE_VERSION:
            raise ValueError(f"windows state version {state.get('v')!r}, expected {_STATE_VERSION}")
        windows = cls(int(state["window_seconds"]), state["lateness_seconds"], new_state=new_state,
                      max_models=max_models, clock=clock, forget_after_seconds=forget_after_seconds)
        now = windows._wall(_UNKNOWN)
        for saved in state["keys"]:
            k = _Key(now)  # the idle timer restarts: a replay first, then idleness
            k.watermark = saved["watermark"]
            k.frontier = -math.inf if saved["frontier"] is None else int(saved["frontier"])
            k.open = {int(index): _Slot(state_from(value), int(late)) for index, value, late in saved["open"]}
            windows._keys[ModelKey.from_list(saved["key"])] = k
        for name in WindowCounters.__dataclass_fields__:
            setattr(windows, name, int(state["counters"].get(name, 0)))
        return windows
