"""A health state file the agent's user may not read (root-owned after a
``sudo modelscribe ...``) is no damage: the agent stops with a ConfigError
(exit 2) naming the file and what to do, and the file is left as it is.
Audit 11: it was moved aside (``state.json.unusable-...``) and health
started empty, windows, counters and all, with no word that a chown would
have kept them.

The tests run as root, whom permissions do not refuse: the refusal is made
where the checkpoint module opens its files (the ``open`` it calls)."""

from __future__ import annotations

import builtins
import errno
import os

import pytest

from agent.clock import FakeClock
from agent.errors import EXIT_CONFIG, ConfigError
from agent.health import checkpoint as checkpoint_module
from agent.health.engine import HealthEngine
from test_checkpoint_corrupt import AGENT, EVENTS, FIRST_EVENTS, T0, _base


def _refuse(monkeypatch, refused: str) -> None:
    def opening(path, *args, **kwargs):
        if os.fspath(path) == refused:
            raise PermissionError(errno.EACCES, "Permission denied", refused)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "open", opening, raising=False)


def test_a_state_file_this_user_may_not_read_stops_the_start_naming_it(tmp_path, monkeypatch):
    directory = _base(tmp_path, FIRST_EVENTS)
    state = tmp_path / "health" / "state.json"
    before = state.read_bytes()
    _refuse(monkeypatch, str(state))
    with pytest.raises(ConfigError) as raised:
        HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_CONFIG
    assert f"cannot read {state}: Permission denied" in message
    assert "run the agent as the user that owns the state directory, e.g. with runuser -u modelscribe, " \
           "or give it back to that user" in message
    assert state.read_bytes() == before and not list(state.parent.glob("state.json.unusable-*"))  # left as it is
    monkeypatch.undo()
    engine = HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))  # once given back
    assert engine.counters["observed"] > 0  # the state was kept
    engine.close()


def test_a_journal_this_user_may_not_read_stops_the_start_naming_it(tmp_path, monkeypatch):
    directory = str(tmp_path)
    engine = HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    engine.observe(EVENTS[:50])  # in the journal, no checkpoint (a kill)
    engine.close()
    (journal,) = (tmp_path / "health").glob("journal-*.log")
    _refuse(monkeypatch, str(journal))
    with pytest.raises(ConfigError, match=rf"cannot read {journal}: Permission denied \(run the agent as the user "
                                          "that owns the state directory"):
        HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    monkeypatch.undo()
    again = HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    assert again.counters["observed"] == 50  # replayed whole once readable
    again.close()


def test_a_directory_in_place_of_the_state_file_stops_the_start_naming_it(tmp_path):
    # Audit 12: it was moved aside (state.json.unusable-...) and health started
    # empty, though the README's exit-code table says exit 2, the file left as it is.
    directory = _base(tmp_path, FIRST_EVENTS)
    state = tmp_path / "health" / "state.json"
    state.unlink()
    state.mkdir()
    with pytest.raises(ConfigError) as raised:
        HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    assert raised.value.exit_code == EXIT_CONFIG
    assert str(raised.value) == (f"cannot read the health state {state}: it is a directory, not a file (move it "
                                 "away: health then starts empty)")
    assert state.is_dir() and not list(state.parent.glob("state.json.unusable-*"))  # left as it is
    state.rmdir()  # what the message says: moved away, health starts (empty)
    HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100)).close()


@pytest.mark.parametrize("old", [False, True], ids=["to_replay", "old"])
def test_a_directory_in_place_of_a_journal_stops_the_start_naming_it(tmp_path, old):
    # Audit 12: "a journal cannot be read; the events it holds are not counted", a warning, and on.
    directory = _base(tmp_path, FIRST_EVENTS)
    gen = 0 if old else 10 ** 9  # (one the checkpoint covers: deleted at the start; one after it: replayed)
    journal = tmp_path / "health" / f"journal-{gen:010d}.log"
    journal.mkdir()
    with pytest.raises(ConfigError) as raised:
        HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    assert raised.value.exit_code == EXIT_CONFIG
    assert str(raised.value) == (f"cannot read a health journal {journal}: it is a directory, not a file (move it "
                                 "away: health then carries on without it)")
    assert journal.is_dir()
    journal.rmdir()
    again = HealthEngine(FIRST_EVENTS, directory, None, AGENT, FakeClock(T0 + 100))
    assert again.counters["observed"] > 0  # the state was kept
    again.close()
