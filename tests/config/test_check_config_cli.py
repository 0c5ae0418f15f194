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
