"""Corrupt health state never stops the agent (agent.health.checkpoint, agent.health.reference):
a state.json, reference.json or journal of another shape is logged, naming the file and what was
wrong, and health starts empty (the reference file is moved aside); nothing fails later either,
at an event, a window's close, a checkpoint or a send. Real files in tmp_path."""

from __future__ import annotations

import logging
import os
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.events import Event
from agent.health import reference
from agent.health.checkpoint import check_state
from agent.health.config import parse_health
from agent.health.engine import HealthEngine

AGENT = {"name": "modelscribe", "id": "test"}
T0 = 1_767_225_600.0
FIRST_EVENTS = parse_health({"window": 10, "lateness": 5, "reference_size": 20, "label_ttl": 120,
                             "thresholds": {"error_rate": 0.01}}, "test: health")
PREVIOUS = parse_health({"window": 10, "lateness": 5, "reference_size": 20, "label_ttl": 120,
                         "reference": "previous"}, "test: health")


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def corpus(count: int = 240) -> list[Event]:
    """One file: two models (one with a version) and a third that stays below reference_size;
    numeric and categorical features; labels in the window, after it (corrections) and before
    their prediction; errors; a few late events."""
    rng = random.Random(5)
    events, offset, t = [], 0, T0
    docs: list[dict[str, Any]] = []
    for i in range(count):
        t += rng.uniform(0.0, 0.8)
        model = {"name": "rare"} if i % 40 == 0 else {"name": "a"} if i % 2 else {"name": "b", "version": "2"}
        model.update({"request_id": f"r{i}", "prediction": {"value": rng.choice(["cat", "dog"])},
                      "input": {"features": {"age": rng.gauss(40, 10), "country": rng.choice(["DE", "FR", "US"])}}})
        doc: dict[str, Any] = {"@timestamp": _stamp(t - (30 if rng.random() < 0.03 else 0)), "model": model,
                               "event": {"duration": int(rng.expovariate(1 / 20) * 1e6)}, "host": {"name": "h"}}
        if rng.random() < 0.1:
            doc["event"]["outcome"] = "failure"
        docs.append(doc)
        if i >= 60 and i % 3 == 0:  # a label, some long after their window (corrections)
            back = 60 if i % 2 else 3
            docs.append({"@timestamp": _stamp(t), "model": {"request_id": f"r{i - back}",
                                                             "target": {"value": rng.choice(["cat", "dog"])}}})
        if i % 17 == 0:  # a label before its prediction
            docs.append({"@timestamp": _stamp(t), "model": {"request_id": f"r{i + 2}", "target": {"value": "cat"}}})
    for doc in docs:
        data = orjson.dumps(doc)
        events.append(Event("f", offset, offset + len(data) + 1, f"id-{offset}", data))
        offset += len(data) + 1
    return events


EVENTS = corpus()
SPLIT = 120  # (corrections are pending there)


def _base(tmp_path, health) -> str:
    """A state directory whose checkpoint holds every part of the state."""
    directory = str(tmp_path)
    engine = HealthEngine(health, directory, None, AGENT, FakeClock(T0 + 100))
    for i in range(0, SPLIT, 25):
        engine.observe(EVENTS[i:min(i + 25, SPLIT)])
        engine.close_due()
    engine.checkpoint({})
    engine.close()
    return directory


def exercise(directory: str, health) -> HealthEngine:
    """Start on the directory, then what a run does: events, closes, checkpoints, sends, a
    restart. Returns the first engine (closed)."""
    engine = HealthEngine(health, directory, None, AGENT, FakeClock(T0 + 100))
    engine.observe(EVENTS[SPLIT:SPLIT + 30])
    engine.checkpoint({"f": EVENTS[SPLIT].offset})
    engine.observe(EVENTS[SPLIT + 30:])
    engine.close_due()
    while engine.ship(lambda events: None):
        pass
    engine.close_due(final=True)
    while engine.ship(lambda events: None):
        pass
    engine.checkpoint({"f": EVENTS[-1].end})
    engine.close()
    HealthEngine(health, directory, None, AGENT, FakeClock(T0 + 100)).close()
    return engine


def _warnings(caplog) -> list[str]:
    return [" ".join([r.getMessage(), *(f"{k}={v}" for k, v in r.kv.items())])  # type: ignore[attr-defined]
            for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("health", [FIRST_EVENTS, PREVIOUS], ids=["first_events", "previous"])
def test_a_real_state_passes_the_checks_and_restores_as_it_was(tmp_path, health, caplog):
    directory = _base(tmp_path, health)
    saved = orjson.loads((tmp_path / "health" / "state.json").read_bytes())
    check_state(saved)
    for part in ("windows", "collectors", "labels", "corrections", "watermarks", "alerts", "covered", "outbox"):
        assert saved[part] and saved[part] != {"waiting": []}, part  # the base state holds every part
    assert saved["labels"]["waiting"] and saved["labels"].get("early") and saved["alerts"]["firing"]
    assert bool(saved["previous"]) == (health is PREVIOUS)
    engine = HealthEngine(health, directory, None, AGENT, FakeClock(T0 + 100))
    assert orjson.loads(engine._snapshot()) == saved
    engine.close()
    assert not [m for m in _warnings(caplog) if "not usable" in m or "journal" in m]


def _state_file(tmp_path) -> str:
    return str(tmp_path / "health" / "state.json")


def _edit_state(tmp_path, change) -> None:
    path = _state_file(tmp_path)
    with open(path, "rb") as handle:
        state = orjson.loads(handle.read())
    change(state)
    with open(path, "wb") as handle:
        handle.write(orjson.dumps(state))


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.update(covered=[]), "covered: expected an object"),
    (lambda s: s.update(outbox=[["id1", 5]]), "outbox[0][1]: expected a string"),
    (lambda s: s.update(max_time="x"), "max_time: expected a number"),
    (lambda s: s.update(journal="abc"), "journal: expected an integer"),
    (lambda s: s["windows"]["keys"][0].update(watermark="x"), "windows.keys[0].watermark"),
    (lambda s: s["windows"]["keys"][0]["open"][0][1]["lat"].update(min="x"), ".lat.min"),
    (lambda s: s["windows"]["keys"][0]["open"][0][1]["n"].__setitem__(0, "7"), ".n[0]"),
    (lambda s: s["labels"]["waiting"][0].__setitem__(4, None), "labels.waiting[0][4]"),
    (lambda s: s["counters"].update(observed=1.5), "counters.observed"),
    (lambda s: s.update(collectors={"m\u0000": {"size": 5}}),
     "collectors['m\\x00']: expected an object with size, seen"),
    (lambda s: s.update(collectors={"m\u0000": {"size": 5, "seen": "1", "features": {}, "predictions": []}}),
     "collectors['m\\x00'].seen: expected an integer"),
    (lambda s: s.update(version=2), "unknown version 2 (this agent reads 1)"),  # (a downgrade)
])
def test_a_state_file_of_another_shape_is_logged_and_health_starts_empty(tmp_path, caplog, change, expected):
    directory = _base(tmp_path, FIRST_EVENTS)
    _edit_state(tmp_path, change)
    unusable = Path(_state_file(tmp_path)).read_bytes()
    engine = exercise(directory, FIRST_EVENTS)
    message = next(m for m in _warnings(caplog) if "health state is not usable" in m)
    assert _state_file(tmp_path) in message and expected in message
    assert engine.counters["observed"] == len(EVENTS) - SPLIT  # started empty
    # Kept aside, not overwritten by the next checkpoint (audit 4: a downgrade lost the newer state).
    (aside,) = (tmp_path / "health").glob("state.json.unusable-*")
    assert aside.read_bytes() == unusable and str(aside) in message


def test_a_stray_file_named_like_a_journal_is_logged_and_left(tmp_path, caplog):
    # (A directory named as a journal is a ConfigError, exit 2, since audit 12:
    # test_checkpoint_permission.py.)
    directory = _base(tmp_path, FIRST_EVENTS)
    stray = tmp_path / "health" / "journal-abc.log"
    stray.write_text("not a journal\n")
    engine = exercise(directory, FIRST_EVENTS)
    warnings = _warnings(caplog)
    assert any("not one" in m and str(stray) in m for m in warnings)
    assert engine.counters["observed"] == len(EVENTS)  # the checkpoint was used
    assert stray.exists()


def test_a_journal_line_with_an_offset_no_file_has_is_skipped(tmp_path):
    directory = _base(tmp_path, FIRST_EVENTS)
    journal = tmp_path / "health" / "journal-0000000099.log"
    journal.write_bytes(b"f\t" + str(1 << 70).encode() + b"\t" + EVENTS[SPLIT].data + b"\n")
    engine = exercise(directory, FIRST_EVENTS)  # (1 << 70 in covered could not be checkpointed)
    assert engine.counters["observed"] == len(EVENTS)


@pytest.mark.parametrize("body", [
    {"version": 1, "models": []},
    {"version": 1, "models": {"a\u0000": []}},
    {"version": 1, "models": {"a\u0000": {"features": {"age": {"kind": "numeric", "edges": [1.0], "min": 0,
                                                                "max": 2, "reference_counts": [1]}}}}},
    {"version": 1, "models": {"a\u0000": {"features": {}, "prediction": {"kind": "categorical", "categories": [
        "x"], "reference_counts": [1, -1]}}}},
])
def test_a_reference_file_of_another_shape_is_moved_aside(tmp_path, caplog, body):
    directory = _base(tmp_path, FIRST_EVENTS)
    (tmp_path / "health" / "reference.json").write_bytes(orjson.dumps(body))
    exercise(directory, FIRST_EVENTS)
    assert any("reference file is not usable" in m and "reference.json" in m for m in _warnings(caplog))
    assert any(name.startswith("reference.json.corrupt-") for name in os.listdir(tmp_path / "health"))


# -- property tests: whatever the files hold, health loads or starts empty, and never raises ------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, at + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, at + (i,))
    return found


def _mutate(value: Any, path: tuple, replacement: Any) -> Any:
    """``value`` with the node at ``path`` replaced (or removed, for the DELETE marker)."""
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
    else:
        copy = list(value)
    if not rest and replacement is DELETE:
        del copy[head]
    else:
        copy[head] = _mutate(copy[head], rest, replacement)
    return copy


DELETE = object()
_NEAR = st.sampled_from([None, "x", "", -1, 0, 1, 1.5, 1 << 63, 1e300, -1e300, True, [], {}, [1], {"v": 1}])


def _replacement() -> st.SearchStrategy[Any]:
    return st.one_of(_NEAR, _JSON, st.just(DELETE))


BASES: dict[str, tuple[bytes, bytes]] = {}


def _base_files(tmp_path_factory, name: str, health) -> tuple[bytes, bytes]:
    if name not in BASES:
        directory = tmp_path_factory.mktemp("base")
        _base(directory, health)
        BASES[name] = ((directory / "health" / "state.json").read_bytes(),
                       (directory / "health" / "reference.json").read_bytes())
    return BASES[name]


def _run_on(tmp_path_factory, health, state: bytes | None, ref: bytes | None) -> None:
    directory = tmp_path_factory.mktemp("corrupt")
    (directory / "health").mkdir()
    if state is not None:
        (directory / "health" / "state.json").write_bytes(state)
    if ref is not None:
        (directory / "health" / "reference.json").write_bytes(ref)
    exercise(str(directory), health)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.sampled_from(["first_events", "previous"]), target=st.sampled_from(["state", "ref"]))
def test_one_value_of_a_real_state_changed_to_anything_never_raises(tmp_path_factory, data, which, target):
    health = FIRST_EVENTS if which == "first_events" else PREVIOUS
    state, ref = _base_files(tmp_path_factory, which, health)
    parsed = orjson.loads(state if target == "state" else ref)
    paths = _paths(parsed)
    path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
    replacement = data.draw(_replacement() if path else _JSON, label="value")
    changed = orjson.dumps(_mutate(parsed, path, replacement))
    _run_on(tmp_path_factory, health, changed if target == "state" else state, changed if target == "ref" else ref)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.one_of(_JSON, st.fixed_dictionaries({"version": st.just(1)}, optional={
    key: _JSON for key in ("journal", "windows", "collectors", "previous", "labels", "corrections",
                           "correction_numbers", "watermarks", "frontier", "max_time", "alerts", "covered",
                           "outbox", "counters")})),
       ref=st.one_of(_JSON, st.fixed_dictionaries({"version": st.just(1), "models": _JSON})))
def test_any_json_as_the_state_and_the_reference_file_never_raises(tmp_path_factory, state, ref):
    _run_on(tmp_path_factory, FIRST_EVENTS, orjson.dumps(state), orjson.dumps(ref))
    _run_on(tmp_path_factory, PREVIOUS, orjson.dumps(state), orjson.dumps(ref))


def test_the_collector_check_names_the_bad_value():
    with pytest.raises(ValueError, match=r"c\.features\['x'\]: expected a list of 2, got \[1\]"):
        reference.Collector.from_state({"size": 5, "seen": 2, "features": {"x": [1]}, "predictions": [1, 2]}, "c")


def test_a_damaged_journal_line_is_counted_and_said_a_torn_last_line_is_not(tmp_path, caplog):
    # Audit 4: a damaged line was skipped without a word. A torn last line (no
    # newline: a kill inside the write) held events never sent, which come again.
    directory = _base(tmp_path, FIRST_EVENTS)
    journal = tmp_path / "health" / "journal-0000000099.log"
    good = [b"f\t%d\t%s\n" % (e.offset, e.data) for e in EVENTS[SPLIT:SPLIT + 3]]
    journal.write_bytes(good[0] + b"f\t1\t{\"torn-by\": \x00\x00\x00\n" + good[1] + good[2][:20])
    caplog.set_level(logging.INFO)
    engine = HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    try:
        assert engine.counters["observed"] == SPLIT + 2
        assert engine.counters["journal_damaged"] == 1
    finally:
        engine.close()
    (message,) = [m for m in _warnings(caplog) if "damaged" in m]
    assert str(journal) in message and "lines=1" in message


def test_a_hole_of_nuls_that_swallowed_several_lines_counts_about_their_events(tmp_path, caplog):
    # Audit 5: a 4 KiB hole (what a power loss leaves) over 8 lines counted 1.
    directory = _base(tmp_path, FIRST_EVENTS)
    journal = tmp_path / "health" / "journal-0000000099.log"
    lines = [b"f\t%d\t%s\n" % (e.offset, e.data) for e in EVENTS[SPLIT:SPLIT + 20]]
    hole = b"".join(lines[5:13])
    journal.write_bytes(b"".join(lines[:5]) + hole[:20] + bytes(len(hole) - 40) + hole[-20:] + b"".join(lines[13:]))
    engine = HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    try:
        assert engine.counters["observed"] == SPLIT + 12
        assert 7 <= engine.counters["journal_damaged"] <= 9, engine.counters["journal_damaged"]
    finally:
        engine.close()
