"""The OpenSearch output against the real secured OpenSearch node.

Real bulk answers through the one classifier (stored, duplicate on re-send,
mapping rejection), the Sender end to end (exactly once, rejected documents
in the dead letters before their ack, a node that goes down and comes back),
a missing ingest pipeline retried with the setup command, credentials
(preflight, check), telling the engines apart by ``GET /``, and a node
that answers 429 for part of the items (only those are sent again).
"""
from __future__ import annotations

import json
import threading

import orjson
import pytest

import opensearch_local
from agent.acks import AckTracker
from agent.config import resolve
from agent.errors import AuthError
from agent.events import Event
from agent.outputs.base import Response
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.opensearch import OpenSearchOutput, detect_engine
from agent.outputs.retry import classify
from agent.outputs.sender import Sender
from agent.stats import Stats
from output_checks import check_bulk_items_classify


def _output(node, **flags) -> OpenSearchOutput:
    base = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "username": node.username,
            "password_file": node.password_file}
    base.update(flags)
    return OpenSearchOutput.from_config(resolve(base, {}))


def _event(i: int, body: dict, key: str = "src") -> Event:
    return Event(key, i, i + 1, f"{key}-{i}",
                 orjson.dumps({"@timestamp": "2026-12-04T10:00:00.000Z", **body}))


def _sender(output, tmp_path, commits, max_retries=None):
    acks = AckTracker(lambda key, offset: commits.__setitem__(key, offset))
    stats = Stats()
    dead = DeadLetters(str(tmp_path / "dead.ndjson"), "unused")
    sender = Sender(output, acks, dead, stats, threading.Event(), max_retries, backoff_max=1.0,
                    retry_permanent=True)
    return sender, acks, stats


def test_real_bulk_responses_classify_per_item(os_node, os):
    items = check_bulk_items_classify(_output(os_node, index="os-out-items"), os, "os-out-items",
                                      _event)
    # OpenSearch's name for what Elasticsearch calls document_parsing_exception.
    assert items[1].error_type == "mapper_parsing_exception"
    os.delete_index("os-out-items")


def test_sender_ships_once_and_dead_letters_before_ack(os_node, os, tmp_path):
    os.ok("PUT", "/os-out-send", {"mappings": {"properties": {"latency": {"type": "long"}}}})
    output = _output(os_node, index="os-out-send")
    commits: dict[str, int] = {}
    sender, acks, stats = _sender(output, tmp_path, commits)
    events = [_event(i, {"latency": i}) for i in range(20)]
    events[7] = _event(7, {"latency": "seven"})
    try:
        acks.register(events)
        sender.deliver(events)
        assert commits == {"src": 20}  # every offset committed, the rejected one too
        assert stats.snapshot().events_acked == 19 and stats.snapshot().events_rejected == 1
        (letter,) = [json.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
        assert letter["_id"] == "src-7" and letter["status"] == 400
        assert letter["error"]["type"] == "mapper_parsing_exception"
        assert letter["document"]["latency"] == "seven"
        # A re-send (a crash before the registry commit) stores nothing twice.
        acks.register(events)
        sender.deliver(events)
        assert stats.snapshot().events_duplicate == 19
        assert os.count("os-out-send") == 19
    finally:
        output.close()
        os.delete_index("os-out-send")


def test_node_down_then_back_delivers_everything_once(os_node, os, tmp_path):
    output = _output(os_node, index="os-out-fault", request_timeout=5.0)
    commits: dict[str, int] = {}
    sender, acks, stats = _sender(output, tmp_path, commits)
    events = [_event(i, {"n": i}, key="fault") for i in range(50)]
    try:
        opensearch_local.stop_node(os_node)
        acks.register(events)
        worker = threading.Thread(target=sender.deliver, args=(events,))
        worker.start()
        try:
            # Retries while the node is down: connection errors, nothing settled.
            waited = threading.Event()
            for _ in range(300):  # at most 60 s
                if stats.retries()["connection"] >= 2 or waited.wait(0.2):
                    break
            assert stats.retries()["connection"] >= 2
            assert commits == {}
        finally:
            opensearch_local.restart_node(os_node)
        worker.join(120)
        assert not worker.is_alive()
        assert commits == {"fault": 50}
        assert os.count("os-out-fault") == 50
        assert stats.snapshot().events_acked == 50
    finally:
        output.close()
        os.delete_index("os-out-fault")


def test_missing_pipeline_is_retried_naming_setup(os_node, os):
    name = "os-missing-pipeline-test"
    os.request("DELETE", f"/_ingest/pipeline/{name}")
    os.ok("PUT", "/os-out-pipe", {"settings": {"index.default_pipeline": name}})
    output = _output(os_node, index="os-out-pipe")
    events = [_event(i, {"message": f"line {i}"}) for i in range(3)]
    try:
        response = output.send(events)
        decision = classify(response, 3)
        assert decision.kind == "retry", response.body
        assert f"[{name}]" in decision.reason and "modelscribe setup pipelines" in decision.reason
        os.ok("PUT", f"/_ingest/pipeline/{name}", {"processors": [
            {"set": {"tag": "t", "field": "event.kind", "value": "event"}}]})
        assert classify(output.send(events), 3).kind == "ack"
        docs = os.search_all("os-out-pipe")
        assert [d["event"]["kind"] for d in docs] == ["event"] * 3
    finally:
        output.close()
        os.delete_index("os-out-pipe")
        os.request("DELETE", f"/_ingest/pipeline/{name}")


def test_preflight_and_check_with_the_password(os_node):
    output = _output(os_node, index="os-out-check")
    try:
        output.preflight()
        report = output.check()
    finally:
        output.close()
    lines = dict(report.lines)
    assert report.ok, report.lines
    assert lines["version"].startswith(f"opensearch {os_node.version} ")
    assert lines["auth"].startswith("ok as admin (roles:") and "all_access" in lines["auth"]
    assert lines["privileges"].startswith("not checked in advance")


def test_wrong_password_is_refused_with_a_clear_message(os_node, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    output = _output(os_node, password_file=str(wrong))
    try:
        with pytest.raises(AuthError, match="OpenSearch rejected user 'admin' and the password"):
            output.preflight()
        report = output.check()
        assert not report.ok
        assert dict(report.lines)["auth"].startswith("FAILED: HTTP 401")
        # A bulk request with the wrong password is an "auth" decision: retried, not rejected.
        assert classify(output.send([_event(0, {})]), 1).kind == "auth"
    finally:
        output.close()


def test_detect_engine_from_the_root_endpoint(os_node):
    status, body = opensearch_local.request(os_node, "GET", "/")
    assert detect_engine(Response(status, body)) == "opensearch"
    # Elasticsearch's root has no "distribution" key (shape of a 9.x answer).
    assert detect_engine(Response(200, {"version": {"number": "9.2.8", "build_flavor": "default"}})) \
        == "elasticsearch"
    assert detect_engine(Response(401, "Unauthorized")) is None


def test_the_default_output_detects_opensearch_from_the_root_endpoint(os_node, os, tmp_path):
    """No --output opensearch: the root endpoint decides, and the agent ships,
    checks and reports as the OpenSearch output."""
    from e2e_helpers import run_once

    from agent.outputs import build_output

    flags = {"es_urls": (os_node.url,), "ca_cert": os_node.ca_cert, "username": os_node.username,
             "password_file": os_node.password_file}
    output = build_output(resolve(flags, {}))
    try:
        assert type(output) is OpenSearchOutput
    finally:
        output.close()
    cli = ["--es-url", os_node.url, "--ca-cert", os_node.ca_cert, "--username", os_node.username,
           "--password-file", os_node.password_file]
    check = run_once(["check", "output", *cli])
    assert check.code == 0 and f"version: opensearch {os_node.version}" in check.stdout, check.stdout
    log = tmp_path / "m.log"
    log.write_text("".join(f'{{"message": "line {n}"}}\n' for n in range(5)))
    os.delete_index("os-detected")
    shipped = run_once(["run", "--once", "--path", str(log), "--state-dir", str(tmp_path / "state"),
                        "--index", "os-detected", *cli])
    assert shipped.code == 0, shipped.stderr
    os.ok("POST", "/os-detected/_refresh")
    assert os.ok("GET", "/os-detected/_count")["count"] == 5


def test_partial_429_retries_only_the_rejected_items(tmp_path):
    """A node with one write thread and a one-slot queue answers some bulk
    items 429: only those are sent again, and every document lands once."""
    node = opensearch_local.start_node(tmp_path / "busy", settings={
        "thread_pool.write.size": 1, "thread_pool.write.queue_size": 1})
    try:
        status, body = opensearch_local.request(node, "PUT", "/os-out-429", {"settings": {
            "number_of_shards": 4, "number_of_replicas": 0, "max_result_window": 20_000}})
        assert status == 200, body
        output = _output(node, index="os-out-429")
        commits: dict[str, int] = {}
        acks = AckTracker(lambda key, offset: commits.__setitem__(key, offset))
        stats = Stats()
        dead = DeadLetters(str(tmp_path / "dead.ndjson"), "unused")
        batches = [[_event(b * 100 + i, {"n": b * 100 + i}, key=f"k{b % 6}") for i in range(100)]
                   for b in range(60)]

        def work(mine):
            sender = Sender(output, acks, dead, stats, threading.Event(), None, backoff_max=0.5,
                            retry_permanent=True)
            for batch in mine:
                sender.deliver(batch)

        for batch in batches:
            acks.register(batch)
        threads = [threading.Thread(target=work, args=(batches[t::6],)) for t in range(6)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
        finally:
            output.close()
        assert not any(thread.is_alive() for thread in threads)
        assert stats.retries()["429"] > 0, "the tiny write queue never answered 429: proves nothing"
        assert stats.snapshot().events_rejected == 0 and not (tmp_path / "dead.ndjson").exists()
        # Had stored items been sent again they would come back as 409 duplicates.
        assert stats.snapshot().events_acked == 6000 and stats.snapshot().events_duplicate == 0
        assert commits == {f"k{k}": 5500 + 100 * k for k in range(6)}  # end of each key's last event
        opensearch_local.request(node, "POST", "/os-out-429/_refresh")
        status, body = opensearch_local.request(node, "POST", "/os-out-429/_search", {
            "size": 10_000, "_source": ["n"]})
        got = [hit["_source"]["n"] for hit in body["hits"]["hits"]]
        assert sorted(got) == list(range(6000))
    finally:
        opensearch_local.remove_node(node)


def test_an_es_url_with_a_wrong_path_fails_the_checks(os_node):
    # As on Elasticsearch (tests/outputs/test_target_state_es.py): audit 4.
    from agent.errors import PermanentOutputError
    output = _output(os_node, es_urls=(os_node.url + "/prefix",))
    try:
        with pytest.raises(PermanentOutputError, match="does not lead to the cluster's API"):
            output.preflight()
        report = output.check()
    finally:
        output.close()
    assert not report.ok and dict(report.lines)["api"].startswith("FAILED: ")


def test_a_target_that_cannot_take_documents_now_is_retried(os_node, os):
    from agent.outputs.retry import Action, retry_reason
    os.ok("PUT", "/os-state-closed")
    os.ok("POST", "/os-state-closed/_close")
    os.ok("PUT", "/os-state-alias-a")
    os.ok("PUT", "/os-state-alias-b")
    os.ok("POST", "/_aliases", {"actions": [{"add": {"index": "os-state-alias-a", "alias": "os-state-alias"}},
                                            {"add": {"index": "os-state-alias-b", "alias": "os-state-alias"}}]})
    os.ok("PUT", "/_cluster/settings", {"persistent": {"action.auto_create_index": "false"}})
    try:
        for target, says in (("os-state-closed", "_open"), ("os-state-alias", "is_write_index"),
                             ("os-state-absent", "action.auto_create_index")):
            output = _output(os_node, index=target)
            try:
                response = output.send([_event(0, {"message": "m"})])
            finally:
                output.close()
            (verdict,) = classify(response, 1).items
            assert verdict.action is Action.RETRY and says in retry_reason(verdict), (target, response.body)
    finally:
        os.ok("PUT", "/_cluster/settings", {"persistent": {"action.auto_create_index": None}})
        os.ok("DELETE", "/os-state-closed,os-state-alias-a,os-state-alias-b")


def test_a_write_block_is_retried_naming_the_block(os_node, os):
    from agent.outputs.retry import Action, refused_privilege, retry_reason
    os.ok("PUT", "/os-state-blocked")
    os.ok("PUT", "/os-state-blocked/_settings", {"index.blocks.write": True})
    try:
        output = _output(os_node, index="os-state-blocked")
        try:
            response = output.send([_event(0, {"message": "m"})])
        finally:
            output.close()
        (verdict,) = classify(response, 1).items
        assert verdict.status == 403 and verdict.action is Action.RETRY, response.body
        assert not refused_privilege(verdict) and "index write" in retry_reason(verdict), retry_reason(verdict)
    finally:
        os.ok("PUT", "/os-state-blocked/_settings", {"index.blocks.write": None})
        os.ok("DELETE", "/os-state-blocked")
