"""A format detector that raises is not dropped silently: it is logged with
its traceback, counted (``detector_errors``), and skipped for that source
only; the source's lines are all still read."""

from __future__ import annotations

import logging
from typing import ClassVar

import pytest

from agent.events import Line, Source
from agent.parsing import FORMATS, ParseSettings, make_parser
from agent.parsing.parse_text import PlainFormat
from agent.stats import Stats


class _Raises(PlainFormat):
    name = "test-raises"
    detect_priority: ClassVar[int] = 0
    calls = 0

    @classmethod
    def detect(cls, text: str) -> bool:
        cls.calls += 1
        raise RuntimeError("a bug in a detector")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def agent_log():
    logger = logging.getLogger("modelscribe")
    handler = _Records()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    FORMATS[_Raises.name] = _Raises
    _Raises.calls = 0
    yield handler
    FORMATS.pop(_Raises.name, None)
    logger.removeHandler(handler)
    logger.setLevel(old)


def _feed(source: Source, texts: list[str]) -> int:
    parser = make_parser(ParseSettings(), source)
    count, offset = 0, 0
    for text in texts:
        end = offset + len(text) + 1
        count += sum(record.line_count for record in parser.feed(Line(source, offset, end, text, 1.0)))
        offset = end
    return count + sum(record.line_count for record in parser.flush())


def test_a_raising_detector_is_logged_counted_and_skipped_for_the_source(agent_log):
    stats = Stats()
    texts = ["INFO:app:one", "INFO:app:two", '{"message": "three"}']
    assert _feed(Source("k1", "/var/log/a.log"), texts) == 3  # every line still read
    assert _Raises.calls == 1  # not asked again for this source
    failures = [r for r in agent_log.records if r.getMessage().startswith("format detector failed")]
    assert len(failures) == 1
    record = failures[0]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.kv["format"] == "test-raises"
    assert record.kv["error"] == "RuntimeError('a bug in a detector')"
    assert stats.snapshot().detector_errors == 1
    _feed(Source("k2", "/var/log/b.log"), texts)  # another source asks again, and counts again
    assert _Raises.calls == 2 and stats.snapshot().detector_errors == 2
    assert Stats().snapshot().detector_errors == 0  # each Stats counts from its creation
