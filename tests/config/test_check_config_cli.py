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
