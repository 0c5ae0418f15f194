"""Model health exact across crashes (issue 10, must 7), with the real agent and the real node:
SIGKILL at random points while the files grow, then one clean stop; the health documents in
Elasticsearch equal, id for id and count for count, those of one uninterrupted run over the same
lines. With the disk spool, and without it (the memory queue is lost at the kill; what was sent
and not committed is read again and skipped by health)."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from e2e_helpers import Daemon, create_index, es_flags, run_once, wait_for

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]

BASE = 1_767_225_600.0
STEP = 0.05  # event seconds between two lines of a file: 200 lines per 10 s window


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def line(model: int, n: int) -> str:
    """Line n of model's file: a prediction, or every 4th line a label for the prediction 40 lines
    back; a few late lines (stamped 20 s back, beyond the 5 s lateness), a few failures."""
    rng = random.Random(model * 1_000_003 + n)
    t = BASE + n * STEP
    if n % 4 == 3 and n > 40:
        return json.dumps({"timestamp": _stamp(t), "request_id": f"{model}-{n - 40}",
                           "ground_truth": rng.choice(["cat", "dog"])})
    late = rng.random() < 0.01
    return json.dumps({
        "timestamp": _stamp(t - 20 if late else t), "model_name": f"model-{model}", "request_id": f"{model}-{n}",
        "prediction": rng.choice(["cat", "dog", "dog"]), "latency_ms": round(rng.lognormvariate(3, 0.6), 3),
        "status": 500 if rng.random() < 0.03 else 200,
        "features": {"age": round(rng.gauss(40 + n / 400, 10), 2), "country": rng.choice(["DE", "FR", "US"])}})


class PredictionLogs:
    """Two files, one model each, growing from a thread."""

    def __init__(self, directory: Path, rate: float = 400.0) -> None:
        self.paths = [directory / f"model-{m}.log" for m in range(2)]
        self.lines = [0, 0]
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        handles = [open(path, "a", encoding="utf-8") for path in self.paths]
        try:
            while not self._stop.is_set():
                for model, handle in enumerate(handles):
                    for _ in range(5):
                        handle.write(line(model, self.lines[model]) + "\n")
                        self.lines[model] += 1
                    handle.flush()
                time.sleep(10 / self._rate)
        finally:
            for handle in handles:
                handle.close()

    def __enter__(self) -> "PredictionLogs":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def close_windows(self) -> None:
        """One line per model far ahead in event time: every earlier window is due by watermark."""
        for model, path in enumerate(self.paths):
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"timestamp": _stamp(BASE + 100_000), "model_name": f"model-{model}",
                                         "request_id": f"{model}-end", "prediction": "cat",
                                         "latency_ms": 1.0}) + "\n")
            self.lines[model] += 1


def health_documents(es, index: str) -> dict[str, dict]:
    """_id -> _source of the health documents (without agent.*, which names the agent that sent it)."""
    status, _ = es.request("POST", f"/{index}/_refresh")
    assert status == 200
    status, body = es.request("POST", f"/{index}/_search", {
        "size": 10_000, "query": {"terms": {"event.dataset": ["modelscribe.health", "modelscribe.drift"]}}})
    assert status == 200, body
    out = {}
    for hit in body["hits"]["hits"]:
        source = hit["_source"]
        source.pop("agent", None)
        out[hit["_id"]] = source
    return out


def _diff(got, expected, path: str = ""):
    """(path, got, expected) of each differing leaf."""
    if isinstance(got, dict) and isinstance(expected, dict):
        for key in sorted(set(got) | set(expected)):
            yield from _diff(got.get(key), expected.get(key), f"{path}.{key}")
    elif got != expected:
        yield path, str(got)[:80], str(expected)[:80]


def _lines_indexed(es, index: str) -> int:
    status, _ = es.request("POST", f"/{index}/_refresh")
    status, body = es.request("POST", f"/{index}/_count", {"query": {"exists": {"field": "log.offset"}}})
    return body.get("count", 0) if status == 200 else 0


@pytest.mark.parametrize("spool", ["spool", "no-spool"])
def test_sigkill_at_random_points_gives_the_windows_of_an_uninterrupted_run(es_node, es, tmp_path, spool):
    logs = tmp_path / "logs"
    logs.mkdir()
    config = tmp_path / "modelscribe.yml"
    config.write_text("health:\n  window: 10\n  lateness: 5\n  reference_size: 300\n  label_ttl: 600\n")
    crashed, clean = f"health-crashed-{spool}", f"health-clean-{spool}"
    create_index(es.request, crashed)
    create_index(es.request, clean)
    args = ["--config", str(config), "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
            "--flush-interval", "100ms", "--bulk-max-docs", "200", "--scan-interval", "1s",
            "--host-name", "edge-1", *(["--no-spool"] if spool == "no-spool" else []),
            *es_flags(es_node, crashed)]
    rng = random.Random(7)
    kills = 0
    with PredictionLogs(logs) as files:
        for cycle in range(10):
            agent = Daemon(args, tmp_path / f"agent-{cycle}.log")
            time.sleep(rng.uniform(0.8, 3.0))
            agent.kill()
            kills += 1
    files.close_windows()
    total = sum(files.lines)
    agent = Daemon(args, tmp_path / "agent-last.log")
    try:
        wait_for(lambda: _lines_indexed(es, crashed) >= total, 120, "every line indexed")
        # The last windows are closed by the health thread within a second of their last event.
        previous = -1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(2)
            now = len(health_documents(es, crashed))
            if now == previous:
                break
            previous = now
    finally:
        assert agent.stop() == 0, agent.log()
    assert kills == 10
    assert _lines_indexed(es, crashed) == total  # nothing lost, nothing doubled on the log side

    once = run_once(["run", "--once", "--config", str(config), "--path", str(logs / "*.log"),
                     "--state-dir", str(tmp_path / "state-clean"), "--host-name", "edge-1",
                     *es_flags(es_node, clean)])
    assert once.code == 0, once.stderr
    got = health_documents(es, crashed)
    expected = health_documents(es, clean)
    # --once also closes the sentinel lines' own windows at its end; the daemon keeps them open.
    sentinel = _stamp(BASE + 100_000 - (BASE + 100_000) % 10)
    expected = {i: d for i, d in expected.items() if d["@timestamp"] != sentinel}
    def brief(doc: dict) -> str:
        return json.dumps(doc, sort_keys=True)[:600]

    assert got.keys() == expected.keys(), (
        [brief(expected[i]) for i in expected.keys() - got.keys()][:5],
        [brief(got[i]) for i in got.keys() - expected.keys()][:5])
    differing = [f"{doc['@timestamp']} {doc['model']['name']} {doc['event']['dataset']} {path}: {theirs} != {ours}"
                 for doc_id, doc in expected.items() for path, theirs, ours in _diff(got[doc_id], doc)]
    assert not differing, "\n".join(differing[:20])
    windows = [d for d in expected.values() if d["event"]["kind"] == "metric"
               and d["event"]["dataset"] == "modelscribe.health" and "requests" in d["model"]["health"]]
    assert len(windows) > 10
    assert sum(d["model"]["health"]["late"] for d in windows) > 0
    assert sum(d["model"]["health"]["labelled"] for d in windows) > 0
