"""The generated parts of pipelines/ are current (one definition: agent/parsing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import gen_pipelines  # noqa: E402

from agent.parsing import json_keys, parse_text  # noqa: E402


def test_generated_files_are_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_pipelines.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_catalogue_change_makes_json_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    current = (ROOT / "pipelines" / "json.yml").read_text(encoding="utf-8")
    assert gen_pipelines.json_yaml() == current
    rules = dict(json_keys.BUILT_IN)
    rules["model_title"] = rules["model_name"]
    monkeypatch.setattr(json_keys, "BUILT_IN", rules)
    assert gen_pipelines.json_yaml() != current


def test_the_hand_written_depth_limit_of_bentoml_is_the_schemas() -> None:
    """pipelines/bentoml.yml repeats json.yml's capping (painless scripts cannot
    share functions) with its own flattened_depth param, not generated."""
    from agent.schema import FLATTENED_DEPTH_LIMIT

    text = (ROOT / "pipelines" / "bentoml.yml").read_text(encoding="utf-8")
    assert f"flattened_depth: {FLATTENED_DEPTH_LIMIT}\n" in text


def test_every_catalogue_key_is_in_the_pipeline() -> None:
    text = gen_pipelines.json_params()
    for key, rule in json_keys.BUILT_IN.items():
        assert f'"{key}": [{list(rule.path)!r}'.replace("'", '"') in text, key


def test_plain_prefix_follows_the_agent_regexes(monkeypatch: pytest.MonkeyPatch) -> None:
    current = (ROOT / "pipelines" / "plain-prefix.yml").read_text(encoding="utf-8")
    assert gen_pipelines.plain_prefix_yaml() == current
    monkeypatch.setattr(parse_text, "_SEARCH_WINDOW", 120)
    assert gen_pipelines.plain_prefix_yaml() != current


def test_gunicorn_shapes_follow_the_agent_regexes(monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    from agent.parsing.servers import gunicorn
    current = (ROOT / "pipelines" / "gunicorn-shape.yml").read_text(encoding="utf-8")
    assert gen_pipelines.gunicorn_yaml() == current
    monkeypatch.setattr(gunicorn, "_ERROR", re.compile(r" ?\[(\d+)\] \[([A-Za-z]+)\] "))
    assert gen_pipelines.gunicorn_yaml() != current


def test_numbered_groups() -> None:
    assert gen_pipelines.numbered(r"(a)(?:b)(c[(])\(", "x") == r"(?P<x1>a)(?:b)(?P<x2>c[(])\("


def test_joni_translation() -> None:
    assert gen_pipelines.joni(r"(?P<a>\d+)\s[\w.]\S", ascii_classes=True) == \
        r"(?<msp_a>[0-9]+)[ \t\n\r\f\v][A-Za-z0-9_.][^ \t\n\r\f\v]"
    assert gen_pipelines.joni(r"(?P<a>\d+)\s", ascii_classes=False) == r"(?<msp_a>\d+)\s"
    assert gen_pipelines.joni(r"[^\]\s]", ascii_classes=True) == r"[^\] \t\n\r\f\v]"
