"""Two agents' health windows in the real node, mapped by our templates: merging the windows'
model.health.latency.histogram (what a percentiles aggregation over a histogram field does) gives the
fleet-wide latency, equal to numpy's percentile of the union of the raw latencies within the
histogram's resolution (issue 10, musts 1 and 10). The server-side percentiles aggregation runs when
the node has the histogram type (x-pack analytics); the harness's integ-test node does not."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import numpy
import pytest

from agent.health.histogram import RELATIVE_ERROR
from e2e_helpers import es_flags, run_once

pytestmark = [pytest.mark.elasticsearch]

STREAM = "metrics-modelscribe-healthfleet"
BASE = 1_767_225_600.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_percentiles_aggregation_over_two_agents_windows_matches_numpy(tmp_path, es_node, es):
    setup = run_once(["setup", "templates", *es_flags(es_node)])
    assert setup.code == 0, setup.stderr
    es.delete_index("logs-modelscribe-healthfleet")
    es.delete_index(STREAM)
    config = tmp_path / "modelscribe.yml"
    config.write_text("health: {window: 60, lateness: 10}\n")
    rng = random.Random(5)
    latencies: list[float] = []
    for agent in range(2):
        logs = tmp_path / f"logs-{agent}"
        logs.mkdir()
        lines = []
        for n in range(3000):
            # Two agents, different shapes: the fleet figure is not either agent's.
            latency = round(rng.lognormvariate(3 + agent, 0.5 + agent * 0.3), 3)
            latencies.append(latency)
            lines.append(json.dumps({"timestamp": _stamp(BASE + n * 0.1), "model_name": "ranker",
                                     "request_id": f"{agent}-{n}", "latency_ms": latency}))
        (logs / "predictions.log").write_text("\n".join(lines) + "\n")
        done = run_once(["run", "--once", "--config", str(config), "--path", str(logs / "*.log"),
                         "--state-dir", str(tmp_path / f"state-{agent}"), "--host-name", f"replica-{agent}",
                         "--data-stream", "logs-modelscribe-healthfleet", *es_flags(es_node)])
        assert done.code == 0, done.stderr
    es.request("POST", f"/{STREAM}/_refresh")
    status, caps = es.request("GET", f"/{STREAM}/_field_caps?fields=model.health.*")
    assert status == 200, caps
    assert caps["fields"]["model.health.requests"]["long"]["aggregatable"] is True
    mapped = set(caps["fields"]["model.health.latency.histogram"])
    percents = [50, 90, 95, 99]
    status, body = es.request("POST", f"/{STREAM}/_search", {
        "size": 1000, "query": {"term": {"event.dataset": "modelscribe.health"}},
        "aggs": {"requests": {"sum": {"field": "model.health.requests"}},
                 "hosts": {"cardinality": {"field": "host.name"}}}})
    assert status == 200, body
    assert body["aggregations"]["requests"]["value"] == 6000 and body["aggregations"]["hosts"]["value"] == 2
    # What a percentiles aggregation over a histogram field does: every value counted `count` times.
    merged = numpy.concatenate([numpy.repeat(hit["_source"]["model"]["health"]["latency"]["histogram"]["values"],
                                             hit["_source"]["model"]["health"]["latency"]["histogram"]["counts"])
                                for hit in body["hits"]["hits"]])
    assert len(merged) == 6000
    for q in percents:
        expected = float(numpy.percentile(latencies, q))
        got = float(numpy.percentile(merged, q))
        assert abs(got - expected) <= expected * RELATIVE_ERROR * 1.0001, (q, got, expected)
    if mapped == {"object"}:
        # The harness's node (the integ-test distribution) has no x-pack analytics, hence no
        # histogram type: our templates map the field with its fallback, and the documents are
        # accepted. The server-side aggregation below needs a full distribution.
        return
    assert mapped == {"histogram"}
    status, body = es.request("POST", f"/{STREAM}/_search", {
        "size": 0, "query": {"term": {"event.dataset": "modelscribe.health"}},
        "aggs": {"latency": {"percentiles": {"field": "model.health.latency.histogram", "percents": percents,
                                             "hdr": {"number_of_significant_value_digits": 3}}}}})
    assert status == 200, body
    fleet = body["aggregations"]["latency"]["values"]
    for q in percents:
        expected = float(numpy.percentile(latencies, q))
        got = fleet[f"{float(q)}"]
        # One bucket's relative resolution, plus HDR's 3 significant digits.
        assert abs(got - expected) <= expected * (RELATIVE_ERROR + 1e-3), (q, got, expected)
