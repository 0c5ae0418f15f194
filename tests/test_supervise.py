"""Supervisor: a dying stage and a signal both wake the main loop; the signal
handler takes no lock (issue 8, items 4 and 5)."""

from __future__ import annotations

import os
import signal
import threading
import time

from agent.supervise import Supervisor


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

