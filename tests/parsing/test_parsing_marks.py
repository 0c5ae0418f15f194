"""What a line carries besides its text: colour codes and a byte order mark
(audit 9, formats: loguru/colorlog colours, ``encoding="utf-8-sig"``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from agent.events import Line, Record, Source
from agent.parsing import ParseSettings, make_parser

SOURCE = Source("marks-key", "/var/log/app/app.log")


def local(*args: int) -> float:
    return datetime(*args).timestamp()


def lines_of(texts: list[str]) -> list[Line]:
    lines, offset = [], 0
    for text in texts:
        end = offset + len(text.encode()) + 1
        lines.append(Line(SOURCE, offset, end, text, 100.0))
        offset = end
    return lines


def parse(texts: list[str], batch: bool = False, **options: object) -> list[Record]:
    parser = make_parser(ParseSettings(**options), SOURCE)
    lines = lines_of(texts)
    if batch:
        records = parser.feed_many(lines)
    else:
        records = [record for line in lines for record in parser.feed(line)]
    return records + parser.flush()


LOGURU = ("\x1b[32m2024-05-01 10:00:01.000\x1b[0m | \x1b[31m\x1b[1mERROR   \x1b[0m | "
          "\x1b[36mapp.server\x1b[0m:\x1b[36mpredict\x1b[0m:\x1b[36m40\x1b[0m - \x1b[31m\x1b[1mpredict failed\x1b[0m")
COLORLOG = "2024-05-01 10:00:02,124 - app.server - \x1b[31mERROR\x1b[0m - coloured level only"
COLOURED_NO_LOGGER = "\x1b[32m2024-05-01 10:00:03,000\x1b[0m \x1b[33mWARNING\x1b[0m disk \x1b[1mfull\x1b[0m"


@pytest.mark.parametrize("fmt", ["auto", "plain"])
def test_colour_codes_are_not_read_nor_kept(fmt: str) -> None:
    loguru, colorlog, bare = parse([LOGURU, COLORLOG, COLOURED_NO_LOGGER], format=fmt, keep_original=True)
    assert loguru.timestamp == local(2024, 5, 1, 10, 0, 1)
    assert loguru.fields == {"log": {"level": "error", "logger": "app.server",
                                     "origin": {"function": "predict", "file": {"line": 40}}}}
    assert loguru.message == "predict failed"
    assert loguru.original == LOGURU  # --keep-original: the line as written
    assert colorlog.fields == {"log": {"level": "error", "logger": "app.server"}}
    assert colorlog.message == "coloured level only"
    # No layout: the whole line is the message, without its colours.
    assert bare.fields == {"log": {"level": "warning"}}
    assert bare.timestamp == local(2024, 5, 1, 10, 0, 3)
    assert bare.message == "2024-05-01 10:00:03,000 WARNING disk full"


def test_colour_codes_and_a_declared_layout() -> None:
    line = "2024-05-01 10:00:02,124 \x1b[31mERROR\x1b[0m app.server: failed"
    (record,) = parse([line], format="plain", log_format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    assert record.fields["log"] == {"level": "error", "logger": "app.server"}
    assert record.message == "failed"


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_a_byte_order_mark_before_a_json_line(fmt: str, batch: bool) -> None:
    texts = ['\ufeff{"message":"model loaded","level":"warning","model_name":"bert"}', '{"message":"second"}']
    first, second = parse(texts, batch, format=fmt)
    assert first.message == "model loaded"
    assert first.fields["log"] == {"level": "warning"}
    assert first.fields["model"] == {"name": "bert"}
    assert not first.tags
    # The line keeps its place: offsets (and so the document id) are the file's.
    assert (first.offset, first.end, second.offset) == (0, len(texts[0].encode()) + 1, len(texts[0].encode()) + 1)


@pytest.mark.parametrize("batch", [False, True])
def test_a_byte_order_mark_before_a_text_line(batch: bool) -> None:
    texts = ["\ufeff2024-05-01 10:00:00,123 - app - WARNING - first", "2024-05-01 10:00:00,124 - app - INFO - second"]
    first, second = parse(texts, batch, format="auto")
    assert first.fields == {"log": {"level": "warning", "logger": "app"}}
    assert first.timestamp == local(2024, 5, 1, 10, 0, 0, 123000)
    assert first.message == "first"
    assert first.offset == 0 and second.offset == len(texts[0].encode()) + 1


def test_a_byte_order_mark_elsewhere_is_text() -> None:
    """Only a file's first line (offset 0) begins with a mark; elsewhere U+FEFF is a character."""
    parser = make_parser(ParseSettings(format="plain"), SOURCE)
    line = Line(SOURCE, 10, 20, "\ufeffword", 100.0)
    (record,) = parser.feed(line) + parser.flush()
    assert record.message == "\ufeffword"
