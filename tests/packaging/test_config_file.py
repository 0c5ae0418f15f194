"""packaging/modelscribe.yml (the packaged /etc/modelscribe/modelscribe.yml) is
generated from the option table, lists every option, and reads back through
the real configuration code."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from agent.config import resolve
from agent.config.options import OPTIONS

import gen_config  # scripts/ is on sys.path (tests/conftest.py)

SETTING = re.compile(r"^#([a-z_]+):(?: (.*))?$")


def test_the_checked_in_file_is_up_to_date():
    current = gen_config.TARGET.read_text(encoding="utf-8")
    assert current == gen_config.render(), "packaging/modelscribe.yml is stale: run python3 scripts/gen_config.py"


def test_the_check_mode_of_the_script_agrees():
    done = subprocess.run([sys.executable, str(gen_config.ROOT / "scripts" / "gen_config.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_option_is_there_once_with_its_help_flag_and_variable():
    text = gen_config.render()
    keys = [match.group(1) for line in text.splitlines() if (match := SETTING.match(line))]
    assert sorted(keys) == sorted(option.name for option in OPTIONS)
    for option in OPTIONS:
        block = text[:text.index(f"\n#{option.name}:")].rsplit("\n\n", 1)[-1]
        flat = " ".join(line.removeprefix("# ") for line in block.splitlines())
        assert option.help in flat, option.name
        assert option.flag in flat and option.env in flat and "default:" in flat, option.name


def test_the_file_as_shipped_is_a_valid_config(tmp_path):
    """Everything commented: the defaults, and no error."""
    config = resolve({}, {}, str(gen_config.TARGET))
    for option in OPTIONS:
        assert getattr(config, option.name) == option.default, option.name


def test_every_written_default_reads_back_as_the_default(tmp_path):
    """Uncomment every setting line: each value the file shows must be valid and
    mean the option's default (a wrong unit or a typo would show here)."""
    lines = []
    for line in gen_config.render().splitlines():
        match = SETTING.match(line)
        lines.append(line[1:] if match else line)
    path = tmp_path / "modelscribe.yml"
    path.write_text("\n".join(lines) + "\n")
    config = resolve({}, {}, str(path))
    for option in OPTIONS:
        assert getattr(config, option.name) == option.default, option.name


def test_a_path_uncommented_makes_a_runnable_config(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model.log").write_text('{"message": "hello from the packaged config"}\n')
    out = tmp_path / "out.ndjson"
    text = gen_config.render()
    text = text.replace("\n#paths: []\n", f"\npaths: ['{logs}/*.log']\n")
    text = text.replace("\n#output: elasticsearch\n", f"\noutput: 'file:{out}'\n")
    text = text.replace("\n#state_dir: /var/lib/modelscribe\n", f"\nstate_dir: {tmp_path / 'state'}\n")
    text = text.replace("\n#metrics_addr: 127.0.0.1:9464\n", "\nmetrics_addr: 'off'\n")
    path = tmp_path / "modelscribe.yml"
    path.write_text(text)
    config = resolve({}, {}, str(path), require_paths=True)
    assert config.paths == (f"{logs}/*.log",) and config.origins["paths"] == f"file {path}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELSCRIBE_")}
    checked = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--config", str(path)],
                             capture_output=True, text=True, timeout=60, env=env)
    assert checked.returncode == 0, checked.stderr
    assert f"file {path}" in checked.stdout
    ran = subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--config", str(path)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert ran.returncode == 0, ran.stderr
    assert "hello from the packaged config" in out.read_text()
