"""A reference file (``health.reference``): read as Excel and editors write it (a byte order
mark), refused when a column name is ambiguous, and bounded — the first rows that hold
``caps.reference_values`` values are used, the file is streamed and the rest is never read."""

from __future__ import annotations

import logging
import tracemalloc

import orjson
import pytest

from agent.config import resolve
from agent.errors import ConfigError
from agent.health import reference


def test_a_csv_with_a_byte_order_mark_keeps_its_first_columns_name(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("x,prediction\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20)), encoding="utf-8-sig")
    ref = reference.from_file(str(path), 50, 50)
    assert list(ref.features) == ["x"] and ref.features["x"].maximum == 19


def test_json_lines_with_a_byte_order_mark_read_their_first_row(tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text("".join(orjson.dumps({"x": i, "prediction": "a"}).decode() + "\n" for i in range(20)),
                    encoding="utf-8-sig")
    ref = reference.from_file(str(path), 50, 50)
    assert list(ref.features) == ["x"] and sum(ref.features["x"].reference_counts) == 20


def test_a_csv_naming_a_column_twice_is_refused_naming_the_file_and_the_column(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("x,y,x,prediction\n1,2,3,a\n")
    with pytest.raises(ConfigError, match=rf"health.reference {path}: the header names the column 'x' twice"):
        reference.from_file(str(path), 50, 50)


def _rows(count: int, start: int = 0) -> str:
    return "".join(orjson.dumps({"features": {"a": i, "b": i % 7, "c": "xyz"[i % 3]}, "prediction": i % 2}).decode()
                   + "\n" for i in range(start, start + count))


def test_the_first_rows_that_hold_the_cap_are_used_and_the_rest_is_not_read(tmp_path, caplog):
    path = tmp_path / "ref.jsonl"
    # 3 features and the prediction: 4 values a row, so 400 values are the first 100 rows;
    # what follows them is never read (a bad line there is no error).
    path.write_text(_rows(1000) + "not json\n")
    ref = reference.from_file(str(path), 50, 50, max_values=400)
    assert sum(ref.features["a"].reference_counts) == 100 and ref.features["a"].maximum == 99
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "first rows are used" in warnings[0].getMessage()
    assert warnings[0].kv == {"path": str(path), "rows": 100, "cap": 400}  # type: ignore[attr-defined]
    caplog.clear()
    path.write_text(_rows(100))  # exactly the cap: nothing left out, nothing logged
    assert sum(reference.from_file(str(path), 50, 50, max_values=400).features["a"].reference_counts) == 100
    assert not caplog.records
    assert reference.from_file(str(path), 50, 50, max_values=1).features["a"].maximum == 0  # (one row at least)


def test_check_config_reads_the_reference_with_the_configured_cap(tmp_path, caplog):
    (tmp_path / "ref.jsonl").write_text(_rows(50) + "not json\n")
    cfg = tmp_path / "agent.yml"
    cfg.write_text("health: {reference: ref.jsonl, caps: {reference_values: 80}}\n")
    resolve({}, {}, str(cfg))  # the bad line after the first 20 rows is not read
    assert any(getattr(r, "kv", {}).get("rows") == 20 for r in caplog.records)
    cfg.write_text("health: {reference: ref.jsonl}\n")
    with pytest.raises(ConfigError, match="line 51 is not JSON"):
        resolve({}, {}, str(cfg))


def test_a_large_file_is_streamed_in_bounded_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as handle:
        for start in range(0, 300_000, 10_000):
            handle.write(_rows(10_000, start))
    assert path.stat().st_size > 15 << 20
    tracemalloc.start()
    try:
        reference.from_file(str(path), 50, 50, max_values=4_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the first 1,000 rows, not the file's 16 MB


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_line_longer_than_the_limit_is_refused_without_reading_it_whole(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(reference, "MAX_LINE", 1 << 16)
    path = tmp_path / f"ref{suffix}"
    header = "x,prediction\n" if suffix == ".csv" else '{"x": 1}\n'
    path.write_text(header + "1" * (4 << 20))  # no line break: the whole file would be one line
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=rf"{path}: line 2 is longer than"):
            reference.from_file(str(path), 50, 50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_row_bringing_new_columns_late_counts_them_for_every_earlier_row(tmp_path):
    # 300 rows of one feature, then rows of 50: taking one would pad 50 columns for all
    # 300 rows (15,300 values), beyond the cap of 1,000.
    path = tmp_path / "ref.jsonl"
    wide = orjson.dumps({f"f{i}": i for i in range(50)}).decode() + "\n"
    path.write_text("".join('{"x": %d}\n' % i for i in range(300)) + wide * 10)
    ref = reference.from_file(str(path), 100, 50, max_values=1000)
    assert list(ref.features) == ["x"] and sum(ref.features["x"].reference_counts) == 300


@pytest.mark.parametrize(("body", "line", "cells"), [
    ("x,c,prediction\n1,u,a\n1.0,u\n2,v,b\n", 3, "2 cells"),  # a cell short: was padded with None
    ("x,c,prediction\n1,u,a\n2,v,b\n1.0,u,a,extra\n", 4, "4 cells"),  # a cell over: was dropped
    ("x,c,prediction\n1,u,a\n\"2\n\",v,b\n3\n", 5, "1 cell"),  # the line number counts a quoted line break
])
def test_a_csv_row_with_more_or_fewer_cells_than_the_header_is_refused_naming_the_line(tmp_path, body, line, cells):
    path = tmp_path / "ragged.csv"
    path.write_text(body)
    with pytest.raises(ConfigError, match=rf"health.reference {path}: line {line} has {cells} where the header has 3"):
        reference.from_file(str(path), 50, 50)
    cfg = tmp_path / "agent.yml"  # at start-up (and by check config), as the other reference errors
    cfg.write_text("health: {reference: ragged.csv}\n")
    with pytest.raises(ConfigError, match=f"line {line} has {cells}"):
        resolve({}, {}, str(cfg))


def test_a_csv_with_blank_lines_and_empty_cells_is_still_read(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("x,c,prediction\r\n1,u,a\r\n\r\n2,,b\r\n")
    ref = reference.from_file(str(path), 50, 50)
    assert sum(ref.features["x"].reference_counts) == 2 and sum(ref.features["c"].reference_counts) == 1
