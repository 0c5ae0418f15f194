"""``--output console``: each final document as one JSON line on stdout."""

from __future__ import annotations

import sys
from typing import BinaryIO, Sequence

from agent.events import Event
from agent.outputs.base import all_created, CheckReport, Response


class ConsoleOutput:
    name = "console"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream or sys.stdout.buffer

    def send(self, events: Sequence[Event]) -> Response:
        self._stream.write(b"".join(event.data + b"\n" for event in events))
        self._stream.flush()
        return all_created(events)

    def check(self) -> CheckReport:
        return CheckReport(True, (("console", "ok: documents go to standard output"),))

    def close(self) -> None:
        pass
