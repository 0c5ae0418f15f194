"""fileinfo: where a file's written content ends (before trailing NULs, holes
not read), where its last line ends, the inode's generation."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sources.fileinfo import content_end, last_line_end


def _measure(path, data: bytes, hole: int = 0, reach: int = 1 << 20):
    path.write_bytes(data)
    if hole:
        os.truncate(path, len(data) + hole)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return content_end(fd, size), last_line_end(fd, size, reach)
    finally:
        os.close(fd)


def test_the_cases(tmp_path):
    f = tmp_path / "f"
    assert _measure(f, b"a\nb\nc") == (5, 4)
    assert _measure(f, b"a\nb\n", hole=4 << 20) == (4, 4)  # a sparse tail
    assert _measure(f, b"a\nb\n" + bytes(3 << 20)) == (4, 4)  # NULs stored as data
    assert _measure(f, bytes(100)) == (0, 0)
    assert _measure(f, b"", hole=1 << 30) == (0, 0)  # a 1 GiB hole, not read
    assert _measure(f, b"a\n" + bytes(10) + b"x\n" + bytes(5)) == (14, 14)
    assert _measure(f, b"x" * 5000, reach=100) == (5000, 5000)  # a line longer than the reach: skipped
    assert _measure(f, b"one\ntwo", reach=100) == (7, 4)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\n", b"\0", b"\0" * 70000, b"xy\n"]), max_size=12).map(b"".join))
def test_content_end_is_where_the_last_byte_that_is_not_nul_ends(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("c") / "f"
    written, line_end = _measure(f, data, reach=1 << 30)
    assert written == len(data.rstrip(b"\0"))
    assert line_end == data[:written].rfind(b"\n") + 1
