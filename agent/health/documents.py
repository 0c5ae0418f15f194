"""Health documents: a closed window, its drift per feature, a correction, an alert.

Every document goes to the metrics data stream (``metrics-modelscribe-<ns>``,
matched by the ``metrics-modelscribe-*`` index template), with
``@timestamp`` = window start, ``event.kind: metric`` (``alert`` for alerts),
and ``event.dataset``:

- ``modelscribe.health``: one per model and window — ``model.health.*``
  (requests, errors, error_rate, late, latency percentiles and the
  ``histogram`` field, tokens, labelled counts) and ``model.accuracy.*`` /
  ``model.regression.*`` for the labels joined while the window was open
  (``confusion`` and ``per_class`` keyed by ``class_key``: one key per pair
  and per class, so the confusion counts add up to ``n``);
  a correction (``model.health.correction`` = 1, 2, ...) carries only the
  labels that arrived after the window was due, so sums over a window's
  documents are right;
- ``modelscribe.drift``: one per model, window and feature (and one for the
  prediction, ``model.feature.name: prediction``, ``model.feature.role:
  prediction``) — bin counts, quality counts, PSI, JS distance, alert flag.

Ids are deterministic (``document_id``): model key + window start [+ feature]
[+ correction number] [+ alert rule and transition], so a window emitted
twice (a replay after a crash) is a 409 on create, never a double count.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from typing import Any, Sequence

import orjson

from agent.enrich import format_timestamp
from agent.health.drift import FeatureCounts, homogeneity_p_value, js_distance, psi
from agent.health.state import LabelState, WindowState
from agent.health.windows import ModelKey

HEALTH_DATASET = "modelscribe.health"
DRIFT_DATASET = "modelscribe.drift"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def document_id(*parts: Any) -> str:
    """20 URL-safe characters from the parts (the length of Elasticsearch's ids)."""
    text = "\u001f".join("" if p is None else str(p) for p in ("health", *parts))
    digest = hashlib.blake2b(text.encode(), digest_size=15).digest()
    return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).decode("ascii")


def _base(key: ModelKey, start: float, kind: str, dataset: str, agent: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"@timestamp": format_timestamp(start),
                           "event": {"kind": kind, "dataset": dataset},
                           "model": {"name": key.model}, "agent": agent}
    if key.version:
        doc["model"]["version"] = key.version
    if key.service:
        doc["service"] = {"name": key.service}
    if key.host:
        doc["host"] = {"name": key.host}
    return doc


_CLASS_ESCAPES = {"%": "%25", ".": "%2E", "_": "%5F"}
_CLASS_SPECIAL = re.compile(r"%|\.|^_|_$|_(?=_)|(?<=_)_")


def class_key(name: str) -> str:
    """A class name as a part of a ``per_class`` or ``confusion`` key: itself,
    unless it holds ``%``, ``.`` (a dot in a key of a ``children`` object would
    become a sub-object in the mapping), or ``_`` at its start, its end or next
    to another ``_``; those are written ``%25``, ``%2E``, ``%5F``. Injective, and
    never starting, ending or holding ``__``, so ``TRUE__PREDICTED`` and
    ``CLASS__FIGURE`` name one pair or class each (``a.b`` and ``a_b``, or
    ``x__y``+``z`` and ``x``+``y__z``, are different keys)."""
    if "%" not in name and "." not in name and "_" not in name:
        return name  # (the usual class name)
    return _CLASS_SPECIAL.sub(lambda match: _CLASS_ESCAPES[match.group()], name)


def label_fields(labels: LabelState, requests: int | None) -> dict[str, Any]:
    """``model.accuracy.*`` / ``model.regression.*`` and the labelled counts."""
    out: dict[str, Any] = {}
    counts = labels.classification
    metrics = counts.metrics() if counts is not None else None
    if metrics is not None and counts is not None:
        out["accuracy"] = {
            "n": metrics.n, "accuracy": metrics.accuracy, "precision_macro": metrics.macro_precision,
            "recall_macro": metrics.macro_recall, "f1_macro": metrics.macro_f1,
            "per_class": {f"{class_key(name)}__{figure}": value for name, m in sorted(metrics.per_class.items())
                          for figure, value in (("precision", m.precision), ("recall", m.recall), ("f1", m.f1),
                                                ("support", m.support))},
            "confusion": {f"{class_key(true)}__{class_key(predicted)}": n
                          for (true, predicted), n in sorted(counts.pairs.items())}}
    if labels.regression is not None and labels.regression.n:
        reg = labels.regression
        out["regression"] = {"n": reg.n, "mae": reg.mae, "rmse": reg.rmse, "sum_abs_error": reg.sum_abs,
                             "sum_squared_error": reg.sum_sq}
    health: dict[str, Any] = {"labelled": labels.labelled, "labels_unusable": labels.unusable,
                              "labels_capped": labels.capped}
    if requests:
        health["labelled_share"] = labels.labelled / requests
    out["health"] = health
    return out


def window_document(key: ModelKey, start: float, window_seconds: float, state: WindowState, late: int,
                    agent: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    doc = _base(key, start, "metric", HEALTH_DATASET, agent)
    labels = label_fields(state.labels, state.requests)
    health: dict[str, Any] = {
        "window_seconds": window_seconds, "requests": state.requests, "errors": state.errors,
        "error_rate": state.errors / state.requests if state.requests else 0.0, "late": late,
        "bad_latency": state.bad_latency, "no_prediction": state.no_prediction,
        "labels_unmatched": state.unmatched_labels, "features_capped": state.features_capped,
        **labels.pop("health")}
    if state.latency.count:
        latency: dict[str, Any] = {name: state.latency.percentile(q) for name, q in PERCENTILES}
        latency["count"] = state.latency.count
        latency["histogram"] = state.latency.to_es()
        health["latency"] = latency
    if state.input_tokens or state.output_tokens:
        health["tokens"] = {"input": state.input_tokens, "output": state.output_tokens}
    doc["model"]["health"] = health
    doc["model"].update(labels)
    return document_id(*key.to_list(), start), doc


def correction_document(key: ModelKey, start: float, window_seconds: float, labels: LabelState, number: int,
                        agent: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    doc = _base(key, start, "metric", HEALTH_DATASET, agent)
    fields = label_fields(labels, None)
    doc["model"]["health"] = {"window_seconds": window_seconds, "correction": number, **fields.pop("health")}
    doc["model"].update(fields)
    return document_id(*key.to_list(), start, "correction", number), doc


def drift_document(key: ModelKey, start: float, window_seconds: float, name: str, role: str,
                   counts: FeatureCounts, expected: Sequence[int] | None, reference: str, psi_threshold: float,
                   js_threshold: float, agent: dict[str, Any], drift_p: float = 1.0) -> tuple[str, dict[str, Any], bool]:
    """The drift document of one feature (or the prediction); also whether it alerts:
    PSI or JS above its threshold, and the difference more than sampling noise
    (``homogeneity_p_value`` below ``drift_p``; 1 asks nothing of it)."""
    doc = _base(key, start, "metric", DRIFT_DATASET, agent)
    drift: dict[str, Any] = {"window_seconds": window_seconds, "reference": reference, "count": counts.total,
                             "bin_labels": counts.bins.labels, "bin_counts": list(counts.counts)}
    alert = False
    if expected is not None and counts.total and sum(expected):
        drift["psi"] = psi(expected, counts.counts)
        drift["js"] = js_distance(expected, counts.counts)
        drift["p_value"] = homogeneity_p_value(expected, counts.counts)
        alert = ((drift["psi"] > psi_threshold or drift["js"] > js_threshold)
                 and (drift_p >= 1.0 or drift["p_value"] < drift_p))
    drift["alert"] = alert
    doc["model"]["feature"] = {"name": name, "role": role, "kind": counts.bins.kind}
    doc["model"]["drift"] = drift
    doc["model"]["quality"] = counts.quality()
    return document_id(*key.to_list(), start, role, name), doc, alert


def alert_document(key: ModelKey, start: float, rule: str, started: bool, value: float | None,
                   threshold: float | None, agent: dict[str, Any], detail: str = "") -> tuple[str, dict[str, Any]]:
    doc = _base(key, start, "alert", HEALTH_DATASET, agent)
    state = "started" if started else "recovered"
    doc["event"]["action"] = f"health_alert_{state}"
    doc["model"]["alert"] = {"rule": rule, "state": state, "value": value, "threshold": threshold}
    doc["message"] = (f"model {key.model}: {rule} {'crossed' if started else 'back within'} its threshold "
                      f"({value if value is not None else '-'} vs {threshold}){detail}")
    return document_id(*key.to_list(), start, "alert", rule, state), doc


def serialise(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)
