"""LineReader: splitting, offsets, decoding, over-long and partial lines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import TAG_INVALID_UTF8, TAG_PARTIAL, TAG_TRUNCATED, Source
from agent.sources.reader import LineReader

SOURCE = Source("0123456789abcdef", "/x.log")


def feed_all(reader: LineReader, chunks) -> list:
    lines = []
    for chunk in chunks:
        lines.extend(reader.feed(chunk, SOURCE, 1.0))
    return lines


def test_lines_split_across_chunks():
    reader = LineReader(0, 100)
    lines = feed_all(reader, [b"ab", b"c\nde", b"f\n\ngh"])
    assert [(l.text, l.offset, l.end) for l in lines] == [("abc", 0, 4), ("def", 4, 8), ("", 8, 9)]
    assert reader.read_pos == 11 and reader.offset == 9 and reader.has_pending
    partial = reader.flush(SOURCE, 2.0)
    assert (partial.text, partial.offset, partial.end, partial.tags) == ("gh", 9, 11, (TAG_PARTIAL,))
    assert partial.read_time == 2.0 and not reader.has_pending
    assert reader.flush(SOURCE, 2.0) is None


def test_resumed_reader_counts_from_its_offset():
    reader = LineReader(1000, 100)
    (line,) = reader.feed(b"x\n", SOURCE, 1.0)
    assert (line.offset, line.end) == (1000, 1002)


def test_over_long_line_held_in_pieces_is_cut_and_skipped():
    reader = LineReader(0, 5)
    lines = feed_all(reader, [b"abc", b"defgh", b"ijk", b"lm\nok\n"])
    assert [(l.text, l.offset, l.end, l.tags) for l in lines] == [
        ("abcde", 0, 14, (TAG_TRUNCATED,)), ("ok", 14, 17, ())]
    assert len(reader._pending) == 0


def test_over_long_partial_line_is_tagged_both_ways():
    reader = LineReader(0, 3)
    reader.feed(b"abcdef", SOURCE, 1.0)
    line = reader.flush(SOURCE, 1.0)
    assert (line.text, line.end, line.tags) == ("abc", 6, (TAG_PARTIAL, TAG_TRUNCATED))


def test_invalid_utf8_in_a_held_line():
    reader = LineReader(0, 100)
    lines = feed_all(reader, [b"caf\xc3", b"\xa9 \xff\r\n"])
    assert lines[0].text == "caf\u00e9 \ufffd" and lines[0].tags == (TAG_INVALID_UTF8,)


def test_reset_forgets_the_unfinished_line():
    reader = LineReader(0, 100)
    reader.feed(b"abc\npartial", SOURCE, 1.0)
    reader.reset(0)
    assert reader.read_pos == 0 and not reader.has_pending


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600).map(lambda b: b.replace(b"\x00", b"\n")),
       cuts=st.lists(st.integers(0, 600), max_size=8),
       limit=st.integers(1, 40))
def test_any_bytes_in_any_chunks_tile_the_input(data, cuts, limit):
    points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    reader = LineReader(0, limit)
    lines = feed_all(reader, chunks)
    tail = reader.flush(SOURCE, 1.0)
    if tail is not None:
        lines.append(tail)
    position = 0
    for line in lines:
        assert line.offset == position and line.end > line.offset
        raw = data[line.offset:line.end]
        complete = raw.endswith(b"\n")
        assert complete or TAG_PARTIAL in line.tags
        body = raw[:-1] if complete else raw
        if len(body) > limit:
            assert TAG_TRUNCATED in line.tags
            assert len(line.text.encode("utf-8", "surrogatepass")) <= limit * 3
        else:
            expected = body.decode("utf-8", "replace")
            if expected.endswith("\r"):
                expected = expected[:-1]
            assert line.text == expected
            assert (TAG_INVALID_UTF8 in line.tags) == _invalid(body)
        position = line.end
    assert position == len(data)


@settings(max_examples=300, deadline=None)
@given(data=st.text(st.sampled_from("ab{}\" \n\n\r"), max_size=400).map(str.encode),
       cuts=st.lists(st.integers(0, 400), max_size=8),
       limit=st.integers(1, 40))
def test_ascii_chunks_give_exact_lines(data, cuts, limit):
    """The ASCII chunk's fast path (one decode per chunk) and the general one
    (a chunk with a carriage return) give the same lines: exact text, a
    truncated line's first ``limit`` bytes."""
    points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    reader = LineReader(0, limit)
    lines = feed_all(reader, [data[a:b] for a, b in zip(points, points[1:])])
    complete = data.split(b"\n")[:-1]
    assert len(lines) == len(complete)
    position = 0
    for line, body in zip(lines, complete):
        assert (line.offset, line.end) == (position, position + len(body) + 1)
        if len(body) > limit:
            assert (line.text, line.tags) == (body[:limit].decode(), (TAG_TRUNCATED,))
        else:
            assert (line.text, line.tags) == (body.decode().removesuffix("\r"), ())
        position = line.end


def _invalid(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return True
    return False


def test_a_line_cut_by_the_clock_is_cut_there_when_read_again():
    first = LineReader(0, 100)
    assert first.feed(b"ok\npart", SOURCE, 1.0)[0].text == "ok"
    partial = first.flush(SOURCE, 9.0)  # the file stood still: the clock cut the line
    assert (partial.text, partial.end, partial.tags) == ("part", 7, (TAG_PARTIAL,))
    # Read again from 3 after a crash, the writer having finished the line since:
    again = LineReader(3, 100, cuts=[7, 2])  # a cut behind the start is ignored
    lines = feed_all(again, [b"part", b"-rest\nnext\n"])
    assert [(l.text, l.offset, l.end, l.tags) for l in lines] == [
        ("part", 3, 7, (TAG_PARTIAL,)), ("-rest", 7, 13, ()), ("next", 13, 18, ())]
    # reset (truncation: another content) forgets the cuts
    again = LineReader(0, 100, cuts=[2])
    again.reset(0)
    assert [l.text for l in again.feed(b"abcd\n", SOURCE, 1.0)] == ["abcd"]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=400).map(lambda b: b.replace(b"\x00", b"\n")),
       reads=st.lists(st.integers(1, 60), min_size=1, max_size=40),
       stills=st.sets(st.integers(0, 40)), limit=st.sampled_from([4, 16, 1000]),
       restart=st.integers(0, 100), rechunk=st.lists(st.integers(1, 60), min_size=1, max_size=40))
def test_read_again_with_the_cuts_the_lines_are_the_same(data, reads, stills, limit, restart, rechunk):
    """A file read in chunks, the clock flushing the unfinished line after some
    of them; read again from the start of any of its lines, in other chunks,
    with the cuts recorded: the same lines from there on."""
    reader, lines, cuts, position = LineReader(0, limit), [], [], 0
    for number, size in enumerate(reads):
        chunk = data[position:position + size]
        position += len(chunk)
        lines += reader.feed(chunk, SOURCE, 1.0)
        if number in stills and reader.has_pending:
            partial = reader.flush(SOURCE, 1.0)
            cuts.append(partial.end)
            lines.append(partial)
    lines += reader.feed(data[position:], SOURCE, 1.0)
    start = lines[restart % len(lines)].offset if lines else 0
    again, rest, position = LineReader(start, limit, cuts=cuts), [], start
    for size in rechunk * (len(data) // sum(rechunk) + 1):
        rest += again.feed(data[position:position + size], SOURCE, 2.0)
        position += size
    if again.has_pending:
        rest.append(again.flush(SOURCE, 2.0))
    if reader.has_pending:
        lines.append(reader.flush(SOURCE, 1.0))
    expected = [(l.offset, l.end, l.text, l.tags) for l in lines if l.offset >= start]
    assert [(l.offset, l.end, l.text, l.tags) for l in rest] == expected


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xff", b"\0", b"\0" * 50, b"\n", b"\r"]),
                     max_size=80).map(b"".join),
       cuts=st.lists(st.integers(0, 600), max_size=8), limit=st.integers(1, 40))
def test_nuls_are_left_out_of_the_text_and_the_lines_still_tile(data, cuts, limit):
    """NUL bytes are no text and do not count towards the limit; the lines
    still cover every byte; a run of them at the end is given back."""
    points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    reader = LineReader(0, limit)
    lines = feed_all(reader, [data[a:b] for a, b in zip(points, points[1:])])
    tail = data[data.rfind(b"\n") + 1:]
    trailing = len(tail) - len(tail.rstrip(b"\0"))
    assert reader.trailing_nuls == trailing
    assert reader.unread_trailing_nuls() == trailing and reader.read_pos == len(data) - trailing
    if reader.has_pending:
        lines.append(reader.flush(SOURCE, 1.0))
    position = 0
    for line in lines:
        assert line.offset == position and line.end > line.offset
        raw = data[line.offset:line.end]
        body = (raw[:-1] if raw.endswith(b"\n") else raw).replace(b"\0", b"")
        if len(body) > limit:
            assert TAG_TRUNCATED in line.tags
        else:
            assert line.text == body.decode("utf-8", "replace").removesuffix("\r")
        position = line.end
    assert position == len(data) - trailing
    assert reader.nul_bytes == data[:position].count(b"\0")


def test_a_hole_skipped_is_the_same_as_its_nuls_read():
    read, skipped = LineReader(0, 10), LineReader(0, 10)
    lines = feed_all(read, [b"ok\nab", bytes(100), b"cd\nx", bytes(7)])
    others = feed_all(skipped, [b"ok\nab"]) + skipped.skip_zeros(100, SOURCE, 1.0)
    others += feed_all(skipped, [b"cd\nx"]) + skipped.skip_zeros(7, SOURCE, 1.0)
    assert [(l.offset, l.end, l.text) for l in lines] == [(l.offset, l.end, l.text) for l in others] == [
        (0, 3, "ok"), (3, 108, "abcd")]
    assert read.read_pos == skipped.read_pos == 116 and read.trailing_nuls == skipped.trailing_nuls == 7
    # A cut recorded inside the hole (a partial line flushed there before a crash) is cut again.
    again = LineReader(3, 10, cuts=[50])
    assert [(l.offset, l.end, l.tags) for l in feed_all(again, [b"ab"]) + again.skip_zeros(100, SOURCE, 1.0)] \
        == [(3, 50, (TAG_PARTIAL,))]
