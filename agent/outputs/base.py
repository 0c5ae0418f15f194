"""The output seam: what every output implements and what it returns.

An output's ``send`` performs ONE attempt and returns the raw outcome
(HTTP status and body for Elasticsearch; an immediate success for local
outputs). It raises only the agent's OutputError subclasses. Deciding what to
retry is ``retry.classify``'s job; looping and backing off is ``sender``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from agent.events import Event


@dataclass(frozen=True)
class Response:
    """One attempt's answer: an HTTP status and decoded JSON body."""

    status: int
    body: Any


@dataclass(frozen=True)
class CheckReport:
    """What ``modelscribe check output`` prints; ``ok`` decides its exit code."""

    ok: bool
    lines: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class Output(Protocol):
    name: str

    def send(self, events: Sequence[Event]) -> Response: ...

    def check(self) -> CheckReport: ...

    def close(self) -> None: ...


_CREATED = {"create": {"status": 201}}


def all_created(events: Sequence[Event]) -> Response:
    """A bulk answer storing each of ``events`` (what local outputs return:
    ``retry.classify`` acknowledges only through one 2xx item per document)."""
    return Response(200, {"errors": False, "items": [_CREATED] * len(events)})
