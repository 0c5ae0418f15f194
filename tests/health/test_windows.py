"""agent.health.windows: windows and lateness against an independent model of
the rule, determinism whatever the moments of ``close_due`` and of a restore
from a checkpoint, the idle fallback on a fake clock, bad times and clocks, the
model cap, and forgetting idle keys."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.health.windows import ClosedWindow, ModelKey, Windows


def checkpoint(state):
    """``state`` after the trip a checkpoint makes: msgpack, and JSON (the engine's
    state file; a non-finite float would come back as null there)."""
    return orjson.loads(orjson.dumps(msgpack.unpackb(msgpack.packb(state))))


BASE = 1_700_000_000  # event times are BASE + halves: exact in floats, so the model's arithmetic is exact
KEYS = [ModelKey("churn", "3", "api", "h1"), ModelKey("churn", "4"), ModelKey("fraud", None, None, "h2")]

events = st.tuples(st.just("event"), st.integers(0, len(KEYS) - 1), st.integers(0, 1200))
actions = st.lists(st.one_of(events, events, events, st.just(("close",)), st.just(("restart",))), max_size=80)
sizes = st.tuples(st.sampled_from([10, 60]), st.sampled_from([0, 5, 30, 45]))


def expected_windows(ops, window, lateness):
    """The rule, stated directly: an event is late when an event of its key seen
    so far (itself included) has a time ≥ its window's end + lateness; a late
    event is counted on the window holding that key's largest time."""
    watermark: dict[ModelKey, float] = {}
    result: dict[tuple[ModelKey, int], tuple[list[int], int]] = {}
    for number, op in enumerate(ops):
        if op[0] != "event":
            continue
        key, t = KEYS[op[1]], BASE + op[2] / 2
        watermark[key] = max(watermark.get(key, t), t)
        start = math.floor(t / window) * window
        if start + window + lateness <= watermark[key]:
            ids, late = result.setdefault((key, math.floor(watermark[key] / window) * window), ([], 0))
            result[(key, math.floor(watermark[key] / window) * window)] = (ids, late + 1)
        else:
            ids, late = result.setdefault((key, start), ([], 0))
            ids.append(number)
    return result


def run(ops, window, lateness, clock):
    """Feed ``ops`` into a window manager; 'close' calls close_due, 'restart'
    goes through a checkpoint (msgpack and JSON) into a new manager. Returns every closed
    window and the manager."""
    windows = Windows(window, lateness, new_state=list, clock=clock)
    closed: list[ClosedWindow] = []
    for number, op in enumerate(ops):
        if op[0] == "event":
            state = windows.observe(KEYS[op[1]], BASE + op[2] / 2)
            if state is not None:
                state.append(number)
        elif op[0] == "close":
            due = windows.close_due()
            for c in due:
                assert c.reason == "watermark"
                assert c.end + lateness <= max(BASE + o[2] / 2 for o in ops[:number] if o[0] == "event"
                                               and KEYS[o[1]] == c.key)
            closed.extend(due)
        else:
            saved = checkpoint(windows.to_state(state_of=list))
            windows = Windows.from_state(saved, new_state=list, state_from=list, clock=clock)
    closed.extend(windows.close_all())
    return closed, windows


@settings(max_examples=300, deadline=None)
@given(actions, sizes)
def test_windows_and_lateness_follow_the_rule_whenever_windows_are_closed_or_restored(ops, size):
    window, lateness = size
    clock = FakeClock()  # never advanced: no idle closes, only the event-time watermark
    closed, windows = run(ops, window, lateness, clock)
    got = {(c.key, c.start): (c.state, c.late) for c in closed}
    assert len(got) == len(closed), "a window was closed twice"
    assert got == expected_windows(ops, window, lateness)
    assert all(c.end - c.start == window and c.start % window == 0 for c in closed)
    late = sum(v[1] for v in got.values())
    assert windows.late == late
    # Every event is in exactly one window or counted late: none is dropped.
    assert sum(len(v[0]) for v in got.values()) + late == sum(1 for op in ops if op[0] == "event")


@settings(max_examples=100, deadline=None)
@given(actions, sizes)
def test_the_documents_do_not_depend_on_when_close_due_runs(ops, size):
    plain = [op for op in ops if op[0] == "event"]
    first, _ = run(ops, *size, FakeClock())
    second, _ = run(plain, *size, FakeClock())

    def contents(closed, source):
        # Event ids differ between the two runs; compare the events' times instead.
        return sorted((c.key.sort_key(), c.start, sorted(source[i][2] for i in c.state), c.late) for c in closed)

    assert contents(first, ops) == contents(second, plain)


def test_a_late_event_is_counted_on_the_window_of_the_watermark():
    windows = Windows(60, 30, new_state=list, clock=FakeClock())
    key = KEYS[0]
    windows.observe(key, 0.0).append("a")
    windows.observe(key, 100.0).append("b")  # watermark 100: window [0, 60) is due (60 <= 100 - 30)
    assert windows.observe(key, 10.0) is None
    assert windows.observe(key, 59.5) is None
    assert [(c.start, c.state, c.late, c.reason) for c in windows.close_due()] == [(0, ["a"], 0, "watermark")]
    assert windows.observe(key, 65.0) == ["b"]  # window [60, 120) is open until the watermark reaches 150
    windows.observe(key, 150.0).append("c")
    assert [(c.start, c.state, c.late) for c in windows.close_due()] == [(60, ["b"], 2)]
    assert windows.late == 2


def test_watermark_closing_waits_for_the_lateness():
    windows = Windows(60, 30, new_state=list, clock=FakeClock())
    key = KEYS[0]
    windows.observe(key, 0.0).append(1)
    windows.observe(key, 89.0).append(2)
    assert windows.close_due() == []  # 89 - 30 < 60
    assert windows.observe(key, 30.0) == [1]  # still open: not late
    windows.observe(key, 90.0).append(3)
    closed = windows.close_due()
    assert [(c.key, c.start, c.end, c.state, c.late) for c in closed] == [(key, 0, 60, [1], 0)]
    assert windows.close_due() == []
    assert windows.open_windows == 1


def test_an_idle_key_is_closed_by_the_clock_and_its_later_events_are_late():
    clock = FakeClock(start=5000.0)
    windows = Windows(60, 30, new_state=list, clock=clock)
    key = KEYS[1]
    windows.observe(key, 125.0).append("x")
    clock.advance(90)
    assert windows.close_due() == []  # idle exactly window + lateness: not yet
    clock.advance(1)
    closed = windows.close_due()
    assert [(c.start, c.state, c.reason) for c in closed] == [(120, ["x"], "idle")]
    assert windows.idle_closes == 1
    assert windows.observe(key, 130.0) is None  # its window was closed
    assert windows.late == 1
    windows.observe(key, 200.0).append("y")  # the next window opens normally
    assert [(c.start, c.state, c.late, c.reason) for c in windows.close_all()] == [(180, ["y"], 1, "final")]


def test_a_restore_rearms_the_idle_timer():
    clock = FakeClock()
    windows = Windows(60, 30, new_state=list, clock=clock)
    windows.observe(KEYS[0], 10.0).append(1)
    saved = windows.to_state(state_of=list)
    clock.advance(10_000)  # the agent was down for hours
    restored = Windows.from_state(saved, new_state=list, state_from=list, clock=clock)
    assert restored.close_due() == []  # the replay gets its chance first
    assert restored.observe(KEYS[0], 20.0) == [1]
    clock.advance(91)
    assert [(c.state, c.reason) for c in restored.close_due()] == [([1], "idle")]


def test_a_clock_going_backwards_or_not_finite_does_not_crash():
    clock = FakeClock()
    windows = Windows(60, 30, new_state=list, clock=clock)
    windows.observe(KEYS[0], 10.0).append(1)
    clock.advance(-3600)
    assert windows.close_due() == []
    assert windows.clock_backwards == 1
    clock.advance(60)
    assert windows.close_due() == []  # the idle timer restarted from the new time
    clock.advance(31)
    assert [c.reason for c in windows.close_due()] == ["idle"]
    for now in (math.nan, math.inf, -math.inf):
        assert windows.close_due(now) == []
    assert windows.bad_clock == 3


@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, None, "12:00", True])
def test_an_event_time_that_is_no_number_is_counted(t):
    windows = Windows(new_state=list, clock=FakeClock())
    assert windows.observe(KEYS[0], t) is None
    assert windows.bad_time == 1 and windows.models == 0 and windows.late == 0


def test_no_window_starts_where_no_document_can_be_written():
    """A window's start is its document's @timestamp, which ends with the year 9999: an
    event less than one window before that end, or before 1970, is a bad time. The last
    time taken still leaves room for the window after its own, where a late event
    counts after an idle close (found by tests/health/test_apply.py)."""
    clock = FakeClock()
    windows = Windows(10, 5, new_state=list, clock=clock)
    last = 253_402_300_799.0 - 10
    assert windows.latest_time == last
    assert windows.observe(KEYS[0], last + 0.5) is None and windows.observe(KEYS[0], -1.0) is None
    assert windows.bad_time == 2 and windows.models == 0
    windows.observe(KEYS[0], last).append("x")
    clock.advance(16)
    assert [c.start for c in windows.close_due()] == [253_402_300_780]
    assert windows.observe(KEYS[0], 1_767_225_600.0) is None  # late: counted after the closed window
    assert [(c.start, c.late) for c in windows.close_all()] == [(253_402_300_790, 1)]
    assert datetime.fromtimestamp(253_402_300_790, timezone.utc).year == 9999


def test_models_beyond_the_cap_are_counted_and_known_ones_still_work():
    windows = Windows(new_state=list, max_models=2, clock=FakeClock())
    assert windows.observe(KEYS[0], 1.0) == [] and windows.observe(KEYS[1], 1.0) == []
    assert windows.observe(KEYS[2], 1.0) is None
    assert windows.observe(KEYS[2], 2.0) is None
    assert windows.over_cap == 2 and windows.models == 2
    assert windows.observe(KEYS[0], 2.0) == []
    assert windows.counters().over_cap == 2


def test_an_idle_key_without_windows_is_forgotten_which_frees_its_slot():
    clock = FakeClock()
    windows = Windows(60, 30, new_state=list, max_models=1, clock=clock, forget_after_seconds=3600)
    windows.observe(KEYS[0], 1.0)
    clock.advance(100)
    assert len(windows.close_due()) == 1  # idle close
    clock.advance(3600)
    assert windows.close_due() == []
    assert windows.models == 0 and windows.forgotten == 1
    assert windows.observe(KEYS[1], 5000.0) == []


def test_the_state_is_plain_data_and_keeps_counters_and_open_windows():
    clock = FakeClock()
    windows = Windows(10, 5, new_state=list, clock=clock)
    windows.observe(KEYS[0], 3.0).append("a")
    windows.observe(KEYS[2], 47.0).append("b")
    windows.observe(KEYS[2], 12.0)  # late
    windows.observe(KEYS[0], math.nan)
    state = windows.to_state(state_of=list)
    assert checkpoint(state) == state
    restored = Windows.from_state(checkpoint(state), new_state=list, state_from=list,
                                  clock=clock)
    assert restored.counters() == windows.counters()
    assert (restored.window_seconds, restored.lateness_seconds) == (10, 5)
    assert [(c.key, c.start, c.state, c.late) for c in restored.close_all()] == [
        (c.key, c.start, c.state, c.late) for c in windows.close_all()]


@pytest.mark.parametrize("kwargs, message", [
    ({"window_seconds": 0}, "window_seconds"), ({"window_seconds": 1.5}, "window_seconds"),
    ({"window_seconds": True}, "window_seconds"), ({"lateness_seconds": -1}, "lateness_seconds"),
    ({"lateness_seconds": math.inf}, "lateness_seconds"), ({"max_models": 0}, "max_models"),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Windows(**kwargs)


def test_a_state_of_another_version_is_refused():
    state = Windows().to_state(state_of=list)
    state["v"] = 2
    with pytest.raises(ValueError, match="version"):
        Windows.from_state(state, new_state=list, state_from=list)


clock_actions = st.lists(st.one_of(
    events, events, events,
    st.tuples(st.just("advance"), st.sampled_from([1, 30, 89, 91, 200, -500])),
    st.just(("close",)), st.just(("restart",))), max_size=80)


@settings(max_examples=300, deadline=None)
@given(clock_actions, sizes)
def test_with_a_moving_clock_every_event_is_in_one_window_or_counted_late(ops, size):
    window, lateness = size
    clock = FakeClock()
    windows = Windows(window, lateness, new_state=list, clock=clock)
    closed: list[ClosedWindow] = []
    times: dict[int, float] = {}
    # The idle timer of each key, as the docstring states it: started by the key's
    # events, restarted by a restore and by a clock found to have gone backwards.
    timer: dict[ModelKey, float] = {}
    watermark: dict[ModelKey, float] = {}
    for number, op in enumerate(ops):
        if op[0] == "event":
            key, t = KEYS[op[1]], BASE + op[2] / 2
            watermark[key] = max(watermark.get(key, t), t)
            timer[key] = clock.time()
            state = windows.observe(key, t)
            if state is not None:
                state.append(number)
                times[number] = t
        elif op[0] == "advance":
            clock.advance(op[1])
        elif op[0] == "close":
            now = clock.time()
            timer = {key: min(start, now) for key, start in timer.items()}
            for c in windows.close_due():
                if c.reason == "watermark":
                    assert c.end + lateness <= watermark[c.key]
                else:
                    assert c.reason == "idle" and now - timer[c.key] > window + lateness
                closed.append(c)
        else:
            saved = checkpoint(windows.to_state(state_of=list))
            windows = Windows.from_state(saved, new_state=list, state_from=list, clock=clock)
            timer = dict.fromkeys(timer, clock.time())
    closed.extend(windows.close_all())
    assert len({(c.key, c.start) for c in closed}) == len(closed), "a window was closed twice"
    for c in closed:
        assert all(c.start <= times[i] < c.end for i in c.state)
    placed = sum(len(c.state) for c in closed)
    late = sum(c.late for c in closed)
    assert late == windows.late
    assert placed + late == sum(1 for op in ops if op[0] == "event")


def test_open_state_finds_an_open_window_without_counting_or_moving_anything():
    clock = FakeClock()
    windows = Windows(60, 30, new_state=list, clock=clock)
    key = KEYS[0]
    state = windows.observe(key, 10.0)
    assert windows.open_state(key, 59.0) is state
    assert windows.open_state(key, 70.0) is None  # a window never opened
    assert windows.open_state(KEYS[1], 10.0) is None  # an unknown key
    assert windows.open_state(key, math.nan) is None
    windows.observe(key, 95.0)
    assert windows.watermark(key) == 95.0 and windows.watermark(KEYS[1]) is None
    assert windows.open_state(key, 10.0) is None  # due: 60 <= 95 - 30, even before close_due
    before = windows.counters()
    clock.advance(60)
    assert windows.open_state(key, 95.0) is not None
    clock.advance(31)  # open_state did not restart the idle timer: 91 s since the last event
    assert windows.counters() == before and windows.watermark(key) == 95.0
    assert {c.reason for c in windows.close_due()} == {"watermark", "idle"}
    assert windows.open_state(key, 95.0) is None  # closed


class _BrokenClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    def time(self) -> float:
        return math.nan if self.broken else super().time()


def test_an_idle_timer_started_on_a_broken_clock_starts_at_the_next_usable_time():
    clock = _BrokenClock()
    windows = Windows(60, 30, new_state=list, clock=clock)
    windows.observe(KEYS[0], 10.0).append(1)
    assert windows.close_due() == [] and windows.bad_clock == 1
    clock.broken = False
    assert windows.close_due() == []  # not idle from the epoch, and not a backward jump
    assert windows.clock_backwards == 0
    clock.advance(91)
    assert [c.reason for c in windows.close_due()] == ["idle"]
