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

Nothing half-installed goes unsaid: an error raised once some objects were
handled leaves as ``SetupInterrupted``, which carries their Actions
(``recording`` attaches them at each level), so the command prints them,
then a line saying the run stopped, then the error.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from agent.errors import AuthError, ModelscribeError, PermanentOutputError, TransientOutputError

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


class SetupInterrupted(ModelscribeError):
    """A setup run stopped by `cause` after handling the objects of `done`
    (written, found up to date or skipped, in order). `cluster`: what
    detection found, when it ran (agent.setup.install sets it). The message
    and the exit code are the cause's."""

    def __init__(self, cause: ModelscribeError, done: list[Action], cluster: Any = None) -> None:
        super().__init__(str(cause))
        self.cause, self.done, self.cluster = cause, list(done), cluster
        self.exit_code = cause.exit_code


@contextmanager
def recording(done: list[Action]) -> Iterator[None]:
    """An error raised inside leaves carrying the actions of `done` before
    those an inner step attached; with none at all it leaves unchanged."""
    try:
        yield
    except SetupInterrupted as error:
        raise SetupInterrupted(error.cause, done + error.done, error.cluster) from error.cause
    except ModelscribeError as error:
        if not done:
            raise
        raise SetupInterrupted(error, done) from error


def format_actions(actions: list[Action], dry_run: bool = False,
                   stopped: ModelscribeError | None = None) -> list[str]:
    """The lines ``modelscribe setup`` prints: one per object, then a summary
    (with `stopped`, the error that ended the run early: what it left done)."""
    lines = [f"{action.what} {action.name}: {action.outcome}"
             + (f" ({action.detail})" if action.detail else "") for action in actions]
    counts: dict[str, int] = {}
    for action in actions:
        counts[action.outcome] = counts.get(action.outcome, 0) + 1
    summary = ", ".join(f"{count} {name}" for name, count in counts.items()) or "nothing to do"
    if stopped is not None:
        lines.append(_stopped(actions, dry_run, summary, stopped))
    elif dry_run:
        lines.append(f"dry run: nothing was written ({summary})")
    elif not any(action.outcome in WRITES for action in actions):
        lines.append(f"up to date ({summary})")
    else:
        lines.append(f"done ({summary})")
    return lines


def _stopped(actions: list[Action], dry_run: bool, summary: str, error: ModelscribeError) -> str:
    written = sum(1 for action in actions if action.outcome in WRITES)
    counted = f" ({summary})" if actions else ""
    if dry_run:
        return f"dry run stopped by the error below: nothing was written{counted}"
    # A request that timed out or lost its connection may have been applied.
    unsure = ", unless the request that failed was applied first" if isinstance(error, TransientOutputError) else ""
    if not written:
        return f"stopped by the error below: nothing was written{unsure}{counted}"
    return (f"incomplete: stopped by the error below after writing {written} object{'s' if written > 1 else ''}"
            f"{counted}; nothing else was written{unsure}")


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
