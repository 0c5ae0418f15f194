"""A feature the events carry and the model's reference lacks (audit 9): no drift can be
computed for it, and that is said once (the kind ``not_in_reference``, naming the features)
instead of nothing."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson
import pytest
from native_switch import IMPLEMENTATIONS, health_implementation

from agent.clock import FakeClock
from agent.events import Event
from agent.health.bins import bins_from_reference
from agent.health.config import parse_health
from agent.health.engine import HealthEngine
from agent.health.extract import MISSING, Observation
from agent.health.state import NOT_IN_REFERENCE, WindowState, not_in_reference

AGENT = {"name": "modelscribe", "id": "test"}
REFERENCE = {"x": bins_from_reference([1.0, 2.0, 3.0, 4.0], 10), "c": bins_from_reference(["u", "v"], 10)}


def _obs(features):
    return Observation(0.0, ("m", "", "", ""), None, None, False, "a", features, MISSING, None, None)


CASES = [
    ({"x": 1.0, "c": "u"}, False),  # exactly the reference's features
    ({"x": 1.0}, False),  # one missing: counted in model.quality.missing, nothing unknown
    (None, False),  # no features logged
    ({"x": 1.0, "c": "u", "d": 5}, True),  # one more
    ({"x": 1.0, "d": 5}, True),  # one renamed (as many names as the reference)
    ({"x": 1.0, "c": None, "d": 5}, True),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [1, 40])  # event by event, and the bulk path
@pytest.mark.parametrize(("features", "unknown"), CASES)
def test_a_feature_the_reference_lacks_is_raised(implementation, size, features, unknown):
    batch = [_obs({"x": 2.0, "c": "v"})] * (size - 1) + [_obs(features)]
    with health_implementation(implementation):
        raised = WindowState(10).add_many(batch, REFERENCE, None, 50)
    assert (NOT_IN_REFERENCE in raised) == unknown
    assert not_in_reference(batch, REFERENCE) == (["d"] if unknown else [])


def test_a_reference_without_features_raises_it_for_events_with_features():
    assert NOT_IN_REFERENCE in WindowState(10).add_many([_obs({"x": 1})], {}, None, 50)
    assert NOT_IN_REFERENCE not in WindowState(10).add_many([_obs({"x": 1})], None, None, 50)  # (collecting)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("columns", ["x,prediction", "x,c,prediction"])
def test_a_feature_absent_from_the_reference_file_is_logged_once(tmp_path, caplog, columns):
    # The audit's case: the reference has no column c, the logs carry c: no drift for c, and nothing said.
    rows = ([f"{i / 10},{'uv'[i % 2]},{'ab'[i % 2]}" for i in range(40)] if "c" in columns.split(",")
            else [f"{i / 10},{'ab'[i % 2]}" for i in range(40)])
    (tmp_path / "ref.csv").write_text("\n".join([columns, *rows]) + "\n")
    settings = parse_health({"window": 60, "reference": str(tmp_path / "ref.csv")}, "test: health")
    engine = HealthEngine(settings, str(tmp_path / "state"), None, AGENT, FakeClock())
    t0 = 1_767_225_600.0
    for batch in range(3):
        engine.observe([Event("f", i, i + 1, f"i{i}", orjson.dumps({
            "@timestamp": _stamp(t0 + i), "model": {"name": "m", "prediction": {"value": "a"},
                                                    "input": {"features": {"x": i / 100, "c": "u"}}}}))
            for i in range(batch * 50, batch * 50 + 50)])
    engine.close()
    said = [r for r in caplog.records if r.levelno == logging.WARNING
            and getattr(r, "kv", {}).get("kind") == NOT_IN_REFERENCE]
    assert len(said) == (1 if columns == "x,prediction" else 0)
    if said:
        assert said[0].kv["model"] == "m"  # type: ignore[attr-defined]
