"""``--output null``: acknowledges and discards; measures the agent alone."""

from __future__ import annotations

from typing import Sequence

from agent.events import Event
from agent.outputs.base import all_created, CheckReport, Response


class NullOutput:
    name = "null"

    def send(self, events: Sequence[Event]) -> Response:
        return all_created(events)

    def check(self) -> CheckReport:
        return CheckReport(True, (("null", "ok: documents are discarded"),))

    def close(self) -> None:
        pass

