"""The retry decision, as one pure function of a bulk response.

    classify(response, count) -> Decision

    Decision.kind   meaning
    ------------    -------------------------------------------------------
    "ack"           every item is stored: acknowledge all
    "items"         look at Decision.items: each is ACK, DUPLICATE (409 on a
                    create: indexed before, acknowledged), RETRY (429, 5xx,
                    401/403 on an item) or REJECT (mapping/parse errors and
                    other 4xx: retrying cannot help, goes to the dead letters)
    "retry"         retry the whole request (429, 5xx, malformed body)
    "auth"          401/403 on the request: credentials or privileges;
                    retried by the daemon (a rotated key must recover),
                    fatal for --once
    "split"         413: the body is too large; send it in halves
    "reject"        the request itself was refused (other 4xx): every item
                    is rejected with the response's reason

An event that will be retried is never counted as rejected or dropped.

A missing ingest pipeline is not bad input but a cluster not set up yet
(``--parse-at elasticsearch``, or an index template naming a pipeline that
``modelscribe setup pipelines`` has not installed): Elasticsearch answers
each item ``400 illegal_argument_exception: pipeline with id [NAME] does not
exist``. Rejecting those would dead-letter every document until someone
runs setup, so the whole request is retried instead ("retry", with a reason
that names the pipeline and the command), like an outage: the documents
wait in the spool, nothing read is lost, and shipping resumes by itself once
the pipeline exists (items the cluster stored meanwhile come back as
duplicates of their deterministic ``_id``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from agent.outputs.base import Response


class Action(enum.Enum):
    ACK = "ack"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    REJECT = "reject"


@dataclass(frozen=True)
class ItemVerdict:
    position: int
    action: Action
    status: int
    error_type: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    kind: str
    items: tuple[ItemVerdict, ...] = ()
    reason: str = ""


RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Elasticsearch 8.x/9.x (checked on the real node: tests/outputs/test_missing_pipeline.py).
_MISSING_PIPELINE = re.compile(r"pipeline with id \[(.*?)\] does not exist")


def missing_pipeline_reason(name: str) -> str:
    """What the agent says, and logs on every retry, while ``name`` is missing."""
    return (f"ingest pipeline [{name}] does not exist on the cluster: run `modelscribe setup pipelines` "
            "(the index template sends documents through it); the documents wait in the spool and are "
            "retried until it exists, nothing is lost")


def _missing_pipeline(error_type: str | None, reason: str | None) -> str | None:
    """The pipeline's name if an error says it does not exist."""
    if error_type != "illegal_argument_exception" or not reason:
        return None
    found = _MISSING_PIPELINE.search(reason)
    return found.group(1) if found else None


def _error_text(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("type")), str(error.get("reason"))
        if error is not None:
            return None, str(error)
    return None, None


def item_action(status: int, error_type: str | None) -> Action:
    if 200 <= status < 300:
        return Action.ACK
    if status == 409 and error_type in (None, "version_conflict_engine_exception"):
        return Action.DUPLICATE
    if status in RETRY_STATUSES or status in (401, 403):
        return Action.RETRY
    return Action.REJECT


def classify(response: Response, count: int) -> Decision:
    status, body = response.status, response.body
    if status in (401, 403):
        return Decision("auth", reason=_describe(status, body))
    if status == 413:
        return Decision("split", reason="request body too large (413)")
    if status in RETRY_STATUSES or status >= 500:
        return Decision("retry", reason=_describe(status, body))
    if status >= 400:
        missing = _missing_pipeline(*_error_text(body)) if status == 400 else None
        if missing is not None:
            return Decision("retry", reason=missing_pipeline_reason(missing))
        return Decision("reject", reason=_describe(status, body))
    if not isinstance(body, dict):
        return Decision("retry", reason="malformed bulk response: not a JSON object")
    if body.get("errors") is False:
        return Decision("ack")
    items = body.get("items")
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else "no"
        return Decision("retry", reason=f"malformed bulk response: {got} items for {count} documents")
    verdicts = []
    for position, item in enumerate(items):
        result = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        if not isinstance(result, dict) or not isinstance(result.get("status"), int):
            verdicts.append(ItemVerdict(position, Action.RETRY, 0, None, "malformed bulk item"))
            continue
        error_type, reason = _error_text(result)
        item_status = result["status"]
        if item_status == 400:
            missing = _missing_pipeline(error_type, reason)
            if missing is not None:
                return Decision("retry", reason=missing_pipeline_reason(missing))
        verdicts.append(ItemVerdict(position, item_action(item_status, error_type), item_status,
                                    error_type, reason))
    return Decision("items", tuple(verdicts))


def _describe(status: int, body: Any) -> str:
    error_type, reason = _error_text(body)
    if error_type or reason:
        return f"HTTP {status} {error_type}: {reason}"
    return f"HTTP {status}"
