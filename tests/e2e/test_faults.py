"""Faults against the real node: the agent killed with SIGKILL while it ships,
Elasticsearch stopped for a minute, Elasticsearch answering 429 for part of
the items. In every case each line is indexed exactly once."""

from __future__ import annotations

import random
import time

import pytest

import elasticsearch_local
from e2e_helpers import _WINDOW, Daemon, GrowingFiles, create_index as _create, es_flags, run_once, wait_for

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]


def _indexed(es, index: str) -> list[tuple[str, int]]:
    return [(doc["log"]["file"]["path"], doc["log"]["offset"]) for doc in es.search_all(index, size=200_000)]


def _assert_exactly_once(es, index: str, expected: set[tuple[str, int]]) -> None:
    got = _indexed(es, index)
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} duplicates"
    assert set(got) == expected, f"missing {len(expected - set(got))}, unexpected {len(set(got) - expected)}"


def test_sigkill_while_shipping_loses_and_doubles_nothing(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    index = "chaos-kill"
    _create(es.request, index)
    args = ["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"), "--flush-interval", "100ms",
            "--bulk-max-docs", "200", "--scan-interval", "1s", *es_flags(es_node, index)]
    rng = random.Random(11)
    with GrowingFiles(logs) as files:
        for cycle in range(10):
            agent = Daemon(args, tmp_path / f"agent-{cycle}.log")
            time.sleep(rng.uniform(0.8, 3.0))
            agent.kill()
        time.sleep(0.5)
    final = run_once(["run", "--once", *args])
    assert final.code == 0, final.stderr
    assert files.written > 5000
    _assert_exactly_once(es, index, files.expected)


def test_elasticsearch_down_for_a_minute(outage_node, tmp_path):
    node = outage_node
    logs = tmp_path / "logs"
    logs.mkdir()
    index = "chaos-outage"
    _create(lambda *a: elasticsearch_local.request(node, *a), index)
    agent = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                    "--flush-interval", "200ms", "--backoff-max", "5s", "--request-timeout", "5s",
                    *es_flags(node, index)], tmp_path / "agent.log")
    try:
        with GrowingFiles(logs, rate=500) as files:
            time.sleep(3)
            assert elasticsearch_local.stop_node(node)
            down_since = time.monotonic()
            time.sleep(60)
            node = elasticsearch_local.restart_node(node)
            print(f"outage lasted {time.monotonic() - down_since:.0f}s")
            time.sleep(3)

        def count() -> int:
            status, body = elasticsearch_local.request(node, "POST", f"/{index}/_refresh")
            status, body = elasticsearch_local.request(node, "GET", f"/{index}/_count")
            return body.get("count", 0) if status == 200 else 0
        wait_for(lambda: count() >= len(files.expected), 180, "every line after the outage")
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
    assert "delivery failed, retrying" in agent.log()
    status, body = elasticsearch_local.request(node, "POST", f"/{index}/_search",
                                               {"size": 100000, "_source": ["log.file.path", "log.offset"]})
    got = [(hit["_source"]["log"]["file"]["path"], hit["_source"]["log"]["offset"]) for hit in body["hits"]["hits"]]
    assert len(got) == len(set(got)) and set(got) == files.expected


def test_partial_429_resends_only_the_rejected_items(busy_node, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    expected = set()
    for f in range(4):
        path = logs / f"m{f}.log"
        with open(path, "wb") as handle:
            for i in range(5000):
                expected.add((str(path), handle.tell()))
                handle.write(b"line %d of file %d\n" % (i, f))
    index = "chaos-429"
    status, body = elasticsearch_local.request(busy_node, "PUT", f"/{index}",
                                               {"settings": {"number_of_shards": 4, "number_of_replicas": 0,
                                                             "max_result_window": _WINDOW}})
    assert status == 200, body
    state = tmp_path / "state"
    result = run_once(["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(state),
                       "--workers", "8", "--bulk-max-docs", "100", "--backoff-max", "1s",
                       *es_flags(busy_node, index)], timeout=600)
    assert result.code == 0, result.stderr
    assert "es_rejected_execution_exception" in result.stderr or "retrying" in result.stderr, \
        "the tiny write queue never rejected anything: the test proves nothing"
    status, body = elasticsearch_local.request(busy_node, "POST", f"/{index}/_refresh")
    status, body = elasticsearch_local.request(busy_node, "POST", f"/{index}/_search",
                                               {"size": 20000, "_source": ["log.file.path", "log.offset"]})
    got = [(hit["_source"]["log"]["file"]["path"], hit["_source"]["log"]["offset"]) for hit in body["hits"]["hits"]]
    assert len(got) == len(set(got)) == 20000 and set(got) == expected
