"""What a source's records must satisfy whatever the grouping (see
agent.parsing.driver): every line in exactly one record, each record begins
at a line of its own, and the commit points (``end``) never decrease and
never pass the first line of a record emitted later. Shared by the tests of
per-thread joining and of auto-detection."""

from __future__ import annotations

from agent.events import Line, Record


def assert_commit_contract(records: list[Record], lines: list[Line], consecutive: bool = False) -> None:
    """For the records of a whole input, flushed at the end. ``consecutive``:
    the format joins only consecutive lines (every format but per-thread
    joining): then each record must be exactly the next ``line_count`` lines."""
    assert sum(record.line_count for record in records) == len(lines)
    if not lines:
        assert records == []
        return
    index = {line.offset: number for number, line in enumerate(lines)}
    firsts = [record.offset for record in records]
    assert len(set(firsts)) == len(firsts), "two records begin at the same line"
    assert all(offset in index for offset in firsts), "a record begins inside a line"
    assert min(firsts) == lines[0].offset
    assert all(index[record.offset] + record.line_count <= len(lines) for record in records)
    for earlier, later in zip(records, records[1:]):
        assert earlier.end <= later.end, "a commit point moved back"
        assert later.offset >= earlier.end, "a commit point passed a line of a later record"
    assert records[-1].end == lines[-1].end  # nothing open after the flush
    if consecutive:
        number = 0
        for record in records:
            mine = lines[number:number + record.line_count]
            number += record.line_count
            assert (record.offset, record.end) == (mine[0].offset, mine[-1].end)


def lines_of(records: list[Record], lines: list[Line]) -> list[list[Line]]:
    """Each record's lines, read back from ``original`` (parse with
    ``keep_original``; every line's text must be unique). Asserts that every
    line is in exactly one record, first line first, in file order."""
    by_text = {line.text: line for line in lines}
    assert len(by_text) == len(lines), "the texts must be unique"
    seen: set[int] = set()
    out = []
    for record in records:
        assert record.original is not None
        mine = [by_text[text] for text in record.original.split("\n")]
        assert len(mine) == record.line_count and mine[0].offset == record.offset
        assert [line.offset for line in mine] == sorted({line.offset for line in mine})
        assert not seen.intersection(line.offset for line in mine), "a line in two records"
        seen.update(line.offset for line in mine)
        out.append(mine)
    assert len(seen) == len(lines), "a line in no record"
    return out
