"""The Drift dashboard's accuracy panel on label documents as the agent writes them
(audit 3, finding 1): a late-label correction is not a window.

A correction's accuracy, precision and recall are ratios over its few late
labels; Lens has no weighted average, so the panel keeps the window documents
only and shows the mean of the windows (docs/alerting.md). Its search, the one
Lens sends, runs on the real node."""

from __future__ import annotations

import orjson
import pytest

from agent.health.documents import correction_document, window_document
from agent.health.state import LabelState, WindowState
from agent.health.windows import ModelKey
from agent.kibana.dashboards import dashboards
from agent.setup.templates import install_templates

pytestmark = pytest.mark.elasticsearch

INDEX = "metrics-modelscribe-kibanaaccuracy"
START = 1_790_000_000  # windows a minute apart: one date_histogram bucket each


def _labels(right: int, wrong: int) -> LabelState:
    labels = LabelState()
    for n in range(right + wrong):
        labels.add("a", "a" if n < right else "b")
    return labels


def _docs() -> list[dict]:
    key, agent = ModelKey("m-acc", "1"), {"id": "agent-panel", "name": "modelscribe"}
    docs = []
    for minute in range(10):
        state = WindowState()
        state.requests, state.labels = 20, _labels(18, 2)
        docs.append(window_document(key, START + 60 * minute, 60, state, 0, agent)[1])
        if minute % 2:  # one late, wrong label: accuracy 0, precision and recall 0
            docs.append(correction_document(key, START + 60 * minute, 60, _labels(0, 1), 1, agent)[1])
    return docs


def _panel():
    (panel,) = [panel for board in dashboards() for panel in board.panels if panel.title.startswith("Accuracy")]
    return panel


def test_the_accuracy_panel_shows_the_windows_not_the_corrections(es):
    install_templates(es.request)
    es.delete_index(INDEX)
    docs = _docs()
    body = b"".join(b'{"create":{}}\n' + orjson.dumps(doc) + b"\n" for doc in docs)
    status, answer = es.request("POST", f"/{INDEX}/_bulk?refresh=true", body.decode())
    assert status == 200 and not answer["errors"], answer
    window = next(doc for doc in docs if "correction" not in doc["model"]["health"])["model"]["accuracy"]

    status, answer = es.request("POST", f"/{INDEX}/_search", _panel().search())
    assert status == 200, answer
    buckets = answer["aggregations"]["time"]["buckets"]
    assert len(buckets) == 10 and all(bucket["doc_count"] == 1 for bucket in buckets)
    for bucket in buckets:
        assert bucket["m0"]["value"] == pytest.approx(0.9)
        assert bucket["m1"]["value"] == pytest.approx(window["precision_macro"])
        assert bucket["m2"]["value"] == pytest.approx(window["recall_macro"])
    assert 'not model.health.correction : *' in _panel().kql()
