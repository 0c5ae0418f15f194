"""Seeded data for each rule: a normal scenario and an anomalous one.

Documents are shaped like the producers' (agent/health/documents.py,
agent/self_metrics.py) and timed relative to ``now`` (whole minutes back),
because every engine evaluates its look-back against the current time.
``NORMAL[slug](now)`` / ``ANOMALY[slug](now)`` return the documents; the
anomaly lists include normal data for other groups too, so a rule must
single out the abnormal group rather than fire on any data.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

# All three share one data stream, as the producers write them.
HEALTH_STREAM = DRIFT_STREAM = AGENT_STREAM = "metrics-modelscribe-default"

Doc = tuple[str, dict[str, Any]]  # (data stream, document)


def now_minute() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


def _ts(now: datetime, minutes_ago: float) -> str:
    return (now - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def health(now: datetime, model: str, minutes_ago: float, *, error_rate: float = 0.01, p95: float = 120.0,
           accuracy: float | None = None, requests: int = 200) -> Doc:
    doc: dict[str, Any] = {
        "@timestamp": _ts(now, minutes_ago),
        "event": {"kind": "metric", "dataset": "modelscribe.health", "module": "modelscribe"},
        "model": {"name": model, "version": "1",
                  "health": {"window_seconds": 60, "requests": requests,
                             "errors": round(requests * error_rate), "error_rate": error_rate,
                             "latency": {"p50": p95 / 3, "p95": p95, "p99": p95 * 1.5}}},
    }
    if accuracy is not None:
        doc["model"]["accuracy"] = {"n": 50, "accuracy": accuracy}
    return HEALTH_STREAM, doc


def drift(now: datetime, model: str, feature: str, minutes_ago: float, alert: bool) -> Doc:
    return DRIFT_STREAM, {
        "@timestamp": _ts(now, minutes_ago),
        "event": {"kind": "metric", "dataset": "modelscribe.drift", "module": "modelscribe"},
        "model": {"name": model, "feature": {"name": feature, "role": "feature"},
                  "drift": {"window_seconds": 60, "psi": 0.4 if alert else 0.02,
                            "js": 0.2 if alert else 0.01, "alert": alert}},
    }


def agent(now: datetime, agent_id: str, minutes_ago: float, *, lag: int, acked: int,
          ack_age: float | None, dead: int = 0) -> Doc:
    figures: dict[str, Any] = {"interval_seconds": 60, "lines_read": acked, "events_acknowledged": acked,
                               "events_retried": 0, "dead_letters": dead, "spool_bytes": 0,
                               "file_lag_bytes": lag}
    if ack_age is not None:
        figures["last_ack_age_seconds"] = ack_age
    return AGENT_STREAM, {
        "@timestamp": _ts(now, minutes_ago),
        "event": {"kind": "metric", "dataset": "modelscribe.agent", "module": "modelscribe"},
        "host": {"name": f"host-{agent_id}"}, "agent": {"id": agent_id, "name": "modelscribe"},
        "modelscribe": {"agent": figures},
    }


def _steady(now: datetime, model: str, minutes: int, **figures: Any) -> list[Doc]:
    return [health(now, model, m, **figures) for m in range(minutes, 0, -1)]


def _alert_doc(now: datetime) -> Doc:
    # The agent's own edge alert: same dataset, event.kind alert; no rule may count it.
    stream, doc = health(now, "m-steady", 1, error_rate=0.9, p95=5000.0, accuracy=0.1)
    doc["event"]["kind"] = "alert"
    return stream, doc


# ------------------------------------------------------------------ scenarios

def spike_normal(now: datetime) -> list[Doc]:
    return (_steady(now, "m-steady", 70, error_rate=0.02)
            + _steady(now, "m-clean", 70, error_rate=0.0)
            # high but its own usual level: 0.10 -> 0.12 is no spike
            + [health(now, "m-noisy", m, error_rate=0.10 if m > 10 else 0.12) for m in range(70, 0, -1)]
            + [_alert_doc(now)])


def spike_anomaly(now: datetime) -> list[Doc]:
    return spike_normal(now) + [health(now, "m-spike", m, error_rate=0.01 if m > 10 else 0.20)
                                for m in range(70, 0, -1)]


def latency_normal(now: datetime) -> list[Doc]:
    return [health(now, "m-steady", m, p95=100.0 + 10 * (m % 20)) for m in range(30, 0, -1)] + [_alert_doc(now)]


def latency_anomaly(now: datetime) -> list[Doc]:
    return latency_normal(now) + [health(now, "m-slow", m, p95=900.0 if m == 3 else 150.0)
                                  for m in range(30, 0, -1)]


def drift_normal(now: datetime) -> list[Doc]:
    docs = [drift(now, "m-steady", "age", m, alert=False) for m in range(20, 0, -1)]
    # two windows out of the last five: not persistent
    docs += [drift(now, "m-steady", "income", m, alert=m in (2, 4)) for m in range(20, 0, -1)]
    return docs


def drift_anomaly(now: datetime) -> list[Doc]:
    return drift_normal(now) + [drift(now, "m-drifting", "country", m, alert=m <= 3) for m in range(20, 0, -1)]


def accuracy_normal(now: datetime) -> list[Doc]:
    return ([health(now, "m-steady", m, accuracy=0.93 if m % 5 == 0 else None) for m in range(40, 0, -1)]
            + [_alert_doc(now)])


def accuracy_anomaly(now: datetime) -> list[Doc]:
    return accuracy_normal(now) + [health(now, "m-worse", m, accuracy=0.62) for m in range(40, 0, -5)]


def absent_normal(now: datetime) -> list[Doc]:
    return _steady(now, "m-steady", 60)


def absent_anomaly(now: datetime) -> list[Doc]:
    return absent_normal(now) + absent_alone(now)


def absent_alone(now: datetime) -> list[Doc]:
    # Only the silent model: what the ungrouped Kibana form can detect.
    return [health(now, "m-gone", m) for m in range(60, 20, -1)]


def spike_without_noisy(now: datetime) -> list[Doc]:
    return [doc for doc in spike_normal(now) if doc[1]["model"]["name"] != "m-noisy"]


def spike_anomaly_without_noisy(now: datetime) -> list[Doc]:
    return [doc for doc in spike_anomaly(now) if doc[1]["model"]["name"] != "m-noisy"]


def stalled_normal(now: datetime) -> list[Doc]:
    busy = [agent(now, "a-busy", m, lag=50_000, acked=900, ack_age=3.0) for m in range(15, 0, -1)]
    # idle: nothing to read, nothing acknowledged for long - not stalled
    idle = [agent(now, "a-idle", m, lag=0, acked=0, ack_age=3600.0 + 60 * (15 - m)) for m in range(15, 0, -1)]
    return busy + idle


def stalled_anomaly(now: datetime) -> list[Doc]:
    stuck = [agent(now, "a-stuck", m, lag=80_000, acked=0, ack_age=60.0 * (16 - m)) for m in range(15, 0, -1)]
    return stalled_normal(now) + stuck


def dead_normal(now: datetime) -> list[Doc]:
    return [agent(now, "a-busy", m, lag=0, acked=900, ack_age=3.0) for m in range(15, 0, -1)]


def dead_anomaly(now: datetime) -> list[Doc]:
    return dead_normal(now) + [agent(now, "a-rejecting", m, lag=0, acked=900, ack_age=3.0,
                                     dead=4 if m == 2 else 0) for m in range(15, 0, -1)]


Scenario = Callable[[datetime], list[Doc]]
NORMAL: dict[str, Scenario] = {
    "error-rate-spike": spike_normal, "latency-p95-high": latency_normal, "drift-persistent": drift_normal,
    "accuracy-drop": accuracy_normal, "model-no-data": absent_normal, "agent-stalled": stalled_normal,
    "dead-letters-growing": dead_normal}
ANOMALY: dict[str, Scenario] = {
    "error-rate-spike": spike_anomaly, "latency-p95-high": latency_anomaly, "drift-persistent": drift_anomaly,
    "accuracy-drop": accuracy_anomaly, "model-no-data": absent_anomaly, "agent-stalled": stalled_anomaly,
    "dead-letters-growing": dead_anomaly}
# Where the Kibana form is an approximation (kibana_rules' docstring), the
# scenario it can tell apart; test_kibana_rules also shows the limit itself.
KIBANA_NORMAL = {**NORMAL, "error-rate-spike": spike_without_noisy}
KIBANA_ANOMALY = {**ANOMALY, "model-no-data": absent_alone, "error-rate-spike": spike_anomaly_without_noisy}
# The group each anomaly must be reported for.
ABNORMAL_GROUP = {
    "error-rate-spike": "m-spike", "latency-p95-high": "m-slow", "drift-persistent": "country",
    "accuracy-drop": "m-worse", "model-no-data": "m-gone", "agent-stalled": "a-stuck",
    "dead-letters-growing": "a-rejecting"}


# ------------------------------------------- label documents, as the agent writes them

def labelled(now: datetime, model: str, minutes_ago: float, right: int, wrong: int, correction: int = 0) -> Doc:
    """A health window with `right` + `wrong` labelled requests, or (``correction``
    N) the correction document of late labels for that window: made by the agent's
    own producers (agent.health.documents), so the fields are the real ones."""
    from agent.health.documents import correction_document, window_document
    from agent.health.state import LabelState, WindowState
    from agent.health.windows import ModelKey

    start = (now - timedelta(minutes=minutes_ago)).timestamp()
    key, agent_fields = ModelKey(model, "1"), {"id": "agent-labels", "name": "modelscribe"}
    labels = LabelState()
    for n in range(right + wrong):
        labels.add("a", "a" if n < right else "b")
    if correction:
        _, doc = correction_document(key, start, 60, labels, correction, agent_fields)
    else:
        state = WindowState()
        state.requests, state.labels = right + wrong, labels
        _, doc = window_document(key, start, 60, state, 0, agent_fields)
    return HEALTH_STREAM, doc


def late_labels(now: datetime) -> list[Doc]:
    """Audit 3, finding 1, both ways.

    m-acc: 29 windows of 20 labels, 18 right (0.90); 6 of them get one more label,
    late and wrong (a correction of accuracy 0.0, n 1). Pooled 522 / 586 = 0.891,
    windows 0.90: no alert (a mean over documents gave 0.746 and fired).
    m-drop: 10 windows of 20 labels, 15 right (0.75), each with a correction of
    one late right label (1.0, n 1). Pooled 160 / 210 = 0.762, windows 0.75: an
    alert (a mean over documents gave 0.875 and stayed quiet).
    m-steady: 0.95 throughout."""
    docs = [labelled(now, "m-acc", m, 18, 2) for m in range(29, 0, -1)]
    docs += [labelled(now, "m-acc", m, 0, 1, correction=1) for m in range(25, 14, -2)]
    docs += [labelled(now, "m-drop", m, 15, 5) for m in range(20, 10, -1)]
    docs += [labelled(now, "m-drop", m, 1, 0, correction=1) for m in range(20, 10, -1)]
    docs += [labelled(now, "m-steady", m, 19, 1) for m in range(29, 0, -1)]
    return docs + [_alert_doc(now)]


def uneven_windows(now: datetime) -> list[Doc]:
    """m-big: one window of 200 labels at 0.90 and two of 2 labels at 0.0. Pooled
    180 / 204 = 0.882 (no alert); the mean of the three windows is 0.30."""
    return [labelled(now, "m-big", 5, 180, 20), labelled(now, "m-big", 4, 0, 2), labelled(now, "m-big", 3, 0, 2)]
