"""The retry decision, as one pure function of a bulk response.

    classify(response, count, ids) -> Decision

    Decision.kind   meaning
    ------------    -------------------------------------------------------
    "ack"           every item is stored (each item says so; ``errors:
                    false`` alone is not believed): acknowledge all
    "items"         look at Decision.items: each is ACK, DUPLICATE (409 on a
                    create: indexed before, acknowledged), RETRY (429, 5xx,
                    401/403 on an item, and the target's state: see
                    ``target_problem``) or REJECT (mapping/parse errors and
                    other 4xx: retrying cannot help, goes to the dead letters)
    "retry"         retry the whole request (429, 5xx, a malformed body or
                    items that do not answer the documents sent, one by
                    one and in order; a redirect or a 4xx that is not
                    Elasticsearch refusing the documents: see below)
    "auth"          401/403 on the request: credentials or privileges;
                    retried by the daemon (a rotated key must recover),
                    fatal for --once
    "split"         413: the body is too large; send it in halves
    "reject"        Elasticsearch refused the request itself (400 with an
                    Elasticsearch error body): every item is rejected
                    with the response's reason

An event that will be retried is never counted as rejected or dropped.

Only a 2xx answer can acknowledge, and only through its items: the bulk
filter keeps each item's status and ``_id``, so ``classify`` checks that
there is one item per document sent, in order (``ids``), each with a 2xx
status, before it says "ack". A proxy or a broken server answering
``{"errors": false}`` without items, fewer items, or items of other ids
gets the request retried (a document stored meanwhile comes back as a 409
duplicate of its ``_id``), never acknowledged unseen.

Redirects (3xx) and 4xx answers other than 400, 401, 403 and 413 (404,
405, 407, 409 on the request, ...) are not Elasticsearch judging the
documents: a wrong ``--es-url`` path, a proxy. Nor is a 400 whose body is
not an Elasticsearch error object (``no handler found for uri``: a wrong
path). Nor are the item errors that say the target cannot take documents
now (``target_problem``: an index missing with ``action.auto_create_index``
off, a closed index, an alias without a write index; the real node answers
those per item, not on the request). Dead-lettering the whole stream for
them would move every file's offset on; they are retried with a reason that
says what to check, like an outage. An item refused for a missing
privilege (``403 security_exception``, ``refused_privilege``) is the
credentials' problem, as a 401/403 on the request: retried by the daemon,
fatal for --once.

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
from typing import Any, Sequence

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


def too_large_reason(event_data: bytes, doc_id: str, target: str | None) -> str:
    """What is said of one document a node (or a proxy) refuses as too large
    (413) even alone: its size as sent and the limits to raise."""
    size = len(event_data) + len(doc_id) + len(target or "") + 40  # (and its bulk action line)
    return (f"request body too large (413) for this one document alone: {size} bytes in the bulk request, "
            "before any gzip (the node's limit applies to the decompressed body); raise the node's "
            "http.max_content_length (default 100mb) or the body limit of a proxy in front of it (nginx: "
            "client_max_body_size)")


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


def target_problem(error_type: str | None, reason: str | None) -> str | None:
    """What to do about an item error that says the target cannot take
    documents now (it says nothing of the documents), or None. Checked on
    Elasticsearch 9.2.8: with ``action.auto_create_index: false`` a bulk
    request into a missing index is answered 200 with ``404
    index_not_found_exception`` on each item, a closed index ``400
    index_closed_exception``, an alias without a write index ``400
    illegal_argument_exception: no write index is defined for alias``."""
    if error_type == "index_not_found_exception":
        return ("the target index does not exist and the cluster does not create indices "
                "(action.auto_create_index): create it, or install the templates (`modelscribe setup "
                "templates`) and allow auto-creation of the target")
    if error_type == "index_closed_exception":
        return "the target index is closed: open it (POST <index>/_open)"
    if error_type == "illegal_argument_exception" and reason and "no write index is defined" in reason:
        return "the target alias has no write index: mark one (is_write_index: true)"
    return None


def item_action(status: int, error_type: str | None, reason: str | None = None) -> Action:
    if 200 <= status < 300:
        return Action.ACK
    if status == 409 and error_type in (None, "version_conflict_engine_exception"):
        return Action.DUPLICATE
    if status in RETRY_STATUSES or status in (401, 403):
        return Action.RETRY
    if target_problem(error_type, reason) is not None:
        return Action.RETRY
    return Action.REJECT


def refused_privilege(verdict: "ItemVerdict") -> bool:
    """An item refused for want of a privilege (not a cluster block, also a
    403): the credentials' problem, as a 401/403 on the request is."""
    return verdict.status in (401, 403) and verdict.error_type == "security_exception"


def retry_reason(verdict: "ItemVerdict") -> str:
    """Why an item is retried, and what to check, for the log and ``status``."""
    problem = target_problem(verdict.error_type, verdict.reason)
    if verdict.status == 0:
        return "malformed items"
    described = _describe_error(verdict.status, verdict.error_type, verdict.reason)
    return f"{described} ({problem})" if problem else described


def classify(response: Response, count: int, ids: Sequence[str] | None = None) -> Decision:
    """The decision on ``response`` to a bulk request of ``count`` documents
    (``ids``: their ``_id`` in the order sent; items that name another
    ``_id`` at their position make the request retried)."""
    status, body = response.status, response.body
    if status in (401, 403):
        return Decision("auth", reason=_describe(status, body))
    if status == 413:
        return Decision("split", reason="request body too large (413)")
    if status in RETRY_STATUSES or status >= 500:
        return Decision("retry", reason=_describe(status, body))
    if 300 <= status < 400:
        return Decision("retry", reason=f"HTTP {status}: a redirect, which the agent does not follow; "
                                        "point --es-url at the cluster itself")
    if status == 400:
        missing = _missing_pipeline(*_error_text(body))
        if missing is not None:
            return Decision("retry", reason=missing_pipeline_reason(missing))
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return Decision("reject", reason=_describe(status, body))
    if not 200 <= status < 300:
        return Decision("retry", reason=f"{_describe(status, body)}: not Elasticsearch refusing the documents "
                                        "(check --es-url, a proxy, or that the target index exists)")
    if not isinstance(body, dict):
        return Decision("retry", reason="malformed bulk response: not a JSON object")
    items = body.get("items")
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else "no"
        return Decision("retry", reason=f"malformed bulk response: {got} items for {count} documents")
    if body.get("errors") is False and _all_stored(items, ids):
        return Decision("ack")
    verdicts = []
    for position, item in enumerate(items):
        result = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        if not isinstance(result, dict) or not isinstance(result.get("status"), int):
            verdicts.append(ItemVerdict(position, Action.RETRY, 0, None, "malformed bulk item"))
            continue
        if ids is not None and "_id" in result and result["_id"] != ids[position]:
            return Decision("retry", reason=f"malformed bulk response: item {position} answers _id "
                                            f"{str(result['_id'])[:80]!r}, sent {ids[position]!r} there")
        error_type, reason = _error_text(result)
        item_status = result["status"]
        if item_status == 400:
            missing = _missing_pipeline(error_type, reason)
            if missing is not None:
                return Decision("retry", reason=missing_pipeline_reason(missing))
        verdicts.append(ItemVerdict(position, item_action(item_status, error_type, reason), item_status,
                                    error_type, reason))
    return Decision("items", tuple(verdicts))


def _all_stored(items: list[Any], ids: Sequence[str] | None) -> bool:
    """Every item a 2xx of the document sent at its position (the usual
    answer, checked without a verdict per item)."""
    for position, item in enumerate(items):
        result = next(iter(item.values()), None) if item.__class__ is dict and item else None
        if result.__class__ is not dict:
            return False
        status = result.get("status")
        if status.__class__ is not int or not 200 <= status < 300:
            return False
        if ids is not None and result.get("_id", ids[position]) != ids[position]:
            return False
    return True


def _describe(status: int, body: Any) -> str:
    return _describe_error(status, *_error_text(body))


def _describe_error(status: int, error_type: str | None, reason: str | None) -> str:
    if error_type and reason:
        return f"HTTP {status} {error_type}: {reason}"
    if error_type or reason:  # (a plain-text error: "no handler found for uri [...]")
        return f"HTTP {status}: {error_type or reason}"
    return f"HTTP {status}"
