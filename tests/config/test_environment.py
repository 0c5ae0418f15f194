"""A ``MODELSCRIBE_*`` variable nothing reads is warned about, not ignored
silently (a misspelt variable changed nothing and said nothing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from agent.config.options import OPTIONS, OTHER_VARIABLES, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
# Names in the text that are not variables: a typo as an example, placeholders of the docs, a C include guard.
NOT_VARIABLES = {"MODELSCRIBE_ES_URLS", "MODELSCRIBE_X", "MODELSCRIBE_VAR", "MODELSCRIBE_FLAG", "MODELSCRIBE_HEALTH_NATIVE_H"}


def test_a_misspelt_variable_is_named_with_the_closest_one():
    messages = unknown_variables({"MODELSCRIBE_ES_URLS": "http://es:9200", "MODELSCRIBE_WORKERS": "2",
                                  "MODELSCRIBE_ZZZ": "1", "PATH": "/bin", "MODELSCRIBE_API_KEY": "k"})
    assert messages == [
        "environment variable MODELSCRIBE_ES_URLS is set but no setting reads it; it is ignored "
        "(did you mean MODELSCRIBE_ES_URL?)",
        "environment variable MODELSCRIBE_ZZZ is set but no setting reads it; it is ignored",
    ]


def test_every_setting_and_every_other_variable_is_known():
    env = {option.env: "x" for option in OPTIONS} | {name: "x" for name in OTHER_VARIABLES}
    assert unknown_variables(env) == []


def test_every_variable_the_code_and_the_docs_name_is_known():
    """The list of known variables cannot fall behind: any MODELSCRIBE_ name
    written in the code, the scripts, the tests or the docs must be one."""
    known = {option.env for option in OPTIONS} | OTHER_VARIABLES | NOT_VARIABLES
    found: dict[str, str] = {}
    for folder in ("agent", "scripts", "tests", "benchmarks", "packaging", "docs", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.name != Path(__file__).name and path.suffix in {".py", ".c", ".h", ".md", ".sh", ".service", ".yml", ""}:
                for name in re.findall(r"MODELSCRIBE_[A-Z0-9_]+", path.read_text(errors="replace")):
                    found.setdefault(name, str(path.relative_to(ROOT)))
    for name in re.findall(r"MODELSCRIBE_[A-Z0-9_]+", (ROOT / "README.md").read_text()):
        found.setdefault(name, "README.md")
    unknown = {name: where for name, where in found.items() if name not in known and name.rstrip("_") != "MODELSCRIBE"}
    assert not unknown, f"add these to OTHER_VARIABLES (or NOT_VARIABLES here): {unknown}"


def test_the_cli_warns_and_goes_on(tmp_path):
    env = {**os.environ, "MODELSCRIBE_WORKER": "3"}
    done = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--es-url", "http://127.0.0.1:9",
                           "--state-dir", str(tmp_path / "state"), "--path", str(tmp_path / "*.log")],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "config ok" in done.stdout
    assert ("environment variable MODELSCRIBE_WORKER is set but no setting reads it; it is ignored "
            "(did you mean MODELSCRIBE_WORKERS?)") in done.stderr
    assert re.search(r"^workers\s+2\s+\(default\)", done.stdout, re.M)  # the setting stays at its default
