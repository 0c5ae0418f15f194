"""agent.launch, the entry point of the console script and of ``python -m
agent``: the daemon's signals are caught before the command line is
imported, for `run` only, and the `run` command's own recorder adopts the
launcher's (audit 2 service, finding 4, the part left open: a SIGHUP during
the fifth of a second ``import agent.cli`` takes killed the daemon, exit 129).

The real command runs as a subprocess. A signal sent right at the spawn
lands in the interpreter's own start-up, before any entry point runs, where
nothing can catch it; so the tests aim at points they can observe: the
moment click has been imported (``-X importtime`` writes each import to
stderr as it ends), a tenth of a second before the old entry caught anything,
and the moment the launcher's handler is in place (/proc/PID/status).
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest

from agent.early_signals import HANDLED, EarlySignals
from agent.launch import command_name, main

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0  # bound of every wait: interpreter start-up on a loaded 2-core machine
LINES = 100


# -- which command line gets the early handlers -----------------------------------------------------

@pytest.mark.parametrize("args, name", [
    (["run", "--path", "/var/log/*.log"], "run"),
    (["--", "run"], "run"),
    (["-h", "run"], "run"),  # click prints the help; the handlers change nothing there
    (["check", "config", "--path", "run"], "check"),
    (["status", "--state-dir", "run"], "status"),
    (["--version"], None),
    (["--"], None),
    ([], None),
])
def test_the_command_is_the_first_argument_that_is_no_option(args, name):
    assert command_name(args) == name


def test_no_option_of_the_group_takes_a_value():
    """What command_name relies on: an option before the command that took a
    value (``--log-level debug run``) would make it read the value as the
    command. Adding one means teaching agent.launch about it."""
    from agent.cli import main as group

    options = [param for param in group.params if isinstance(param, click.Option)]
    assert options and all(option.is_flag for option in options), [option.opts for option in options]
    assert all(isinstance(param, click.Option) for param in group.params)


@pytest.mark.parametrize("argv, early", [(["modelscribe", "run", "--once"], True),
                                         (["modelscribe", "status"], False),
                                         (["modelscribe", "check", "config"], False)])
def test_only_run_gets_the_early_handlers(monkeypatch, saved_handlers, argv, early):
    import agent.cli

    for sig in HANDLED:
        signal.signal(sig, signal.SIG_DFL)
    seen: dict[int, object] = {}
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(agent.cli, "entry", lambda: seen.update({sig: signal.getsignal(sig) for sig in HANDLED}))
    main()
    recorders = [isinstance(getattr(handler, "__self__", None), EarlySignals) for handler in seen.values()]
    assert recorders == [early] * len(HANDLED)


def test_the_launcher_imports_nothing_heavy_before_its_handlers():
    code = ("import sys, agent.launch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('agent', 'click', 'yaml', 'orjson')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['agent', 'agent.early_signals', 'agent.launch']"


def test_the_console_script_and_python_m_agent_enter_through_the_launcher():
    """The .deb (packaging/build-deb) installs the wheel built from
    pyproject.toml: its console script follows [project.scripts]."""
    scripts = re.search(r"^\[project\.scripts\]\n(.*?)(?:^\[|\Z)", (ROOT / "pyproject.toml").read_text(),
                        re.M | re.S)
    assert scripts and re.search(r'^modelscribe = "agent\.launch:main"$', scripts.group(1), re.M)
    assert "from agent.launch import main" in (ROOT / "agent" / "__main__.py").read_text()


# -- the real command ----------------------------------------------------------------------------------

class Agent:
    """``python -m agent run`` on a file of LINES lines, stderr in a file."""

    def __init__(self, tmp_path: Path, *flags: str, importtime: bool = False,
                 output: str | None = None) -> None:
        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "a.log").write_text("".join(f"line {number}\n" for number in range(LINES)))
        self.out = tmp_path / "out.ndjson"
        self.log_path = tmp_path / "agent.log"
        self._log = open(self.log_path, "wb")
        python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
        self.process = subprocess.Popen(
            [*python, "-m", "agent", "run", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
             "--output", output or f"file:{self.out}", *flags],
            stdout=subprocess.DEVNULL, stderr=self._log, cwd=ROOT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def delivered(self) -> int:
        return len(self.out.read_bytes().splitlines()) if self.out.exists() else 0

    def wait_for(self, predicate, what: str, poll: float = 0.001) -> None:
        """Until predicate(), polled closely; fails if the process ends first or after WAIT."""
        deadline = time.monotonic() + WAIT
        while not predicate():
            if self.process.poll() is not None:
                raise AssertionError(f"the agent ended (code {self.process.returncode}) before {what}\n"
                                     f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {WAIT}s waiting for {what}")
            time.sleep(poll)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(WAIT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)
        self._log.close()


def _imported(log: str, module: str) -> bool:
    """Whether ``-X importtime`` reported the import of ``module`` as ended."""
    return re.search(rf"^import time:[^\n]*\|\s*{re.escape(module)}$", log, re.M) is not None


def _caught(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for ``sig`` now (Linux: SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M)
    return mask is not None and bool(int(mask.group(1), 16) >> (sig - 1) & 1)


def _in_the_command_lines_import(agent: Agent) -> bool:
    """Read after a signal was sent: True if it came before ``agent.cli``
    was imported (the window the launcher closes)."""
    return not _imported(agent.log(), "agent.cli")


def test_a_sighup_while_the_command_line_is_imported_neither_kills_nor_reloads(tmp_path):
    """Before agent.launch, this SIGHUP killed the daemon (exit 129). It came
    before the configuration was read, so it needs no reload either."""
    agent = Agent(tmp_path, importtime=True)
    try:
        agent.wait_for(lambda: _imported(agent.log(), "click"), "click to be imported")
        agent.process.send_signal(signal.SIGHUP)
        in_window = _in_the_command_lines_import(agent)
        agent.wait_for(lambda: agent.delivered() == LINES, "the lines delivered", poll=0.05)
        code = agent.stop()
    finally:
        agent.kill()
    log = agent.log()
    assert in_window, "the SIGHUP came after the command line was imported: this test tested nothing"
    assert code == 0, log[-3000:]
    assert agent.delivered() == LINES
    assert "reload requested during start-up" not in log and "configuration reloaded" not in log, log[-3000:]
    assert "msg=stopped" in log


def test_sighups_all_through_the_start_up_never_kill_it(tmp_path):
    """From the moment the launcher's handler is in place, a SIGHUP every few
    milliseconds, through every hand-over (launcher, `run`, the supervisor),
    until the lines are delivered: never killed, exit 0 on SIGTERM."""
    agent = Agent(tmp_path)
    sent = 0
    try:
        agent.wait_for(lambda: _caught(agent.process.pid, signal.SIGHUP), "the launcher's handler")
        deadline = time.monotonic() + WAIT
        while agent.delivered() < LINES and agent.process.poll() is None and time.monotonic() < deadline:
            agent.process.send_signal(signal.SIGHUP)
            sent += 1
            time.sleep(0.003)
        alive = agent.process.poll()
        code = agent.stop()
    finally:
        agent.kill()
    log = agent.log()
    assert alive is None, f"ended with {alive} after {sent} SIGHUPs\n{log[-3000:]}"
    assert code == 0, log[-3000:]
    assert agent.delivered() == LINES and sent > 10
    assert "msg=stopped" in log and "Aborted!" not in log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_once_keeps_the_default_action_of_a_stop_that_came_during_the_start_up(tmp_path, sig):
    """Recorded by the launcher, adopted by `run`, released to the handlers
    that were there before the launcher's (not to its recorder, which would
    drop it and let --once read everything): killed by SIGTERM; SIGINT is
    Python's KeyboardInterrupt, which click reports as "Aborted!" (exit 1)."""
    agent = Agent(tmp_path, "--once", importtime=True)
    try:
        agent.wait_for(lambda: _imported(agent.log(), "click"), "click to be imported")
        agent.process.send_signal(sig)
        in_window = _in_the_command_lines_import(agent)
        code = agent.process.wait(WAIT)
    finally:
        agent.kill()
    log = agent.log()
    assert in_window, "the signal came after the command line was imported: this test tested nothing"
    assert code == (-signal.SIGTERM if sig == signal.SIGTERM else 1), log[-3000:]
    if sig == signal.SIGINT:
        assert "Aborted!" in log, log[-3000:]
    assert agent.delivered() == 0  # stopped before reading anything


class _HungServer:
    """Accepts connections on 127.0.0.1 and never answers: --once waits on it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_once_ends_on_a_stop_with_the_default_action(tmp_path, sig):
    """Once started, --once has the default handlers back: SIGTERM kills it,
    SIGINT is click's "Aborted!" (exit 1); nothing records either."""
    server = _HungServer()
    agent = Agent(tmp_path, "--once", "--es-url", f"http://127.0.0.1:{server.port}", "--request-timeout", "30",
                  output="elasticsearch")
    try:
        agent.wait_for(lambda: server.accepted, "the agent to ask the server")
        agent.process.send_signal(sig)
        code = agent.process.wait(WAIT)
    finally:
        agent.kill()
        server.close()
    log = agent.log()
    assert code == (-signal.SIGTERM if sig == signal.SIGTERM else 1), log[-3000:]
    if sig == signal.SIGINT:
        assert "Aborted!" in log, log[-3000:]


def test_run_raises_the_soft_limit_of_open_files_to_the_hard_one():
    import resource

    from agent.launch import raise_open_files_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        raise_open_files_limit()
        raised = resource.getrlimit(resource.RLIMIT_NOFILE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert raised == (expected, hard)
