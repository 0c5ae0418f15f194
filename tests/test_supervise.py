"""Supervisor: a dying stage and a signal both wake the main loop; the signal
handler takes no lock (issue 8, items 4 and 5); no signal in the first or last
moments of `run` falls to the default handlers (audit 2 service, finding 4),
and `run`'s recorder adopts the launcher's (agent.launch; real processes in
tests/test_launch.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from agent.errors import ModelscribeError
from agent.supervise import HANDLED, EarlySignals, Supervisor


def test_a_signal_wakes_the_main_loop_at_once_and_is_only_recorded():
    supervisor = Supervisor()
    supervisor.install_signals()
    try:
        assert signal.getsignal(signal.SIGTERM) == supervisor._on_signal
        threading.Timer(0.1, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        assert supervisor.wait(30) is True
        assert time.monotonic() - started < 10
        assert supervisor.signal == signal.SIGTERM and supervisor.deaths == []
    finally:
        supervisor.close()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1  # the previous wake-up fd (none) is back


def test_the_handler_does_nothing_but_assign():
    """Setting an Event there could deadlock on the lock the interrupted main
    thread holds; the handler must stay a plain assignment."""
    supervisor = Supervisor()
    code = supervisor._on_signal.__code__
    assert code.co_names == ("signal",), code.co_names  # touches one attribute, calls nothing
    supervisor._on_signal(signal.SIGINT, None)
    assert supervisor.stopping() and supervisor.signal == signal.SIGINT


def test_a_stage_that_raises_is_reported_and_wakes_the_loop(caplog):
    supervisor = Supervisor()
    try:
        def stage() -> None:
            time.sleep(0.1)
            raise OSError(28, "No space left on device")

        supervisor.thread("reader", stage).start()
        started = time.monotonic()
        assert supervisor.wait(30) is True
        assert time.monotonic() - started < 10
        assert [name for name, _ in supervisor.deaths] == ["reader"]
        assert isinstance(supervisor.deaths[0][1], OSError)
        assert "a stage died" in caplog.text and "No space left on device" in caplog.text
    finally:
        supervisor.close()


def test_request_stop_from_another_thread():
    supervisor = Supervisor()
    try:
        assert supervisor.wait(0.01) is False
        threading.Timer(0.05, supervisor.request_stop).start()
        assert supervisor.wait(30) is True
    finally:
        supervisor.close()


def test_the_same_failure_again_is_kept_but_logged_once(caplog):
    """The next batch of an output that is gone dies the same way: one message
    per cause, not one per batch (audit 2, finding 6); /metrics still counts each."""
    supervisor = Supervisor()
    try:
        for _ in range(5):
            supervisor.died("output", RuntimeError("boom"))
        supervisor.died("output", RuntimeError("another bug"))
        assert len(supervisor.deaths) == 6
        errors = [record for record in caplog.records if record.levelname == "ERROR"]
        assert [record.getMessage() for record in errors] == ["a stage died; stopping the agent"] * 2
        assert all(record.exc_info for record in errors)  # bugs keep their traceback
    finally:
        supervisor.close()



def test_an_error_raised_on_purpose_is_one_line_without_a_traceback(caplog):
    """A ModelscribeError (stdout closed, a spool that cannot be written) says
    all in its message: no traceback, and its text, not its repr (audit 3, finding 5)."""
    supervisor = Supervisor()
    try:
        supervisor.died("output", ModelscribeError("stdout was closed; stopping"))
        [record] = [record for record in caplog.records if record.levelname == "ERROR"]
        assert record.getMessage() == "a stage died; stopping the agent"
        assert record.exc_info is None
        assert record.kv == {"stage": "output", "error": "stdout was closed; stopping"}
    finally:
        supervisor.close()


# -- the first and last moments of `run` (audit 2 service, finding 4) -----------------------------

def test_signals_before_the_supervisor_are_recorded_and_taken_over(saved_handlers):
    """A SIGHUP or SIGINT while the agent starts (imports, configuration, the
    spool) neither kills it (exit 129) nor aborts it (exit 1): it is recorded,
    and the supervisor acts on it once installed."""
    early = EarlySignals()
    early.install()
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGINT)
    assert early.reload and early.stop == signal.SIGINT
    supervisor = Supervisor()
    supervisor.install_signals()
    try:
        assert supervisor.take_reload() is True  # applied once ready: the main loop's first pass
        started = time.monotonic()
        assert supervisor.wait(30) is True and supervisor.signal == signal.SIGINT
        assert time.monotonic() - started < 5
    finally:
        supervisor.close()
    # Given back to the recorder, not to the defaults: the last moments of the exit are covered too.
    assert signal.getsignal(signal.SIGHUP) == early._on_signal
    os.kill(os.getpid(), signal.SIGHUP)
    early.restore()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_released_signals_reach_the_handlers_they_would_have_reached(saved_handlers):
    """--once keeps the default handling: what came meanwhile is delivered to it."""
    seen: list[int] = []
    for sig in HANDLED:
        signal.signal(sig, lambda signum, _frame: seen.append(signum))
    early = EarlySignals()
    early.install()
    os.kill(os.getpid(), signal.SIGTERM)
    assert seen == []
    early.release()
    assert seen == [signal.SIGTERM]


def _recorders(seen: list[int]) -> dict[int, object]:
    """Stand-ins for the defaults: handlers that note what reaches them."""
    handlers = {sig: (lambda signum, _frame: seen.append(signum)) for sig in HANDLED}
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    return handlers


def test_installed_over_the_launchers_it_adopts_what_that_one_recorded(saved_handlers):
    """agent.launch installs one before importing the command line, `run` its
    own over it: the second takes the first's stop and reload, and the
    handlers the first replaced as its own previous, so releasing it (--once)
    delivers to those, never to a recorder nobody reads any more."""
    seen: list[int] = []
    defaults = _recorders(seen)
    launcher = EarlySignals()
    launcher.install()
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    run = EarlySignals()
    run.install()
    assert run.stop == signal.SIGTERM and run.reload
    assert run._previous == defaults
    assert launcher.stop is None and not launcher.reload and launcher._previous == {}  # emptied: nothing twice
    os.kill(os.getpid(), signal.SIGINT)
    assert run.stop == signal.SIGTERM  # the launcher's came first
    assert seen == []
    run.release()
    assert seen == [signal.SIGHUP, signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in HANDLED} == defaults
    launcher.release()  # a no-op now: it neither puts its recorder back nor delivers again
    assert seen == [signal.SIGHUP, signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in HANDLED} == defaults


def test_the_adopting_one_restores_the_real_defaults(saved_handlers):
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_DFL)
    launcher = EarlySignals()
    launcher.install()
    run = EarlySignals()
    run.install()
    run.restore()  # what `run` does on a configuration error
    assert all(signal.getsignal(sig) == signal.SIG_DFL for sig in HANDLED)


def test_the_supervisor_takes_over_what_the_launcher_recorded_through_run(saved_handlers):
    """The whole start-up chain: launcher, then `run`, then the supervisor."""
    seen: list[int] = []
    defaults = _recorders(seen)
    launcher = EarlySignals()
    launcher.install()
    os.kill(os.getpid(), signal.SIGINT)
    run = EarlySignals()
    run.install()
    supervisor = Supervisor()
    supervisor.install_signals()
    try:
        started = time.monotonic()
        assert supervisor.wait(30) is True and supervisor.signal == signal.SIGINT
        assert time.monotonic() - started < 5
    finally:
        supervisor.close()
    assert signal.getsignal(signal.SIGTERM) == run._on_signal  # the last moments are covered by `run`'s
    run.restore()
    assert {sig: signal.getsignal(sig) for sig in HANDLED} == defaults and seen == []


def test_ignore_ignores_outright(saved_handlers):
    """Not a Python handler: the interpreter puts back SIG_DFL for those as it
    exits (a SIGHUP then exits 129), but keeps SIG_IGN (what `run` relies on
    once the pipeline returned; the end-to-end test is tests/e2e/test_shutdown.py)."""
    EarlySignals().ignore()
    assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in HANDLED)


def test_call_returns_what_its_target_returns_or_raises():
    def refused() -> None:
        raise OSError("refused")

    supervisor = Supervisor()
    try:
        assert supervisor.call("check", lambda: 42) == 42
        with pytest.raises(OSError, match="refused"):
            supervisor.call("check", refused)
    finally:
        supervisor.close()


def test_call_ends_at_once_on_a_stop_and_leaves_the_target_running():
    """The output's start-up check may take 10 s against a hung node: a
    SIGTERM meanwhile must not wait for it."""
    supervisor = Supervisor()
    release = threading.Event()
    try:
        threading.Timer(0.1, supervisor.request_stop).start()
        started = time.monotonic()
        assert supervisor.call("check", lambda: release.wait(60)) is None
        assert time.monotonic() - started < 10
        assert supervisor.call("check", lambda: 1) is None  # already stopping: not even started
    finally:
        release.set()
        supervisor.close()


def test_call_is_not_ended_by_a_reload_request_and_does_not_spin():
    supervisor = Supervisor()
    try:
        supervisor.request_reload()  # a SIGHUP during the check: kept for the main loop
        cpu = time.process_time()
        assert supervisor.call("check", lambda: (time.sleep(0.5), "done")[1]) == "done"
        assert time.process_time() - cpu < 0.25  # a busy loop would burn the whole half second
        assert supervisor.take_reload() is True
    finally:
        supervisor.close()
