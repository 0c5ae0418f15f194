"""What the real Elasticsearch node answers when the target cannot take
documents, or the credentials may not write it, or the URL leads nowhere,
through the one classifier (agent/outputs/retry.py) and the output's checks.
Found by audit 4 on 9.2.8: a missing index (``action.auto_create_index``
off), a closed index and an alias without a write index are answered per
item, in a 200, so they went to the dead letters (287 of 600 lines for an
index deleted for 3 s) although the README said they were retried; a key
that may not write the target was retried forever by ``--once`` with only
"HTTP 403 on the first"; an ``--es-url`` with a wrong path passed the
checks ("security is not enabled") and ``--once`` retried forever."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agent.config import resolve
from agent.errors import PermanentOutputError
from agent.events import Event
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.retry import Action, classify, refused_privilege, retry_reason

pytestmark = pytest.mark.elasticsearch


def _send(node, index: str, **flags):
    config = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file, "index": index}
    config.update(flags)
    output = ElasticsearchOutput.from_config(resolve(config, {}))
    try:
        return output.send([Event("src", 0, 1, "id-0", orjson.dumps({"message": "m"}))])
    finally:
        output.close()


def test_a_target_that_cannot_take_documents_now_is_retried_naming_what_to_do(es_node, es):
    es.ok("PUT", "/state-closed")
    es.ok("POST", "/state-closed/_close")
    es.ok("PUT", "/state-alias-a")
    es.ok("PUT", "/state-alias-b")
    es.ok("POST", "/_aliases", {"actions": [{"add": {"index": "state-alias-a", "alias": "state-alias"}},
                                            {"add": {"index": "state-alias-b", "alias": "state-alias"}}]})
    es.ok("PUT", "/_cluster/settings", {"persistent": {"action.auto_create_index": "false"}})
    try:
        for target, says in (("state-closed", "_open"), ("state-alias", "is_write_index"),
                             ("state-absent", "action.auto_create_index")):
            response = _send(es_node, target)
            assert response.status == 200, response.body  # (per item, not on the request)
            (verdict,) = classify(response, 1, ["id-0"]).items
            assert verdict.action is Action.RETRY, (target, verdict)
            assert says in retry_reason(verdict), retry_reason(verdict)
    finally:
        es.ok("PUT", "/_cluster/settings", {"persistent": {"action.auto_create_index": None}})
        es.ok("DELETE", "/state-closed,state-alias-a,state-alias-b")


def test_a_key_that_may_not_write_the_target_is_refused_for_a_privilege_a_write_block_is_not(
        es_node, es, tmp_path: Path):
    created = es.ok("POST", "/_security/api_key", {"name": "only-other", "role_descriptors": {
        "writer": {"index": [{"names": ["other-*"], "privileges": ["create_doc", "auto_configure"]}]}}})
    key_file = tmp_path / "limited-key"
    key_file.write_text(created["encoded"])
    es.ok("PUT", "/state-blocked")
    es.ok("PUT", "/state-blocked/_settings", {"index.blocks.write": True})
    try:
        (refused,) = classify(_send(es_node, "state-denied", api_key_file=str(key_file)), 1).items
        assert refused.status == 403 and refused_privilege(refused), refused
        assert "unauthorized" in retry_reason(refused)
        (blocked,) = classify(_send(es_node, "state-blocked"), 1).items
        assert blocked.action is Action.RETRY and not refused_privilege(blocked), blocked
        assert "index write" in retry_reason(blocked)  # ("blocked by: [FORBIDDEN/8/index write (api)]")
    finally:
        es.ok("DELETE", "/_security/api_key", {"ids": [created["id"]]})
        es.ok("PUT", "/state-blocked/_settings", {"index.blocks.write": None})
        es.ok("DELETE", "/state-blocked")


def test_an_es_url_with_a_wrong_path_fails_the_checks(es_node):
    config = resolve({"es_urls": (es_node.url + "/prefix",), "ca_cert": es_node.ca_cert,
                      "api_key_file": es_node.api_key_file}, {})
    output = ElasticsearchOutput.from_config(config)
    try:
        with pytest.raises(PermanentOutputError, match="does not lead to the cluster's API.*path of --es-url"):
            output.preflight()
        report = output.check()
    finally:
        output.close()
    assert not report.ok
    assert dict(report.lines)["api"].startswith("FAILED: ")
    assert "auth" not in dict(report.lines)  # (it said "security is not enabled on this cluster")


def test_a_wrong_scheme_is_named_in_the_message(es_node):
    import http.server
    import threading

    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        for url, says in ((es_node.url.replace("https://", "http://"), "use https://"),
                          (f"https://127.0.0.1:{plain.server_address[1]}", "use http://")):
            tls = {"ca_cert": es_node.ca_cert} if url.startswith("https://") else {}
            output = ElasticsearchOutput.from_config(resolve(
                {"es_urls": (url,), "api_key_file": es_node.api_key_file, **tls}, {}))
            try:
                connection = dict(output.check().lines)["connection"]
            finally:
                output.close()
            assert connection.startswith("FAILED: ") and says in connection, connection
    finally:
        plain.shutdown()
        plain.server_close()


def _target_check(node, target: str):
    config = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file, "index": target}
    output = ElasticsearchOutput.from_config(resolve(config, {}))
    try:
        report = output.check()
    finally:
        output.close()
    return report.ok, dict(report.lines)["target"]


def test_check_output_says_whether_the_target_can_take_a_document(es_node, es):
    # Audit 5: "can ship: yes ... output ok" for an index that did not exist and
    # could not be created; `run --once` then delivered nothing.
    es.ok("PUT", "/check-open")
    es.ok("PUT", "/check-closed")
    es.ok("POST", "/check-closed/_close")
    try:
        assert _target_check(es_node, "check-open") == (True, "check-open (exists, open)")
        ok, line = _target_check(es_node, "check-closed")
        assert not ok and line.startswith("FAILED: check-closed: check-closed is closed") and "_open" in line
        assert _target_check(es_node, "check-absent") == (
            True, "check-absent (does not exist yet; created at the first document)")
        es.ok("PUT", "/_cluster/settings", {"persistent": {"action.auto_create_index": "false"}})
        ok, line = _target_check(es_node, "check-absent")
        assert not ok and "does not exist and the cluster does not create indices" in line, line
    finally:
        es.ok("PUT", "/_cluster/settings", {"persistent": {"action.auto_create_index": None}})
        es.ok("DELETE", "/check-open,check-closed")
