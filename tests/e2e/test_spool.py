"""The disk spool against real faults: an outage fills the spool while memory
stays flat, a spool smaller than the outage pauses reading without dropping
a line, and a spool damaged while the agent was stopped still delivers every
intact record."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

import elasticsearch_local
from e2e_helpers import Daemon, GrowingFiles, create_index as _create, es_flags, run_once, wait_for

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]


def _status(state: Path) -> dict:
    try:
        return json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _exact(node, index: str, expected: set) -> None:
    elasticsearch_local.request(node, "POST", f"/{index}/_refresh")
    status, body = elasticsearch_local.request(node, "POST", f"/{index}/_search",
                                               {"size": 200_000, "_source": ["log.file.path", "log.offset"]})
    assert status == 200, body
    got = [(h["_source"]["log"]["file"]["path"], h["_source"]["log"]["offset"]) for h in body["hits"]["hits"]]
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} duplicates"
    assert set(got) == expected, f"missing {len(expected - set(got))}, unexpected {len(set(got) - expected)}"


def _count(node, index: str) -> int:
    elasticsearch_local.request(node, "POST", f"/{index}/_refresh")
    status, body = elasticsearch_local.request(node, "GET", f"/{index}/_count")
    return body.get("count", 0) if status == 200 else 0


@pytest.mark.parametrize("spool_max, expect_pause", [("1GiB", False), ("3MiB", True)],
                         ids=["spool-grows", "spool-smaller-than-outage"])
def test_outage_spools_to_disk_with_flat_memory(outage_node, tmp_path, spool_max, expect_pause):
    node = outage_node
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    index = f"spool-outage-{expect_pause}".lower()
    _create(lambda *a: elasticsearch_local.request(node, *a), index)
    agent = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(state), "--spool-max-bytes", spool_max,
                    "--flush-interval", "200ms", "--backoff-max", "3s", "--request-timeout", "5s",
                    *es_flags(node, index)], tmp_path / "agent.log")
    rss = []
    try:
        with GrowingFiles(logs, rate=600) as files:
            time.sleep(3)
            assert elasticsearch_local.stop_node(node)
            process = psutil.Process(agent.process.pid)
            for _ in range(30):  # a one-minute outage, sampled every two seconds
                time.sleep(2)
                rss.append(process.memory_info().rss)
            spooled = _status(state).get("spool") or {}
            node = elasticsearch_local.restart_node(node)
        wait_for(lambda: _count(node, index) >= len(files.expected), 240, "every line after the outage")
    finally:
        code = agent.stop()
    log = agent.log()
    assert code == 0, log
    assert spooled.get("used_bytes", 0) > 1_000_000, spooled
    growth = (max(rss[5:]) - rss[5]) / 2**20
    assert growth < 25, f"memory grew by {growth:.1f} MiB during the outage"
    assert ("spool full: reading paused" in log) == expect_pause, log[-3000:]
    assert "dropping" not in log
    _exact(node, index, files.expected)


def test_damaged_spool_still_delivers_every_intact_record(es_node, es, tmp_path):
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    lines = 3000
    (logs / "a.log").write_text("".join(f"spooled line {i:05d} " + "x" * 200 + "\n" for i in range(lines)))
    unreachable = ["--es-url", "http://127.0.0.1:9", "--index", "spool-damaged", "--request-timeout", "1s",
                   "--shutdown-timeout", "2s"]
    agent = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(state), *unreachable], tmp_path / "a1.log")
    try:
        wait_for(lambda: (_status(state).get("spool") or {}).get("pending", 0) >= lines, 60, "the lines in the spool")
    finally:
        assert agent.stop() == 0
    (logs / "a.log").unlink()  # from now on the spool holds the only copy
    [segment] = sorted((state / "spool").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    for position in (len(data) // 3, len(data) // 2):
        data[position:position + 16] = os.urandom(16)
    segment.write_bytes(bytes(data))

    result = run_once(["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(state),
                       *es_flags(es_node, "spool-damaged")])
    assert result.code == 0, result.stderr
    assert "spool recovered" in result.stderr and "damaged_frames=2" in result.stderr, result.stderr
    messages = [doc["message"] for doc in es.search_all("spool-damaged")]
    assert len(messages) == len(set(messages))
    assert lines - 4 <= len(messages) < lines, len(messages)  # each damaged spot costs one or two records
