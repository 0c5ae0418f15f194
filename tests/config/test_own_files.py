"""Warnings of the resolution step about valid settings that are probably
not what was meant: a glob that reaches the agent's own files (left out of
tailing whatever the globs say) and ``inputs:`` that can match the same file
with different settings. ``run`` and ``check config`` print the same."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.config import resolve
from agent.config.stages import own_files, tail_excludes


@pytest.fixture
def warnings():
    """The warnings the agent logs (a handler on its logger: neither the
    propagation nor the level ``selflog.configure`` left matters)."""
    logger = logging.getLogger("modelscribe")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    yield lambda: list(seen)
    logger.removeHandler(handler)


def _resolve(tmp_path, **flags):
    return resolve({"state_dir": str(tmp_path / "state"), **flags}, {})


def test_a_glob_over_the_state_directory_is_named_with_what_it_reaches(tmp_path, warnings):
    spool = tmp_path / "spool"
    _resolve(tmp_path, paths=(str(tmp_path / "**" / "*.log"),), spool_dir=str(spool), output="file:/tmp/o.ndjson")
    (warning,) = warnings()
    assert warning.getMessage() == (f"--path {tmp_path}/**/*.log also reaches the agent's own files; "
                                    "they are never tailed")
    assert warning.kv == {"covers": f"the state directory {tmp_path / 'state'}, the spool directory {spool}"}


def test_a_glob_inside_the_state_directory_matches_nothing_to_ship(tmp_path, warnings):
    _resolve(tmp_path, paths=(str(tmp_path / "state" / "*.log"),))
    (warning,) = warnings()
    assert "matches only the agent's own files; none of them is tailed" in warning.getMessage()


@pytest.mark.parametrize("flags", [
    {"paths": ("{t}/state2/*.log", "{t}/state?*/*.log", "{t}/*.log")},  # beside it, or one level above
    {"paths": ("{t}/**",), "excludes": ("{t}/state/*",), "dead_letter_file": "{t}/state/dlq.ndjson"},
])
def test_no_warning_for_globs_that_do_not_reach_it_or_an_exclude_that_already_leaves_it_out(tmp_path, warnings,
                                                                                           flags):
    def fill(value):
        if isinstance(value, tuple):
            return tuple(item.format(t=tmp_path) for item in value)
        return value.format(t=tmp_path)

    _resolve(tmp_path, **{name: fill(value) for name, value in flags.items()})
    assert warnings() == []


def test_the_excludes_hold_the_own_files_as_written_and_as_resolved(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "state").symlink_to(real)
    config = _resolve(tmp_path, excludes=(str(tmp_path / "*.gz"),), output=f"file:{tmp_path / 'out.ndjson'}",
                      dead_letter_file=str(tmp_path / "state" / "d.ndjson"), spool=False)
    own = own_files(config)
    assert [(pattern.what, pattern.path) for pattern in own] == [
        ("the state directory", str(tmp_path / "state")), ("the state directory", str(real)),
        ("the file output", str(tmp_path / "out.ndjson"))]  # the dead letters are in the state directory
    assert tail_excludes(config) == (str(tmp_path / "*.gz"), *own)
    assert own[0] == f"{tmp_path}/state/*"


def _inputs(tmp_path, text):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\ninputs:\n{text}")
    return cfg


@pytest.mark.parametrize("text, warned", [
    ("  - paths: [logs/*.log]\n    format: plain\n  - paths: [logs/a.log]\n    format: json\n", "format"),
    ("  - paths: ['**/*.log']\n  - paths: [logs/a*]\n    format: json\n", "format"),
    ("  - paths: [logs/*.log]\n    format: json\n  - paths: [logs/a.log]\n    format: json\n", None),  # same
    ("  - paths: [ts/*.log]\n    format: torchserve\n  - paths: [triton/*.log]\n    format: triton\n", None),
])
def test_inputs_that_can_match_the_same_file_with_different_settings_are_named(tmp_path, warnings, text, warned):
    cfg = _inputs(tmp_path, text)
    resolve({}, {}, str(cfg))
    found = [r for r in warnings() if "can match the same file" in r.getMessage()]
    if warned is None:
        assert found == []
    else:
        assert [r.getMessage() for r in found] == [
            f"{cfg}: inputs[1] and inputs[2] can match the same file with different settings; such a file is "
            "read once, with the settings of inputs[1] (the first that matches)"]
        assert found[0].kv == {"differ": warned}


def test_check_config_prints_both_warnings(tmp_path):
    cfg = _inputs(tmp_path, "  - paths: ['**']\n    format: plain\n  - paths: [logs/a.log]\n    format: json\n")
    result = CliRunner().invoke(main, ["check", "config", "--config", str(cfg)], env={},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{cfg}: inputs[1] {tmp_path}/** also reaches the agent's own files" in result.stderr
    assert f"covers=\"the state directory {tmp_path / 'state'}\"" in result.stderr
    assert f"{cfg}: inputs[1] and inputs[2] can match the same file" in result.stderr
    assert "config ok" in result.stdout
