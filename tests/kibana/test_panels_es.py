"""Every dashboard panel on the real node: its fields exist in ``_field_caps``
with an aggregatable type, and its search (the one Lens sends) returns data,
after shipping every parser fixture, a JSON prediction log through model
health (windows, drift, labels) and the agent's own metric documents.

No Kibana runs here: this checks what the dashboards ask of Elasticsearch,
not how Kibana draws them (README, Kibana)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

from agent import schema
from agent.kibana.dashboards import dashboards
from agent.kibana.model import LOGS
from agent.self_metrics import Reading, SelfMetrics
from e2e_helpers import es_flags, run_once

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "kibanapanels"
INDEX = {LOGS: f"logs-modelscribe-{NAMESPACE}", "metrics": f"metrics-modelscribe-{NAMESPACE}"}
START = 1_790_000_000  # 2026-09-21, whole minutes


def _prediction_log(path: Path) -> None:
    rng = random.Random(7)
    lines = []
    for n in range(1200):
        model = ("churn", "fraud")[n % 2]
        when = START + n * 0.5  # ten minutes of traffic
        drifted = n >= 600  # the second half drifts: age moves up, plans change
        age = rng.gauss(60 if drifted else 35, 8)
        plan = rng.choice(("pro", "free", "team") if not drifted else ("enterprise", "pro"))
        prediction = "yes" if age > 45 else "no"
        record = {"@timestamp": when, "model_name": model, "model_version": f"v{1 + n % 3}",
                  "request_id": f"r{n}", "prediction": prediction, "features": {"age": round(age, 1), "plan": plan},
                  "latency_ms": round(rng.lognormvariate(3, 0.5), 2),
                  "level": "error" if n % 17 == 0 else "info", "message": "predicted",
                  "prompt_tokens": 10 + n % 7, "completion_tokens": 30 + n % 11}
        lines.append(json.dumps(record))
        if n % 3 == 0:  # delayed ground truth for a third of the requests
            lines.append(json.dumps({"@timestamp": when + 5, "request_id": f"r{n}",
                                     "ground_truth": prediction if n % 4 else "maybe", "message": "label"}))
        if n % 4 == 0:  # a regression model, labelled at once
            price = round(age * 3.1, 2)
            lines.append(json.dumps({"@timestamp": when, "model_name": "price", "request_id": f"p{n}",
                                     "prediction": price, "features": {"age": round(age, 1)}, "latency_ms": 3.5,
                                     "message": "priced"}))
            lines.append(json.dumps({"@timestamp": when + 2, "request_id": f"p{n}",
                                     "ground_truth": round(price + rng.gauss(0, 4), 2), "message": "label"}))
    lines.append(json.dumps({"@timestamp": START + 3600, "model_name": "churn", "request_id": "last",
                             "prediction": "no", "latency_ms": 1, "message": "closes every window"}))
    path.write_text("\n".join(lines) + "\n")


def _self_metric_docs() -> list[bytes]:
    figures = iter(Reading(100 * n, 90 * n, n, n // 2, 0, 4096 * n, 10, 300 * n, 2, START + 60.0 * (n - 1) - 3)
                   for n in range(1, 12))
    meter = SelfMetrics(60.0, lambda: next(figures), "host-a", "agent-panels", INDEX["metrics"], now=START)
    return [meter.due(START + 60.0 * n).data for n in range(1, 11)]


@pytest.fixture(scope="module")
def shipped(es_node, es_session, tmp_path_factory):
    """The node with this module's data streams filled (built once)."""
    es = es_session
    work = tmp_path_factory.mktemp("panels")
    for index in INDEX.values():
        es.delete_index(index)
    done = run_once(["setup", "templates", *es_flags(es_node)])
    assert done.code == 0, done.stderr
    fixtures = sorted(str(p) for p in (ROOT / "tests" / "fixtures").rglob("*") if p.suffix in (".log", ".jsonl"))
    args = ["run", "--once", "--data-stream", INDEX[LOGS], "--state-dir", str(work / "state"), *es_flags(es_node)]
    for fixture in fixtures:
        args += ["--path", fixture]
    done = run_once(args, timeout=300)
    assert done.code == 0, done.stderr
    predictions = work / "predictions.jsonl"
    _prediction_log(predictions)
    config = work / "agent.yml"
    # Per model and version, the first 60 events are the reference; the drift comes after.
    config.write_text(f"paths: [{predictions}]\nformat: json\nhealth:\n  reference_size: 60\n")
    done = run_once(["run", "--once", "--config", str(config), "--data-stream", INDEX[LOGS],
                     "--state-dir", str(work / "health-state"), *es_flags(es_node)], timeout=300)
    assert done.code == 0, done.stderr
    body = b"".join(b'{"create":{}}\n' + doc + b"\n" for doc in _self_metric_docs())
    status, answer = es.request("POST", f"/{INDEX['metrics']}/_bulk?refresh=true", body.decode())
    assert status == 200 and not answer["errors"], answer
    for index in INDEX.values():
        es.request("POST", f"/{index}/_refresh")
    return es


# The integ-test distribution has no analytics module, hence no histogram field type: the
# template maps model.health.latency.histogram as an object there (agent.schema), and the
# panels over it cannot be searched. Strict: on a node with the type they must pass.
_NO_HISTOGRAM = pytest.mark.xfail(strict=True, reason="this distribution has no histogram field type "
                                                      "(README, Kibana): the panel's field is not aggregatable")


def _panels():
    return [pytest.param(board.id, number, panel,
                         marks=[_NO_HISTOGRAM] if any(schema.FIELDS.get(name) is not None
                                                      and schema.FIELDS[name].type == "histogram"
                                                      for name in panel.fields()) else [])
            for board in dashboards() for number, panel in enumerate(board.panels)]


def _leaves(aggregations: dict):
    for level in ("split", "time"):
        if level in aggregations:
            for bucket in aggregations[level]["buckets"]:
                yield from _leaves(bucket)
            return
    yield aggregations


def _has_data(aggregations: dict, metrics: int) -> bool:
    """True when every metric of the panel has a value in some bucket, and one is not zero."""
    seen: list[list[float]] = [[] for _ in range(metrics)]
    for leaf in _leaves(aggregations):
        for i in range(metrics):
            result = leaf[f"m{i}"]
            value = result["values"] if "values" in result else result.get("value")
            if isinstance(value, dict):
                value = next(iter(value.values()), None)
            if value is not None:
                seen[i].append(value)
    return all(seen) and any(any(values) for values in seen)


@pytest.mark.parametrize("board, number, panel", _panels(), ids=lambda v: v if isinstance(v, str) else None)
def test_panel_fields_are_aggregatable_and_its_search_returns_data(shipped, board, number, panel):
    index = INDEX[panel.view]
    fields = sorted(panel.fields())
    status, caps = shipped.request("GET", f"/{index}/_field_caps?fields={','.join(fields)}")
    assert status == 200, caps
    for name in fields:
        found = caps["fields"].get(name)
        assert found, f"{board} panel {number} ({panel.title}): {name} is not in {index}'s mappings"
        assert all(kind["aggregatable"] for kind in found.values()), (name, found)
    status, answer = shipped.request("POST", f"/{index}/_search", panel.search())
    assert status == 200, answer
    assert _has_data(answer["aggregations"], len(panel.metrics)), \
        f"{board} panel {number} ({panel.title}) returns no data: {orjson.dumps(answer)[:800]!r}"


def test_the_saved_search_finds_tracebacks(shipped):
    status, answer = shipped.request("POST", f"/{INDEX[LOGS]}/_search", {
        "size": 5, "query": {"bool": {"filter": [{"exists": {"field": "error.type"}},
                                                 {"exists": {"field": "error.stack_trace"}}]}}})
    assert status == 200 and answer["hits"]["hits"], answer
