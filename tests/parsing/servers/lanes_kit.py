"""``servers_kit.parse_lines`` for formats that join per process tag (vLLM,
Ray Serve: ``multiline.PrefixJoiner``): a record may skip lines of other
processes and is emitted when its own process writes again, so records are
neither contiguous nor in offset order. Checked instead: each line in exactly
one record, every record begins at a line, ``end`` (the commit point) never
decreases in emission order; and the other invariants of ``servers_kit``."""

from __future__ import annotations

import time

from agent.events import Line, Record, Source
from agent.parsing import ParseSettings, make_parser
from agent.schema import undefined_fields, value_problems


def parse_lines(texts: list[str], server: str, source: Source, **options: object) -> list[Record]:
    """The records of ``texts``, in file order (of their first lines);
    ``format`` (default: ``server``) may be another format, such as auto."""
    options.setdefault("format", server)
    lines, offset, now = [], 0, time.time()
    for text in texts:
        end = offset + len(text.encode()) + 1
        lines.append(Line(source, offset, end, text, now))
        offset = end
    parser = make_parser(ParseSettings(**options), source)
    records: list[Record] = []
    for line in lines:
        records.extend(parser.feed(line))
    records.extend(parser.flush())
    assert sum(record.line_count for record in records) == len(lines)
    starts = {line.offset for line in lines}
    assert len({record.offset for record in records}) == len(records)
    assert all(record.offset in starts for record in records)
    assert [record.end for record in records] == sorted(record.end for record in records)
    for record in records:
        assert record.error is None or not record.error.startswith("internal"), record
        assert undefined_fields(record.fields) == [], record.fields
        assert value_problems(record.fields) == [], record.fields
        assert record.fields["model"]["server"] == server
    return sorted(records, key=lambda record: record.offset)
