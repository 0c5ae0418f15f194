"""``run_once(stop=...)``: once the agent is stopping (a stage died), ``--once``
stops reading instead of reading its whole input for nothing (audit 2,
finding 6). Real files."""

from __future__ import annotations

from tailkit import append, make


def test_reading_stops_between_chunks_once_stop_says_so(tmp_path):
    append(tmp_path / "a.log", "".join(f"line {i:04}\n" for i in range(1000)))  # 10 bytes a line
    tailer, sink, _ = make(tmp_path, read_chunk_bytes=100)
    with tailer:
        tailer.run_once(stop=lambda: len(sink.lines) >= 30)  # the pipeline broke after 30 lines
    assert 30 <= len(sink.lines) < 50  # one more chunk at most, not 1,000 lines
    assert sink.texts()[:30] == [f"line {i:04}" for i in range(30)]


def test_no_further_file_is_read_once_stop_says_so(tmp_path):
    for name in ("a", "b", "c"):
        append(tmp_path / f"{name}.log", f"{name}1\n{name}2\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once(stop=lambda: bool(sink.lines))
    assert len({line.source.path for line in sink.lines}) == 1


def test_a_later_run_once_without_stop_reads_on_from_where_it_stopped(tmp_path):
    append(tmp_path / "a.log", "".join(f"line {i:04}\n" for i in range(100)))
    tailer, sink, _ = make(tmp_path, read_chunk_bytes=100)
    with tailer:
        tailer.run_once(stop=lambda: len(sink.lines) >= 10)
        tailer.run_once()
    assert sink.texts() == [f"line {i:04}" for i in range(100)]  # nothing lost, nothing twice


def test_stop_already_true_reads_nothing(tmp_path):
    append(tmp_path / "a.log", "one\ntwo\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once(stop=lambda: True)
    assert sink.lines == [] and sink.ticks  # the sink is still ticked
