"""Reloading without a restart (issue 12, item 6): what a reload changes
(``agent.reload.diff``), how the reloader refuses and warns, the tailer taking
new globs on real files, and the daemon switching parsers between two lines."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.config import resolve
from agent.events import Line, Source
from agent.pipeline import Pipeline
from agent.registry import Registry
from agent.reload import LIVE, RESTART, Reloader, diff, setting_name
from agent.selflog import Secret
from agent.sources.tailer import Tailer, TailSettings


@pytest.fixture
def records():
    """The agent's own log records."""
    logger = logging.getLogger("modelscribe")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old)


def _config(tmp_path: Path, text: str = "", env: dict | None = None, **flags):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(text)
    base = {"paths": (str(tmp_path / "a" / "*.log"),), "state_dir": str(tmp_path / "state")}
    return resolve({**base, **flags}, env or {}, str(cfg), require_paths=True)


# -- the diff -----------------------------------------------------------------

def test_live_and_restart_settings_are_sorted_and_the_running_values_of_restart_ones_stay(tmp_path):
    running = _config(tmp_path, "format: plain\nworkers: 2\nes_url: http://localhost:9200\n",
                      env={"MODELSCRIBE_API_KEY": "old"})
    new = _config(tmp_path, "format: json\nworkers: 4\nes_url: http://other:9200\nlog_level: debug\n"
                            "exclude: ['*.gz']\ninputs:\n  - paths: [b/*.log]\n    format: plain\n",
                  env={"MODELSCRIBE_API_KEY": "new"})
    changes = diff(running, new)
    assert set(changes.live) == {"format", "log_level", "excludes", "inputs", "api_key"}
    assert set(changes.restart) == {"workers", "es_urls"}
    effective = changes.config
    assert effective.format == "json" and effective.log_level == "debug" and effective.api_key == Secret("new")
    assert effective.all_paths == (str(tmp_path / "a" / "*.log"), str(tmp_path / "b" / "*.log"))
    assert effective.workers == 2 and effective.es_urls == ("http://localhost:9200",)
    assert effective.origins["workers"] == running.origins["workers"]
    assert sorted(setting_name(name) for name in changes.restart) == ["--es-url", "--workers"]


def test_nothing_changed_is_an_empty_diff(tmp_path):
    running = _config(tmp_path, "format: plain\n")
    changes = diff(running, _config(tmp_path, "format: plain\n"))
    assert changes.live == () and changes.restart == () and changes.config == running


@pytest.mark.parametrize("name", ["output", "es_urls", "spool", "spool_dir", "spool_max_bytes", "workers",
                                  "state_dir", "metrics_addr", "bulk_max_docs", "ca_cert", "tls_verify",
                                  "data_stream", "index", "queue_events", "timezone", "max_line_bytes",
                                  "fingerprint_bytes", "once"])
def test_what_needs_a_restart(name):
    assert name in RESTART and name not in LIVE


@pytest.mark.parametrize("name", ["paths", "excludes", "inputs", "format", "log_format", "multiline_start",
                                  "map_fields", "api_key", "password", "api_key_file", "log_level",
                                  "redact_fields", "sample", "fields"])
def test_what_is_live(name):
    assert name in LIVE and name not in RESTART


# -- the reloader ---------------------------------------------------------------

class _Recorder:
    """Stands for the tailer, the sink and the output."""

    def __init__(self) -> None:
        self.applied: list[TailSettings] = []
        self.credentials: list = []

    def apply(self, settings, before=None) -> None:
        self.applied.append(settings)

    def set_credentials(self, settings) -> None:
        self.credentials.append(settings)


def test_a_config_that_does_not_resolve_is_refused_whole_with_one_error_line(tmp_path, records):
    running = _config(tmp_path, "format: plain\n")
    recorder = _Recorder()
    cfg = tmp_path / "agent.yml"
    reloader = Reloader(running, lambda: resolve({"paths": running.paths, "state_dir": running.state_dir}, {},
                                                 str(cfg), require_paths=True), recorder, recorder, recorder)
    cfg.write_text("format: json\nfromat: plain\n")
    assert reloader.reload() is running
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "unknown setting 'fromat'" in errors[0].kv["error"]
    assert recorder.applied == [] and reloader.config is running


@pytest.mark.parametrize("content, expected", [
    (b"format: json\n\xff\xfe\x80\n", "not UTF-8 text (byte 0xff at line 2)"),
    (b"health:\n  fields: {latency_unit: [ms]}\n", "health.fields.latency_unit: one of ns, us, ms, s"),
    (b"max_line_bytes: .inf\n", "max_line_bytes: inf is too large"),
    (b"scan_interval: .nan\n", "scan_interval: nan is not a duration"),
    (b"workers: 2\nworkers: 3\n", "the key 'workers' is given twice"),
])
def test_bad_input_on_reload_is_refused_with_one_line_not_a_traceback(tmp_path, records, content, expected):
    running = _config(tmp_path, "format: plain\n")
    recorder = _Recorder()
    cfg = tmp_path / "agent.yml"
    reloader = Reloader(running, lambda: resolve({"paths": running.paths, "state_dir": running.state_dir}, {},
                                                 str(cfg), require_paths=True), recorder, recorder, recorder)
    cfg.write_bytes(content)
    assert reloader.reload() is running
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["reload refused: the configuration is not valid; the running one stays"]
    assert expected in errors[0].kv["error"] and not errors[0].exc_info


def test_a_restart_setting_is_warned_about_once_per_change(tmp_path, records):
    running = _config(tmp_path, "workers: 2\n")
    texts = iter(["workers: 4\nformat: json\n", "workers: 4\nformat: json\n", "workers: 5\nformat: json\n"])
    cfg = tmp_path / "agent.yml"

    def again():
        cfg.write_text(next(texts))
        return resolve({"paths": running.paths, "state_dir": running.state_dir}, {"MODELSCRIBE_API_KEY": "k"},
                       str(cfg), require_paths=True)

    recorder = _Recorder()
    reloader = Reloader(running, again, recorder, recorder, recorder)
    for _ in range(3):
        reloader.reload()
    warnings = [r.kv["settings"] for r in records if r.levelno == logging.WARNING]
    assert warnings == ["--workers", "--workers"]  # 2 -> 4, then 4 -> 5; not again for the same 4
    assert reloader.config.workers == 2 and reloader.config.format == "json"
    assert len(recorder.applied) == 1  # the format, once; later reloads changed nothing live
    assert len(recorder.credentials) == 1 and recorder.credentials[0].api_key == Secret("k")
    reloaded = [r.kv for r in records if r.getMessage() == "configuration reloaded"]
    assert reloaded[0] == {"changed": "--format,api_key", "needs_restart": "--workers"}


def test_a_bug_while_reloading_is_logged_and_the_running_config_stays(tmp_path, records):
    running = _config(tmp_path)

    def broken():
        raise RuntimeError("boom")

    recorder = _Recorder()
    assert Reloader(running, broken, recorder, recorder, recorder).reload() is running
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == \
        ["reload failed; the running configuration stays"]


# -- the tailer on real files -------------------------------------------------------

class _Sink:
    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.closed: list[Source] = []

    def line(self, line: Line) -> None:
        self.lines.append(line)

    def extend(self, lines: list[Line], data=None, at=0) -> None:
        self.lines.extend(lines)

    def tick(self, now: float) -> None:
        pass

    def source_closed(self, source: Source) -> None:
        self.closed.append(source)

    def texts(self, directory: Path) -> list[str]:
        return [line.text for line in self.lines if line.source.path.startswith(str(directory) + "/")]


def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def _tail(*patterns: str) -> TailSettings:
    return TailSettings(paths=patterns, use_watchdog=False)


def test_the_tailer_takes_new_globs_and_closes_files_no_longer_matched(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _append(a / "x.log", "a1\n")
    _append(b / "y.log", "b1\n")
    clock = FakeClock()
    registry = Registry(tmp_path / "state", clock=clock)
    sink = _Sink()
    calls: list[int] = []
    with Tailer(_tail(str(a / "*.log")), registry, sink, clock) as tailer:
        tailer.poll()
        assert sink.texts(a) == ["a1"] and sink.texts(b) == []
        tailer.apply(_tail(str(b / "*.log")), before=lambda: calls.append(len(sink.lines)))
        _append(a / "x.log", "a2\npar")  # written before the reader took the settings
        assert calls == []  # nothing happens until the reader's next poll
        tailer.poll()
        assert calls == [1]  # before anything of this poll was read
        assert sink.texts(a) == ["a1", "a2"]  # read to its end (complete lines), then closed
        assert sink.texts(b) == ["b1"]
        assert [source.path for source in sink.closed] == [str(a / "x.log")]
        assert tailer.open_files() == 1
        key = sink.lines[0].source.key
        entry = registry.get(key)
        assert entry is not None and not entry.gone  # the offset stays in the registry
        for line in sink.lines:
            registry.commit(line.source.key, line.end)

        _append(a / "x.log", "tial\na3\n")
        _append(b / "y.log", "b2\n")
        clock.advance(5)
        tailer.poll()
        assert sink.texts(a) == ["a1", "a2"] and sink.texts(b) == ["b1", "b2"]

        # Matched again: resumed at its committed offset, the partial line whole.
        tailer.apply(_tail(str(a / "*.log"), str(b / "*.log")))
        clock.advance(5)
        tailer.poll()
        assert sink.texts(a) == ["a1", "a2", "partial", "a3"]
        assert {line.source.key for line in sink.lines if line.source.path == str(a / "x.log")} == {key}
        assert tailer.open_files() == 2


def test_a_file_matched_again_before_its_lines_are_acknowledged_is_not_read_twice(tmp_path):
    # Audit 9: removed by one reload and put back by the next while the output
    # was down, the file resumed at its committed offset and its unacknowledged
    # lines were sent twice (real duplicates with a file output).
    _append(tmp_path / "b.log", "b1\nb2\n")
    clock = FakeClock()
    registry = Registry(tmp_path / "state", clock=clock)
    sink = _Sink()
    with Tailer(_tail(str(tmp_path / "*.log")), registry, sink, clock) as tailer:
        tailer.poll()
        registry.commit(sink.lines[0].source.key, sink.lines[0].end)  # b1 acknowledged, b2 in flight
        _append(tmp_path / "b.log", "b3\n")
        tailer.apply(_tail(str(tmp_path / "nothing-*.log")))
        tailer.poll()
        assert tailer.open_files() == 0 and sink.texts(tmp_path) == ["b1", "b2", "b3"]
        _append(tmp_path / "b.log", "b4\n")
        tailer.apply(_tail(str(tmp_path / "*.log")))
        clock.advance(5)
        tailer.poll()
        assert sink.texts(tmp_path) == ["b1", "b2", "b3", "b4"], "b2 and b3 were handed over once already"
        assert [line.offset for line in sink.lines] == [0, 3, 6, 9]


def test_excludes_apply_live_and_two_applies_before_a_poll_keep_the_last_settings(tmp_path):
    _append(tmp_path / "keep.log", "k1\n")
    _append(tmp_path / "drop.log", "d1\n")
    clock = FakeClock()
    sink = _Sink()
    calls: list[str] = []
    with Tailer(_tail(str(tmp_path / "*.log")), Registry(tmp_path / "state", clock=clock), sink, clock) as tailer:
        tailer.poll()
        assert sorted(line.text for line in sink.lines) == ["d1", "k1"]
        tailer.apply(TailSettings(paths=(str(tmp_path / "nothing-*.log"),), use_watchdog=False),
                     before=lambda: calls.append("first"))
        tailer.apply(TailSettings(paths=(str(tmp_path / "*.log"),), excludes=(str(tmp_path / "drop*"),),
                                  use_watchdog=False), before=lambda: calls.append("second"))
        _append(tmp_path / "drop.log", "d2\n")
        tailer.poll()
        assert calls == ["first", "second"]
        assert [source.path for source in sink.closed] == [str(tmp_path / "drop.log")]
        _append(tmp_path / "keep.log", "k2\n")
        _append(tmp_path / "drop.log", "d3\n")
        clock.advance(5)
        tailer.poll()
    assert sorted(line.text for line in sink.lines) == ["d1", "d2", "k1", "k2"]


# -- the daemon: parsers switch between two lines --------------------------------------

TRACEBACK = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
             'ValueError: bad\n')


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_the_daemon_switches_a_changed_parser_between_two_lines_and_keeps_the_others(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out.ndjson"
    cfg = tmp_path / "agent.yml"
    # multiline_timeout far beyond the test: only the reload can emit a pending event.
    before = ("multiline_timeout: 300s\nscan_interval: 1s\ninputs:\n"
              "  - paths: [logs/a.log]\n    format: plain\n  - paths: [logs/b.log]\n    format: plain\n")
    cfg.write_text(before)
    flags = {"state_dir": str(tmp_path / "state"), "output": f"file:{out}", "metrics_addr": "off",
             "flush_interval": "0.2s"}
    reload_count = []

    def again():
        reload_count.append(1)
        return resolve(dict(flags), {}, str(cfg), require_paths=True)

    pipeline = Pipeline(resolve(dict(flags), {}, str(cfg), require_paths=True), reload=again)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(pipeline.run()))

    def docs() -> list[dict]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    _append(logs / "a.log", "a first\n")
    _append(logs / "b.log", "b first\n")
    runner.start()
    try:
        _wait(lambda: pipeline.tailer.open_files() == 2 and pipeline._sink.lines == 2, "both files read")
        cfg.write_text(before.replace("logs/a.log]\n    format: plain", "logs/a.log]\n    format: json"))
        pipeline.reload()
        # a's pending line is emitted by the reload (its parser changed); b's stays open.
        _wait(lambda: [d["message"] for d in docs()] == ["a first"], "a's pending event emitted")
        _append(logs / "a.log", '{"message": "a second", "user": "u1"}\n')
        _append(logs / "b.log", TRACEBACK + "b second\n")
        # "b second" stays open (it may be followed by a traceback): 3 documents.
        _wait(lambda: len(docs()) == 3, "the lines after the reload")
    finally:
        pipeline.stop()
        runner.join(30)
    assert result == [0] and reload_count == [1]
    by_message = {d["message"].splitlines()[0]: d for d in docs()}
    assert sorted(by_message) == ["a first", "a second", "b first"]
    assert by_message["a second"]["extra"] == {"user": "u1"}  # read as JSON: the new format
    assert by_message["a first"]["message"] == "a first" and "extra" not in by_message["a first"]
    # b's traceback was joined to its pending line: the reload did not cut it.
    assert "ValueError: bad" in json.dumps(by_message["b first"])


# -- SIGHUP and the supervisor ---------------------------------------------------------

def test_sighup_only_sets_a_flag_that_wakes_the_main_loop_and_is_no_stop():
    import os
    import signal as signals

    from agent.supervise import Supervisor

    supervisor = Supervisor()
    supervisor.install_signals()
    try:
        os.kill(os.getpid(), signals.SIGHUP)
        started = time.monotonic()
        assert supervisor.wait(10) is False  # woken, and not stopping
        assert time.monotonic() - started < 5
        assert supervisor.take_reload() is True and supervisor.take_reload() is False
        assert not supervisor.stopping() and supervisor.signal is None
    finally:
        supervisor.close()
    assert signals.getsignal(signals.SIGHUP) is not supervisor._on_reload  # restored


# -- credentials ------------------------------------------------------------------------

def test_a_rotated_credential_of_the_credentials_directory_is_used_from_the_next_request(tmp_path):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from agent.outputs.elasticsearch import ElasticsearchOutput

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("authorization"))
            body = b"{}"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "es-api-key").write_text("old-key\n")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    url = f"http://127.0.0.1:{server.server_address[1]}"
    running = _config(tmp_path, f"es_url: {url}\n", env=env)
    output = ElasticsearchOutput.from_config(running)
    try:
        output.request("GET", "/")
        (credentials / "es-api-key").write_text("new-key\n")
        recorder = _Recorder()
        reloader = Reloader(running, lambda: _config(tmp_path, f"es_url: {url}\n", env=env), recorder, recorder,
                            output)
        assert reloader.reload().api_key == Secret("new-key")
        assert recorder.applied == []  # nothing for the reader
        output.request("GET", "/")
    finally:
        output.close()
        server.shutdown()
        server.server_close()
    assert seen == ["ApiKey old-key", "ApiKey new-key"]


def test_systemd_hears_reloading_then_ready(tmp_path, monkeypatch, records):  # records: restores the level
    import socket

    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    (tmp_path / "a").mkdir()
    config = _config(tmp_path, "", output="null", metrics_addr="off")
    pipeline = Pipeline(config, reload=lambda: _config(tmp_path, "", output="null", metrics_addr="off",
                                                        log_level="debug"))
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        messages = [listener.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        pipeline.reload()
        messages += [listener.recv(4096).decode(), listener.recv(4096).decode()]
    finally:
        pipeline.stop()
        runner.join(30)
        listener.close()
    assert messages[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert messages[2].startswith("READY=1\nSTATUS=shipping")
    assert pipeline.config.log_level == "debug"


# -- a model: globs changing under writes ------------------------------------------------

from hypothesis import given, settings as hypothesis_settings, strategies as st  # noqa: E402

_FILES = ("f0", "f1", "f2")
_ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(_FILES), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("globs"), st.sets(st.sampled_from(_FILES))),
    st.tuples(st.just("poll"), st.floats(0.0, 3.0)),
), max_size=25)


@hypothesis_settings(max_examples=60, deadline=None)
@given(_ACTIONS)
def test_every_line_is_delivered_once_in_order_whatever_the_globs_do(actions):
    """Writes (complete lines, sometimes a partial one), reloads to any subset
    of the files, polls; every acknowledged line is committed. At the end,
    with every file matched again and its lines completed, each file's lines
    arrived exactly once, in order."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        clock = FakeClock()
        registry = Registry(root / "state", clock=clock)
        sink = _Sink()
        written = {name: [] for name in _FILES}
        partial = {name: "" for name in _FILES}
        count = 0

        def globs(names) -> TailSettings:
            # A partial line is never timed out here (polls add up to 75 s): the model expects
            # every partial line completed by the "-end" written at the end.
            patterns = tuple(str(root / f"{name}.log") for name in sorted(names)) or (str(root / "none"),)
            return TailSettings(paths=patterns, use_watchdog=False, partial_line_timeout=3600.0)

        def poll(seconds: float = 0.0) -> None:
            clock.advance(seconds)
            tailer.poll()
            for line in sink.lines:  # the output acknowledged everything so far
                registry.commit(line.source.key, line.end)

        with Tailer(globs(_FILES), registry, sink, clock) as tailer:
            for action in actions:
                if action[0] == "write":
                    _, name, lines, leave_partial = action
                    body = ""
                    for _ in range(lines):
                        count += 1
                        body += f"-{count}\n" if partial[name] else f"{name}-{count}\n"
                        written[name].append(partial[name] + f"-{count}" if partial[name] else f"{name}-{count}")
                        partial[name] = ""
                    if leave_partial:
                        partial[name] = f"{name}-p{count}"
                        body += partial[name]
                    _append(root / f"{name}.log", body)
                elif action[0] == "globs":
                    tailer.apply(globs(action[1]))
                else:
                    poll(action[1])
            for name in _FILES:
                if partial[name]:
                    written[name].append(partial[name] + "-end")
                    _append(root / f"{name}.log", "-end\n")
            tailer.apply(globs(_FILES))
            for _ in range(4):
                poll(3.0)
        for name in _FILES:
            assert [line.text for line in sink.lines if line.source.path == str(root / f"{name}.log")] == \
                written[name]


@pytest.mark.parametrize("refused", [True, False])
def test_a_reload_that_turns_raw_documents_on_asks_the_output_first(tmp_path, records, refused):
    """--parse-at elasticsearch by reload: the target is checked as at start-up;
    one that would store the raw lines unparsed refuses the reload."""
    from agent.outputs.entry_pipeline import NoEntryPipeline

    running = _config(tmp_path, "format: json\n")
    cfg = tmp_path / "agent.yml"

    class Output(_Recorder):
        checked = 0

        def check_raw_target(self) -> None:
            Output.checked += 1
            if refused:
                raise NoEntryPipeline("--parse-at elasticsearch: the documents would be stored unparsed")

    output = Output()
    reloader = Reloader(running, lambda: resolve({"paths": running.paths, "state_dir": running.state_dir}, {},
                                                 str(cfg), require_paths=True), output, output, output)
    cfg.write_text("format: json\nparse_at: elasticsearch\n")
    new = reloader.reload()
    assert Output.checked == 1
    if refused:
        assert new is running and output.applied == []
        assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == [
            "reload refused: the configuration is not valid; the running one stays"]
    else:
        assert new.parse_at == "elasticsearch" and len(output.applied) == 1
    cfg.write_text("format: json\nparse_at: elasticsearch\nlog_level: debug\n")
    reloader.reload()
    assert Output.checked == (2 if refused else 1)  # already raw: not asked again
