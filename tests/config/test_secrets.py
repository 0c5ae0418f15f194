"""The secrets (``agent.config.secrets``): where each comes from, by the
precedence flag > environment > file > default, and files that are not
files (a FIFO would block the command for ever, out of reach of SIGTERM)."""

from __future__ import annotations

import os
import threading

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.config import describe, resolve
from agent.errors import ConfigError


def _within(seconds, call):
    """``call()``'s result, or its exception, if it ends within ``seconds`` (a
    hung open of a FIFO fails the test instead of hanging it)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _error(flags, env=None) -> str:
    with pytest.raises(ConfigError) as caught:
        _within(10, lambda: resolve(flags, env or {}))
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    return path


@pytest.mark.parametrize("flags, flag", [
    ({"api_key_file": "{f}"}, "--api-key-file"),
    ({"username": "u", "password_file": "{f}"}, "--password-file"),
    ({"hash_fields": ("user.id",), "hash_key_file": "{f}"}, "--hash-key-file"),
    ({"ca_cert": "{f}"}, "--ca-cert"),
    ({"client_cert": "{f}", "client_key": "{f}"}, "--client-cert"),
])
def test_a_fifo_as_a_key_or_certificate_file_is_refused_at_once(fifo, flags, flag):
    """Audit 11, finding 2: the open of a FIFO blocked for ever (and SIGTERM
    could not end it: the interrupted open is retried)."""
    flags = {name: value.format(f=fifo) if isinstance(value, str) else value for name, value in flags.items()}
    assert _error(flags).startswith(f"{flag} {fifo}: not a regular file (a FIFO)")


def test_a_directory_as_a_key_file_is_refused_naming_the_variable(tmp_path):
    message = _error({}, {"MODELSCRIBE_API_KEY_FILE": str(tmp_path)})
    assert message.startswith(f"MODELSCRIBE_API_KEY_FILE {tmp_path}: not a regular file (a directory)")


def test_a_fifo_among_systemd_credentials_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "es-api-key", 0o600)
    message = _error({}, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert message.startswith(f"$CREDENTIALS_DIRECTORY/es-api-key {tmp_path}/es-api-key: not a regular file")


def test_check_config_with_a_fifo_key_file_exits_2_at_once(tmp_path, fifo):
    result = _within(20, lambda: CliRunner().invoke(
        main, ["check", "config", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "state"),
               "--api-key-file", str(fifo)], env={}, catch_exceptions=False))
    assert result.exit_code == 2, result.output
    assert f"modelscribe: error: --api-key-file {fifo}: not a regular file (a FIFO)" in result.stderr


# (secret, its file option, its variable, extra flags the secret needs)
_SECRETS = [("api_key", "api_key_file", "MODELSCRIBE_API_KEY", {}),
            ("password", "password_file", "MODELSCRIBE_PASSWORD", {"username": "u"}),
            ("hash_key", "hash_key_file", "MODELSCRIBE_HASH_KEY", {"hash_fields": ("user.id",)})]


@pytest.mark.parametrize("name, file_option, variable, extra", _SECRETS)
def test_the_environment_value_beats_a_key_file_the_config_file_names(tmp_path, name, file_option, variable,
                                                                       extra):
    """Audit 11, finding 4: a key file named in the YAML file beat
    MODELSCRIBE_API_KEY (and the password, and the hash key) without a word."""
    (tmp_path / "kf").write_text("OLD-from-the-file-0123456789\n")
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"{file_option}: kf\n")
    config = resolve(extra, {variable: "NEW-from-env-0123456789"}, str(cfg))
    assert getattr(config, name).reveal() == "NEW-from-env-0123456789"
    assert config.origins[name] == f"env {variable}"
    # Set aside: the output re-reads a key file when it changes, and must not switch back to it.
    assert getattr(config, file_option) is None
    rows = {setting: (value, origin) for setting, value, origin in describe(config)}
    assert rows[name] == ("***", f"env {variable}")
    assert rows[file_option] == ("(not used)", f"file {cfg}: {tmp_path}/kf, not used: {variable} is set")


@pytest.mark.parametrize("name, file_option, variable, extra", _SECRETS)
def test_a_key_file_flag_or_variable_beats_the_environment_value(tmp_path, name, file_option, variable, extra):
    key_file = tmp_path / "kf"
    key_file.write_text("FROM-the-key-file-0123456789\n")
    env = {variable: "from-env-0123456789"}
    flagged = resolve({**extra, file_option: str(key_file)}, env)
    assert getattr(flagged, name).reveal() == "FROM-the-key-file-0123456789"
    assert flagged.origins[name] == f"file {key_file}"
    from_variable = resolve(extra, {**env, f"{variable}_FILE": str(key_file)})
    assert getattr(from_variable, name).reveal() == "FROM-the-key-file-0123456789"
    assert getattr(from_variable, file_option) == str(key_file)
    # With neither, the config file's key file applies (file > default).
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"{file_option}: kf\n")
    from_file = resolve(extra, {}, str(cfg))
    assert getattr(from_file, name).reveal() == "FROM-the-key-file-0123456789"


def test_check_config_names_the_origin_actually_used(tmp_path):
    (tmp_path / "kf").write_text("OLD-from-the-file-0123456789\n")
    cfg = tmp_path / "agent.yml"
    cfg.write_text("api_key_file: kf\n")
    result = CliRunner().invoke(main, ["check", "config", "--path", str(tmp_path / "*.log"), "--state-dir",
                                       str(tmp_path / "state"), "--config", str(cfg)],
                                env={"MODELSCRIBE_API_KEY": "NEW-from-env-0123456789"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["api_key"].endswith("(env MODELSCRIBE_API_KEY)")
    assert "not used: MODELSCRIBE_API_KEY is set" in lines["api_key_file"]
    assert "NEW-from-env-0123456789" not in result.output and "OLD-from-the-file" not in result.output
