"""``--output file:PATH``: appends each final document as one NDJSON line —
byte for byte what would be sent to Elasticsearch as the bulk source.

A batch is acknowledged after its lines are written and fsynced, so a crash
after the acknowledgement cannot lose them. (A crash between write and
acknowledgement may repeat lines on the next run; unlike Elasticsearch a file
cannot refuse a duplicate ``_id``.)
"""

from __future__ import annotations

import os
from typing import Sequence

from agent.errors import PermanentOutputError
from agent.events import Event
from agent.outputs.base import all_created, CheckReport, Response


class FileOutput:
    name = "file"

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as error:
                raise PermanentOutputError(f"--output file:{self._path}: cannot open: "
                                           f"{error.strerror}") from error
        return self._fd

    def send(self, events: Sequence[Event]) -> Response:
        body = b"".join(event.data + b"\n" for event in events)
        fd = self._open()
        try:
            view = memoryview(body)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as error:
            raise PermanentOutputError(f"--output file:{self._path}: write failed: {error.strerror}") from error
        return all_created(events)

    def preflight(self) -> None:
        self._open()

    def check(self) -> CheckReport:
        try:
            self._open()
        except PermanentOutputError as error:
            return CheckReport(False, (("file", f"FAILED: {error}"),))
        return CheckReport(True, (("file", f"ok: appending to {self._path}"),))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
