"""Shared by the model-server format tests: feed lines through a format and
check the invariants every format keeps (each line in exactly one record,
contiguous offsets, no internal error, only schema fields, model.server set)."""

from __future__ import annotations

import time

from agent.events import Line, Record, Source
from agent.parsing import ParseSettings, make_parser
from agent.schema import undefined_fields, value_problems


def parse_lines(texts: list[str], fmt: str, source: Source, **options: object) -> list[Record]:
    lines, offset, now = [], 0, time.time()
    for text in texts:
        end = offset + len(text.encode()) + 1
        lines.append(Line(source, offset, end, text, now))
        offset = end
    parser = make_parser(ParseSettings(format=fmt, **options), source)
    records: list[Record] = []
    for line in lines:
        records.extend(parser.feed(line))
    records.extend(parser.flush())
    assert sum(record.line_count for record in records) == len(lines)
    assert [r.offset for r in records[1:]] == [r.end for r in records[:-1]]
    for record in records:
        assert record.error is None or not record.error.startswith("internal"), record
        assert undefined_fields(record.fields) == [], record.fields
        assert value_problems(record.fields) == [], record.fields
        assert record.fields["model"]["server"] == fmt
    return records
