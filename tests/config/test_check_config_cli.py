"""``modelscribe check config`` rejects what ``run`` rejects, with exit code 2
and the same message naming the flag, variable or file key."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from agent.cli import main


def _invoke(args, env=None):
    return CliRunner().invoke(main, args, env=env or {}, catch_exceptions=False)


@pytest.mark.parametrize("args, expected", [
    (["--redact-pattern", "("], "--redact-pattern '(': not a valid regular expression"),
    (["--es-url", "http://es:99999"], "--es-url: 'http://es:99999': the port must be a number"),
    (["--es-url", "http://es:notaport"], "--es-url: 'http://es:notaport': the port must be a number"),
    (["--model-from-path", "/logs/{nope}/*.log"], "--model-from-path '/logs/{nope}/*.log': placeholder"),
    (["--hash-field", "@timestamp"], "--hash-field @timestamp: the agent needs this field"),
    (["--spool-max-bytes", "100"], "--spool-max-bytes: 100 bytes is too small"),
    # Audit 11, finding 5: 0 turned every retry into a busy loop against a recovering cluster.
    (["--backoff-max", "0"], "--backoff-max: 0ms is too short: the longest wait between retries must be at least "
                             "100ms (a retry loop with no pause hammers a cluster that is recovering"),
    (["--backoff-max", "99ms"], "--backoff-max: 99ms is too short"),
])
def test_check_config_and_run_fail_alike(tmp_path, args, expected):
    checked = _invoke(["check", "config", *args])
    assert checked.exit_code == 2, checked.output
    assert f"modelscribe: error: {expected}" in checked.stderr
    assert "config ok" not in checked.stdout
    ran = _invoke(["run", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "state"),
                   "--once", *args])
    assert ran.exit_code == 2, ran.output
    assert f"modelscribe: error: {expected}" in ran.stderr
    assert not (tmp_path / "state").exists()  # stopped before touching anything


@pytest.mark.parametrize("case", ["a file", "under a file", "in /proc"])
def test_an_unusable_state_dir_fails_check_config_as_it_fails_run(tmp_path, case):
    """Audit 3, finding 3: ``check config`` said "config ok" for a state dir
    ``run`` refused (exit 1). One check, one message, exit 2 from both."""
    (tmp_path / "a.log").write_text("x\n")
    afile = tmp_path / "afile"
    afile.write_text("")
    state, expected = {
        "a file": (afile, f"--state-dir {afile}: exists and is not a directory"),
        "under a file": (afile / "state", f"--state-dir {afile / 'state'}: cannot be created: {afile} is not "
                                          "a directory"),
        # access() says yes to root here; only trying tells (ENOENT: procfs makes no directory).
        "in /proc": ("/proc/modelscribe-nope/state", "--state-dir /proc/modelscribe-nope/state: cannot be "
                                                      "created in /proc ("),
    }[case]
    args = ["--path", str(tmp_path / "a.log"), "--output", "null", "--state-dir", str(state)]
    checked = _invoke(["check", "config", *args])
    ran = _invoke(["run", "--once", *args])
    for result in (checked, ran):
        assert result.exit_code == 2, result.output
        assert f"modelscribe: error: {expected}" in result.stderr
    assert checked.stderr == ran.stderr


def test_check_config_tries_a_state_dir_it_would_create_but_leaves_nothing(tmp_path):
    (tmp_path / "a.log").write_text("x\n")
    checked = _invoke(["check", "config", "--path", str(tmp_path / "a.log"), "--output", "null",
                       "--state-dir", str(tmp_path / "new" / "state")])
    assert checked.exit_code == 0, checked.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.log"]  # the probe is gone, nothing made


def test_check_config_names_the_variable_and_the_file_key(tmp_path):
    checked = _invoke(["check", "config"], env={"MODELSCRIBE_REDACT_PATTERN": "("})
    assert checked.exit_code == 2
    assert "modelscribe: error: MODELSCRIBE_REDACT_PATTERN '(':" in checked.stderr
    cfg = tmp_path / "agent.yml"
    cfg.write_text("redact-pattern: ['(']\n")
    checked = _invoke(["check", "config", "--config", str(cfg)])
    assert checked.exit_code == 2
    assert f"modelscribe: error: {cfg}: redact-pattern '(':" in checked.stderr


def test_check_config_shows_the_settings_of_each_input(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("inputs:\n  - paths: [ts/*.log]\n    format: torchserve\n  - paths: [/srv/app/*.log]\n")
    checked = _invoke(["check", "config", "--config", str(cfg)])
    assert checked.exit_code == 0, checked.output
    assert f"{tmp_path}/ts/*.log (format=torchserve)" in checked.stdout
    assert re.search(r"^inputs\[2\] +/srv/app/\*\.log +\(file ", checked.stdout, re.M)
    assert "config ok" in checked.stdout


def test_a_misspelt_input_key_is_an_error_with_a_suggestion(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("inputs:\n  - paths: [a.log]\n  - paths: [b.log]\n    fromat: json\n")
    checked = _invoke(["check", "config", "--config", str(cfg)])
    assert checked.exit_code == 2
    assert f"{cfg}: inputs[2]: unknown key 'fromat' (did you mean 'format'?)" in checked.stderr


def test_check_config_fails_as_run_does_without_a_file_to_tail(tmp_path):
    checked = _invoke(["check", "config", "--state-dir", str(tmp_path / "s")])
    assert checked.exit_code == 2
    assert "modelscribe: error: --path: at least one glob of files to tail is required" in checked.stderr


@pytest.mark.parametrize("address, reason", [("nosuchhost.invalid:9464", "cannot listen there"),
                                             ("10.254.1.2:9464", "Cannot assign requested address")])
def test_check_config_fails_on_a_metrics_host_run_cannot_listen_on(tmp_path, address, reason):
    config = tmp_path / "agent.yml"
    config.write_text(f"metrics_addr: '{address}'\npaths: ['{tmp_path}/*.log']\n")
    checked = _invoke(["check", "config", "--config", str(config)], env={"MODELSCRIBE_METRICS_ADDR": ""})
    assert checked.exit_code == 2
    assert f"modelscribe: error: {config}: metrics_addr {address}: cannot listen there" in checked.stderr
    assert reason in checked.stderr
    flag = _invoke(["check", "config", "--config", str(config), "--metrics-addr", address])
    assert flag.exit_code == 2 and f"modelscribe: error: --metrics-addr {address}: cannot listen" in flag.stderr


def test_the_units_reload_check_passes_basic_auth_without_the_credentials(tmp_path):
    """systemd hides the credentials from ExecReload=: the password that
    username: needs is not there, and every reload failed (audit)."""
    config = tmp_path / "agent.yml"
    config.write_text(f"username: elastic\npaths: ['{tmp_path}/*.log']\n")
    plain = _invoke(["check", "config", "--config", str(config)])
    assert plain.exit_code == 2 and "username needs a password" in plain.stderr
    reload_check = _invoke(["check", "config", "--no-credentials", "--config", str(config)])
    assert reload_check.exit_code == 0, reload_check.stderr
    assert "config ok" in reload_check.stdout


def _rows(stdout):
    """check config's table: setting -> (value, origin)."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\S+)  +(.*?)  +\((.*)\)$", line)  # (columns are 2 spaces apart)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_a_backoff_of_100ms_is_enough(tmp_path):
    checked = _invoke(["check", "config", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       "--backoff-max", "100ms"])
    assert checked.exit_code == 0, checked.output


@pytest.mark.parametrize("spool", ["{state}", "{state}/", "{link}"])
def test_a_spool_dir_that_is_the_state_dir_fails_check_config_and_run_naming_both(tmp_path, spool):
    """Audit 11, finding 3: check config passed it, then run blamed "another
    modelscribe" whose pid was its own."""
    state = tmp_path / "same"
    state.mkdir()
    (tmp_path / "link").symlink_to(state)
    spool = spool.format(state=state, link=tmp_path / "link")
    args = ["--path", str(tmp_path / "*.log"), "--output", "null", "--state-dir", str(state), "--spool-dir", spool]
    checked = _invoke(["check", "config", *args])
    ran = _invoke(["run", "--once", *args])
    for result in (checked, ran):
        assert result.exit_code == 2, result.output
        assert (f"modelscribe: error: --spool-dir {spool} and --state-dir {state}: the same directory; the spool "
                "needs a directory of its own") in result.stderr
        assert "another modelscribe" not in result.stderr
    assert checked.stderr == ran.stderr
    assert _invoke(["check", "config", *args, "--no-spool"]).exit_code == 0  # no spool: nothing shares it


def test_check_config_shows_the_values_in_force(tmp_path):
    """Audit 11, finding 6: "(unset)" for settings turned off or unlimited (the
    defaults of metrics_addr and self_metrics_interval are the opposite), and
    --no-spool shown as "flag --spool"."""
    state = tmp_path / "state"
    base = ["check", "config", "--path", str(tmp_path / "*.log"), "--state-dir", str(state), "--output", "null"]
    checked = _invoke([*base, "--metrics-addr", "off", "--self-metrics-interval", "off", "--max-retries",
                       "unlimited", "--ignore-older", "off", "--no-spool"])
    assert checked.exit_code == 0, checked.output
    rows = _rows(checked.stdout)
    assert rows["metrics_addr"] == ("off", "flag --metrics-addr")
    assert rows["self_metrics_interval"] == ("off", "flag --self-metrics-interval")
    assert rows["max_retries"] == ("unlimited", "flag --max-retries")
    assert rows["ignore_older"] == ("off", "flag --ignore-older")
    assert rows["spool"] == ("False", "flag --no-spool")
    assert rows["spool_dir"] == ("off (--no-spool)", "default")
    assert "(unset)" not in "".join(rows[name][0] for name in ("metrics_addr", "self_metrics_interval",
                                                                "max_retries", "ignore_older", "spool_dir"))
    defaults = _rows(_invoke(base).stdout)
    assert defaults["max_retries"] == ("unlimited", "default")
    assert defaults["ignore_older"] == ("off", "default")
    assert defaults["spool"] == ("True", "default")
    assert defaults["spool_dir"] == (f"{state}/spool", "default: STATE_DIR/spool")
    assert defaults["dead_letter_file"] == (f"{state}/dead-letter.ndjson", "default: STATE_DIR/dead-letter.ndjson")
    assert _rows(_invoke([*base, "--spool"]).stdout)["spool"] == ("True", "flag --spool")


@pytest.mark.parametrize("lateness, shown", [(2000000, "2000000s"), (30, "30s"), (0.25, "0.25s"),
                                             ("1.0e-05", "0.00001s"), ("3650d", "315360000s"), (1234567.5,
                                                                                             "1234567.5s")])
def test_the_advised_health_flags_are_ones_the_flags_accept(tmp_path, lateness, shown):
    """Audit 11, finding 7: lateness 2000000 was advised as --health-lateness
    2e+06s, which that flag refuses."""
    from agent.cli_alerting import health_spans

    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"paths: ['{tmp_path}/*.log']\nhealth: {{window: 120, lateness: {lateness}}}\n")
    checked = _invoke(["check", "config", "--config", str(cfg), "--state-dir", str(tmp_path / "s"),
                       "--output", "null"])
    assert checked.exit_code == 0, checked.output
    advised = re.search(r"--health-window (\S+) --health-lateness (\S+) ", checked.stdout)
    assert advised is not None, checked.stdout
    assert advised.group(2) == shown
    from agent.config import resolve

    health = resolve({}, {}, str(cfg)).health
    assert health_spans(advised.group(1), advised.group(2)) == (health.window, health.lateness)


def test_check_config_tries_the_spool_dir_and_the_file_output_as_run_would(tmp_path):
    """Audit 11, finding 11: access() says yes to root for /proc, so check
    config passed a --spool-dir and a file: output that run refused."""
    base = ["--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "state")]
    spool = ["--output", "null", "--spool-dir", "/proc/modelscribe-nope/spool"]
    checked, ran = _invoke(["check", "config", *base, *spool]), _invoke(["run", "--once", *base, *spool])
    for result in (checked, ran):
        assert result.exit_code == 2, result.output
        assert "modelscribe: error: --spool-dir /proc/modelscribe-nope/spool: cannot be created" in result.stderr
    assert checked.stderr == ran.stderr
    output = ["--output", "file:/proc/modelscribe-nope.ndjson"]
    checked, ran = _invoke(["check", "config", *base, *output]), _invoke(["run", "--once", *base, *output])
    for result in (checked, ran):
        assert result.exit_code == 2, result.output
        assert "modelscribe: error: --output file:/proc/modelscribe-nope.ndjson: not writable" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing made, no probe left


def test_the_file_output_is_tried_not_asked(tmp_path, monkeypatch):
    """Even where access() says yes (root), an uncreatable file fails; a
    writable one passes and is left as it was."""
    from agent.config import resolve, stages
    from agent.errors import ConfigError

    monkeypatch.setattr(stages.os, "access", lambda path, mode: True)
    with pytest.raises(ConfigError) as caught:
        resolve({"output": "file:/proc/modelscribe-nope.ndjson", "state_dir": str(tmp_path / "s")}, {})
    assert str(caught.value).startswith("--output file:/proc/modelscribe-nope.ndjson: not writable (")
    existing = tmp_path / "out.ndjson"
    existing.write_text("kept\n")
    before = existing.stat()
    resolve({"output": f"file:{existing}", "state_dir": str(tmp_path / "s")}, {})
    assert existing.read_text() == "kept\n" and existing.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.ndjson"]
