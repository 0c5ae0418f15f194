"""The outbox of health documents: a backlog never loses documents to
``caps.outbox`` while the output takes them (audit: a one-day ``--once``
backfill lost 20 % of its documents, the outbox capped at 50,000 because
nothing sent them before the end of the run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

from agent.clock import FakeClock
from agent.events import Event
from agent.health.config import parse_health
from agent.health.engine import HealthEngine

AGENT = {"name": "modelscribe", "type": "modelscribe", "version": "0", "id": "a"}
T0 = 1_767_225_600.0


def _line(n: int) -> str:
    return json.dumps({"timestamp": T0 + n * 5.0, "model_name": f"m{n % 2}", "request_id": f"r{n}",
                       "prediction": n % 3, "latency_ms": 10 + n % 7, "features": {"x": n % 11, "c": "ab"[n % 2]}})


def _health_docs(path: Path) -> list[dict]:
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [d for d in docs if d.get("event", {}).get("dataset", "").startswith("modelscribe.")
            and d.get("event", {}).get("kind") in ("metric", "alert")]


def test_once_sends_every_document_of_a_backlog_larger_than_the_outbox(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    # 1,200 lines, 5 s apart, two models: 100 minutes, about 100 windows of 60 s per model.
    (logs / "p.log").write_text("".join(_line(n) + "\n" for n in range(1200)))
    config = tmp_path / "cfg.yaml"
    config.write_text("health:\n  reference_size: 20\n  caps:\n    outbox: 10\n")
    out = tmp_path / "out.ndjson"
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--config", str(config),
                           "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                           "--output", f"file:{out}", "--metrics-addr", "off"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "the oldest are dropped" not in done.stderr
    docs = _health_docs(out)
    windows = [d for d in docs if d["event"]["dataset"] == "modelscribe.health" and d["event"]["kind"] == "metric"
               and "requests" in d["model"]["health"]]
    assert sum(d["model"]["health"]["requests"] for d in windows) == 1200
    assert len(windows) >= 190  # ~100 windows per model, every one of them shipped
    state = orjson.loads((tmp_path / "state" / "health" / "state.json").read_bytes())
    assert state.get("counters", {}).get("documents_dropped", 0) == 0


def test_without_a_shipper_or_with_the_output_down_the_oldest_documents_go(tmp_path):
    """The documented cap: while nothing can send them, memory stays bounded."""
    settings = parse_health({"window": 10, "lateness": 0, "reference_size": 5, "caps": {"outbox": 3}},
                            "test: health")
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    events = [Event("f", n, n + 1, f"i{n}", orjson.dumps({
        "@timestamp": T0 + n * 10.0, "model": {"name": "m", "request_id": f"r{n}", "prediction": {"value": 1}},
        "event": {"duration": 1_000_000}})) for n in range(30)]
    engine.observe(events)
    engine.close_due()
    assert engine.pending_documents() == 3
    assert engine.counters["documents_dropped"] > 0
