"""Temp files a kill leaves between ``write_atomic``'s mkstemp and its rename
are removed when the agent starts (agent/atomic.py ``remove_stale_temps``).
Found by audit 5: a kill during a health checkpoint left a ``.state.*.tmp``
of the state's size for good (the registry already removed its own), so a
crash-looping agent filled its state disk with them."""

from __future__ import annotations

from pathlib import Path

from agent.atomic import remove_stale_temps
from e2e_helpers import run_once


def test_only_the_named_temp_files_go(tmp_path: Path) -> None:
    for name in (".state.a1.tmp", ".state.b2.tmp", ".reset.c3.tmp", "state.json", ".state.d4.part"):
        (tmp_path / name).write_text("x")
    remove_stale_temps(tmp_path, (".state.",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".reset.c3.tmp", ".state.d4.part", "state.json"]
    remove_stale_temps(tmp_path / "missing", (".state.",))  # (nothing to list: nothing done)


def test_the_agent_removes_what_a_kill_left_and_keeps_what_others_write(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "health").mkdir(parents=True)
    left = [state / ".status.json.k1.tmp", state / ".agent_id.k2.tmp", state / ".registry.json.k3.tmp",
            state / ".cuts.json.k4.tmp", state / "health" / ".state.k5.tmp", state / "health" / ".reference.k6.tmp"]
    # The reset marker's is written by `modelscribe health reset-reference`, which may run meanwhile.
    kept = [state / "health" / ".reset.k7.tmp", state / ".dead-letter.k8.tmp"]
    for path in left + kept:
        path.write_bytes(b"\0" * 1000)
    (tmp_path / "app.log").write_text('{"model_name": "m", "request_id": "r1", "prediction": 1, "latency_ms": 3}\n')
    config = tmp_path / "agent.yml"
    config.write_text("health:\n  window: 10\n")
    result = run_once(["run", "--once", "--config", str(config), "--path", str(tmp_path / "*.log"),
                       "--state-dir", str(state), "--output", f"file:{tmp_path / 'out.ndjson'}"])
    assert result.code == 0, result.stderr
    assert [p.name for p in left if p.exists()] == []
    assert all(p.exists() for p in kept)
