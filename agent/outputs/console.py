"""``--output console``: each final document as one JSON line on stdout.

Guarantees:

- A batch is acknowledged once its lines were handed to stdout and flushed.
- A closed stdout (``modelscribe run --output console | head -1``: EPIPE) is
  no output failure to retry: it stops the agent. The batch that found it
  closed raises ``StdoutClosed("stdout was closed; stopping")``, which the
  batcher reports as the death of the output stage, so the agent stops with
  exit code 1, keeping what was acknowledged committed. A reader that goes
  away is expected, not a bug: it is logged once, as one line without a
  traceback (``a stage died; stopping the agent stage=output error="stdout
  was closed; stopping"``). Every later batch is
  refused (``Aborted``: neither sent, nor acknowledged, nor logged again), so
  a closed pipe is reported once, not once per batch; those lines are read
  again at the next start. Standard output is pointed at /dev/null then, so
  the interpreter's last flush at exit does not fail again on the closed pipe.
- Any other write error names stdout and its cause (``PermanentOutputError``).
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import BinaryIO, Sequence

from agent.errors import ModelscribeError, PermanentOutputError
from agent.events import Event
from agent.outputs.base import all_created, CheckReport, Response
from agent.outputs.batcher import Aborted


class StdoutClosed(ModelscribeError):
    """Standard output's reader went away: the agent stops, on purpose."""


class ConsoleOutput:
    name = "console"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream or sys.stdout.buffer
        self._closed = False  # stdout was found closed: nothing more is sent
        # One batch at a time: two workers must not both find the pipe closed
        # (two deaths, two messages), nor interleave their lines.
        self._lock = threading.Lock()

    def send(self, events: Sequence[Event]) -> Response:
        body = b"".join(event.data + b"\n" for event in events)
        with self._lock:
            if self._closed:
                raise Aborted()
            try:
                self._stream.write(body)
                self._stream.flush()
            except BrokenPipeError as error:
                self._closed = True
                self._silence()
                raise StdoutClosed("stdout was closed; stopping") from error
            except OSError as error:
                raise PermanentOutputError(f"--output console: cannot write to stdout: "
                                           f"{error.strerror or error}") from error
        return all_created(events)

    def _silence(self) -> None:
        """Point the stream's descriptor at /dev/null: what is still buffered
        is flushed there at exit instead of raising BrokenPipeError again."""
        try:
            fileno = self._stream.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            return  # not a descriptor (a test's BytesIO): nothing flushes it at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fileno)
        finally:
            os.close(devnull)

    def check(self) -> CheckReport:
        return CheckReport(True, (("console", "ok: documents go to standard output"),))

    def close(self) -> None:
        pass
