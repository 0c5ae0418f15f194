"""The agent's own metric documents: deltas, gauges, ids, schedule, and that they never count themselves."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.self_metrics import DATASET, KEY_PREFIX, Reading, SelfMetrics, own_documents, target_for
from agent import schema
from agent.config import resolve
from agent.errors import ConfigError
from agent.events import Event
from agent.outputs.base import all_created
from agent.pipeline import Pipeline


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


def test_own_documents_are_found_by_their_source_key():
    log_event = Event("/var/log/a.log:1:2", 0, 10, "id0", b'{"message": "x"}')
    document = SelfMetrics(1.0, Figures(), "h", "agent-1", "t", now=0.0).due(5.0)
    assert document.source_key.startswith(KEY_PREFIX)
    assert own_documents([log_event] * 3) == (0, 0)
    assert own_documents([log_event, document, log_event, document]) == (2, 2 * len(document.data))


class _Stored:
    """An Elasticsearch stand-in that stores every document (the sender's whole path runs)."""

    name = "elasticsearch"

    def __init__(self) -> None:
        self.docs: list[dict] = []

    def send(self, events):
        self.docs += [orjson.loads(event.data) for event in events]
        return all_created(events)

    def close(self) -> None:
        pass


def test_the_documents_never_count_themselves_nor_in_the_counters_of_the_users_events(tmp_path):
    """An idle agent reported events_acknowledged 1 every interval, and
    /metrics counted these documents as emitted, sent and acknowledged events."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("".join(f"line {n}\n" for n in range(5)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"),
                      "self_metrics_interval": "200ms", "flush_interval": "100ms", "multiline_timeout": "100ms",
                      "metrics_addr": f"127.0.0.1:{port}"}, {})
    output = _Stored()
    pipeline = Pipeline(config, output=output)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    own = lambda: [doc["modelscribe"]["agent"] for doc in output.docs if "modelscribe" in doc]  # noqa: E731

    def idle() -> bool:
        """Three intervals after the first that saw every line acknowledged (no lag left)."""
        lags = [figure["file_lag_bytes"] for figure in own()]
        return 0 in lags and len(lags) - lags.index(0) > 3
    try:
        deadline = time.monotonic() + 30
        while not idle() and time.monotonic() < deadline:
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            scraped = {(sample.name, sample.labels.get("counter")): sample.value
                       for family in text_string_to_metric_families(answer.read().decode())
                       for sample in family.samples}
    finally:
        pipeline.stop()
        runner.join(30)
    figures = own()
    assert idle(), figures
    assert sum(figure["events_acknowledged"] for figure in figures) == 5
    assert [figure["events_acknowledged"] for figure in figures[-3:]] == [0, 0, 0]
    for name in ("emitted_events", "sent_events", "acknowledged_events"):
        assert scraped[f"modelscribe_{name}_total", None] == 5, name
    for counter in ("emitted", "sent", "acknowledged"):
        assert scraped["modelscribe_self_metrics_documents_total", counter] >= 1, counter
