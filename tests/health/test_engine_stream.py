"""The engine on generated streams of observations that take every turn of ``_apply``:
labels in the record and after it, request ids seen twice, the label join's cap, late
events and times it does not take, new models and the models cap, references collected
then complete mid-batch, a file reference, corrections, idle closes between batches.

Two properties, each under both implementations of the hot path (``native_switch``):
a batch leaves the state, idle timers included, the documents and the logged caps that
its observations leave applied one at a time (``_apply`` groups a batch's requests per
window and reference and ``_count_batch`` counts each group at once); and the C
functions change none of it.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.health.config import parse_health
from agent.health.engine import HealthEngine
from agent.health.extract import Observation
from native_switch import IMPLEMENTATIONS, health_implementation

AGENT = {"name": "modelscribe", "id": "test"}
T0 = 1_767_225_600.0

_models = st.sampled_from(["m1", "m1", "m2", "m3", ""])
_special_times = st.sampled_from([math.nan, math.inf, -math.inf, -5.0, 253_402_300_799.0])


@st.composite
def _observation(draw: Any, step: int) -> Observation:
    """Mostly the usual request (in time order, a new request id, a prediction, no label),
    and now and then each other kind."""
    when = T0 + step * 0.4
    roll = draw(st.integers(0, 99))
    if roll < 12:
        when -= draw(st.floats(0, 40))  # out of order: within the lateness, or late
    elif roll < 14:
        when = draw(_special_times)
    key = (draw(_models), draw(st.sampled_from(["", "", "v1"])), "", "")
    request_id: Any = f"r{step}"
    if draw(st.integers(0, 9)) == 0:  # an id seen before (a retry), or none
        request_id = draw(st.one_of(st.none(), st.sampled_from([f"r{n}" for n in range(max(step, 1))])))
    prediction: Any = draw(st.sampled_from(["cat", "dog", 1.5]))
    label: Any = None
    kind = draw(st.integers(0, 19))
    if kind < 3:  # a label record for an earlier request (perhaps of a window already due): no prediction
        prediction, label = None, draw(st.sampled_from(["cat", "dog", 2.0]))
        request_id = f"r{max(step - draw(st.integers(1, 80)), 0)}"
        if draw(st.booleans()):
            key = ("", "", "", "")
    elif kind == 3:  # a label in the prediction's own record
        label = draw(st.sampled_from(["cat", "dog"]))
    elif kind == 4:
        prediction = None
    features = {"age": draw(st.one_of(st.floats(0, 100), st.just("n/a"))),
                "country": draw(st.sampled_from(["DE", "FR", "US"]))}
    return Observation(when, key, request_id, draw(st.one_of(st.none(), st.floats(0, 500))), kind == 5,
                       prediction, features, label)


@st.composite
def _stream(draw: Any) -> list[tuple[list[Observation], float]]:
    """Batches of observations, each with the wall-clock seconds that pass after it."""
    batches = []
    step = 0
    for _ in range(draw(st.integers(1, 10))):
        batch = []
        for _ in range(draw(st.integers(0, 40))):
            batch.append(draw(_observation(step)))
            step += 1
        batches.append((batch, draw(st.sampled_from([0.0, 1.0, 1.0, 100.0]))))
    return batches


def _run(directory: str, health: Any, stream: list[tuple[list[Observation], float]],
         one_at_a_time: bool = False) -> tuple[Any, ...]:
    clock = FakeClock(T0)
    engine = HealthEngine(health, directory, None, AGENT, clock)
    for batch, seconds in stream:
        with engine._lock:
            for part in ([[obs] for obs in batch] if one_at_a_time else [batch]):
                try:
                    engine._apply(part)
                finally:
                    engine._count_batch()
        clock.advance(seconds)
        engine.close_due()
    state = orjson.loads(engine._snapshot())
    state.pop("journal")
    idle = {key: k.last_wall for key, k in engine.windows._keys.items()}
    engine.close_due(final=True)
    outbox = dict(engine._outbox)
    engine.close()
    return state, idle, outbox, sorted(engine._logged)  # (what was logged once: the caps reached)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=_stream(), pending=st.sampled_from([3, 1000]), models=st.sampled_from([2, 10]),
       reference_size=st.sampled_from([3, 40]))
def test_a_batch_leaves_what_its_observations_leave_one_at_a_time(tmp_path_factory, stream, pending, models,
                                                                   reference_size):
    health = parse_health({"window": 10, "lateness": 5, "reference_size": reference_size, "label_ttl": 30,
                           "caps": {"pending_labels": pending, "models": models}}, "test: health")
    results = []
    for name in IMPLEMENTATIONS:
        with health_implementation(name):
            for one in (False, True):
                results.append(_run(str(tmp_path_factory.mktemp(name)), health, stream, one))
    assert results[0] == results[1] == results[2] == results[3]


def test_with_a_file_reference_too(tmp_path):
    reference = tmp_path / "reference.jsonl"  # every model has it from its first event
    reference.write_text("".join(orjson.dumps({"features": {"age": a, "country": c}, "prediction": p}).decode() + "\n"
                                 for a, c, p in [(20, "DE", "cat"), (40, "FR", "dog"), (60, "US", "cat")] * 5))
    health = parse_health({"window": 10, "lateness": 5, "reference": str(reference), "label_ttl": 30},
                          "test: health")
    stream = [([Observation(T0 + n * 0.7, ("m1", "", "", ""), f"r{n % 9}", 5.0, False, "cat" if n % 3 else "dog",
                            {"age": n % 70, "country": "DE"}, "dog" if n % 5 == 0 else None) for n in range(i, i + 30)],
               1.0) for i in range(0, 300, 30)]
    results = []
    for name in IMPLEMENTATIONS:
        with health_implementation(name):
            for one in (False, True):
                results.append(_run(str(tmp_path / f"{name}-{one}"), health, stream, one))
    assert results[0] == results[1] == results[2] == results[3]
    assert results[0][2]  # documents were made

