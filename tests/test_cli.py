"""The ``modelscribe`` command as a user meets it: grouped --help with types,
defaults and choices; each command listing its own settings; the warning for
a --path that matches nothing; ``status`` on a missing state directory."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from agent import cli_options
from agent.cli import main
from agent.config.options import BY_NAME, GROUP_TITLES, OPTIONS
from agent.errors import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME
from e2e_helpers import run_once


def _invoke(args, env=None):
    return CliRunner().invoke(main, args, env=env or {}, catch_exceptions=False, terminal_width=200)


def _sections(text: str) -> dict[str, str]:
    """Help text split at its headings ("Input:", "Options:", ...)."""
    parts = re.split(r"^([A-Z][A-Za-z ]*):\n", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _flags(text: str) -> set[str]:
    return set(re.findall(r"^  (?:-h, )?(--[a-z-]+)", text, re.M))


def test_run_help_groups_every_setting_as_the_readme_does():
    result = _invoke(["run", "--help"])
    assert result.exit_code == 0
    sections = _sections(result.output)
    titles = [GROUP_TITLES[group] for group in cli_options.GROUP_ORDER]
    assert [title for title in sections if title in titles] == titles  # the README's order
    for option in OPTIONS:
        stem = option.flag
        section = sections[GROUP_TITLES[option.group]]
        assert stem in _flags(section), (option.name, option.group)
        assert option.env in section
    assert _flags(sections["Options"]) == {"--config", "--help"}


@pytest.mark.parametrize("flag, shown", [
    ("--scan-interval DURATION", "[default: 10s; env MODELSCRIBE_SCAN_INTERVAL]"),
    ("--spool-max-bytes SIZE", "[default: 1GiB; env MODELSCRIBE_SPOOL_MAX_BYTES]"),
    ("--spool-fsync [batch|interval|never]", "[default: batch; env MODELSCRIBE_SPOOL_FSYNC]"),
    ("--workers N", "[default: 2; range 1-64; env MODELSCRIBE_WORKERS]"),
    ("--tls-verify / --no-tls-verify", "[default: on; env MODELSCRIBE_TLS_VERIFY]"),
    ("--path GLOB", "[env MODELSCRIBE_PATH]"),
    ("--exclude GLOB", "(repeatable). [env MODELSCRIBE_EXCLUDE]"),
    ("--max-retries N|unlimited", "[default: unlimited; env MODELSCRIBE_MAX_RETRIES]"),
    ("--format [auto|bentoml|", "[default: auto; env MODELSCRIBE_FORMAT]"),
    ("--es-url URL", "[default: http://localhost:9200; env MODELSCRIBE_ES_URL]"),
    ("--self-metrics-interval DURATION|off", "[default: 1m; env MODELSCRIBE_SELF_METRICS_INTERVAL]"),
])
def test_run_help_shows_type_default_and_choices(flag, shown):
    blocks = [" ".join(block.split()) for block in re.split(r"\n(?=  -)", _invoke(["run", "--help"]).output)]
    [block] = [block for block in blocks if block.startswith(flag)]
    assert shown in block


def test_the_readme_settings_table_groups_options_as_the_help_does():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = re.findall(r"^\| (input|parsing|output|enrichment|spool|process) \| (.*) \|$", readme, re.M)
    assert [group for group, _ in rows] == ["input", "parsing", "output", "enrichment", "spool", "process"]
    by_flag = {option.flag: option.group for option in OPTIONS}
    by_flag.update({f"--no-{option.flag[2:]}": option.group for option in OPTIONS if option.switch})
    for group, text in rows:
        for flag in re.findall(r"`(--[a-z-]+)", re.sub(r"\([^)]*\)", "", text)):  # not in explanations
            assert by_flag[flag] == ("enrich" if group == "enrichment" else group), (flag, group)


def test_every_converter_has_a_type_name():
    for option in OPTIONS:
        if not option.switch:
            assert cli_options.metavar(option) not in (None, ""), option.name
    # The factories' arguments are read back (a renamed parameter would lose them).
    assert cli_options.metavar(BY_NAME["when_full"]) == "[block|drop-newest]"
    assert "range 16-65536" in cli_options.extra_text(BY_NAME["fingerprint_bytes"])


@pytest.mark.parametrize("command, listed", [
    (["status"], cli_options.STATUS),
    (["dlq", "list"], cli_options.DLQ),
    (["dlq", "replay"], cli_options.DLQ),
    (["check", "output"], cli_options.CHECK_OUTPUT),
    (["setup", "templates"], cli_options.SETUP_TEMPLATES),
    (["check", "config"], tuple(option.name for option in OPTIONS)),
])
def test_each_command_lists_only_its_own_settings(command, listed):
    result = _invoke([*command, "--help"])
    assert result.exit_code == 0
    sections = _sections(result.output)
    shown = set().union(*(_flags(text) for title, text in sections.items() if title != "Options"))
    assert shown == {BY_NAME[name].flag for name in listed}


def test_status_lists_state_dir_and_not_the_connection():
    text = _invoke(["status", "--help"]).output
    assert "--state-dir" in text and "--dead-letter-file" in text and "--json" in text
    assert "--es-url" not in text and "--path" not in text and "--workers" not in text


def test_commands_still_resolve_every_setting(tmp_path):
    """A setting a command does not list still comes from its variable, its
    file key or its default, and a flag of it is accepted (one set of flags
    serves every command)."""
    state = tmp_path / "state"
    state.mkdir()
    result = _invoke(["status", "--json", "--state-dir", str(state), "--es-url", "http://es:9200"],
                     env={"MODELSCRIBE_DEAD_LETTER_FILE": str(tmp_path / "dl.ndjson")})
    assert result.exit_code == EXIT_OK, result.output
    assert f'"path": "{tmp_path}/dl.ndjson"' in result.output
    # ... and a bad value of a setting the command does not list still stops it, as run would.
    bad = _invoke(["status", "--state-dir", str(state)], env={"MODELSCRIBE_WORKERS": "0"})
    assert bad.exit_code == EXIT_CONFIG
    assert "MODELSCRIBE_WORKERS: 0 is out of range" in bad.stderr


@pytest.mark.parametrize("args, expected", [
    (["--workers", "0"], "--workers: 0 is out of range: must be between 1 and 64"),
    (["--metrics-addr", "localhost"], "--metrics-addr: 'localhost' is not HOST:PORT"),
    (["--when-full", "drop"], "--when-full: 'drop' is not one of: block, drop-newest"),
    (["--when-full", "drop-newst"], "--when-full: 'drop-newst' is not one of: block, drop-newest "
                                    "(did you mean 'drop-newest'?)"),
    (["--format", "torchserv"], "--format: 'torchserv' is not a known format (one of: auto, bentoml, gunicorn, "
                                "json, kserve, mlflow, plain, rayserve, torchserve, triton, uvicorn, vllm) "
                                "(did you mean 'torchserve'?)"),
    (["--es-url", "http://es"], "--es-url: 'http://es' needs a port"),
    (["--es-url", "https://user:pw@es:9200"], "--es-url: 'https://***@es:9200': credentials do not belong"),
    (["--scan-interval", "0"], "--scan-interval: must be longer than zero"),
])
def test_check_config_rejects_what_run_rejects(tmp_path, args, expected):
    """Beyond tests/config/test_check_config_cli.py: a few more bad values,
    the same exit code and message from both commands."""
    checked = _invoke(["check", "config", *args])
    ran = _invoke(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"), *args])
    for result in (checked, ran):
        assert result.exit_code == EXIT_CONFIG, result.output
        assert f"modelscribe: error: {expected}" in result.stderr
        assert "pw" not in result.stderr.replace(expected, "")
    assert not (tmp_path / "s").exists()


def test_status_on_a_missing_state_dir_names_it_and_fails(tmp_path):
    missing = tmp_path / "nope"
    result = _invoke(["status", "--state-dir", str(missing)])
    assert result.exit_code == EXIT_RUNTIME
    assert f"modelscribe: error: --state-dir {missing}: does not exist" in result.stderr
    assert not missing.exists()  # status writes nothing
    from_env = _invoke(["status", "--json"], env={"MODELSCRIBE_STATE_DIR": str(missing)})
    assert from_env.exit_code == EXIT_RUNTIME
    assert f"--state-dir {missing} (from env MODELSCRIBE_STATE_DIR): does not exist" in from_env.stderr
    a_file = tmp_path / "file"
    a_file.write_text("")
    not_dir = _invoke(["status", "--state-dir", str(a_file)])
    assert not_dir.exit_code in (EXIT_CONFIG, EXIT_RUNTIME)  # resolve refuses a file as state dir first
    assert f"--state-dir {a_file}" in not_dir.stderr


def test_status_of_an_unreadable_state_dir_says_so(tmp_path, monkeypatch):
    """A user who may not read the agent's 0700 state dir is told so, not
    shown an empty report (simulated: the tests run as root, who reads anyway)."""
    import agent.status

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(agent.status.os, "listdir", denied)
    result = _invoke(["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == EXIT_RUNTIME
    assert (f"modelscribe: error: --state-dir {tmp_path}: cannot read it: Permission denied "
            "(run status as the agent's user, or root)") in result.stderr


def test_status_of_an_empty_state_dir_is_ok(tmp_path):
    result = _invoke(["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == EXIT_OK, result.output
    assert "files (0):" in result.output


def test_a_path_matching_nothing_is_warned_and_once_says_so(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("one\n")
    typo = str(tmp_path / "lgos" / "*.log")
    done = run_once(["run", "--once", "--output", "null", "--state-dir", str(tmp_path / "state"),
                     "--path", str(logs / "*.log"), "--path", typo])
    assert done.code == EXIT_OK, done.stderr
    lines = done.stderr.splitlines()
    start = [line for line in lines if "no file matches" in line]
    assert len(start) == 1 and f"no file matches --path {typo}; --once reads nothing from it" in start[0]
    assert "level=warn" in start[0]
    summary = [number for number, line in enumerate(lines) if "run finished" in line]
    unread = [number for number, line in enumerate(lines)
              if f"nothing was read from --path {typo}: no file matched it" in line]
    assert summary and unread and unread[0] > summary[0]  # said again at the end, after the summary
    assert str(logs / "*.log") not in " ".join(start)


def test_a_path_excluded_entirely_counts_as_matching_nothing(tmp_path):
    (tmp_path / "a.log").write_text("one\n")
    done = run_once(["run", "--once", "--output", "null", "--state-dir", str(tmp_path / "state"),
                     "--path", str(tmp_path / "*.log"), "--exclude", str(tmp_path / "a.*")],
                    env={"MODELSCRIBE_LOG_LEVEL": "warn"})
    assert done.code == EXIT_OK
    assert f"no file matches --path {tmp_path}/*.log" in done.stderr


def test_the_daemon_warns_once_and_keeps_watching(tmp_path):
    from e2e_helpers import Daemon, wait_for

    logs = tmp_path / "later"
    out = tmp_path / "out.ndjson"
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                     "--output", f"file:{out}", "--scan-interval", "0.2"], tmp_path / "agent.log")
    try:
        wait_for(lambda: "no file matches" in daemon.log(), 30, "the warning")
        assert f"no file matches --path {logs}/*.log (yet); the agent keeps watching for it" in daemon.log()
        logs.mkdir()
        (logs / "m.log").write_text("arrived\n")
        wait_for(lambda: out.exists() and b"arrived" in out.read_bytes(), 30, "the file that appeared")
    finally:
        assert daemon.stop() == 0
    assert daemon.log().count("no file matches") == 1


def test_check_config_notes_a_glob_that_matches_nothing(tmp_path):
    (tmp_path / "a.log").write_text("x\n")
    checked = _invoke(["check", "config", "--path", str(tmp_path / "*.log"), "--path", str(tmp_path / "b/*.log")])
    assert checked.exit_code == EXIT_OK
    assert checked.stderr == f"note: no file matches --path {tmp_path}/b/*.log (yet)\n"


def test_paths_from_the_config_file_are_named_by_their_key(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("paths: [none/*.log]\ninputs:\n  - paths: [also-none/*.log]\n    format: json\n")
    done = run_once(["run", "--once", "--output", "null", "--state-dir", str(tmp_path / "state"),
                     "--config", str(cfg)])
    assert done.code == EXIT_OK, done.stderr
    assert f"no file matches {cfg}: paths {tmp_path}/none/*.log" in done.stderr
    assert f"no file matches {cfg}: inputs[1] {tmp_path}/also-none/*.log" in done.stderr


@pytest.mark.parametrize("retention, expected", [
    ("0.4s", "--retention 0.4s: a whole number of seconds, at least 1s"),
    ("1ms", "--retention 1ms: a whole number of seconds, at least 1s"),
    ("1.2s", "--retention 1.2s: a whole number of seconds"),
    ("0", "--retention 0: a whole number of seconds"),
    ("99999999999999d", "--retention 99999999999999d: '99999999999999d' is too long: a duration is at most 3650d"),
    ("soon", "--retention soon: 'soon' is not a duration"),
])
def test_a_retention_the_cluster_cannot_keep_is_a_config_error(retention, expected):
    for command in ("lifecycle", "all"):
        result = _invoke(["setup", command, "--dry-run", "--es-url", "http://127.0.0.1:1", "--retention", retention])
        assert result.exit_code == EXIT_CONFIG, result.output
        assert result.stderr.startswith(f"modelscribe: error: {expected}")


def test_a_whole_retention_is_planned_as_given():
    result = _invoke(["setup", "lifecycle", "--dry-run", "--es-url", "http://127.0.0.1:1", "--retention", "90m"])
    assert result.exit_code == EXIT_OK, result.output
    assert "90m" in result.stdout


_STATE = ["--state-dir", "{tmp}/state", "--path", "{tmp}/*.log"]


@pytest.mark.parametrize("command", [
    ["run", "--once", *_STATE, "--max-retries", "0"], ["check", "output"], ["check", "config"],
    ["setup", "templates", "--dry-run"], ["dlq", "list", "--state-dir", "{tmp}/state"],
])
@pytest.mark.parametrize("key", ["Zq9\nKw", "Zq9ключKw"])
def test_an_unusable_api_key_stops_every_command_without_showing_it(tmp_path, command, key):
    (tmp_path / "a.log").write_text("line\n")
    (tmp_path / "key").write_text(key)
    args = [part.format(tmp=tmp_path) for part in command] + ["--es-url", "http://127.0.0.1:1"]
    for extra, env in ((["--api-key-file", str(tmp_path / "key")], {}), ([], {"MODELSCRIBE_API_KEY": key})):
        result = _invoke(args + extra, env=env)
        assert result.exit_code == EXIT_CONFIG, result.output
        assert "the API key must be one line of printable ASCII" in result.stderr
        assert "Zq9" not in result.output and "Kw" not in result.output


@pytest.mark.parametrize("args, expected", [
    (["setup", "templates", "--dry-run", "--es-url", "http://a..b:9200"], "'a..b' is not a host name"),
    (["check", "output", "--es-url", "http://" + "a" * 64 + ":9200"], "is not a host name"),
    (["check", "config", "--es-url", "https://jdoe:se/cret@es:9200"], "'https://***@es:9200': credentials"),
])
def test_urls_the_client_would_choke_on_are_config_errors(args, expected):
    result = _invoke(args)
    assert result.exit_code == EXIT_CONFIG, result.output
    assert expected in result.stderr and "se/cret" not in result.stderr


def test_errors_about_the_file_from_modelscribe_config_name_the_variable(tmp_path):
    missing = tmp_path / "nope.yml"
    result = _invoke(["check", "config"], env={"MODELSCRIBE_CONFIG": str(missing)})
    assert result.exit_code == EXIT_CONFIG
    assert result.stderr.startswith(f"modelscribe: error: MODELSCRIBE_CONFIG {missing}: cannot read the file")
    flagged = _invoke(["check", "config", "--config", str(missing)])
    assert flagged.stderr.startswith(f"modelscribe: error: --config {missing}: cannot read the file")


def test_a_binary_config_file_is_a_config_error(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    for command in (["check", "config"], ["run", "--once", "--path", str(tmp_path / "*.log")]):
        result = _invoke([*command, "--config", str(cfg)])
        assert result.exit_code == EXIT_CONFIG, result.output
        assert f"--config {cfg}: not UTF-8 text (byte 0x80 at line 1)" in result.stderr


@pytest.mark.parametrize("command", ["all", "templates", "pipelines", "lifecycle"])
def test_setup_force_help_says_what_it_overwrites_and_what_never(command):
    """Audit 2 finding 3: --force never overwrites a template someone else
    installed (docs/setup.md), and the help text must not claim it does."""
    result = _invoke(["setup", command, "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    assert ("--force Downgrade templates a newer modelscribe installed, and overwrite pipelines under our names "
            "that another owner's _meta.managed_by claims. A template modelscribe did not install is never "
            "overwritten.") in help_text
    assert "or someone else" not in help_text


@pytest.mark.parametrize("command", [["dlq", "list"], ["dlq", "replay", "--es-url", "http://127.0.0.1:1"]])
def test_dlq_on_a_state_dir_that_does_not_exist_is_an_error_as_for_status(tmp_path, command):
    """Audit 11, finding 9: ``dlq list`` said "0 dead letters" and ``dlq replay``
    tried to connect (exit 3) for a misspelt --state-dir."""
    missing = tmp_path / "nope" / "state"
    result = _invoke([*command, "--state-dir", str(missing)])
    assert result.exit_code == EXIT_RUNTIME, result.output
    expected = f"modelscribe: error: --state-dir {missing}: does not exist; no agent has run with this state directory"
    assert expected in result.stderr
    assert "connect" not in result.output and "dead letters in" not in result.stdout
    status = _invoke(["status", "--state-dir", str(missing)])
    assert status.exit_code == EXIT_RUNTIME and expected in status.stderr


def test_dlq_with_an_explicit_dead_letter_file_needs_no_state_dir(tmp_path):
    letters = tmp_path / "dl.ndjson"
    letters.write_text("")
    result = _invoke(["dlq", "list", "--state-dir", str(tmp_path / "nope"), "--dead-letter-file", str(letters)])
    assert result.exit_code == EXIT_OK, result.output
    assert f"0 dead letters in {letters}" in result.stdout


@pytest.mark.parametrize("command", [["dlq", "list"], ["dlq", "replay", "--es-url", "http://127.0.0.1:1"]])
def test_dlq_refuses_a_fifo_as_the_dead_letter_file_at_once(tmp_path, command):
    """Audit 11, finding 2: a FIFO as --dead-letter-file blocked ``dlq list`` for ever."""
    import os
    import threading

    (tmp_path / "state").mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    results = []
    thread = threading.Thread(target=lambda: results.append(_invoke(
        [*command, "--state-dir", str(tmp_path / "state"), "--dead-letter-file", str(fifo)])), daemon=True)
    thread.start()
    thread.join(20)
    assert results, "dlq blocked on the FIFO"
    result, = results
    assert result.exit_code == EXIT_CONFIG, result.output
    assert f"modelscribe: error: --dead-letter-file {fifo}: not a regular file (a FIFO)" in result.stderr
    env = _invoke([*command, "--state-dir", str(tmp_path / "state")], env={"MODELSCRIBE_DEAD_LETTER_FILE": str(fifo)})
    assert env.exit_code == EXIT_CONFIG
    assert f"modelscribe: error: MODELSCRIBE_DEAD_LETTER_FILE {fifo}: not a regular file" in env.stderr


def test_a_repeated_config_is_refused(tmp_path):
    """Audit 11, finding 11: the first of two --config files was silently ignored."""
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    first.write_text("workers: 3\n")
    second.write_text("gzip: true\n")
    args = ["--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "state")]
    for command in (["check", "config"], ["run", "--once"]):
        result = _invoke([*command, *args, "--config", str(first), "--config", str(second)])
        assert result.exit_code == EXIT_CONFIG, result.output
        assert f"'--config': given 2 times ({first}, {second}); one config file is read" in result.stderr
    # One file, from the flag or from MODELSCRIBE_CONFIG (a path with a space is one path).
    spaced = tmp_path / "my conf.yml"
    spaced.write_text("workers: 3\n")
    result = _invoke(["check", "config", *args], env={"MODELSCRIBE_CONFIG": str(spaced)})
    assert result.exit_code == EXIT_OK, result.output
    assert re.search(rf"^workers +3 +\(file {re.escape(str(spaced))}\)", result.stdout, re.M)
    assert _invoke(["check", "config", *args, "--config", str(first)]).exit_code == EXIT_OK


def test_the_packaged_config_file_writes_defaults_as_help_shows_them():
    """Audit 11, finding 10: the conffile wrote 60.0, none and none where
    --help says 1m, unlimited and off."""
    import gen_config  # scripts/ is on sys.path (tests/conftest.py)

    text = gen_config.TARGET.read_text(encoding="utf-8")
    for name, shown in (("self_metrics_interval", "1m"), ("max_retries", "unlimited"), ("ignore_older", "off")):
        assert f"\n#{name}: {shown}\n" in text, name
        block = text[:text.index(f"\n#{name}:")].rsplit("\n\n", 1)[-1]
        assert f"default: {shown}" in " ".join(block.split()), name
    for option in OPTIONS:
        shown = cli_options.default_text(option)
        if shown is not None and not option.multiple and not option.switch:
            assert gen_config.render_value(option) == shown, option.name
