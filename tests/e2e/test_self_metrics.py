"""The agent's own metric documents reach the real node, mapped by our
templates, and count what the agent did."""

from __future__ import annotations

from e2e_helpers import Daemon, es_flags, run_once, wait_for

WAIT = 90.0
STREAM = "metrics-modelscribe-selftest"


def test_self_metric_documents_are_indexed_with_aggregatable_types(tmp_path, es_node, es):
    setup = run_once(["setup", "templates", *es_flags(es_node)])
    assert setup.code == 0, setup.stderr
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {n}\n" for n in range(40)))
    es.delete_index("logs-modelscribe-selftest")
    es.delete_index(STREAM)
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                     "--data-stream", "logs-modelscribe-selftest", "--flush-interval", "0.2s",
                     "--self-metrics-interval", "1s", *es_flags(es_node)], tmp_path / "agent.log")
    try:
        def lines_counted() -> bool:
            es.request("POST", f"/{STREAM}/_refresh")
            status, body = es.request("POST", f"/{STREAM}/_search", {
                "size": 0, "aggs": {"lines": {"sum": {"field": "modelscribe.agent.lines_read"}},
                                    "acked": {"sum": {"field": "modelscribe.agent.events_acknowledged"}}}})
            return (status == 200 and body["aggregations"]["lines"]["value"] == 40
                    and body["aggregations"]["acked"]["value"] >= 40)
        wait_for(lines_counted, WAIT, "self-metric documents summing to the 40 lines read")
    finally:
        code = daemon.stop(WAIT)
    assert code == 0, daemon.log()
    status, caps = es.request("GET", f"/{STREAM}/_field_caps?fields=modelscribe.agent.*,event.dataset")
    assert status == 200, caps
    fields = caps["fields"]
    assert fields["modelscribe.agent.lines_read"]["long"]["aggregatable"] is True
    assert fields["modelscribe.agent.last_ack_age_seconds"]["double"]["aggregatable"] is True, fields
    assert set(fields["event.dataset"]) == {"keyword"}
    status, found = es.request("POST", f"/{STREAM}/_search", {"size": 100})
    docs = [hit["_source"] for hit in found["hits"]["hits"]]
    assert docs and all(doc["event"]["dataset"] == "modelscribe.agent" for doc in docs)
    assert len({hit["_id"] for hit in found["hits"]["hits"]}) == len(docs)
