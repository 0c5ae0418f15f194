"""--format auto: each file's format detected from its first lines.

Every server module in agent/parsing/servers is imported, as the agent does,
so these tests see the real registry: the TorchServe, Triton and BentoML
fixtures must be claimed by their own format and no other, and auto must
read them exactly as the forced format does, losing no line.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agent.parsing.servers
from agent.events import TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import FORMATS, ParseSettings, SourceParser, make_parser
from agent.parsing.formats import DETECT_LINES, AutoFormat, detectors
from agent.parsing.multiline import Joiner, PatternJoiner
from agent.parsing.parse_text import PlainFormat
import records_kit

for _module in pkgutil.iter_modules(agent.parsing.servers.__path__):
    importlib.import_module(f"agent.parsing.servers.{_module.name}")

SERVERS = Path(__file__).parent.parent.parent / "fixtures" / "servers"
PARSING = Path(__file__).parent.parent.parent / "fixtures" / "parsing"

# fixture (relative to SERVERS, or to PARSING for the plain ones) -> the format auto must pick
EXPECTED = {
    "torchserve/access_log.log": "torchserve",
    "torchserve/ts_log.log": "torchserve",
    "torchserve/model_log.log": "torchserve",
    "torchserve/ts_metrics.log": "torchserve",
    "torchserve/model_metrics.log": "torchserve",
    "triton/default.log": "triton",
    "triton/iso8601.log": "triton",
    "bentoml/bentoml_server.log": "bentoml",
    "bentoml/monitoring/iris_classifier_prediction/data/data.0.log": "bentoml",
    "bentoml/monitoring/iris_classifier_prediction/schema/schema.0.log": "bentoml",
    "parsing/basicconfig_traceback.log": None,
    "parsing/ecs_logging.jsonl": None,
    "parsing/structlog.jsonl": None,
}


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixtures side by side in one directory tree, as a log directory would hold them."""
    root = tmp_path_factory.mktemp("logs")
    shutil.copytree(SERVERS / "torchserve", root / "torchserve")
    shutil.copytree(SERVERS / "triton", root / "triton")
    shutil.copytree(SERVERS / "bentoml", root / "bentoml")
    shutil.copytree(PARSING, root / "parsing")
    return root


def read(path: Path, fmt: str) -> tuple[SourceParser, list[Record], list[Line]]:
    source = Source("auto-" + path.name, str(path))
    parser = make_parser(ParseSettings(format=fmt), source)
    lines, offset = [], 0
    for number, raw in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):
        end = offset + len(raw) + 1
        lines.append(Line(source, offset, end, raw.decode(), 1000.0 + number))
        offset = end
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    return parser, records, lines


def assert_every_line_once(records: list[Record], lines: list[Line], line_format: object) -> None:
    # Line by line, but TorchServe joins per thread: its records by the contract.
    per_thread = getattr(line_format, "detected", None) in ("torchserve", "vllm", "rayserve")
    records_kit.assert_commit_contract(records, lines, consecutive=not per_thread)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_gets_its_format_and_loses_no_line(mixed_dir: Path, name: str) -> None:
    path = mixed_dir / name
    parser, records, lines = read(path, "auto")
    line_format = parser._format
    assert isinstance(line_format, AutoFormat)
    assert line_format.detected == EXPECTED[name]
    assert_every_line_once(records, lines, line_format)
    expected = EXPECTED[name]
    if expected is None:
        # Nothing claimed it: exactly what plain/JSON-per-line auto makes of it
        # (JSON keys may give model.name or model.batch_size, never a server).
        assert all("server" not in record.fields.get("model", {}) for record in records)
    else:
        # Detected from the first line: read exactly as the forced format reads it.
        _, forced, _ = read(path, expected)
        assert records == forced
        assert all(record.fields["model"]["server"] == expected for record in records)


def test_the_detectors_are_offered_lines_in_priority_order() -> None:
    order = [cls.detect_priority for cls in detectors()]
    assert order == sorted(order)
    assert {"torchserve", "triton", "bentoml"} <= {cls.name for cls in detectors()}


# -- the rule, with test formats ------------------------------------------------------------------

class _Early(PlainFormat):
    """Claims "MINE..." lines; every other line continues the pending event."""

    name = "test-early"
    detect_priority: ClassVar[int] = 1

    @classmethod
    def detect(cls, text: str) -> bool:
        return text.startswith("MINE")

    def joiner(self) -> Joiner:
        return PatternJoiner(re.compile("^MINE"))


class _Late(PlainFormat):
    name = "test-late"
    detect_priority: ClassVar[int] = 2

    @classmethod
    def detect(cls, text: str) -> bool:
        return text.startswith("MINE") or text.startswith("LATE")


class _Broken(PlainFormat):
    name = "test-broken"
    detect_priority: ClassVar[int] = 0

    @classmethod
    def detect(cls, text: str) -> bool:
        raise RuntimeError("a bug in a detector")


@pytest.fixture
def test_formats() -> Iterator[None]:
    for cls in (_Early, _Late, _Broken):
        FORMATS[cls.name] = cls
    yield
    for cls in (_Early, _Late, _Broken):
        FORMATS.pop(cls.name, None)


SOURCE = Source("rule", "/var/log/app.log")


def run(texts: list[str]) -> tuple[AutoFormat, list[Record]]:
    line_format = AutoFormat(ParseSettings())
    parser = SourceParser(ParseSettings(), SOURCE, line_format)
    records: list[Record] = []
    offset = 0
    for text in texts:
        end = offset + len(text.encode()) + 1
        records.extend(parser.feed(Line(SOURCE, offset, end, text, 1.0)))
        offset = end
    records += parser.flush()
    assert sum(record.line_count for record in records) == len(texts)
    assert all(a.end == b.offset for a, b in zip(records, records[1:]))
    return line_format, records


def test_lower_priority_wins_and_a_broken_detector_is_ignored(test_formats: None) -> None:
    line_format, _ = run(["MINE 1"])
    assert line_format.detected == "test-early"
    line_format, _ = run(["LATE 1", "MINE 2"])
    assert line_format.detected == "test-late"  # sticky: the first claim decides


def test_lines_before_the_claim_are_read_as_auto_always_did(test_formats: None) -> None:
    texts = ["ERROR:app:failed", "Traceback (most recent call last):", '  File "/x.py", line 1, in f',
             "ValueError: v", '{"message": "json before"}', "MINE here", "continued by its own joiner"]
    line_format, records = run(texts)
    assert line_format.detected == "test-early"
    first, json_record, mine = records
    assert first.line_count == 4 and first.fields["error"]["type"] == "ValueError"
    assert first.fields["log"] == {"level": "error", "logger": "app"}
    assert json_record.message == "json before"
    # The claimed line starts an event; the detected format's joiner takes over.
    assert mine.line_count == 2 and mine.message == "MINE here\ncontinued by its own joiner"
    assert mine.fields == {}


def test_the_claiming_line_ends_a_pending_event(test_formats: None) -> None:
    _, records = run(["INFO:app:pending", "MINE starts"])
    assert [record.line_count for record in records] == [1, 1]
    assert records[0].fields == {"log": {"level": "info", "logger": "app"}}


def test_only_the_first_50_non_blank_lines_are_offered(test_formats: None) -> None:
    filler = [f"INFO:app:line {n}" for n in range(DETECT_LINES)]
    line_format, records = run(filler[:-1] + ["", "  ", "MINE at 50"])
    assert line_format.detected == "test-early"  # blank lines do not count
    line_format, records = run(filler + ["MINE at 51"])
    assert line_format.detected is None
    assert records[-1].message == "MINE at 51" and records[-1].fields == {}
    json_lines = [f'{{"n": {n}}}' for n in range(DETECT_LINES)]
    line_format, _ = run(json_lines + ["MINE"])
    assert line_format.detected is None  # JSON lines are offered too, and count


def test_a_forced_format_is_not_detection() -> None:
    source = Source("forced", "/var/log/x.log")
    parser = make_parser(ParseSettings(format="triton"), source)
    [record] = parser.feed(Line(source, 0, 6, "hello", 1.0)) + parser.flush()
    assert record.tags == (TAG_PARSE_FAILURE,)


def test_a_detected_format_is_lenient(mixed_dir: Path) -> None:
    """Unreadable lines of a detected file are plain text, not parse failures."""
    line_format, records = run(['I0501 10:00:00.123456 1 a.cc:1] "x"', "", "not triton", "ERROR:app:oops"])
    assert line_format.detected == "triton"
    # A triton entry's continuation lines; a Python logging line begins an entry of its own.
    assert [record.line_count for record in records] == [3, 1]
    assert all(TAG_PARSE_FAILURE not in record.tags for record in records)
    _, records = run(["2024-05-01T10:00:00,123 - Requests2XX.Count:1.0|#Level:Host|#hostname:h,timestamp:1",
                      "something", "2024-05-01T10:00:01,000 - x"])
    assert all(TAG_PARSE_FAILURE not in record.tags for record in records)


# -- properties -----------------------------------------------------------------------------------

def _fixture_lines() -> list[str]:
    texts: list[str] = []
    for path in sorted(SERVERS.rglob("*.log")):
        texts.extend(path.read_text().split("\n")[:-1])
    return texts


_LINE = st.one_of(st.sampled_from(_fixture_lines()), st.text(max_size=20),
                  st.sampled_from(["", "INFO:app:x", '{"a": 1}', "Traceback (most recent call last):"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_LINE, max_size=60), max_lines=st.integers(1, 5) | st.just(500))
def test_auto_never_raises_and_keeps_every_line(texts: list[str], max_lines: int) -> None:
    source = Source("prop", "/nonexistent/m/data/data.0.log")
    parser = make_parser(ParseSettings(multiline_max_lines=max_lines), source)
    lines, offset = [], 0
    for text in texts:
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        lines.append(Line(source, offset, end, text, 1.0))
        offset = end
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    assert_every_line_once(records, lines, parser._format)
