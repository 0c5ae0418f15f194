"""The daemon's wiring, with local outputs: per-input formats, the spool's
resume hints, --no-spool, and the timezone of offset-less timestamps."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agent.config import resolve
from agent.pipeline import Pipeline

TS_LINE = ('2026-11-27T10:00:00,123 [INFO ] W-9000-resnet-18_1.0-stdout MODEL_LOG - hello from the handler\n')


def _run(tmp_path, flags, config_text=None):
    out = tmp_path / "out.ndjson"
    cfg = None
    if config_text:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(config_text)
    config = resolve({"state_dir": str(tmp_path / "state"), "output": f"file:{out}", "once": True, **flags}, {},
                     str(cfg) if cfg else None, require_paths=True)
    assert Pipeline(config).run() == 0
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_per_input_formats_from_the_config_file(tmp_path):
    (tmp_path / "ts").mkdir()
    (tmp_path / "raw").mkdir()
    (tmp_path / "ts" / "model_log.log").write_text(TS_LINE)
    (tmp_path / "raw" / "model_log.log").write_text(TS_LINE)
    docs = _run(tmp_path, {}, "inputs:\n  - paths: [ts/*.log]\n    format: torchserve\n"
                              "  - paths: [raw/*.log]\n    format: plain\n")
    by_dir = {doc["log"]["file"]["path"].split("/")[-2]: doc for doc in docs}
    assert by_dir["ts"]["model"]["name"] == "resnet-18"
    assert by_dir["ts"]["message"] == "hello from the handler"
    assert "model" not in by_dir["raw"] and by_dir["raw"]["message"] == TS_LINE.strip()


def test_no_spool_and_spool_ship_the_same_documents(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.log").write_text("".join(f"line {i}\n" for i in range(1000)))
    with_spool = _run(tmp_path / "a", {"paths": (str(tmp_path / "a" / "*.log"),)})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.log").write_text("".join(f"line {i}\n" for i in range(1000)))
    without = _run(tmp_path / "b", {"paths": (str(tmp_path / "b" / "*.log"),), "spool": False})
    assert [d["message"] for d in with_spool] == [d["message"] for d in without] == [f"line {i}" for i in range(1000)]
    assert (tmp_path / "a" / "state" / "spool").is_dir() and not (tmp_path / "b" / "state" / "spool").exists()


def test_spooled_records_are_not_read_again(tmp_path):
    """Records already in the spool (a previous run could not send them) are
    delivered from the spool, and reading resumes after them."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x.log").write_text("".join(f"line {i}\n" for i in range(100)))
    state = tmp_path / "state"
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(state), "output": "null", "once": True}, {})
    first = Pipeline(config)
    first.tailer.run_once()
    first._sink.flush_all()
    first._sink.hand_over()
    first.tailer.close()
    first.registry.save()  # the daemon saves it every second: the file is known, at offset 0
    first.spool.close()  # "crash": spooled, never sent, nothing committed
    for lock in first._locks:
        lock.release()  # (as the end of a crashed process does)
    out = tmp_path / "out.ndjson"
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(state), "output": f"file:{out}",
                      "once": True}, {})
    second = Pipeline(config)
    assert second.run() == 0
    messages = [json.loads(line)["message"] for line in out.read_text().splitlines()]
    assert messages == [f"line {i}" for i in range(100)]  # once each: from the spool, none re-read


def test_spool_batches_respect_count_and_age(tmp_path):
    """With the spool, batches fill up to --bulk-max-docs, and a partial one goes after --flush-interval."""
    from agent.acks import AckTracker
    from agent.events import Event
    from agent.outputs.batcher import Batcher
    from agent.spool import DiskQueue
    from agent.stats import Stats

    spool = DiskQueue(tmp_path / "spool", 10 * 2**20)
    spool.open()
    spool.append([Event("k", i, i + 1, f"id{i}", b"{}") for i in range(25)])
    sizes = []
    acks = AckTracker(lambda key, offset: None)
    batcher = Batcher(spool, lambda events: sizes.append(len(events)), acks, max_docs=10,
                           max_bytes=2**20, flush_interval=0.2, workers=1, stats=Stats())
    thread = threading.Thread(target=batcher.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while sum(sizes) < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        batcher.stop.set()
        thread.join(10)
        spool.close()
    assert sizes == [10, 10, 5]


def test_a_dead_reader_stops_the_daemon_with_exit_code_1(tmp_path, caplog):
    """A disk error from the spool writer kills the reader: the daemon must
    stop with a clear log line and a non-zero exit code (it returned 0)."""
    from agent.errors import EXIT_RUNTIME, StateError

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x.log").write_text("".join(f"line {i}\n" for i in range(100)))
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"),
                      "output": "null", "shutdown_timeout": 2.0, "metrics_addr": "off"}, {})
    pipeline = Pipeline(config)

    def broken_append(events, timeout=None):
        raise StateError("cannot write spool segment: No space left on device")

    pipeline.spool.append = broken_append
    done = []
    runner = threading.Thread(target=lambda: done.append(pipeline.run()))
    runner.start()
    runner.join(30)
    if runner.is_alive():
        pipeline.stop()
        runner.join(10)
        raise AssertionError("the daemon kept running after its reader died")
    assert done == [EXIT_RUNTIME]
    # An error the agent raised on purpose: its message, one line, no traceback.
    [died] = [r for r in caplog.records if r.getMessage() == "a stage died; stopping the agent"]
    assert "No space left on device" in died.kv["error"] and died.exc_info is None


def _one_log(tmp_path, name, lines):
    """``tmp_path/logs/NAME`` holding ``lines`` (each with its newline): (logs, the file, out, state)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / name
    app.write_text("".join(line + "\n" for line in lines))
    return logs, app, tmp_path / "out.ndjson", tmp_path / "state"


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_failing_registry_save_is_logged_and_retried_not_fatal(tmp_path, caplog):
    """A registry that cannot be written (here: registry.json replaced by a
    directory, so the atomic rename fails) exited the daemon at once, with no
    stop protocol. It must keep shipping, log, and save again once it can; a
    final save that fails makes the exit code 1 with a clear error."""
    import logging

    from agent.errors import EXIT_RUNTIME

    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "x.log"
    app.write_text("".join(f"line {i}\n" for i in range(10)))
    out = tmp_path / "out.ndjson"
    state = tmp_path / "state"
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(state), "output": f"file:{out}",
                      "shutdown_timeout": 5.0, "metrics_addr": "off", "scan_interval": 0.5,
                      "flush_interval": 0.1}, {})
    pipeline = Pipeline(config)
    registry_file = state / "registry.json"

    def shipped():
        return len(out.read_text().splitlines()) if out.exists() else 0

    def committed():
        try:
            return json.loads(registry_file.read_text())["entries"][0]["offset"]
        except (OSError, ValueError, LookupError):
            return -1

    done = []
    with caplog.at_level(logging.INFO, logger="modelscribe"):
        runner = threading.Thread(target=lambda: done.append(pipeline.run()))
        runner.start()
        try:
            assert _wait(lambda: committed() == app.stat().st_size), "first lines saved"
            registry_file.unlink()
            registry_file.mkdir()  # every save fails from now on
            with open(app, "a") as handle:
                handle.write("".join(f"line {i}\n" for i in range(10, 20)))
            assert _wait(lambda: shipped() == 20), "shipping goes on"
            assert _wait(lambda: "cannot save the registry; shipping goes on" in caplog.text)
            time.sleep(1.5)
            assert runner.is_alive(), "a failed save stopped the daemon"
            assert caplog.text.count("cannot save the registry; shipping goes on") == 1, "logged once, not every second"
            registry_file.rmdir()
            assert _wait(lambda: committed() == app.stat().st_size), "saved again once it can"
            assert "registry saved again" in caplog.text
            registry_file.unlink()
            registry_file.mkdir()  # and the final save fails too
        finally:
            pipeline.stop()
            runner.join(30)
    assert not runner.is_alive()
    assert done == [EXIT_RUNTIME]
    final = [r for r in caplog.records if r.getMessage().startswith("cannot save offsets before exiting")]
    assert len(final) == 1 and final[0].kv["path"] == str(registry_file)
    assert any(r.getMessage() == "stopped" and r.kv["offsets_saved"] is False for r in caplog.records)


def test_a_state_ttl_of_zero_does_not_make_once_runs_ship_again(tmp_path, caplog):
    """--state-ttl 0 dropped every entry at each save: each --once run re-shipped the whole file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x.log").write_text("".join(f"line {i}\n" for i in range(5)))
    flags = {"paths": (str(logs / "*.log"),), "state_ttl": 0.0}
    assert [d["message"] for d in _run(tmp_path, flags)] == [f"line {i}" for i in range(5)]
    with open(logs / "x.log", "a") as handle:
        handle.write("line 5\n")
    docs = _run(tmp_path, flags)  # the file output appends: the second run's documents follow the first's
    assert [d["message"] for d in docs] == [f"line {i}" for i in range(6)]
    assert "--state-ttl is too short" in caplog.text


def test_the_agents_own_files_are_never_tailed(tmp_path, agent_log):
    """A glob over the state directory, the dead-letter file and the file
    output shipped them back (the spool, the registry, the documents of the
    previous run...), growing without bound. They are left out whatever the
    globs say, also through a symlink, with one warning at start-up naming
    the glob; a sibling directory whose name starts like the state
    directory's is tailed as usual."""
    root = tmp_path / "root"
    (root / "logs").mkdir(parents=True)
    (root / "state2").mkdir()
    (root / "logs" / "a.log").write_text("from a\n")
    (root / "state2" / "app.log").write_text("from a sibling\n")
    letters = root / "letters.ndjson"
    letters.write_text('{"an": "old letter"}\n')
    state, out = root / "state", root / "out.ndjson"
    state.mkdir()
    (root / "logs" / "link").symlink_to(state)  # root/** reaches the state directory twice
    flags = {"paths": (str(root / "**"),), "state_dir": str(state), "output": f"file:{out}",
             "dead_letter_file": str(letters), "once": True}
    for _ in range(2):  # the second run finds the registry, the spool and the first run's output
        assert Pipeline(resolve(flags, {}, require_paths=True)).run() == 0
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(doc["log"]["file"]["path"] for doc in docs) == [str(root / "logs" / "a.log"),
                                                                   str(root / "state2" / "app.log")]
    warned = [r for r in agent_log if "reaches the agent's own files" in r.getMessage()]
    assert len(warned) == 2  # once per start
    assert str(root / "**") in warned[0].getMessage()
    assert warned[0].kv["covers"] == (f"the state directory {state}, the dead-letter file {letters}, "
                                      f"the file output {out}")
    refused = [r.kv["path"] for r in agent_log if r.getMessage() == "not tailed: one of the agent's own files"]
    assert refused and all(path.startswith(str(root / "logs" / "link") + "/") for path in refused)


def test_a_file_matched_by_two_inputs_is_named_once_and_the_first_wins(tmp_path, agent_log):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text('{"message": "json line"}\n{"message": "again"}\n')
    (logs / "b.log").write_text("only the first input matches this one\n")
    config = ("inputs:\n  - paths: [logs/*.log]\n    format: plain\n"
              "  - paths: [logs/a.log]\n    format: json\n")
    docs = _run(tmp_path, {}, config)
    a_docs = [doc for doc in docs if doc["log"]["file"]["path"].endswith("a.log")]
    assert [doc["message"] for doc in a_docs] == ['{"message": "json line"}', '{"message": "again"}']  # plain
    named = [r for r in agent_log if r.getMessage().startswith("file matches inputs with different settings")]
    assert len(named) == 1
    assert named[0].kv == {"path": str(logs / "a.log"), "applies": f"inputs[1] ({logs / '*.log'})",
                           "ignored": f"inputs[2] ({logs / 'a.log'})"}
    assert any("inputs[1] and inputs[2] can match the same file" in r.getMessage() for r in agent_log)


@pytest.mark.parametrize("real, link", [("real", "link"), ("areal", "zlink")])
def test_a_file_reached_through_a_symlink_gets_the_first_matching_inputs_settings(tmp_path, real, link):
    # Audit 7: which input applied to a file two paths reach (a symlinked
    # directory) was decided by which path sorted first, not by the inputs' order.
    (tmp_path / real).mkdir()
    (tmp_path / real / "app.log").write_text('{"message": "hello", "k": 1}\n')
    (tmp_path / link).symlink_to(tmp_path / real)
    config = (f"inputs:\n  - paths: [{real}/*.log]\n    format: json\n"
              f"  - paths: [{link}/*.log]\n    format: plain\n")
    docs = _run(tmp_path, {}, config)
    assert [(doc["log"]["file"]["path"], doc["message"]) for doc in docs] == [
        (str(tmp_path / real / "app.log"), "hello")]
    # --path (plain here) applies only where no input matches: the input wins.
    again = tmp_path / "again"
    again.mkdir()
    docs = _run(again, {"paths": (str(tmp_path / link / "*.log"),), "format": "plain"},
                f"inputs:\n  - paths: [{tmp_path / real}/*.log]\n    format: json\n")
    assert [doc["message"] for doc in docs] == ["hello"]


def test_once_that_dropped_events_says_so_and_exits_3(tmp_path, agent_log, monkeypatch):
    """--when-full drop-newest: the summary counts the dropped events, a
    warning says they are lost, and the exit code is 3 ("could not take
    everything"). It said nothing and exited 0."""
    from agent.errors import EXIT_OUTPUT

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x.log").write_text("".join(f"line {i}\n" for i in range(3000)))
    out = tmp_path / "out.ndjson"
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"),
                      "output": f"file:{out}", "once": True, "when_full": "drop-newest"}, {})
    pipeline = Pipeline(config)
    append, refused = pipeline.spool.append, []

    def full_once(events, timeout=None):  # the spool is full for the first group only
        if not refused:
            refused.append(len(events))
            return False
        return append(events, timeout)

    monkeypatch.setattr(pipeline.spool, "append", full_once)
    assert pipeline.run() == EXIT_OUTPUT
    dropped = refused[0]
    assert len(out.read_text().splitlines()) == 3000 - dropped
    summary = [r for r in agent_log if r.getMessage() == "run finished"]
    assert summary[0].kv["dropped"] == dropped
    assert any(r.getMessage().startswith("some events were dropped, not delivered")
               and r.kv["count"] == dropped for r in agent_log)
    assert sum(r.kv.get("dropped", 0) for r in agent_log if r.levelname == "WARNING") == dropped


def _unusable_output_pipeline(tmp_path, once, error):
    """A pipeline whose output's start-up check raises ``error``."""
    logs = tmp_path / "logs"
    logs.mkdir(parents=True)
    (logs / "x.log").write_text("".join(f"line {i}\n" for i in range(50)))
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"), "output": "null",
                      "once": once, "shutdown_timeout": 2.0, "metrics_addr": "off"}, {})
    pipeline = Pipeline(config)

    def preflight():
        raise error

    pipeline.output.preflight = preflight  # type: ignore[attr-defined]
    return pipeline


def test_an_unusable_output_at_start_up_is_a_warning_for_the_daemon_which_reads_on(tmp_path, agent_log):
    """Audit 3, finding 9: the daemon said "the output is not usable, nothing
    was read" at error level, then read everything. --once keeps it (exit 3)."""
    from agent.errors import EXIT_OK, EXIT_OUTPUT, TransientOutputError

    down = TransientOutputError("cannot connect to Elasticsearch at http://127.0.0.1:1: refused")
    pipeline = _unusable_output_pipeline(tmp_path / "daemon", False, down)
    done = []
    runner = threading.Thread(target=lambda: done.append(pipeline.run()))
    runner.start()
    try:
        assert _wait(lambda: pipeline.stats.snapshot().events_acked == 50), "the daemon read nothing"
    finally:
        pipeline.stop()
        runner.join(30)
    assert done == [EXIT_OK]
    [said] = [r for r in agent_log if "not usable" in r.getMessage()]
    assert said.levelname == "WARNING" and "nothing was read" not in said.getMessage()
    assert said.getMessage() == ("the output is not usable yet; starting anyway: delivery will be retried until "
                                 "it is") and said.kv == {"error": str(down)}
    assert not [r for r in agent_log if r.levelname == "ERROR"]
    agent_log.clear()
    once = _unusable_output_pipeline(tmp_path / "once", True, down)
    assert once.run() == EXIT_OUTPUT
    [said] = [r for r in agent_log if "not usable" in r.getMessage()]
    assert said.levelname == "ERROR" and said.getMessage() == "the output is not usable, nothing was read"
    assert once._sink.lines == 0


def test_a_target_that_would_store_raw_documents_unparsed_stops_the_start(tmp_path):
    """--parse-at elasticsearch into a target no entry pipeline serves
    (agent.outputs.entry_pipeline): the daemon and --once alike stop before
    reading, exit code 3, instead of warning and reading on."""
    import pytest

    from agent.errors import EXIT_OUTPUT
    from agent.outputs.entry_pipeline import NoEntryPipeline

    for once in (True, False):
        pipeline = _unusable_output_pipeline(tmp_path / str(once), once, NoEntryPipeline("stored unparsed"))
        with pytest.raises(NoEntryPipeline) as raised:
            pipeline.run()
        assert raised.value.exit_code == EXIT_OUTPUT
        assert pipeline._sink.lines == 0


def test_a_stop_while_the_spool_cannot_be_written_is_prompt_and_loses_nothing(tmp_path, monkeypatch, caplog):
    """A stop with the spool directory read-only (or immutable) waited out
    --shutdown-timeout and the grace (35 s), then said "unacknowledged events
    will be read again" with none in flight. Nothing can free the disk then:
    the lines not spooled are given up at once, and read at the next start."""
    import errno
    import logging

    import agent.spool.queue as queue_module

    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "x.log"
    app.write_text("".join(f"line {i} {'x' * 200}\n" for i in range(200)))
    out = tmp_path / "out.ndjson"
    settings = {"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"), "output": f"file:{out}",
                "shutdown_timeout": 20.0, "metrics_addr": "off", "flush_interval": 0.1,
                "spool_max_bytes": 64 * 1024}
    real_create = queue_module.create_segment
    unwritable = threading.Event()

    def create_segment(*args, **kwargs):
        if unwritable.is_set():
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_create(*args, **kwargs)

    monkeypatch.setattr(queue_module, "create_segment", create_segment)

    def shipped():
        return [int(json.loads(line)["message"].split()[1]) for line in out.read_text().splitlines()] \
            if out.exists() else []

    pipeline = Pipeline(resolve(settings, {}))
    done = []
    with caplog.at_level(logging.INFO, logger="modelscribe"):
        runner = threading.Thread(target=lambda: done.append(pipeline.run()))
        runner.start()
        try:
            assert _wait(lambda: len(shipped()) == 200)
            unwritable.set()
            with open(app, "a") as handle:
                handle.write("".join(f"line {i} {'y' * 200}\n" for i in range(200, 1200)))
            assert _wait(lambda: "spool directory cannot be written" in caplog.text)
        finally:
            started = time.monotonic()
            pipeline.stop()
            runner.join(60)
    assert not runner.is_alive() and done == [0]
    assert time.monotonic() - started < 10, "the stop waited for a disk nothing could free"
    assert "stopping while the spool cannot be written" in caplog.text
    assert "shutdown timeout reached" not in caplog.text
    unwritable.clear()
    assert Pipeline(resolve({**settings, "once": True}, {})).run() == 0
    assert sorted(shipped()) == list(range(1200)), "every line once, after the restart"


def test_a_file_made_while_running_under_a_symlinked_directory_gets_the_first_matching_input(tmp_path):
    # Audit 8: the file-system event named the real path, and the file was opened
    # under it at once: the second input's settings (JSON shipped unparsed).
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "link").symlink_to(root / "real")
    (root / "real" / "first.log").write_text('{"message": "at start", "k": 1}\n')
    out = tmp_path / "out.ndjson"
    config_file = tmp_path / "agent.yml"
    config_file.write_text(f"inputs:\n  - paths: [{root}/link/*.log]\n    format: json\n"
                           f"  - paths: [{root}/real/*.log]\n    format: plain\n")
    config = resolve({"state_dir": str(tmp_path / "state"), "output": f"file:{out}", "metrics_addr": "off",
                      "scan_interval": 600.0, "flush_interval": 0.1, "shutdown_timeout": 5.0}, {},
                     str(config_file), require_paths=True)
    pipeline = Pipeline(config)

    def shipped():
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        assert _wait(lambda: len(shipped()) == 1)
        (root / "real" / "later.log").write_text('{"message": "made later", "k": 2}\n')
        assert _wait(lambda: len(shipped()) == 2, timeout=10), "found by its event (scans are 10 minutes apart)"
    finally:
        pipeline.stop()
        runner.join(30)
    assert [(doc["log"]["file"]["path"], doc["message"]) for doc in shipped()] == [
        (str(root / "link" / "first.log"), "at start"), (str(root / "link" / "later.log"), "made later")]


def _spool_without_sending(logs, state, config_text=None):
    """A run that read every line into the spool and died before sending any
    (the registry knows the file, at offset 0)."""
    cfg = None
    if config_text:
        cfg = logs.parent / "m.yaml"
        cfg.write_text(config_text)
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(state), "output": "null", "once": True},
                     {}, str(cfg) if cfg else None)
    first = Pipeline(config)
    first.tailer.run_once()
    first._sink.flush_all()
    first._sink.hand_over()
    assert first._handoff.flush(30)  # (the spool-writer thread appends behind the reader: all in the spool)
    return first


def _crash(pipeline):
    pipeline.tailer.close()
    pipeline.registry.save()
    pipeline.spool.close()
    for lock in pipeline._locks:
        lock.release()


def test_a_registry_save_the_full_disk_refuses_makes_the_spool_free_its_delivered_records(tmp_path, monkeypatch,
                                                                                         caplog):
    """Audit 11: on a 3 MiB state disk the registry (and health's state) could not
    be saved, for 54 s while idle, beside a 1.5 MB spool segment of delivered
    records, freed only when the spool's own write failed. A state writer's
    ENOSPC now tells the spool, which frees it; the save is tried again at once."""
    import errno
    import logging
    import os

    import agent.registry as registry_module

    logs, app, _, state = _one_log(tmp_path, "x.log", (f"line {i:04d} {'x' * 200}" for i in range(500)))
    pipeline = _spool_without_sending(logs, state, "health: {window: 60, lateness: 30}\n")
    try:
        assert pipeline.health.engine.on_disk_full == pipeline.spool.reclaim  # health's writers are wired too
        spool_dir = state / "spool"
        last_end = 0
        while taken := pipeline.spool.take(100_000, 1 << 40, 0):
            pipeline.spool.ack(taken.refs)  # delivered: the segment stays, being written
            for event in taken.events:
                pipeline.registry.commit(event.source_key, event.end)
                last_end = max(last_end, event.end)
        assert last_end > 50_000
        assert list(spool_dir.glob("*.seg"))
        real_write_atomic = registry_module.write_atomic
        refused = []

        def full_disk(path, *args, **kwargs):  # full while the delivered segment takes the space
            if list(spool_dir.glob("*.seg")):
                refused.append(path)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write_atomic(path, *args, **kwargs)

        monkeypatch.setattr(registry_module, "write_atomic", full_disk)
        with caplog.at_level(logging.INFO, logger="modelscribe"):
            assert _wait(lambda: pipeline._save_state() or refused, 10)  # (the daemon's saves, paced)
        assert refused, "(the disk was full)"
        assert "cannot save the registry" not in caplog.text  # before: failed, every second, while idle
        assert json.loads((state / "registry.json").read_text())["entries"][0]["offset"] == last_end
        assert not list(spool_dir.glob("*.seg")) and pipeline.spool.used_bytes() == 0
        assert "the spool freed its delivered records" in caplog.text
    finally:
        pipeline.health.close()
        _crash(pipeline)


def _garble_middle(spool_dir):
    (segment,) = spool_dir.glob("*.seg")
    data = bytearray(segment.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = b"\xa5" * 64
    segment.write_bytes(bytes(data))


@pytest.mark.parametrize("file_gone", [True, False], ids=["file_gone", "file_there"])
def test_damaged_spool_frames_say_what_they_held_and_count_what_is_lost(tmp_path, caplog, file_gone):
    """Audit 11: damaged frames were logged as "skipped bytes=N" only, the same
    whether 698 lines of a file gone were lost or the range was read again; and
    lost_bytes stayed 0. Now: "re-read from FILE at OFFSET", or "lost: FILE
    offsets A to B, about N lines", counted in lost_bytes."""
    import logging

    width = len(f"line {0:04d} {'x' * 100}\n")
    logs, app, _, state = _one_log(tmp_path, "app.log", (f"line {i:04d} {'x' * 100}" for i in range(1000)))
    _crash(_spool_without_sending(logs, state))
    _garble_middle(state / "spool")
    if file_gone:
        app.unlink()  # rotated away and deleted while the agent was down
    out = tmp_path / "out.ndjson"
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(state), "output": f"file:{out}",
                      "once": True}, {})
    with caplog.at_level(logging.INFO, logger="modelscribe"):
        pipeline = Pipeline(config)
        assert pipeline.run() == 0
    shipped = {int(json.loads(line)["message"].split()[1]) for line in out.read_text().splitlines()}
    missing = sorted(set(range(1000)) - shipped)
    said = [r for r in caplog.records if r.getMessage().startswith("spool damage:")]
    assert len(said) == 1, [r.getMessage() for r in said]
    status = json.loads((state / "status.json").read_text())
    lost_bytes = status["counters"]["lost_bytes"]
    if file_gone:
        assert missing, "(the damage took lines)"
        start, stop = missing[0] * width, (missing[-1] + 1) * width
        assert said[0].getMessage().startswith(
            f"spool damage: lost: {app} offsets {start} to {stop}, about {len(missing)} lines")
        assert lost_bytes == stop - start == len(missing) * width
    else:
        assert missing == []  # read again from the file
        assert said[0].getMessage().startswith(f"spool damage: re-read from {app} at ")
        assert lost_bytes == 0


def test_a_full_disk_the_spool_cannot_free_shows_in_status_until_writes_go_through(tmp_path, monkeypatch, caplog):
    """Audit 12: on a full state disk the spool could not free, the agent logged
    "spool: writing resumed" after one small write, then stalled again in
    silence, and status.json's spool part said nothing of it. Now status.json
    carries the episode (``disk_full``), and "writing resumed" comes once
    writes have gone through for DISK_FULL_QUIET seconds."""
    import errno
    import logging
    import os

    import agent.spool.queue as queue_module

    monkeypatch.setattr(queue_module, "DISK_FULL_QUIET", 1.0, raising=False)
    real_write_all = queue_module.write_all
    full = threading.Event()
    through = []

    def write_all(fd, data):
        if full.is_set() and len(data) > 2000:  # (a small write goes through now and then, as on the audit's disk)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        through.append(len(data))
        real_write_all(fd, data)

    monkeypatch.setattr(queue_module, "write_all", write_all)
    logs, app, out, state = _one_log(tmp_path, "x.log", (f"line {i} {'x' * 200}" for i in range(200)))
    settings = {"paths": (str(logs / "*.log"),), "state_dir": str(state), "output": f"file:{out}",
                "metrics_addr": "off", "flush_interval": 0.1}

    def shipped():
        return len(out.read_text().splitlines()) if out.exists() else 0

    def episode():
        try:
            return json.loads((state / "status.json").read_text())["spool"].get("disk_full", "missing")
        except (OSError, ValueError, KeyError, TypeError):
            return "missing"

    pipeline = Pipeline(resolve(settings, {}))
    done = []
    with caplog.at_level(logging.INFO, logger="modelscribe"):
        runner = threading.Thread(target=lambda: done.append(pipeline.run()))
        runner.start()
        try:
            assert _wait(lambda: shipped() == 200)
            assert _wait(lambda: episode() is None), episode()  # (key written, no episode)
            full.set()
            before = len(through)
            with open(app, "a") as handle:
                handle.write("".join(f"line {i} {'y' * 200}\n" for i in range(200, 3200)))
            assert _wait(lambda: isinstance(episode(), dict) and not episode()["writing"]), episode()
            assert episode()["error"] == "No space left on device"
            time.sleep(1.5)  # small writes went through meanwhile; more than DISK_FULL_QUIET
            assert len(through) > before, "(small writes went through)"
            assert isinstance(episode(), dict), "the episode goes on while writes fail"
            assert "spool: writing resumed" not in caplog.text
            full.clear()
            assert _wait(lambda: shipped() == 3200)
            assert _wait(lambda: episode() is None), episode()
            assert caplog.text.count("spool: writing resumed") == 1
            assert caplog.text.count("spool: the disk is full") == 1
        finally:
            pipeline.stop()
            runner.join(60)
    assert done == [0]
