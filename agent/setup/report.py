"""The per-object report of ``modelscribe setup``, and the errors of talking to the cluster.

Every setup step (templates, pipelines, lifecycle) returns one ``Action`` per
object it considered: created, updated, unchanged, skipped (always with the
reason), deleted (``--cleanup``) or, in a dry run, would-create /
would-update / would-delete. ``format_actions`` turns them into the lines
the command prints; nothing else in the package prints.

``check`` is the one place where an HTTP error status of a setup request
becomes the agent's exception tree: 401/403 an ``AuthError`` naming the
privilege the request needs, 429/5xx a TransientOutputError, anything else a
PermanentOutputError carrying every ``reason`` of the error body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from agent.errors import AuthError, PermanentOutputError, TransientOutputError

# request(method, path, body) -> (status, parsed JSON body); error statuses
# are returned, not raised. tests/conftest.py's helper has this shape; for
# ElasticsearchOutput use templates.requester().
Request = Callable[[str, str, Any], "tuple[int, Any]"]

# Outcomes of an Action.
CREATED, UPDATED, UNCHANGED, SKIPPED, DELETED = "created", "updated", "unchanged", "skipped", "deleted"
WOULD_CREATE, WOULD_UPDATE, WOULD_DELETE = "would-create", "would-update", "would-delete"
WRITES = frozenset({CREATED, UPDATED, DELETED})


@dataclass(frozen=True)
class Action:
    """What setup did (or, in a dry run, would do) to one object."""

    what: str  # "component template", "index template", "ingest pipeline", "ILM policy"...
    name: str
    outcome: str  # one of the outcomes above
    detail: str = ""


def outcome(step: str, dry_run: bool) -> str:
    """The outcome of a planned "create" / "update" / "delete" step."""
    if dry_run:
        return {"create": WOULD_CREATE, "update": WOULD_UPDATE, "delete": WOULD_DELETE}[step]
    return {"create": CREATED, "update": UPDATED, "delete": DELETED}[step]


def format_actions(actions: list[Action], dry_run: bool = False) -> list[str]:
    """The lines ``modelscribe setup`` prints: one per object, then a summary."""
    lines = [f"{action.what} {action.name}: {action.outcome}"
             + (f" ({action.detail})" if action.detail else "") for action in actions]
    counts: dict[str, int] = {}
    for action in actions:
        counts[action.outcome] = counts.get(action.outcome, 0) + 1
    summary = ", ".join(f"{count} {name}" for name, count in counts.items()) or "nothing to do"
    if dry_run:
        lines.append(f"dry run: nothing was written ({summary})")
    elif not any(action.outcome in WRITES for action in actions):
        lines.append(f"up to date ({summary})")
    else:
        lines.append(f"done ({summary})")
    return lines


def reason(body: Any) -> str:
    """Every ``reason`` in an error body, outermost first."""
    reasons = []
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error
    while isinstance(error, dict):
        if error.get("reason"):
            reasons.append(str(error["reason"]))
        error = error.get("caused_by")
    return ": ".join(reasons) if reasons else str(body)[:500]


def check(status: int, body: Any, doing: str, privilege: str) -> None:
    """Raise for an error status of a request made while `doing` something
    that needs `privilege` (named in the message of a 403)."""
    if status < 300:
        return
    why = reason(body)
    if status == 401:
        raise AuthError(f"{doing}: the cluster refused the credentials (HTTP 401): {why}")
    if status == 403:
        raise AuthError(f"{doing}: the credentials lack the {privilege} privilege (HTTP 403): {why}")
    if status == 429 or status >= 500:
        raise TransientOutputError(f"{doing}: HTTP {status}: {why}")
    raise PermanentOutputError(f"{doing}: HTTP {status}: {why}")
