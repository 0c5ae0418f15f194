"""References: from a JSON lines or CSV file, from the first events (kept across restarts, reset
by the command), and the previous window."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.errors import ConfigError
from agent.events import Event
from agent.health import reference
from agent.health.config import parse_health
from agent.health.bins import CategoricalBins, NumericBins
from agent.health.engine import HealthEngine

AGENT = {"name": "modelscribe"}
T0 = 1_767_225_600.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_jsonl_reference_with_features_objects_or_flat_rows(tmp_path):
    nested = tmp_path / "ref.jsonl"
    nested.write_text("".join(orjson.dumps({"features": {"age": i, "country": "DE" if i % 2 else "FR"},
                                            "prediction": i % 3}).decode() + "\n" for i in range(100)))
    flat = tmp_path / "flat.jsonl"
    flat.write_text("".join(orjson.dumps({"age": i, "country": "DE" if i % 2 else "FR", "prediction": i % 3,
                                          "label": 1}).decode() + "\n" for i in range(100)))
    for path in (nested, flat):
        ref = reference.from_file(str(path), 50, 50)
        assert set(ref.features) == {"age", "country"}
        assert isinstance(ref.features["age"], NumericBins) and ref.features["age"].minimum == 0
        assert isinstance(ref.features["country"], CategoricalBins)
        assert sum(ref.features["age"].reference_counts) == 100 and ref.prediction is not None


def test_a_csv_reference_reads_numbers_as_numbers(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("age,country,prediction\n" + "".join(f"{i},{'DE' if i % 2 else 'FR'},{i % 2}\n"
                                                         for i in range(50)) + ",DE,1\n")
    ref = reference.from_file(str(path), 50, 50)
    assert isinstance(ref.features["age"], NumericBins) and ref.features["age"].maximum == 49
    assert ref.features["country"].categories == ("DE", "FR")


def test_a_bad_reference_file_is_a_config_error_naming_the_line(tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text('{"age": 1}\nnot json\n')
    with pytest.raises(ConfigError, match=r"ref\.jsonl: line 2"):
        reference.from_file(str(path), 50, 50)
    with pytest.raises(ConfigError, match="cannot read"):
        reference.from_file(str(tmp_path / "missing.csv"), 50, 50)


def _events(start: int, count: int, value) -> list[Event]:
    return [Event("f", i, i + 1, str(i), orjson.dumps({
        "@timestamp": _stamp(T0 + i), "model": {"name": "m", "input": {"features": {"x": value(i)}}}}))
        for i in range(start, start + count)]


def test_the_first_events_reference_is_kept_across_restarts_and_reset_by_the_command(tmp_path):
    settings = parse_health({"window": 10, "reference_size": 30}, "t: health")
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    engine.observe(_events(0, 40, lambda i: i))
    engine.checkpoint({})
    engine.close()
    stored = orjson.loads((tmp_path / "health" / "reference.json").read_bytes())
    assert stored["version"] == 1 and list(stored["models"]) == ["m\u0000"]
    again = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    assert again._references["m\u0000"].features["x"].maximum == 29
    again.close()
    done = subprocess.run([sys.executable, "-m", "agent", "health", "reset-reference", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "collected again" in done.stdout
    assert not (tmp_path / "health" / "reference.json").exists()
    after = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    assert after._references == {}
    after.observe(_events(100, 30, lambda i: i * 10))
    assert after._references["m\u0000"].features["x"].minimum == 1000
    assert not (tmp_path / "health" / reference.RESET_MARKER).exists()
    after.close()


def test_a_corrupt_reference_file_is_moved_aside(tmp_path):
    (tmp_path / "health").mkdir()
    (tmp_path / "health" / "reference.json").write_text('{"version": 9}')
    assert reference.load_store(str(tmp_path / "health")) == {}
    assert any(name.startswith("reference.json.corrupt-") for name in os.listdir(tmp_path / "health"))


def test_a_reference_file_that_is_a_directory_is_exit_code_2_and_kept(tmp_path):
    # Audit 11 (finding 3): a reference.json that cannot be read was "not
    # usable; moved aside", and drift was measured against a new reference.
    (tmp_path / "health" / "reference.json").mkdir(parents=True)
    with pytest.raises(ConfigError) as caught:
        reference.load_store(str(tmp_path / "health"))
    assert caught.value.exit_code == 2
    assert str(caught.value) == (f"cannot read the drift reference {tmp_path / 'health' / 'reference.json'}: it is "
                                 "a directory, not a file (move it away: the references are then collected again)")
    assert os.listdir(tmp_path / "health") == ["reference.json"]


def test_a_reference_file_this_user_cannot_read_is_exit_code_2_and_kept(tmp_path, monkeypatch):
    # Audit 11 (finding 3): root-owned after a ``sudo modelscribe run``, it was
    # moved aside as corrupt. (Tests run as root: the PermissionError is
    # injected; tests/test_unreadable_state_files.py has the real one.)
    settings = parse_health({"window": 10, "reference_size": 30}, "t: health")
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    engine.observe(_events(0, 40, lambda i: i))
    engine.checkpoint({})
    engine.close()
    path = tmp_path / "health" / "reference.json"
    stored = path.read_bytes()

    def denied(name, *args, **kwargs):
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return open(name, *args, **kwargs)

    monkeypatch.setattr(reference, "open", denied, raising=False)
    with pytest.raises(ConfigError) as caught:
        HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    monkeypatch.undo()
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"cannot read the drift reference {path}: Permission denied (")
    assert "moved aside" not in str(caught.value) and path.read_bytes() == stored
    assert not [name for name in os.listdir(tmp_path / "health") if ".corrupt-" in name]


def test_previous_compares_each_window_with_the_one_before(tmp_path):
    settings = parse_health({"window": 10, "lateness": 0, "reference": "previous", "reference_size": 10},
                            "t: health")
    engine = HealthEngine(settings, str(tmp_path), None, AGENT, FakeClock())
    engine.observe(_events(0, 50, lambda i: "a" if i < 30 else "b"))
    engine.close_due(final=True)
    drift = {d["@timestamp"]: d["model"]["drift"] for d in map(orjson.loads, engine._outbox.values())
             if d["event"]["dataset"] == "modelscribe.drift"}
    assert "psi" not in drift[_stamp(T0 + 10)]  # the first window counted has nothing before it
    assert drift[_stamp(T0 + 20)]["psi"] == pytest.approx(0.0) and drift[_stamp(T0 + 20)]["reference"] == "previous"
    assert drift[_stamp(T0 + 30)]["alert"] is True  # all "b" (other) after all "a"
    assert drift[_stamp(T0 + 40)]["psi"] == pytest.approx(0.0)


def _collect_value_by_value(events, max_features):
    """Collector.add as written before its fast path (the specification)."""
    columns: dict[str, list] = {}
    for index, features in enumerate(events):
        for name, value in (features or {}).items():
            column = columns.get(name)
            if column is None:
                if len(columns) >= max_features:
                    continue
                column = columns[name] = [None] * index
            column.append(value)
        for column in columns.values():
            if len(column) < index + 1:
                column.append(None)
    return columns


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(), max_size=3)),
                max_size=20), st.integers(1, 3))
def test_collecting_keeps_every_events_values_in_its_column(events, max_features):
    collector = reference.Collector(size=1000)
    for features in events:
        collector.add(features, 1, max_features)
    expected = _collect_value_by_value(events, max_features)
    assert collector.features == expected and list(collector.features) == list(expected)
