"""Which implementation of health's hot path runs (``agent.health.native``).

That the C functions agree with the Python ones is tested where each Python
function is: tests/health/test_extract.py, test_bulk.py, test_histogram.py,
test_intake.py and test_engine.py run under both (``native_switch``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.health import native


def _native_in_a_fresh_interpreter(**env: str) -> str:
    code = "from agent.health import native, extract; print(native.NATIVE is not None, extract.extractor.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, **env})
    return result.stdout.strip()


def test_the_c_module_is_built_in_ci():
    if native.NATIVE is None and not os.environ.get("CI"):
        pytest.skip("agent/health/_native.c was not built here (no C compiler?)")
    assert native.NATIVE is not None
    assert {"configure", "extract_default", "count_values", "count_feature", "add_latencies", "configure_intake",
            "select", "cover", "journal_body"} <= set(dir(native.NATIVE))


def test_the_environment_turns_the_c_functions_off():
    if native.NATIVE is None:
        pytest.skip("agent/health/_native.c was not built here, or MODELSCRIBE_HEALTH_NATIVE=0")
    assert _native_in_a_fresh_interpreter(MODELSCRIBE_HEALTH_NATIVE="1").startswith("True")
    for off in ("0", "false", "OFF", " no "):
        assert _native_in_a_fresh_interpreter(MODELSCRIBE_HEALTH_NATIVE=off).startswith("False"), off


def test_a_wrong_call_is_a_type_error_not_a_crash():
    if native.NATIVE is None:
        pytest.skip("agent/health/_native.c was not built here, or MODELSCRIBE_HEALTH_NATIVE=0")
    with pytest.raises(TypeError):
        native.NATIVE.count_values([1.0], (0.5,), 0.0, 1.0, None, [])  # no counts to add to
    with pytest.raises(ValueError):
        native.NATIVE.count_values([1.0], (0.5, 0.7), 0.0, 1.0, None, [0, 0])  # a count short
    with pytest.raises(TypeError):
        native.NATIVE.count_feature("not a list", "f", (0.5,), 0.0, 1.0, None, [0, 0])


def test_check_config_says_which_hot_path_runs(tmp_path):
    config = tmp_path / "modelscribe.yml"
    config.write_text("paths: [/logs/*.log]\nhealth: {}\n")
    shown = {}
    for value in ("1", "0"):
        done = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--config", str(config)],
                              capture_output=True, text=True, env={**os.environ, "MODELSCRIBE_HEALTH_NATIVE": value})
        assert done.returncode == 0, done.stderr
        shown[value] = done.stdout
    assert "health: hot path in Python" in shown["0"]
    if native.NATIVE is not None:
        assert "health: hot path in C" in shown["1"]
