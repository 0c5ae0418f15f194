"""End to end against the real secured OpenSearch node: the `modelscribe`
command with ``--output opensearch`` ships every line exactly once (with its
offset), survives the node going down and coming back, and puts a document
OpenSearch rejects in the dead letters, from where ``dlq replay`` re-sends it.
"""
from __future__ import annotations

import json
import time

import pytest

import opensearch_local
from e2e_helpers import Daemon, GrowingFiles, create_index, run_once, wait_for


def os_flags(node, target: str) -> list[str]:
    return ["--output", "opensearch", "--es-url", node.url, "--ca-cert", node.ca_cert,
            "--username", node.username, "--password-file", node.password_file, "--index", target]


def _offsets(os, index: str, size: int = 10_000) -> list[tuple[str, int]]:
    return [(doc["log"]["file"]["path"], doc["log"]["offset"]) for doc in os.search_all(index, size)]


def test_check_output_and_once_twice_ship_exactly_once(os_node, os, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    expected = set()
    with open(logs / "m.log", "wb") as handle:
        for i in range(300):
            expected.add((str(logs / "m.log"), handle.tell()))
            handle.write(b"%d served model=resnet50 latency_ms=%d\n" % (i, i % 97))
    flags = os_flags(os_node, "e2e-os-once")
    check = run_once(["check", "output", *flags])
    assert check.code == 0, check.stdout + check.stderr
    assert f"version: opensearch {os_node.version}" in check.stdout
    args = ["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"), *flags]
    try:
        first = run_once(args)
        assert first.code == 0, first.stderr
        assert os.count("e2e-os-once") == 300
        second = run_once(args)
        assert second.code == 0 and "events=0" in second.stderr, second.stderr
        got = _offsets(os, "e2e-os-once")
        assert len(got) == len(set(got)) and set(got) == expected
    finally:
        os.delete_index("e2e-os-once")


@pytest.mark.slow
def test_node_down_and_back_while_the_daemon_ships(os_node, os, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    index = "e2e-os-outage"
    create_index(os.request, index)
    agent = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                    "--flush-interval", "200ms", "--backoff-max", "3s", "--request-timeout", "5s",
                    *os_flags(os_node, index)], tmp_path / "agent.log")
    try:
        with GrowingFiles(logs, rate=300) as files:
            time.sleep(3)
            assert opensearch_local.stop_node(os_node)
            time.sleep(10)
            opensearch_local.restart_node(os_node)
            time.sleep(2)
        wait_for(lambda: os.count(index) >= len(files.expected), 180, "every line after the outage")
    finally:
        code = agent.stop()
    try:
        assert code == 0, agent.log()
        assert "delivery failed, retrying" in agent.log()
        got = _offsets(os, index, 200_000)  # create_index raised max_result_window
        assert len(got) == len(set(got)) and set(got) == files.expected
    finally:
        os.delete_index(index)


def test_rejected_document_dead_letter_and_replay(os_node, os, tmp_path):
    os.ok("PUT", "/e2e-os-dlq", {"mappings": {"properties": {
        "extra": {"properties": {"latency": {"type": "long"}}}}}})
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [{"message": f"served {i}", "latency": i} for i in range(5)]
    lines[2]["latency"] = "fast"
    (logs / "m.log").write_text("".join(json.dumps(line) + "\n" for line in lines))
    state = tmp_path / "state"
    flags = ["--state-dir", str(state), *os_flags(os_node, "e2e-os-dlq")]
    try:
        result = run_once(["run", "--once", "--path", str(logs / "*.log"), *flags])
        assert result.code == 4, result.stderr
        assert os.count("e2e-os-dlq") == 4
        (letter,) = [json.loads(line) for line in (state / "dead-letter.ndjson").read_text().splitlines()]
        assert letter["document"]["message"] == "served 2"
        assert letter["error"]["type"] == "mapper_parsing_exception"
        os.ok("PUT", "/e2e-os-dlq-fixed", {"mappings": {"properties": {
            "extra": {"properties": {"latency": {"type": "keyword"}}}}}})
        fixed = run_once(["dlq", "replay", "--to-index", "e2e-os-dlq-fixed", *flags])
        assert fixed.code == 0 and "indexed=1" in fixed.stdout, fixed.stdout + fixed.stderr
        assert os.count("e2e-os-dlq-fixed") == 1
    finally:
        os.delete_index("e2e-os-dlq*")
