"""--health-window and --health-lateness of `setup rules`, `setup watchers` and
`setup elastalert` (audit 3, finding 2): the look-backs installed or written
follow the agents' health windows; a bad value is exit code 2 naming the flag,
before anything is sent. Kibana is the recording server of test_setup_rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agent.alerting import elastalert, kibana_rules, watcher
from agent.alerting.install import install_watchers
from agent.alerting.rules import RULES, by_slug, for_windows
from agent.cli import main
from test_setup_rules import KEY, FakeKibana
from test_setup_watchers import Recorder

ROOT = Path(__file__).resolve().parents[2]


def _invoke(*args: str):
    return CliRunner().invoke(main, ["setup", *args], env={"MODELSCRIBE_API_KEY": KEY})


def test_rules_for_15_minute_windows_are_installed_with_their_look_backs():
    with FakeKibana() as kibana:
        result = _invoke("rules", "--kibana-url", kibana.url, "--health-window", "15m")
    assert result.exit_code == 0, result.output
    expected = for_windows(900, 30)
    assert [body for _, _, body in kibana.writes()[1:]] == [kibana_rules.rule_body(rule) for rule in expected]
    sizes = {rule.slug: rule.lookback_minutes for rule in expected}
    assert sizes == {"error-rate-spike": 31, "latency-p95-high": 31, "drift-persistent": 61,
                     "accuracy-drop": 46, "model-no-data": 46, "agent-stalled": 3, "dead-letters-growing": 10}
    assert "look-backs for health windows of 900 s (lateness 30 s): error-rate-spike 31 min" in result.output
    assert "No health data from a model for 46 minutes" in str(kibana.writes())


def test_without_flags_the_config_files_health_block_decides(tmp_path):
    config = tmp_path / "agent.yml"
    config.write_text("health:\n  window: 5m\n  lateness: 2m\n")
    with FakeKibana() as kibana:
        result = _invoke("rules", "--kibana-url", kibana.url, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert [body for _, _, body in kibana.writes()[1:]] == [kibana_rules.rule_body(rule)
                                                            for rule in for_windows(300, 120)]
    # A flag wins over the file.
    with FakeKibana() as kibana:
        result = _invoke("rules", "--kibana-url", kibana.url, "--config", str(config), "--health-window", "60s",
                         "--health-lateness", "30s")
    assert result.exit_code == 0, result.output
    assert [body for _, _, body in kibana.writes()[1:]] == [kibana_rules.rule_body(rule) for rule in RULES]


BAD = [("--health-window", "0", "a whole number of seconds, at least 1s"),
       ("--health-window", "90.5s", "a whole number of seconds"),
       ("--health-window", "soon", "is not a duration"), ("--health-window", "-5m", "is not a duration"),
       ("--health-lateness", "later", "is not a duration"), ("--health-lateness", "-1s", "is not a duration")]


@pytest.mark.parametrize("flag, value, words", BAD)
def test_a_bad_window_is_exit_2_naming_the_flag_and_nothing_is_sent(flag, value, words):
    with FakeKibana() as kibana:
        result = _invoke("rules", "--kibana-url", kibana.url, f"{flag}={value}")
    assert result.exit_code == 2, result.output
    assert f"modelscribe: error: {flag} {value}: " in result.output and words in result.output
    assert kibana.requests == []


@pytest.mark.parametrize("flag, value, words", BAD[:1] + BAD[-1:])
def test_watchers_and_elastalert_check_the_flags_too(tmp_path, flag, value, words):
    for args in (["watchers", "--es-url", "https://127.0.0.1:9"], ["elastalert", "--out", str(tmp_path / "ea")]):
        result = _invoke(*args, f"{flag}={value}")
        assert result.exit_code == 2, result.output
        assert f"{flag} {value}: " in result.output and words in result.output
    assert not (tmp_path / "ea").exists()


def test_watches_for_15_minute_windows_search_their_look_backs():
    request = Recorder("gold")
    install_watchers(request, for_windows(900, 30))
    puts = {path.rsplit("/", 1)[1]: body for method, path, body in request.calls if method == "PUT"}
    latency = puts[by_slug("latency-p95-high").id]["input"]["search"]["request"]["body"]["query"]["bool"]
    assert {"range": {"@timestamp": {"gte": "now-31m"}}} in latency["filter"]
    assert puts == {rule.id: watcher.watch(rule) for rule in for_windows(900, 30)}


def test_elastalert_files_by_default_are_the_checked_in_ones(tmp_path):
    result = _invoke("elastalert", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for rule in RULES:
        written = yaml.safe_load((tmp_path / f"{rule.slug}.yaml").read_text())
        assert written == yaml.safe_load((ROOT / "kibana" / "elastalert" / f"{rule.slug}.yaml").read_text())
    assert f"{len(RULES)} ElastAlert2 rule files written into {tmp_path}" in result.output


def test_elastalert_files_for_one_hour_windows(tmp_path):
    result = _invoke("elastalert", "--out", str(tmp_path / "rules"), "--health-window", "1h",
                     "--health-lateness", "2m")
    assert result.exit_code == 0, result.output
    for rule in for_windows(3600, 120):
        text = (tmp_path / "rules" / f"{rule.slug}.yaml").read_text()
        assert text.startswith("# Generated by `modelscribe setup elastalert` for health windows of 3600 s "
                               "(lateness 120 s)")
        assert yaml.safe_load(text) == elastalert.rule_config(rule)
    flatline = yaml.safe_load((tmp_path / "rules" / "model-no-data.yaml").read_text())
    assert flatline["timeframe"] == {"minutes": 183}  # 3 x 60 + 2 + 0.5, rounded up


def test_an_unwritable_out_folder_is_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _invoke("elastalert", "--out", str(blocker / "rules"))
    assert result.exit_code == 2, result.output
    assert f"--out {blocker / 'rules'}: cannot write the rule files" in result.output
