"""The health engine: exact across crashes (a model of the agent's restarts), labels joined in the
prediction's window or as corrections, bounded, and the checkpoint format."""

from __future__ import annotations

import os
import random
from datetime import datetime, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from native_switch import IMPLEMENTATIONS, health_implementation

from agent.clock import FakeClock
from agent.events import Event
from agent.health.config import parse_health
from agent.health.checkpoint import PRUNE_DELAY
from agent.health.engine import HealthEngine, ObservedAcks

AGENT = {"name": "modelscribe", "id": "test"}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_events(seed: int, count: int = 400, files: int = 2) -> list[list[Event]]:
    """Per file, events in read order: predictions of one model per file, labels 30 events later,
    a few bad values, and a little disorder in time (within the lateness and beyond it)."""
    rng = random.Random(seed)
    out = []
    for f in range(files):
        events, offset, t = [], 0, 1_767_225_600.0
        for i in range(count):
            t += rng.uniform(0.0, 0.6)
            jitter = -rng.uniform(0, 40) if rng.random() < 0.03 else 0.0
            doc: dict[str, Any] = {
                "@timestamp": _stamp(t + jitter),
                "model": {"name": f"model-{f}", "request_id": f"{f}-{i}",
                          "prediction": {"value": rng.choice(["cat", "dog"])},
                          "input": {"features": {"age": rng.gauss(40, 10) if rng.random() > 0.02 else "n/a",
                                                 "country": rng.choice(["DE", "FR", "US", "IT"])}}},
                "event": {"duration": int(rng.expovariate(1 / 20) * 1e6)},
                "host": {"name": "h1"}}
            if rng.random() < 0.05:
                doc["event"]["outcome"] = "failure"
            data = orjson.dumps(doc)
            events.append(Event(f"file-{f}", offset, offset + len(data) + 1, f"id-{f}-{offset}", data))
            offset += len(data) + 1
            if i >= 30 and i % 3 == 0:
                truth = {"value": rng.choice(["cat", "dog"])}
                label = orjson.dumps({"@timestamp": _stamp(t),
                                      "model": {"request_id": f"{f}-{i - 30}", "target": truth}})
                events.append(Event(f"file-{f}", offset, offset + len(label) + 1, f"id-{f}-{offset}", label))
                offset += len(label) + 1
        out.append(events)
    return out


SETTINGS = parse_health({"window": 10, "lateness": 5, "reference_size": 50, "label_ttl": 120}, "test: health")


def _interleave(per_file: list[list[Event]], seed: int) -> list[Event]:
    rng = random.Random(seed)
    positions = [0] * len(per_file)
    order = []
    while any(p < len(f) for p, f in zip(positions, per_file)):
        choices = [i for i, f in enumerate(per_file) if positions[i] < len(f)]
        i = rng.choice(choices)
        order.append(per_file[i][positions[i]])
        positions[i] += 1
    return order


class Shipped:
    """What Elasticsearch would hold: create by id; a second create of an id is a 409."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def deliver(self, events: list[Event]) -> None:
        for event in events:
            doc = orjson.loads(event.data)
            if event.doc_id in self.docs:
                assert self.docs[event.doc_id] == doc, f"id {event.doc_id} sent twice with different content"
            else:
                self.docs[event.doc_id] = doc


def uninterrupted(tmp_path, events: list[Event], batch: int = 17) -> dict[str, dict[str, Any]]:
    engine = HealthEngine(SETTINGS, str(tmp_path / "clean"), None, AGENT, FakeClock())
    shipped = Shipped()
    for i in range(0, len(events), batch):
        engine.observe(events[i:i + batch])
        if i % (batch * 5) == 0:
            engine.close_due()
            engine.ship(shipped.deliver)
    engine.close_due(final=True)
    while engine.ship(shipped.deliver):
        pass
    engine.close()
    return shipped.docs


def test_the_c_hot_path_gives_the_documents_of_the_python_one(tmp_path):
    """The engine with health's native extraction and counting (agent/health/_native.c)
    writes the documents it writes with the Python functions, on a corpus with bad values,
    late events and labels."""
    events = _interleave(make_events(7, count=600, files=3), 7)
    shipped = {}
    for implementation in IMPLEMENTATIONS:
        with health_implementation(implementation):
            shipped[implementation] = uninterrupted(tmp_path / implementation, events)
    assert len(shipped["python"]) > 30
    assert shipped["c"] == shipped["python"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), crashes=st.integers(1, 12))
@example(seed=0, crashes=6)  # a long re-delivery after a restart: needs hold_pruning
@example(seed=751, crashes=10)  # a re-delivered event acknowledged late: needs the pins
def test_crashes_at_random_points_give_the_same_documents_as_an_uninterrupted_run(tmp_path_factory, seed, crashes):
    """The agent's contract modelled: events are fed (registered) in each file's order; some are
    acknowledged (out of order), which frees them from the spool; the registry commits each file's
    acknowledged prefix and is saved, then health checkpoints. A crash loses memory only. After it
    the agent sends again, in order, what the spool still holds (fed, not acknowledged) and then
    what was never fed; or, without the spool, everything after the saved registry offsets."""
    tmp_path = tmp_path_factory.mktemp("crash")
    events = _interleave(make_events(seed), seed)
    expected = uninterrupted(tmp_path, events)
    rng = random.Random(seed)
    crash_points = set(rng.sample(range(1, len(events)), min(crashes, len(events) - 1)))
    shipped = Shipped()
    state = str(tmp_path / "crashy")
    engine = HealthEngine(SETTINGS, state, None, AGENT, FakeClock())
    acked: set[int] = set()
    saved: dict[str, int] = {}  # the registry on disk

    def committed() -> dict[str, int]:
        """Each file's end of its longest acknowledged prefix (what the registry commits)."""
        out: dict[str, int] = {}
        blocked: set[str] = set()
        for i, event in enumerate(events[:fed_to]):
            if event.source_key in blocked:
                continue
            if i in acked:
                out[event.source_key] = event.end
            else:
                blocked.add(event.source_key)
        return out

    queue = list(range(len(events)))  # indexes in the order they are (re)sent
    fed_to = 0  # events[:fed_to] were fed at least once
    in_flight: set[int] = set()
    recent: set[int] = set()  # acknowledged since the last checkpoint
    while queue:
        step = rng.randint(1, 25)
        batch, queue = queue[:step], queue[step:]
        engine.observe([events[i] for i in batch])
        fed_to = max(fed_to, batch[-1] + 1)
        in_flight.update(batch)  # only what was sent since the last restart can be acknowledged
        late_acks = {i for i in in_flight if rng.random() < 0.2} | {i for i in batch if rng.random() < 0.7}
        engine.acknowledged([events[i] for i in sorted(late_acks)])  # what ObservedAcks.acknowledge tells it
        acked.update(late_acks)
        in_flight -= late_acks
        recent |= late_acks
        roll = rng.random()
        if roll < 0.3:
            snapshot = committed()
            saved = snapshot
            engine.checkpoint(snapshot)
            recent = set()
        elif roll < 0.5:
            engine.close_due()
            engine.ship(shipped.deliver)
        if crash_points and fed_to >= min(crash_points):
            crash_points.discard(min(crash_points))
            engine.close()  # SIGKILL: memory gone, files stay
            engine = HealthEngine(SETTINGS, state, None, AGENT, FakeClock())
            in_flight = set()
            if rng.random() < 0.5:
                # The spool: what is not acknowledged (or whose ack block the kill beat: some of the
                # acknowledgements since the last checkpoint), then what was never fed.
                unwritten = {i for i in recent if rng.random() < 0.5}
                queue = [i for i in range(fed_to) if i not in acked or i in unwritten]
                engine.hold_pruning(len(queue))  # what the spool recovered
                queue += list(range(fed_to, len(events)))
            else:  # no spool: every line after the saved offsets is read again
                queue = [i for i in range(len(events)) if events[i].offset >= saved.get(events[i].source_key, 0)]
                acked -= set(queue)
    engine.close_due(final=True)
    while engine.ship(shipped.deliver):
        pass
    engine.close()
    assert shipped.docs.keys() == expected.keys()
    assert shipped.docs == expected


def test_a_window_document_carries_the_counts_of_its_requests(tmp_path):
    events = make_events(3, count=300, files=1)[0]
    docs = uninterrupted(tmp_path, events)
    windows = [d for d in docs.values()
               if d["event"]["dataset"] == "modelscribe.health" and d["event"]["kind"] == "metric"
               and "requests" in d["model"]["health"]]
    requests = sum(d["model"]["health"]["requests"] + d["model"]["health"]["late"] for d in windows)
    assert requests == 300
    late = sum(d["model"]["health"]["late"] for d in windows)
    failures = sum(1 for e in events if b'"failure"' in e.data)
    errors = sum(d["model"]["health"]["errors"] for d in windows)
    assert failures - late <= errors <= failures  # a late request is counted as late only
    assert all(d["model"]["health"]["window_seconds"] == 10 for d in windows)


def test_labels_are_counted_in_the_window_of_their_prediction_or_as_a_correction(tmp_path):
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0

    def ev(offset: int, doc: dict[str, Any]) -> Event:
        return Event("f", offset, offset + 1, f"i{offset}", orjson.dumps(doc))

    pred = {"@timestamp": _stamp(t0 + 1), "model": {"name": "m", "request_id": "a", "prediction": {"value": 1}}}
    pred2 = {"@timestamp": _stamp(t0 + 2), "model": {"name": "m", "request_id": "b", "prediction": {"value": 0}}}
    label_a = {"@timestamp": _stamp(t0 + 3), "model": {"request_id": "a", "target": {"value": 1}}}
    later = {"@timestamp": _stamp(t0 + 40), "model": {"name": "m", "request_id": "c", "prediction": {"value": 1}}}
    label_b = {"@timestamp": _stamp(t0 + 41), "extra": {"label": 1}, "model": {"request_id": "b"}}
    unknown = {"@timestamp": _stamp(t0 + 42), "model": {"request_id": "zzz", "target": {"value": 1}}}
    even_later = {"@timestamp": _stamp(t0 + 80), "model": {"name": "m", "request_id": "d", "prediction": {"value": 1}}}
    engine.observe([ev(i, d) for i, d in enumerate([pred, pred2, label_a, later, label_b, unknown, even_later])])
    shipped = Shipped()
    engine.close_due()
    engine.ship(shipped.deliver)
    first = [d for d in shipped.docs.values() if d["@timestamp"].endswith("00:00.000Z")
             and d["event"]["dataset"] == "modelscribe.health"]
    window = next(d for d in first if "correction" not in d["model"]["health"])
    correction = next(d for d in first if "correction" in d["model"]["health"])
    assert window["model"]["health"]["requests"] == 2
    assert window["model"]["health"]["labelled"] == 1  # a, while the window was open
    assert window["model"]["accuracy"]["confusion"] == {"1__1": 1}
    assert correction["model"]["health"]["correction"] == 1
    assert correction["model"]["health"]["labelled"] == 1  # b, after the window was due
    assert correction["model"]["accuracy"]["confusion"] == {"1__0": 1}
    # "zzz" waits for a prediction that may still come (from a file read later) ...
    assert engine.counters["unmatched_labels"] == 0
    # ... until label_ttl (120 s) of event time has passed.
    beyond = {"@timestamp": _stamp(t0 + 42 + 121), "model": {"name": "m", "request_id": "e",
                                                             "prediction": {"value": 1}}}
    engine.observe([ev(7, beyond)])
    assert engine.counters["unmatched_labels"] == 1


def test_a_label_read_before_its_prediction_joins_it(tmp_path):
    """Labels in their own file, read before the predictions' file: the
    figures are those of the opposite order (audit: 0 of 1,990 joined)."""
    t0 = 1_767_225_600.0

    def ev(source: str, offset: int, doc: dict[str, Any]) -> Event:
        return Event(source, offset, offset + 1, f"{source}{offset}", orjson.dumps(doc))

    predictions = [ev("p", i, {"@timestamp": _stamp(t0 + i), "model": {"name": "m", "request_id": f"r{i}",
                                                                       "prediction": {"value": i % 2}}})
                   for i in range(40)]
    labels = [ev("l", i, {"@timestamp": _stamp(t0 + i + 1), "model": {"request_id": f"r{i}",
                                                                      "target": {"value": (i // 3) % 2}}})
              for i in range(40)]
    results = []
    for order in ((predictions, labels), (labels, predictions)):
        engine = HealthEngine(SETTINGS, str(tmp_path / str(len(results))), None, AGENT, FakeClock())
        for batch in order:
            engine.observe(batch)
        engine.close_due(final=True)
        shipped = Shipped()
        while engine.ship(shipped.deliver):
            pass
        labelled = sum(d["model"]["health"].get("labelled", 0) for d in shipped.docs.values()
                       if d["event"]["dataset"] == "modelscribe.health" and d["event"]["kind"] == "metric")
        confusion: dict[str, int] = {}
        for d in shipped.docs.values():
            for cell, n in d.get("model", {}).get("accuracy", {}).get("confusion", {}).items():
                confusion[cell] = confusion.get(cell, 0) + n
        results.append((labelled, confusion, engine.counters["unmatched_labels"]))
    assert results[0] == results[1]
    assert results[0][0] == 40 and results[0][2] == 0


def test_a_label_that_never_meets_its_prediction_is_unmatched_in_its_models_window(tmp_path):
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0
    docs = [{"@timestamp": _stamp(t0 + 1), "model": {"name": "m", "request_id": "x", "target": {"value": 1}}},
            {"@timestamp": _stamp(t0 + 200), "model": {"name": "m", "request_id": "y", "prediction": {"value": 1}}}]
    engine.observe([Event("f", i, i + 1, f"i{i}", orjson.dumps(d)) for i, d in enumerate(docs)])
    assert engine.counters["unmatched_labels"] == 1
    engine.close_due(final=True)
    shipped = Shipped()
    while engine.ship(shipped.deliver):
        pass
    unmatched = sum(d["model"]["health"].get("labels_unmatched", 0) for d in shipped.docs.values()
                    if d["event"]["dataset"] == "modelscribe.health" and "requests" in d["model"]["health"])
    assert unmatched == 1


def test_a_duplicate_event_is_not_counted_twice(tmp_path):
    events = make_events(5, count=100, files=1)[0]
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    engine.observe(events[:60])
    engine.observe(events[40:])  # a retry / re-read sends 40..59 again
    engine.close_due(final=True)
    shipped = Shipped()
    while engine.ship(shipped.deliver):
        pass
    assert uninterrupted(tmp_path, events) == shipped.docs


def test_the_ack_tracker_feeds_health_before_it_registers(tmp_path):
    seen: list[int] = []
    commits: list[tuple[str, int]] = []
    told: list[tuple[list[tuple[str, int]], int]] = []
    acks = ObservedAcks(lambda key, offset: commits.append((key, offset)), lambda events: seen.extend(
        e.offset for e in events), lambda events: told.append((list(commits), len(events))))
    events = [Event("f", i * 10, i * 10 + 10, f"i{i}", b"{}") for i in range(3)]
    acks.register(iter(events))  # an iterator: consumed once, by both
    assert seen == [0, 10, 20] and acks.in_flight() == 3
    acks.acknowledge(iter(events))
    assert commits == [("f", 30)]
    assert told == [([("f", 30)], 3)]  # health hears of the acknowledgement, after the commit


def test_a_redelivered_event_is_kept_until_its_acknowledgement_is_old(tmp_path):
    """The interleaving of seed 751: the registry committed past events whose ack block a kill
    beat; after the restart the spool hands them out again, the hold ends once they are
    registered, and the output is slow to acknowledge them. Checkpoints go on with offsets past
    them; another kill comes before their acknowledgement and the spool hands them out a third
    time: they must still be known, or they are counted twice (they were counted as late)."""
    events = make_events(11, count=60, files=1)[0]
    expected = uninterrupted(tmp_path, events)
    state = str(tmp_path / "crashy")
    engine = HealthEngine(SETTINGS, state, None, AGENT, FakeClock())
    engine.observe(events[:30])
    engine.acknowledged(events[:30])
    committed = {"file-0": events[29].end}
    engine.checkpoint(committed)
    engine.close()  # SIGKILL after the registry's save, before the spool's ack block for 20..29

    engine = HealthEngine(SETTINGS, state, None, AGENT, FakeClock())
    engine.hold_pruning(10)
    engine.observe(events[20:30])  # the spool hands them out again (fed before: skipped)
    engine.observe(events[30:40])  # then new ones; the output acknowledges none of them yet
    for _ in range(6):
        engine.checkpoint(committed)  # the registry stays at 29's end (nothing acknowledged since)
    assert all(e.offset in engine._covered["file-0"] for e in events[20:30])
    engine.close()  # SIGKILL: the spool holds 20..39, none acknowledged

    engine = HealthEngine(SETTINGS, state, None, AGENT, FakeClock())
    engine.hold_pruning(20)
    engine.observe(events[20:])
    engine.acknowledged(events[20:])
    shipped = Shipped()
    engine.close_due(final=True)
    while engine.ship(shipped.deliver):
        pass
    assert shipped.docs == expected
    # Bounded: PRUNE_DELAY checkpoints after the acknowledgement the pins and the offsets go.
    done = {"file-0": events[-1].end}
    for _ in range(PRUNE_DELAY + 1):
        engine.checkpoint(done)
    assert engine._pinned == {} and "file-0" not in engine._covered
    engine.close()


def test_caps_bound_models_and_waiting_labels(tmp_path):
    capped = parse_health({"window": 10, "caps": {"models": 3, "pending_labels": 5}}, "test: health")
    engine = HealthEngine(capped, str(tmp_path), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0
    events = [Event("f", i, i + 1, f"i{i}", orjson.dumps({
        "@timestamp": _stamp(t0 + i), "model": {"name": f"m{i % 10}", "request_id": str(i),
                                               "prediction": {"value": 1}}})) for i in range(100)]
    engine.observe(events)
    assert engine.windows.models == 3
    assert engine.windows.over_cap == 70
    assert len(engine._join) == 5 and engine._join.evicted == 25


def test_the_checkpoint_survives_a_restart_and_the_journal_is_cleaned(tmp_path):
    events = make_events(9, count=80, files=1)[0]
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    engine.observe(events[:40])
    engine.checkpoint({})
    engine.observe(events[40:])
    engine.close()
    files = sorted(os.listdir(tmp_path / "health"))
    assert "state.json" in files and sum(f.startswith("journal-") for f in files) == 1
    state = orjson.loads((tmp_path / "health" / "state.json").read_bytes())
    assert state["version"] == 1
    again = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    assert again.counters["observed"] == engine.counters["observed"]
    for _ in range(4):  # pruned with the offsets of PRUNE_DELAY checkpoints ago
        again.checkpoint({"file-0": events[-1].end})
    assert sum(f.startswith("journal-") for f in os.listdir(tmp_path / "health")) == 0
    assert "file-0" not in again._covered
    again.close()


def test_a_broken_state_file_starts_health_empty(tmp_path):
    (tmp_path / "health").mkdir()
    (tmp_path / "health" / "state.json").write_bytes(b"{not json")
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    assert engine.counters["observed"] == 0
    engine.close()


def test_the_outbox_is_bounded_while_the_output_is_down(tmp_path):
    capped = parse_health({"window": 10, "lateness": 0, "caps": {"outbox": 5}}, "test: health")
    engine = HealthEngine(capped, str(tmp_path), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0
    engine.observe([Event("f", i, i + 1, f"i{i}", orjson.dumps({
        "@timestamp": _stamp(t0 + i * 10), "model": {"name": "m"}, "event": {"duration": 10**6}}))
        for i in range(20)])
    engine.close_due(final=True)
    assert engine.pending_documents() == 5 and engine.counters["documents_dropped"] == 15
    shipped = Shipped()
    engine.ship(shipped.deliver)
    assert sorted(d["@timestamp"] for d in shipped.docs.values()) == [_stamp(t0 + i * 10) for i in range(15, 20)]


_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=4),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                  max_size=3), max_leaves=10)
_docs = st.fixed_dictionaries({
    "@timestamp": st.sampled_from(["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:07.500Z", "1999-12-31T23:59:59Z",
                                   "not a date", "9999-12-31T23:59:59.000Z", "9999-12-31T23:59:57Z",
                                   "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
    | st.sampled_from([253_402_300_799, 253_402_300_796.5, 0, -1.0]) | _values,
    "model": st.fixed_dictionaries({"name": st.sampled_from(["m1", "m2"]) | _values,
                                    "request_id": st.sampled_from(["a", "b", "c"]) | _values,
                                    "prediction": _values, "target": _values,
                                    "input": st.fixed_dictionaries({"features": _values})}),
    "event": st.fixed_dictionaries({"duration": _values, "outcome": _values})})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(_docs, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_bad_input_never_raises(tmp_path_factory, docs, cuts):
    """Wrong types, NaN and infinite values, labels for unknown ids, times that go backwards or
    lie at the ends of what a document can carry; windows closed by idleness between batches."""
    tiny = parse_health({"window": 5, "lateness": 1, "reference_size": 3}, "test: health")
    clock = FakeClock()
    engine = HealthEngine(tiny, str(tmp_path_factory.mktemp("bad")), None, AGENT, clock)
    events = [Event("f", i, i + 1, str(i), orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS, default=str))
              for i, doc in enumerate(docs)]
    bounds = sorted({0, len(events), *(min(cut, len(events)) for cut in cuts)})
    for start, stop in zip(bounds, bounds[1:]):
        engine.observe(events[start:stop])
        clock.advance(10)  # more than window + lateness: idle closes
        engine.close_due()
    engine.checkpoint({})
    engine.close_due(final=True)
    engine.close()
    again = HealthEngine(tiny, engine.directory[:-len("/health")], None, AGENT, FakeClock())
    again.observe(events)  # all seen: nothing counted twice, nothing raised
    assert again.counters["observed"] == engine.counters["observed"]
    again.close()


def test_an_event_stamped_at_the_end_of_the_year_9999_is_a_bad_time_not_a_crash(tmp_path):
    """Found by tests/health/test_apply.py: such an event, an idle close, then a late event
    made a window start in the year 10000, and every close_due raised OverflowError."""
    clock = FakeClock()
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, clock)
    docs = [{"@timestamp": stamp, "model": {"name": "m", "request_id": f"r{n}", "prediction": {"value": "cat"}}}
            for n, stamp in enumerate(["9999-12-31T23:59:55.000Z", "2026-01-01T00:00:00.000Z"])]
    for n, doc in enumerate(docs):
        engine.observe([Event("f", n, n + 1, str(n), orjson.dumps(doc))])
        clock.advance(100)
        engine.close_due()
    engine.close_due(final=True)
    assert engine.windows.bad_time == 1
    assert all(orjson.loads(data)["@timestamp"].startswith("2026") for data in engine._outbox.values())
    engine.close()


def _documents(tmp_path, settings, events: list[Event], batch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    for i in range(0, len(events), batch):
        engine.observe(events[i:i + batch])
    state = orjson.loads(engine._snapshot())
    engine.close_due(final=True)
    shipped = Shipped()
    while engine.ship(shipped.deliver):
        pass
    engine.close()
    return shipped.docs, {k: v for k, v in state.items() if k not in ("journal", "outbox")}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), features_cap=st.sampled_from([1, 200]))
def test_a_batch_is_counted_as_its_events_one_by_one(tmp_path_factory, seed, features_cap):
    # observe sets a batch's requests aside per window and reference and counts them in
    # one step: the reference completes mid-batch, events are late, the features cap bites.
    settings_ = parse_health({"window": 10, "lateness": 5, "reference_size": 50, "label_ttl": 120,
                              "caps": {"features": features_cap}}, "test: health")
    events = _interleave(make_events(seed, count=300), seed)
    one_by_one = _documents(tmp_path_factory.mktemp("single"), settings_, events, 1)
    at_once = _documents(tmp_path_factory.mktemp("batch"), settings_, events, len(events))
    assert at_once == one_by_one
    assert any(doc.get("model", {}).get("drift") for doc in at_once[0].values())  # drift was counted


def test_late_events_bad_times_and_missing_predictions_are_logged_once_each(tmp_path):
    """Counted and logged once per kind (issue 10, bad input): the audit found
    late events, bad times and requests without a prediction counted silently,
    and a time before 1970 not counted at all."""
    engine = HealthEngine(SETTINGS, str(tmp_path), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0

    def doc(stamp: Any, n: int, **model: Any) -> Event:
        body = {"@timestamp": stamp, "model": {"name": "m", "request_id": f"r{n}", **model},
                "event": {"duration": 5_000_000}}
        return Event("f", n, n + 1, f"i{n}", orjson.dumps(body))

    engine.observe([doc(_stamp(t0 + 100), 0, prediction={"value": 1}),
                    doc(_stamp(t0 + 1), 1, prediction={"value": 1}),        # 99 s behind: late
                    doc("1969-12-31T23:00:00Z", 2, prediction={"value": 1}),  # before 1970: a bad time
                    doc(_stamp(t0 + 101), 3)])                                # no prediction
    assert engine.windows.late == 1
    assert engine.windows.bad_time == 1
    assert {"late", "bad_time", "no_prediction"} <= engine._logged
    engine.observe([doc(_stamp(t0 + 2), 4, prediction={"value": 1})])
    assert engine.windows.late == 2  # counted again, logged once


def test_a_prediction_that_names_no_usable_model_is_counted_and_logged_once(tmp_path):
    # Audit 9: a model_name that is an object, a list, a bool or null left the
    # request out of health without a word.
    for implementation in IMPLEMENTATIONS:
        with health_implementation(implementation):
            engine = HealthEngine(SETTINGS, str(tmp_path / implementation), None, AGENT, FakeClock())
            lines = [{"@timestamp": _stamp(1_767_225_600.0 + n), "model": {"request_id": f"r{n}", "prediction": 1},
                      "extra": {"model_name": bad}, "event": {"duration": 1_000_000}}
                     for n, bad in enumerate([{"a": 1}, ["x"], True, None])]
            engine.observe([Event("f", n, n + 1, f"i{n}", orjson.dumps(body)) for n, body in enumerate(lines)])
            assert engine.counters["no_model"] == 4 and "no_model" in engine._logged, implementation
            assert engine.windows.counters().over_cap == 0 and not engine._outbox


def test_previous_mode_after_a_reset_reference_with_other_bins_does_not_crash(tmp_path):
    """``reference: previous``, then ``health reset-reference``: the new
    reference has bins of another size than the previous window's counts,
    which made every window close raise (found while fixing the audit)."""
    from agent.health import reference

    settings = parse_health({"window": 10, "lateness": 0, "reference": "previous", "reference_size": 10},
                            "t: health")
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0

    def events(start: int, count: int, value: Any) -> list[Event]:
        return [Event("f", i, i + 1, str(i), orjson.dumps({"@timestamp": _stamp(t0 + i), "model": {
            "name": "m", "input": {"features": {"x": value(i)}}}})) for i in range(start, start + count)]

    engine.observe(events(0, 50, lambda i: i % 10))
    engine.close_due()
    reference.reset(str(tmp_path / "health"))
    engine.checkpoint({})
    engine.observe(events(50, 30, lambda i: 5))  # one value: a reference with other bins
    engine.close_due(final=True)
    shipped = Shipped()
    while engine.ship(shipped.deliver):
        pass
    assert any(d["event"]["dataset"] == "modelscribe.drift" for d in shipped.docs.values())
