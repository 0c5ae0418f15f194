"""The agent and the cluster's pipelines on the lines audit 9 found misread:
colour codes in Python logging text, Ray Serve JSON records with funcName, a
byte order mark at the start of a file, an exception message that goes on
over unindented lines (each failed against the pipelines before the fix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from test_generated_lines import _compare

LOGURU = ("\x1b[32m2024-05-01 10:00:01.000\x1b[0m | \x1b[31m\x1b[1mERROR   \x1b[0m | "
          "\x1b[36mapp.server\x1b[0m:\x1b[36mpredict\x1b[0m:\x1b[36m40\x1b[0m - \x1b[31m\x1b[1mpredict failed\x1b[0m")
TEXT = [LOGURU, "2024-05-01 10:00:02,124 - app.server - \x1b[31mERROR\x1b[0m - coloured level only",
        "\x1b[32m2024-05-01 10:00:03,000\x1b[0m \x1b[33mWARNING\x1b[0m disk \x1b[1mfull\x1b[0m",
        "\x1b[1mplain words\x1b[0m", "\x1b[1x not sgr \x1b[", "Traceback (most recent call last):",
        '  File "a.py", line 1, in f', "\x1b[31mValueError: x\x1b[0m"]
base = {"asctime": "2025-01-02 03:04:05,678", "levelname": "INFO", "message": "replica.py:410 - POST /predict 200 12.5ms",
        "filename": "replica.py", "lineno": 410, "deployment": "default_Model", "replica": "x1y2z3", "route": "/predict"}
RAY = [json.dumps({**base, "funcName": "_handle_request"}), json.dumps(base),
       json.dumps({**base, "filename": "other.py", "lineno": 7}), json.dumps({**base, "lineno": 12345678901}),
       json.dumps({**base, "message": "hello", "funcName": "f"})]


@pytest.mark.parametrize("fmt", ["plain", "auto"])
def test_colours(ingest: Any, tmp_path: Path, fmt: str) -> None:
    _compare(ingest, tmp_path, TEXT, fmt)


@pytest.mark.parametrize("fmt", ["rayserve", "auto"])
def test_ray(ingest: Any, tmp_path: Path, fmt: str) -> None:
    _compare(ingest, tmp_path, RAY, fmt)


@pytest.mark.parametrize("fmt", ["json", "auto", "plain"])
def test_bom(ingest: Any, tmp_path: Path, fmt: str) -> None:
    _compare(ingest, tmp_path, ['\ufeff{"message":"m","level":"warning"}', "x"] if fmt != "plain"
             else ["\ufeff2024-05-01 10:00:00,123 - app - WARNING - first", "x"], fmt)


HEADLESS = ["ERROR app crashed", '  File "/app/x.py", line 1', "    def f(:", "SyntaxError: invalid syntax",
            "more of it", "2024-05-01 10:00:00,000 INFO next", "ERROR:app:x", "Traceback (most recent call last):",
            '  File "a.py", line 1, in f', "ValueError: x", "price", "", "after blank"]


@pytest.mark.parametrize("fmt", ["plain", "auto"])
def test_headless(ingest: Any, tmp_path: Path, fmt: str) -> None:
    _compare(ingest, tmp_path, HEADLESS, fmt)
