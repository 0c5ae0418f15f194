"""Sampling of successful request events (--sample RATE).

Only a *successful request* can be sampled out: an event with request fields
(``http.request.method``, ``http.response.status_code``, ``url.path``,
``model.request_id``, ``model.operation``, ``gen_ai.request.id``) and no sign
of trouble. Always kept: errors and warnings (``log.level`` error, warn,
warning, critical, fatal...), ``event.outcome: failure``, HTTP status >= 400,
anything with an ``error`` object, metrics (``event.kind: metric``) and every
non-request event (start-up, configuration, tracebacks...).

The decision MUST be a pure function of the document id: after a crash the
same lines are read again with the same ids and are kept or dropped again,
which is what exactly-once delivery across restarts relies on. The id is
hashed (BLAKE2b, 64 bits) so the decision does not depend on how ids are made.

A kept sampled event carries ``model.sample_rate`` = RATE: the true count of
such events is the sum of ``1 / model.sample_rate`` (1 when absent).
"""

from __future__ import annotations

import hashlib
from typing import Any

_TROUBLE_LEVELS = frozenset({"error", "err", "warn", "warning", "critical", "crit", "fatal", "panic",
                             "alert", "emerg", "emergency", "severe"})
_REQUEST_MARKERS = (("http", "request"), ("http", "response"), ("url", "path"),
                    ("model", "request_id"), ("model", "operation"), ("gen_ai", "request"))


def unit(doc_id: str) -> float:
    """The id's position in [0, 1): uniform, stable across runs and machines."""
    digest = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def is_successful_request(doc: dict[str, Any]) -> bool:
    """True when ``doc`` is a request event with no sign of failure (sampleable)."""
    if doc.get("error"):
        return False
    log = doc.get("log")
    if type(log) is dict:
        level = log.get("level")
        if type(level) is str and level.lower() in _TROUBLE_LEVELS:
            return False
    event = doc.get("event")
    if type(event) is dict:
        if event.get("kind") == "metric" or event.get("outcome") == "failure":
            return False
    http = doc.get("http")
    if type(http) is dict:
        response = http.get("response")
        if type(response) is dict:
            status = response.get("status_code")
            try:
                if status is not None and int(status) >= 400:
                    return False
            except (TypeError, ValueError):
                return False  # an unreadable status: keep the event rather than guess
    for parent, child in _REQUEST_MARKERS:
        node = doc.get(parent)
        if type(node) is dict and node.get(child) is not None:
            return True
    return False


class Sampler:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._threshold = int(rate * 2 ** 64)

    def keep(self, doc: dict[str, Any], doc_id: str) -> bool | None:
        """False: drop. True: kept by sampling (mark it). None: not sampleable, kept as is."""
        if not is_successful_request(doc):
            return None
        digest = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self._threshold

    def mark(self, doc: dict[str, Any]) -> None:
        model = doc.get("model")
        doc["model"] = {**model, "sample_rate": self.rate} if type(model) is dict \
            else {"sample_rate": self.rate}
