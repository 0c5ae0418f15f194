"""``--output console``: a closed stdout (EPIPE) stops the agent once, with one
clear message, and nothing after it is acknowledged. Real pipes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.acks import AckTracker
from agent.errors import ModelscribeError, OutputError, PermanentOutputError
from agent.events import Event
from agent.outputs.batcher import Aborted, _Workers
from agent.outputs.console import ConsoleOutput
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.sender import Sender
from agent.stats import Stats

_ROOT = Path(__file__).resolve().parents[2]


def _events(first, count):
    return [Event("k", i * 10, i * 10 + 10, f"id{i}", json.dumps({"n": i}).encode())
            for i in range(first, first + count)]


def _closed_pipe():
    """A stream whose reader is gone, as stdout is after ``| head -1``."""
    read, write = os.pipe()
    os.close(read)
    return os.fdopen(write, "wb")


def test_a_closed_stdout_stops_once_and_refuses_every_later_batch():
    stream = _closed_pipe()
    output = ConsoleOutput(stream)
    with pytest.raises(ModelscribeError, match="^stdout was closed; stopping$") as raised:
        output.send(_events(0, 2))
    assert not isinstance(raised.value, OutputError)  # not retried: it stops the agent
    assert isinstance(raised.value.__cause__, BrokenPipeError)
    with pytest.raises(Aborted):
        output.send(_events(2, 2))
    stream.close()  # its descriptor now writes to /dev/null: the last flush does not fail again


def test_through_the_workers_one_death_and_nothing_acknowledged_after_it(tmp_path):
    stream = _closed_pipe()
    commits = {}
    acks = AckTracker(lambda key, offset: commits.__setitem__(key, offset))
    sender = Sender(ConsoleOutput(stream), acks, DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x"), Stats(),
                    threading.Event(), None, backoff_max=0.0, retry_permanent=True)
    deaths = []
    workers = _Workers(sender.deliver, 2, Stats(), on_death=lambda stage, error: deaths.append((stage, error)))
    for first in range(0, 50, 5):
        events = _events(first, 5)
        acks.register(events)
        workers.submit(events)
    workers.close()
    stream.close()
    assert [(stage, str(error)) for stage, error in deaths] == [("output", "stdout was closed; stopping")]
    # Raised on purpose: no "unexpected error" (audit 3, finding 5).
    assert [failure.args[0] for failure in workers.failures] == ["stdout was closed; stopping"]
    assert commits == {} and acks.in_flight() == 50
    assert not (tmp_path / "dead.ndjson").exists()


def test_another_write_error_names_stdout():
    class Failing:
        def write(self, data):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        def flush(self):
            pass

    with pytest.raises(PermanentOutputError, match="cannot write to stdout: Input/output error"):
        ConsoleOutput(Failing()).send(_events(0, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize("once", [True, False], ids=["once", "daemon"])
def test_run_piped_into_head_stops_with_one_message(tmp_path, once):
    """``modelscribe run [--once] --output console | head -1``, the real command:
    one line, ``a stage died; stopping the agent stage=output error="stdout
    was closed; stopping"``, no traceback, no "unexpected error" (audit 3, finding 5)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("".join(f"2026-01-01 00:00:00 INFO app: line {i} {'x' * 60}\n"
                                        for i in range(20000)))
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", *(["--once"] if once else []),
                              "--output", "console",
                              "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                              "--metrics-addr", "off"],
                             cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert agent.stdout is not None and agent.stderr is not None
    first = agent.stdout.readline()
    agent.stdout.close()  # head -1 exits
    stderr = agent.stderr.read().decode()
    agent.stderr.close()
    code = agent.wait(120)
    assert "app: line 0 " in json.loads(first)["message"]
    assert code == 1, stderr
    assert stderr.count("a stage died; stopping the agent") == 1, stderr
    [line] = [line for line in stderr.splitlines() if "stdout was closed" in line]
    assert "a stage died; stopping the agent" in line and 'stage=output error="stdout was closed; stopping"' in line
    assert "Traceback" not in stderr and "unexpected" not in stderr and "level=error" not in stderr.replace(line, "")
    assert "Exception ignored" not in stderr and ("unacknowledged" in stderr)
    registry = json.loads((tmp_path / "state" / "registry.json").read_text())
    [entry] = registry["entries"]
    assert entry["offset"] < (logs / "a.log").stat().st_size  # only what was acknowledged
