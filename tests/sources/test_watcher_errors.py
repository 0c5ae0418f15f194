"""Failures of the file-system event watcher are logged with ``error=``,
counted (``watcher_errors``), repaired at the next scan, and never stop
polling: every line is still read."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from watchdog.events import FileCreatedEvent

from agent.clock import SYSTEM_CLOCK
from agent.registry import Registry
from agent.sources.discovery import Discovery, Watcher, _Handler
from agent.stats import Stats
from tailkit import RecordingSink, append, make


def wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _watcher(tmp_path: Path) -> tuple[Watcher, threading.Event]:
    wake = threading.Event()
    watcher = Watcher(Discovery((str(tmp_path / "*.log"),)), wake)
    watcher.start()
    assert watcher._observer is not None
    return watcher, wake


def test_an_exception_in_the_event_callback_is_logged_and_counted(tmp_path, agent_log, monkeypatch):
    stats = Stats()
    watcher = Watcher(Discovery((str(tmp_path / "*.log"),)), threading.Event())

    def broken(event):
        raise KeyError("a bug in _record")

    monkeypatch.setattr(watcher, "_record", broken)
    _Handler(watcher).on_any_event(FileCreatedEvent(str(tmp_path / "a.log")))  # does not raise
    record, = [r for r in agent_log.records if r.getMessage().startswith("file-system event not handled")]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.kv["error"] == "KeyError('a bug in _record')"
    assert record.kv["path"] == str(tmp_path / "a.log")
    assert watcher._wake.is_set()  # the tailer looks now instead of at the next poll
    assert stats.snapshot().watcher_errors == 1


def test_a_dead_event_thread_is_reported_and_the_directory_watched_again(tmp_path, agent_log):
    stats = Stats()
    watcher, wake = _watcher(tmp_path)
    try:
        emitter, = watcher._observer.emitters
        emitter.stop()  # what an exception in the emitter's loop leaves behind: a dead thread
        emitter.join(5)
        watcher.ensure_watches()
        assert stats.snapshot().watcher_errors == 1
        fields, = agent_log.fields("file system events stopped for a directory; watching it again "
                                   "(polling meanwhile)")
        assert fields == {"path": str(tmp_path), "error": "the event thread ended"}
        new, = watcher._observer.emitters
        assert new is not emitter and new.is_alive()
        wake.clear()
        append(tmp_path / "a.log", "x\n")
        assert wait_for(wake.is_set)  # events flow again
        watcher.ensure_watches()
        assert stats.snapshot().watcher_errors == 1  # a healthy watcher counts nothing
    finally:
        watcher.stop()


def test_a_dead_observer_is_reported_and_restarted(tmp_path, agent_log):
    stats = Stats()
    watcher, wake = _watcher(tmp_path)
    try:
        old = watcher._observer
        old.stop()
        old.join(5)
        watcher.ensure_watches()
        assert stats.snapshot().watcher_errors == 1
        assert agent_log.fields("file system event observer stopped; restarting it (polling meanwhile)") == [
            {"error": "the observer thread ended"}]
        assert watcher._observer is not old and watcher._observer.is_alive()
        wake.clear()
        append(tmp_path / "a.log", "x\n")
        assert wait_for(wake.is_set)
    finally:
        watcher.stop()


def test_a_directory_that_went_away_is_not_an_error(tmp_path, agent_log):
    logs = tmp_path / "logs"
    logs.mkdir()
    stats = Stats()
    watcher = Watcher(Discovery((str(logs / "*.log"),)), threading.Event())
    watcher.start()
    try:
        emitter, = watcher._observer.emitters
        os.rmdir(logs)
        emitter.stop()  # watchdog may already have ended it: the directory is gone
        emitter.join(5)
        watcher.ensure_watches()
        assert stats.snapshot().watcher_errors == 0
        assert not agent_log.messages()
    finally:
        watcher.stop()


def test_polling_keeps_reading_while_the_watcher_is_dead(tmp_path):
    append(tmp_path / "a.log", "a1\n")
    sink = RecordingSink()
    tailer, _, _ = make(tmp_path, registry=Registry(tmp_path / "state"), clock=SYSTEM_CLOCK, sink=sink,
                        use_watchdog=True, scan_interval=3600.0)
    stop = threading.Event()
    thread = threading.Thread(target=tailer.run, args=(stop,))
    thread.start()
    try:
        assert wait_for(lambda: sink.texts() == ["a1"])
        observer = tailer._watcher._observer
        observer.stop()
        observer.join(5)
        append(tmp_path / "a.log", "a2\n")  # no event will come: the per-file poll finds it
        assert wait_for(lambda: sink.texts() == ["a1", "a2"], timeout=5.0)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_tearing_down_a_watch_ignores_what_is_expected_and_reports_the_rest(agent_log):
    from agent.sources.discovery import _tear_down

    stats = Stats()

    def gone():
        raise KeyError("watch")

    def bug():
        raise AttributeError("a bug")

    _tear_down(gone, "/logs")
    assert stats.snapshot().watcher_errors == 0 and not agent_log.messages()
    _tear_down(bug, "/logs")
    assert stats.snapshot().watcher_errors == 1
    assert agent_log.fields("cannot stop a file-system watch") == [{"path": "/logs",
                                                                    "error": "AttributeError('a bug')"}]
