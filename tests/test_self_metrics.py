"""The agent's own metric documents: deltas, gauges, ids, schedule."""

from __future__ import annotations

import orjson
import pytest

from agent.self_metrics import DATASET, Reading, SelfMetrics, target_for
from agent import schema
from agent.config import resolve
from agent.errors import ConfigError


def _reading(lines: int, acked: int, letters: int = 0, last_ack: float | None = None) -> Reading:
    return Reading(lines_read=lines, events_acknowledged=acked, events_retried=2 * letters,
                   dead_letters=letters, events_given_up=0, spool_bytes=4096, spool_records=7,
                   file_lag_bytes=300, open_files=2, last_ack_time=last_ack)


class Figures:
    def __init__(self) -> None:
        self.current = _reading(0, 0)

    def __call__(self) -> Reading:
        return self.current


def test_one_document_per_interval_with_deltas_and_gauges():
    figures = Figures()
    meter = SelfMetrics(60.0, figures, "host-a", "agent-1", "metrics-modelscribe-default", now=1000.0)
    assert meter.due(1019.9) is None  # the interval [960, 1020) has not ended
    figures.current = _reading(500, 480, letters=3, last_ack=1019.0)
    event = meter.due(1020.5)
    assert event is not None and event.target == "metrics-modelscribe-default"
    doc = orjson.loads(event.data)
    agent = doc["modelscribe"]["agent"]
    assert (agent["lines_read"], agent["events_acknowledged"], agent["dead_letters"]) == (500, 480, 3)
    assert agent["events_retried"] == 6 and agent["spool_records"] == 7 and agent["file_lag_bytes"] == 300
    assert agent["interval_seconds"] == 20.5 and agent["last_ack_age_seconds"] == 1.5
    assert doc["event"] == {"kind": "metric", "dataset": DATASET}
    assert doc["host"]["name"] == "host-a" and doc["agent"]["id"] == "agent-1"
    assert doc["@timestamp"] == "1970-01-01T00:17:00.500Z"
    assert meter.due(1030.0) is None  # same interval: nothing more
    figures.current = _reading(700, 700, letters=3, last_ack=1079.0)
    second = orjson.loads(meter.due(1080.0).data)["modelscribe"]["agent"]
    assert (second["lines_read"], second["events_acknowledged"], second["dead_letters"]) == (200, 220, 0)
    assert second["interval_seconds"] == 59.5


def test_ids_are_deterministic_per_agent_and_interval():
    first = SelfMetrics(10.0, Figures(), "h", "agent-1", "t", now=100.0).due(110.0)
    again = SelfMetrics(10.0, Figures(), "h", "agent-1", "t", now=105.0).due(112.0)
    other = SelfMetrics(10.0, Figures(), "h", "agent-2", "t", now=100.0).due(110.0)
    assert first.doc_id == again.doc_id != other.doc_id
    assert first.offset == 11 and first.end == 12


def test_no_last_ack_age_before_the_first_acknowledgement():
    doc = orjson.loads(SelfMetrics(1.0, Figures(), "h", "a", "t", now=0.0).due(5.0).data)
    assert "last_ack_age_seconds" not in doc["modelscribe"]["agent"]


def test_target_follows_the_namespace_of_the_logs_data_stream():
    assert target_for("logs-modelscribe-default") == "metrics-modelscribe-default"
    assert target_for("logs-modelscribe-prod") == "metrics-modelscribe-prod"
    assert target_for("my-own-stream") == "metrics-modelscribe-default"


def test_every_field_written_is_in_the_schema():
    figures = Figures()
    figures.current = _reading(1, 1, last_ack=0.5)
    doc = orjson.loads(SelfMetrics(1.0, figures, "h", "a", "t", now=0.0).due(5.0).data)
    assert len(doc["modelscribe"]["agent"]) == 11
    assert schema.undefined_fields(doc) == [] and schema.value_problems(doc) == []


def test_the_interval_option_takes_a_duration_or_off():
    assert resolve({}, {}).self_metrics_interval == 60.0
    assert resolve({"self_metrics_interval": "15s"}, {}).self_metrics_interval == 15.0
    assert resolve({}, {"MODELSCRIBE_SELF_METRICS_INTERVAL": "off"}).self_metrics_interval is None
    with pytest.raises(ConfigError, match=r"^--self-metrics-interval: "):
        resolve({"self_metrics_interval": "0s"}, {})
