"""The offset registry: atomic saves, corruption, TTL, monotonic commits, threads."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import stat
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.errors import EXIT_CONFIG, ConfigError, StateError
from agent.registry import Entry, Registry


def entry(key: str = "k1", offset: int = 0, updated: float | None = None, dev: int = 1,
          inode: int = 10, gone: bool = False, fp_hash: str = "ab" * 16, generation: int = 0) -> Entry:
    return Entry(key=key, path=f"/logs/{key}.log", dev=dev, inode=inode, fp_len=5, fp_hash=fp_hash,
                 generation=generation, offset=offset,
                 updated=FakeClock().time() if updated is None else updated, gone=gone)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def test_state_dir_is_created_0700(state, clock):
    Registry(state, clock=clock)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700


def test_unusable_state_dir_raises_state_error_naming_it(tmp_path, clock):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError) as info:
        Registry(blocker / "state", clock=clock)
    assert str(blocker / "state") in str(info.value) and "Not a directory" in str(info.value)


def test_save_is_atomic_0600_versioned_and_round_trips(state, clock):
    registry = Registry(state, clock=clock)
    registry.load()
    registry.track(entry("k1"))
    registry.track(entry("k2", inode=11))
    registry.commit("k1", 42)
    registry.save()
    path = state / "registry.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["version"] == 1 and len(document["entries"]) == 2
    assert sorted(os.listdir(state)) == ["registry.json"], "no temp file left behind"
    again = Registry(state, clock=clock)
    again.load()
    assert sorted(again.entries(), key=lambda e: e.key) == sorted(registry.entries(), key=lambda e: e.key)
    assert again.get("k1").offset == 42


def test_save_only_writes_when_something_changed(state, clock):
    registry = Registry(state, clock=clock)
    registry.load()
    registry.save()
    assert not (state / "registry.json").exists(), "nothing to save"
    registry.track(entry("k1"))
    registry.save()
    first = os.stat(state / "registry.json").st_ino
    registry.save()
    registry.commit("k1", 0)  # not an advance
    registry.touch("k1", "/logs/k1.log")  # same path, just seen
    registry.save()
    assert os.stat(state / "registry.json").st_ino == first
    registry.commit("k1", 5)
    registry.save()
    assert os.stat(state / "registry.json").st_ino != first


def test_a_paced_save_waits_twenty_times_the_last_write(state, clock, monkeypatch):
    # Audit 5: a registry of 100,000 entries (a week of rotations) was rewritten
    # whole every second, 0.2 s each: a quarter of a core for one busy file.
    registry = Registry(state, clock=clock)
    registry.load()
    real_write = registry._write

    def slow_write(body: bytes) -> None:
        real_write(body)
        clock.advance(0.2)  # (the write of a large table)

    monkeypatch.setattr(registry, "_write", slow_write)
    registry.track(entry("k1"))
    assert registry.save(pace=True)
    registry.commit("k1", 5)
    clock.advance(3.5)
    assert not registry.save(pace=True)  # 3.7 s after it began: not yet
    assert json.loads((state / "registry.json").read_text())["entries"][0]["offset"] == 0
    clock.advance(0.4)
    assert registry.save(pace=True)
    assert json.loads((state / "registry.json").read_text())["entries"][0]["offset"] == 5
    registry.commit("k1", 9)
    assert registry.save()  # (not paced: the final save, a new file's first lines)
    assert json.loads((state / "registry.json").read_text())["entries"][0]["offset"] == 9


def test_missing_file_loads_empty(state, clock):
    registry = Registry(state, clock=clock)
    registry.load()
    assert registry.entries() == []


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"version": 2, "entries": []}', b'{"version": 1, "entries": {}}',
    b'{"version": 1, "entries": [{"key": "k"}]}',
    b'{"version": 1, "entries": [{"key": "k", "path": "/p", "dev": true, "inode": 1, "fp_len": 1,'
    b' "fp_hash": "h", "generation": 0, "offset": 1, "updated": 1.0, "gone": false}]}',
    b"\xff\xfe",
    b'{"version": 1, "entries": [], "retired": {}}',
    b'{"version": 1, "entries": [], "retired": [[1, 2, "h", -1, 1.0]]}',
    b'{"version": 1, "entries": [], "retired": [[1, 2, "h"]]}',
])
def test_corrupt_file_is_moved_aside_and_start_is_empty(state, clock, content):
    state.mkdir(mode=0o700)
    (state / "registry.json").write_bytes(content)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("modelscribe")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        registry = Registry(state, clock=clock)
        registry.load()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert registry.entries() == []
    aside = [name for name in os.listdir(state) if name.startswith("registry.json.corrupt-")]
    assert len(aside) == 1 and (state / aside[0]).read_bytes() == content
    assert not (state / "registry.json").exists()
    (record,) = records
    said = "another version of modelscribe" if b'"version": 2' in content else "corrupt"  # (a downgrade)
    assert said in record.getMessage() and record.kv["moved_to"] == str(state / aside[0])
    registry.track(entry("k1"))
    registry.save()  # and the agent carries on with a fresh file
    assert json.loads((state / "registry.json").read_text())["version"] == 1


def test_a_registry_that_is_a_directory_is_exit_code_2_naming_it(state, clock):
    # Audit 11 (finding 4): "cannot read .../registry.json: [Errno 21] Is a
    # directory", a StateError (exit code 1): the packaged unit restarted the
    # agent every 5 s for ever.
    registry = Registry(state, clock=clock)
    (state / "registry.json").mkdir()
    with pytest.raises(ConfigError) as caught:
        registry.load()
    assert caught.value.exit_code == EXIT_CONFIG
    assert str(caught.value) == (f"cannot read the registry {state / 'registry.json'}: it is a directory, not a "
                                 "file (move it away: the agent then reads every file again from its start)")
    assert (state / "registry.json").is_dir() and os.listdir(state) == ["registry.json"]


def test_a_registry_this_user_cannot_read_is_exit_code_2_and_kept(state, clock, monkeypatch):
    # Audit 11 (finding 4): root-owned after a ``sudo modelscribe run``, exit
    # code 1 and a restart loop. (Tests run as root: the PermissionError is
    # injected; tests/test_unreadable_state_files.py has the real one.)
    registry = Registry(state, clock=clock)
    (state / "registry.json").write_text('{"version": 1, "entries": []}')
    real = pathlib.Path.read_bytes

    def denied(self):
        if self == state / "registry.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    with pytest.raises(ConfigError) as caught:
        registry.load()
    monkeypatch.undo()
    assert caught.value.exit_code == EXIT_CONFIG
    assert str(caught.value).startswith(f"cannot read the registry {state / 'registry.json'}: Permission denied (")
    assert str(caught.value).endswith("; the file is left as it is)")
    assert os.listdir(state) == ["registry.json"]


def test_stale_temp_files_are_removed_on_load(state, clock):
    Registry(state, clock=clock)
    (state / ".registry.json.abc.tmp").write_text("half written")
    Registry(state, clock=clock).load()
    assert os.listdir(state) == []


def test_ttl_drops_entries_not_seen_for_too_long(state, clock):
    registry = Registry(state, ttl=100.0, clock=clock)
    registry.load()
    registry.track(entry("old", updated=clock.time()))
    registry.track(entry("fresh", inode=11, updated=clock.time()))
    registry.save()
    clock.advance(90)
    registry.touch("fresh", "/logs/fresh.log")
    clock.advance(20)
    registry.save()
    assert [e.key for e in registry.entries()] == ["fresh"]
    again = Registry(state, clock=clock)
    again.load()
    assert [e.key for e in again.entries()] == ["fresh"]


def test_an_entry_dropped_for_ttl_keeps_its_generation_taken(state, clock):
    """Audit F3: once the registry forgot a file, new content on the same inode
    with the same first bytes got generation 0 again, i.e. the forgotten
    content's key: its lines' ids were already in Elasticsearch, refused as
    duplicates and never indexed. The dropped entry is remembered as retired."""
    from agent.registry import MAX_RETIRED, RETIRED_MIN_TTL
    from agent.sources.identity import next_generation, source_key

    registry = Registry(state, ttl=100.0, clock=clock)
    registry.load()
    digest = "cd" * 16
    old_key = source_key(1, 10, 2, digest)
    registry.track(entry(old_key, inode=10, fp_hash=digest, generation=2, updated=clock.time()))
    registry.save()
    clock.advance(200)
    registry.save()
    assert registry.entries() == []
    again = Registry(state, ttl=100.0, clock=clock)
    again.load()  # remembered across a restart
    generation = next_generation(again.generations(1, 10), digest)
    assert generation == 3 and source_key(1, 10, generation, digest) != old_key
    assert next_generation(again.generations(1, 11), digest) == 0  # another inode: unaffected
    clock.advance(RETIRED_MIN_TTL + 1)
    again.save()
    assert again.generations(1, 10) == []  # forgotten in the end
    for inode in range(MAX_RETIRED + 5):  # bounded: the oldest go first
        again.track(entry(f"k{inode}", inode=inode, fp_hash=digest, updated=clock.time()))
        clock.advance(0.001)
    clock.advance(200)
    again.save()
    assert again.generations(1, 0) == [] and again.generations(1, MAX_RETIRED + 4) == [(digest, 0)]


def test_commit_never_moves_backwards_and_ignores_unknown_keys(state, clock):
    registry = Registry(state, clock=clock)
    registry.track(entry("k1"))
    registry.commit("k1", 100)
    registry.commit("k1", 50)
    registry.commit("nope", 10)
    assert registry.get("k1").offset == 100 and registry.get("nope") is None


def test_lookup_matches_dev_inode_and_fingerprint_and_skips_gone(state, clock):
    registry = Registry(state, clock=clock)
    registry.track(entry("k1", dev=1, inode=10, fp_hash="aa"))
    asked = []

    def fingerprint_of(length: int) -> str:
        asked.append(length)
        return "aa"

    assert registry.lookup(1, 10, fingerprint_of).key == "k1" and asked == [5]
    assert registry.lookup(1, 11, fingerprint_of) is None
    assert registry.lookup(1, 10, lambda n: "bb") is None
    registry.mark_gone("k1")
    assert registry.lookup(1, 10, fingerprint_of) is None
    assert registry.generations(1, 10) == [("aa", 0)]


def test_tracking_a_new_content_retires_the_old_one_of_the_same_inode(state, clock):
    registry = Registry(state, clock=clock)
    registry.track(entry("old", dev=1, inode=10))
    registry.track(entry("other-inode", dev=1, inode=11))
    registry.track(entry("new", dev=1, inode=10, generation=1))
    assert registry.get("old").gone and not registry.get("new").gone
    assert not registry.get("other-inode").gone


def test_touch_updates_path_and_time(state, clock):
    registry = Registry(state, clock=clock)
    registry.track(entry("k1"))
    clock.advance(5)
    registry.touch("k1", "/logs/renamed.log")
    assert registry.get("k1").path == "/logs/renamed.log" and registry.get("k1").updated == clock.time()


def test_save_failure_raises_state_error(state, clock, monkeypatch):
    registry = Registry(state, clock=clock)
    registry.track(entry("k1"))

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StateError, match="No space left"):
        registry.save()
    monkeypatch.undo()
    assert registry.dirty
    assert os.listdir(state) == [], "temp file cleaned up"
    registry.save()
    assert not registry.dirty


def test_thread_safety_smoke(state, clock):
    registry = Registry(state, clock=clock)
    registry.load()
    for index in range(20):
        registry.track(entry(f"k{index}", inode=index))
    errors = []
    stop = threading.Event()

    def committer(worker: int) -> None:
        try:
            for offset in range(1, 2001):
                registry.commit(f"k{(offset + worker) % 20}", offset)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def saver() -> None:
        try:
            while not stop.is_set():
                registry.save()
        except Exception as error:  # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=committer, args=(n,)) for n in range(4)]
    save_thread = threading.Thread(target=saver)
    save_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    save_thread.join()
    registry.save()
    assert errors == []
    final = Registry(state, clock=clock)
    final.load()
    offsets = {e.key: e.offset for e in final.entries()}
    assert offsets == {e.key: e.offset for e in registry.entries()}
    expected: dict[str, int] = {}
    for worker in range(4):
        for offset in range(1, 2001):
            key = f"k{(offset + worker) % 20}"
            expected[key] = max(expected.get(key, 0), offset)
    assert offsets == expected


# -- file names that are not valid UTF-8 (audit F1) ----------------------------

def test_a_path_that_is_not_utf8_is_saved_reversibly_and_readably(state, clock):
    path = os.fsdecode(b"/logs/bad\xff\xfe.log")  # what glob returns: surrogate escapes
    registry = Registry(state, clock=clock)
    registry.load()
    registry.track(dataclasses.replace(entry("k1"), path=path))
    registry.track(entry("k2", inode=11))
    registry.save()  # raised TypeError (orjson refuses surrogates), every time
    document = json.loads((state / "registry.json").read_text(encoding="utf-8"))
    by_key = {item["key"]: item for item in document["entries"]}
    assert document["version"] == 1
    assert by_key["k1"]["path"] == "/logs/bad\\xff\\xfe.log"  # what an older agent or a person sees
    assert "path_bytes" in by_key["k1"] and "path_bytes" not in by_key["k2"]
    again = Registry(state, clock=clock)
    again.load()
    assert again.get("k1").path == path and os.fsencode(again.get("k1").path) == b"/logs/bad\xff\xfe.log"
    assert again.get("k2").path == "/logs/k2.log"


@settings(max_examples=200, deadline=None)
@given(name=st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b and b"/" not in b))
def test_any_file_name_round_trips_through_the_registry(tmp_path_factory, name):
    state = tmp_path_factory.mktemp("state")
    clock = FakeClock()
    path = "/logs/" + os.fsdecode(name)
    registry = Registry(state, clock=clock)
    registry.load()
    registry.track(dataclasses.replace(entry("k1"), path=path))
    registry.save()
    again = Registry(state, clock=clock)
    again.load()
    assert again.get("k1").path == path


def test_a_damaged_path_bytes_is_corruption(state, clock):
    state.mkdir()
    item = {**dataclasses.asdict(entry("k1")), "path_bytes": "not base64!"}
    (state / "registry.json").write_text(json.dumps({"version": 1, "entries": [item]}))
    registry = Registry(state, clock=clock)
    registry.load()
    assert registry.entries() == [] and any(n.startswith("registry.json.corrupt-") for n in os.listdir(state))


# -- entries of open files never expire (audit F6) -------------------------------

def test_a_held_entry_survives_any_ttl_and_expires_from_its_release(state, clock):
    registry = Registry(state, ttl=0.0, clock=clock)
    registry.load()
    registry.track(entry("open", updated=clock.time()))
    registry.track(entry("closed", inode=11, updated=clock.time()))
    registry.hold("open")
    clock.advance(3600)
    registry.save()
    assert [e.key for e in registry.entries()] == ["open"], "a file being read keeps its offsets"
    registry.commit("open", 10)
    assert registry.get("open").offset == 10
    registry = Registry(state, ttl=100.0, clock=clock)
    registry.load()
    registry.hold("open")
    clock.advance(500)
    registry.release("open")  # closed now: last seen now, not at its last touch
    registry.save()
    assert registry.get("open").updated == clock.time()
    clock.advance(101)
    registry.save()
    assert registry.entries() == []


# -- a failed save in settle (reader thread) is not fatal (audit F7) ------------

def test_settle_logs_a_failed_save_and_retries_it(state, clock, caplog):
    registry = Registry(state, clock=clock)
    registry.load()
    (state / "registry.json").mkdir()  # os.replace onto a directory fails: a real failed write
    registry.track(entry("k1"))
    with caplog.at_level(logging.ERROR, logger="modelscribe"):
        registry.settle()
        registry.settle()
    failures = [r for r in caplog.records if r.getMessage().startswith("cannot save the registry before")]
    assert len(failures) == 1, "logged once per failing streak"
    assert failures[0].kv["path"] == str(state / "registry.json") and "Is a directory" in failures[0].kv["error"]
    with pytest.raises(StateError):
        registry.save()  # the main loop's save still says so (it logs and retries)
    (state / "registry.json").rmdir()
    clock.advance(2)
    registry.settle()
    assert not registry.dirty and json.loads((state / "registry.json").read_text())["entries"][0]["key"] == "k1"


def test_an_entry_is_written_with_every_field_of_its_dataclass():
    # _entry_to_json is written by hand for speed (audit 4): a field added to
    # Entry and forgotten there would be lost at the next save.
    import dataclasses

    from agent.registry import Entry, _entry_to_json, _entry_from_json
    for path, extra in (("/var/log/app.log", set()), ("/var/log/caf\udce9.log", {"path_bytes"})):
        entry = Entry("k", path, 1, 2, 3, "ab", 4, 5, 6.5, True)
        item = _entry_to_json(entry)
        assert set(item) == {field.name for field in dataclasses.fields(Entry)} | extra
        assert _entry_from_json(json.loads(json.dumps(item))) == entry


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["track", "drop"]), st.integers(0, 5), st.integers(10, 12)),
                      max_size=30))
def test_the_inode_index_names_exactly_the_entries_of_each_inode(tmp_path_factory, steps):
    registry = Registry(tmp_path_factory.mktemp("state"), clock=FakeClock())
    for action, n, inode in steps:
        if action == "track":
            registry.track(entry(f"k{n}", inode=inode, generation=n))
        elif registry.get(f"k{n}") is not None:
            with registry._lock:
                registry._drop(f"k{n}")
    for inode in (10, 11, 12):
        expected = sorted((e.fp_hash, e.generation) for e in registry._entries.values() if e.inode == inode)
        assert sorted(registry.generations(1, inode)) == expected


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_the_owner_hint_says_whose_the_file_is_and_what_to_do(tmp_path):
    from agent.registry import owner_hint
    import pwd
    path = tmp_path / "agent_id"
    path.write_text("x")
    path.chmod(0)
    assert owner_hint(path) == f"its mode keeps even its owner out: chmod u+rw {path}"  # (root's, in root's directory)
    os.chown(path, 65534, 65534)
    nobody = pwd.getpwuid(65534).pw_name
    assert owner_hint(path) == f"it belongs to {nobody}, and the agent runs as root: give it back, chown root: {path}"
