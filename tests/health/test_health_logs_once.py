"""Caps and gaps of health said once in the log (audit 9): the class cap of a window's labels
(``model.health.labels_capped``), and a feature the model's reference lacks (named)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import orjson

from agent.clock import FakeClock
from agent.events import Event
from agent.health.config import parse_health
from agent.health.engine import HealthEngine

AGENT = {"name": "modelscribe", "id": "test"}
T0 = 1_767_225_600.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _feed(engine: HealthEngine, docs: list[dict[str, Any]], batch: int = 50) -> None:
    events = [Event("f", i, i + 1, f"i{i}", orjson.dumps(doc)) for i, doc in enumerate(docs)]
    for i in range(0, len(events), batch):
        engine.observe(events[i:i + batch])


def _warnings(caplog, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and message in r.getMessage()]


def test_the_class_cap_reached_is_logged_once_naming_the_cap(tmp_path, caplog):
    settings = parse_health({"window": 60, "reference_size": 1, "caps": {"categories": 10}}, "test: health")
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    docs: list[dict[str, Any]] = []
    for i in range(40):  # 40 classes in one window, each labelled right, the label in the prediction's file
        docs.append({"@timestamp": _stamp(T0 + i), "model": {"name": "m", "request_id": f"r{i}",
                                                            "prediction": {"value": f"k{i}"}}})
        docs.append({"@timestamp": _stamp(T0 + i), "model": {"request_id": f"r{i}", "target": {"value": f"k{i}"}}})
    _feed(engine, docs)
    said = _warnings(caplog, "cap of distinct class labels")
    assert len(said) == 1 and said[0].kv == {"cap": 10}  # type: ignore[attr-defined]
    assert engine.windows.open_state(next(iter(engine._interned.values()))[1], T0).labels.capped == 30
    engine.close()


def test_a_feature_the_reference_lacks_is_logged_once_by_name(tmp_path, caplog):
    (tmp_path / "ref.csv").write_text("x,prediction\n" + "".join(f"{i / 10},{'ab'[i % 2]}\n" for i in range(40)))
    settings = parse_health({"window": 60, "reference": str(tmp_path / "ref.csv")}, "test: health")
    engine = HealthEngine(settings, str(tmp_path / "state"), None, AGENT, FakeClock())
    _feed(engine, [{"@timestamp": _stamp(T0 + i), "model": {
        "name": "m", "prediction": {"value": "a"}, "input": {"features": {"x": i / 100, "c": "u", "b": 1}}}}
        for i in range(150)])
    said = _warnings(caplog, "a feature its model's reference lacks")
    assert len(said) == 1
    assert said[0].kv == {"kind": "not_in_reference", "model": "m", "features": "b,c"}  # type: ignore[attr-defined]
    engine.close()
