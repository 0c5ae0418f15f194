"""The sink keeps what a restart needs before it hands events over
(``agent.cuts``): a new file's registry entry and the cuts the clock made,
and a parser made for a file read again cuts where the clock cut before."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.cuts import CutLog
from agent.events import Event, Line, Source, records_of
from agent.parsing import ParseSettings
from agent.registry import Registry
from agent.sink import Sink
from test_registry import entry

SOURCE = Source("k1", "/logs/k1.log")
HEAD = "2026-12-04 10:00:00,000 ERROR app: request failed"
TRACEBACK = ["Traceback (most recent call last):", '  File "/srv/model.py", line 3, in predict',
             "ValueError: bad input"]


class _Enricher:
    scan = None  # no batch prefilter
    samples = False  # no --sample

    def build(self, record, present=None):
        return Event(record.source.key, record.offset, record.end, str(record.offset), record.message.encode())

    def build_all(self, records, present=None, first=0):
        return [self.build(record) for record in records_of(records)]


class _Handoff:
    """Reads the state files at the moment a group is handed over."""

    group_size = 1000
    accepting = True

    def __init__(self, state):
        self.state = state
        self.groups = []

    def put(self, group):
        registry = json.loads((self.state / "registry.json").read_text())
        cuts_file = self.state / "cuts.json"
        cuts = json.loads(cuts_file.read_text()) if cuts_file.exists() else None
        self.groups.append(([(event.offset, event.data.decode()) for event in group],
                            [item["key"] for item in registry["entries"]], cuts))


def lines(texts, start=0, read_time=1.0):
    out, offset = [], start
    for text in texts:
        end = offset + len(text.encode()) + 1
        out.append(Line(SOURCE, offset, end, text, read_time))
        offset = end
    return out


class _Collect:
    """A hand-off that keeps the events it is given."""

    accepting = True

    def __init__(self, group_size=1000):
        self.group_size = group_size
        self.events = []

    def put(self, group):
        self.events.extend(group)


def _enricher(templates=True):
    """The real enricher with the default transforms (redaction on)."""
    from agent.enrich import Enricher
    from agent.transforms import TransformSettings, Transforms
    from agent.transforms.static import HostInfo

    transforms = Transforms(TransformSettings(), HostInfo(name="h1", ips=(), os_name="Debian"))
    return Enricher("h1", "agent-1", keep_original=False, transforms=transforms, templates=templates)


def _with_cuts(tmp_path):
    """A plain-text sink with its cut log, over a fresh registry: (registry, cuts, hand-off, sink)."""
    clock = FakeClock()
    registry = Registry(tmp_path / "state", clock=clock)
    registry.load()
    cuts = CutLog(registry.state_dir, registry, clock)
    handoff = _Handoff(registry.state_dir)
    return registry, cuts, handoff, Sink(ParseSettings(format="plain", multiline_timeout=2.0), _Enricher(), handoff,
                                         cuts=cuts)


def test_the_entry_and_the_cuts_are_on_disk_before_the_events_are_handed_over(tmp_path):
    registry, cuts, handoff, sink = _with_cuts(tmp_path)
    registry.track(entry("k1"))  # the tailer tracks a new file before its first line
    head = lines([HEAD])
    sink.extend(head)  # held: a traceback may follow
    sink.tick(10.0)  # the writer paused: the clock ends the event
    [(events, keys, on_disk)] = handoff.groups
    assert events == [(0, HEAD)]
    assert keys == ["k1"]
    assert on_disk == {"version": 1, "sources": {"k1": {"lines": [], "events": [[0, head[0].end]]}}}

    # Read again after a crash (nothing committed): the traceback written
    # after the pause does not join the event the clock ended.
    again = Sink(ParseSettings(format="plain", multiline_timeout=2.0), _Enricher(), handoff, cuts=cuts)
    rest = lines(TRACEBACK, start=head[0].end)
    again.extend(lines([HEAD]) + rest)
    again.flush_all()
    assert [offset for offset, _ in handoff.groups[-1][0]] == [0, rest[0].offset]
    assert handoff.groups[-1][0][0][1] == HEAD

    # Without the cut log the same lines become one event under the first line's id.
    plain = Sink(ParseSettings(format="plain", multiline_timeout=2.0), _Enricher(), handoff)
    plain.extend(lines([HEAD]) + rest)
    plain.flush_all()
    assert [offset for offset, _ in handoff.groups[-1][0]] == [0]


def test_flush_source_ends_a_files_held_event_as_its_timeout_would(tmp_path):
    # The tailer asks it before reading the file now at a rotated file's path
    # (audit 10); the cut is kept, so a crash and a re-read cut there too.
    registry, _, handoff, sink = _with_cuts(tmp_path)
    registry.track(entry("k1"))
    head = lines([HEAD])
    sink.extend(head)  # held: a traceback may follow
    sink.flush_source(Source("other", "/logs/other.log"))  # (no parser for it: nothing happens)
    sink.flush_source(SOURCE)
    sink.hand_over()
    [(events, _, on_disk)] = handoff.groups
    assert events == [(0, HEAD)]
    assert on_disk["sources"]["k1"]["events"] == [[0, head[0].end]]
    sink.extend(lines(TRACEBACK, start=head[0].end))  # the parser goes on: a later line is read as after a timeout
    sink.flush_all()
    assert [offset for offset, _ in handoff.groups[-1][0]] == [head[0].end]


def test_a_record_with_lines_of_an_earlier_read_gets_the_whole_prefilter(tmp_path):
    """The literals are looked for once per read; a record that began in an
    earlier read (a held line with a secret, emitted when the next read's
    first line shows it ended) is checked in full, not by that read's scan."""
    enricher = _enricher()
    assert enricher.scan is not None  # the default patterns: the batch prefilter is on
    handoff = _Collect()
    sink = Sink(ParseSettings(format="plain", parse_at="elasticsearch"), enricher, handoff)
    secret = lines([HEAD + " Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345"])
    sink.extend(secret)  # held: a traceback may follow
    clean = lines([f"2026-12-04 10:00:0{n},000 INFO app: served {n}" for n in range(10)], start=secret[0].end)
    sink.extend(clean)
    sink.flush_all()
    by_offset = {event.offset: event.data for event in handoff.events}
    assert sorted(by_offset) == [line.offset for line in secret + clean]
    assert b"[REDACTED:bearer]" in by_offset[0] and b"abcdefghijklmnopqrstuvwxyz012345" not in by_offset[0]
    assert all(b"REDACTED" not in by_offset[line.offset] for line in clean)


def test_a_read_is_scanned_for_the_prefilter_only_when_its_records_are_raw():
    """The once-per-read scan serves templated (raw) records only: parsed
    records get the whole check, so scanning their reads would be wasted."""
    scanned = {}
    for parse_at in ("agent", "elasticsearch"):
        enricher = _enricher()
        calls = []
        real = enricher.scan
        enricher.scan = lambda text, real=real, calls=calls: calls.append(text) or real(text)
        sink = Sink(ParseSettings(format="plain", parse_at=parse_at), enricher, _Collect())
        sink.extend(lines([f"2026-12-04 10:00:0{n},000 INFO app: served {n}" for n in range(10)]))
        scanned[parse_at] = len(calls)
    assert scanned == {"agent": 0, "elasticsearch": 1}


_PIECES = [b'{"msg": "served", "n": 1}', b'{"msg": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345"}',
           b"2026-12-04 10:00:00,000 INFO app: served", b"key=sk-abcdefghijklmnopqrstuvwx", b"hf_",
           b"abcdefghijklmnopqrstuvwxyzABCD", b"\xff\xfe bad bytes", b"\r", b"ear", b"er x", b"\xc3", b"\xa9",
           b"Traceback (most recent call last):", b'  File "/srv/m.py", line 3, in f', b"ValueError: x",
           b"caf\xc3\xa9 eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", b"AIzaSyA1234567890abcdefghijklmnopqrstu"]


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.lists(st.sampled_from(_PIECES), max_size=4).map(b"".join), min_size=8, max_size=60),
       cuts=st.lists(st.integers(0, 4000), max_size=3), limit=st.sampled_from([24, 4096, 4096]),
       name=st.sampled_from(["auto", "json", "plain"]))
def test_scanning_the_bytes_read_gives_the_documents_of_scanning_the_lines(pieces, cuts, limit, name):
    """The tailer hands the sink the bytes a read's lines were cut from, and
    the prefilter's literals are looked for in them (no join of the lines):
    whatever the bytes (undecodable ones, carriage returns, lines cut at the
    limit, secrets split between reads), every document is the one made when
    the lines themselves are scanned, and the one made without any scan."""
    from agent.sources.reader import LineReader

    data = b"\n".join(pieces) + b"\n"
    points = sorted({cut for cut in cuts if cut < len(data)} | {0, len(data)})

    def documents(mode):
        enricher = _enricher(templates=mode != "none")
        assert (enricher.scan is not None) == (mode != "none") and (mode == "none" or enricher.scan_bytes_read)
        handoff = _Collect(group_size=7)
        sink = Sink(ParseSettings(format=name, parse_at="elasticsearch"), enricher, handoff)
        reader = LineReader(0, limit)
        for start, end in zip(points, points[1:]):
            at = reader.read_pos
            read = reader.feed(data[start:end], SOURCE, 1.0)
            if read:
                sink.extend(read, data[start:end], at) if mode == "bytes" else sink.extend(read)
        sink.flush_all()
        return [(event.offset, event.doc_id, event.data) for event in handoff.events]

    by_bytes = documents("bytes")
    assert by_bytes == documents("lines") == documents("none")
    assert b"abcdefghijklmnopqrstuvwxyz012345" not in b"".join(doc for _, _, doc in by_bytes)


def test_a_line_split_between_reads_gets_the_whole_prefilter():
    """The secret's literal lies in the bytes of the read before: the line
    began before the bytes scanned, so the scan of its own read does not vouch
    for it."""
    from agent.sources.reader import LineReader

    handoff = _Collect()
    sink = Sink(ParseSettings(format="json", parse_at="elasticsearch"), _enricher(), handoff)
    data = b'{"msg": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345"}\n' + b'{"a": 1}\n' * 10
    reader = LineReader(0, 4096)
    for start, end in ((0, 40), (40, len(data))):  # "Bearer" in the first read, the rest of its line in the second
        at = reader.read_pos
        read = reader.feed(data[start:end], SOURCE, 1.0)
        if read:
            sink.extend(read, data[start:end], at)
    sink.flush_all()
    assert len(handoff.events) == 11
    assert b"[REDACTED:bearer]" in handoff.events[0].data and b"abcdefghijklmnopqrstuvwxyz" not in handoff.events[0].data


def test_a_line_with_a_time_before_the_year_1_is_shipped_with_its_read_time():
    # A negative epoch in milliseconds once reached the enrichment, which
    # raised OverflowError out of extend: the reader died and, restarted,
    # read the same line again.
    handoff = _Collect()
    sink = Sink(ParseSettings(format="json"), _enricher(), handoff)
    sink.extend(lines(['{"message": "m", "ts": -90000000000000}', "next"], read_time=1_700_000_000.5))
    sink.flush_all()
    doc = json.loads(handoff.events[0].data)
    assert doc["@timestamp"] == "2023-11-14T22:13:20.500Z"
    assert doc["extra"] == {"ts": -90000000000000}
    assert len(handoff.events) == 2


def test_sampled_out_lines_at_the_end_of_a_file_are_committed(tmp_path):
    """--sample: the offset reaches the end of the file even when its last
    lines were sampled out (audit: lag stayed above zero forever, and those
    lines were read again at every start)."""
    import json
    import subprocess
    import sys

    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [json.dumps({"level": "info", "method": "POST", "path": "/predict", "status": 200,
                         "request_id": f"r{n}"}) for n in range(1000)]
    (logs / "a.log").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.ndjson"

    def once() -> str:
        done = subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--sample", "0.1",
                               "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                               "--output", f"file:{out}", "--metrics-addr", "off"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stderr

    first = once()
    kept = out.read_bytes().count(b"\n")
    assert 50 < kept < 200  # about a tenth
    registry = json.loads((tmp_path / "state" / "registry.json").read_text())
    assert [entry["offset"] for entry in registry["entries"]] == [(logs / "a.log").stat().st_size]
    second = once()
    assert "lines=0 " in second, second  # nothing is read again
    assert out.read_bytes().count(b"\n") == kept
    assert "lines=1000 " in first


# -- container runtime files (agent.parsing.container) -------------------------

CRI_TIME = "2026-12-04T10:00:00.250Z"


class _Closing(_Collect):
    """A hand-off a closed file can be flushed to."""

    def flush(self):
        pass


def _cri_lines(texts, start=0):
    return lines([f"{CRI_TIME} stdout {text}" for text in texts], start=start)


def test_a_pod_log_is_unwrapped_before_parsing_and_scanned_as_lines_not_bytes():
    """The parser (here the raw one of --parse-at elasticsearch, whose records
    the read's prefilter scan serves) sees the application's lines, a secret
    split over partial lines is found and redacted in the joined line, and the
    scan reads those lines, never the bytes read (which hold the wrapping)."""
    from agent.sources.reader import LineReader

    enricher = _enricher()
    calls = []
    real = enricher.scan
    enricher.scan = lambda text: calls.append(text) or real(text)
    handoff = _Collect()
    sink = Sink(ParseSettings(format="auto", parse_at="elasticsearch"), enricher, handoff)
    texts = [f"F {json.dumps({'model_name': 'm', 'n': n})}" for n in range(10)]
    texts += ["P Authorization: Bearer abcdefghij", "F klmnopqrstuvwxyz012345", "F done"]
    data = "".join(f"{CRI_TIME} stdout {text}\n" for text in texts).encode()
    reader = LineReader(0, 4096)
    read = reader.feed(data, SOURCE, 1.0)
    sink.extend(read, data, 0)
    sink.flush_all()
    docs = [json.loads(event.data) for event in handoff.events]
    assert [doc["message"] for doc in docs[:10]] == [json.dumps({"model_name": "m", "n": n}) for n in range(10)]
    assert docs[10]["message"] == "Authorization: Bearer [REDACTED:bearer]" and docs[10]["log"]["offset"] == read[10].offset
    assert docs[11]["message"] == "done"
    assert {doc["@timestamp"] for doc in docs} == {"2026-12-04T10:00:00.250Z"}  # the runtime's time, not 1.0
    assert calls and all(isinstance(text, bytes) and b" stdout " not in text for text in calls)


def test_a_plain_file_keeps_the_scan_of_the_bytes_read():
    enricher = _enricher()
    calls = []
    real = enricher.scan
    enricher.scan = lambda text: calls.append(text) or real(text)
    sink = Sink(ParseSettings(format="plain", parse_at="elasticsearch"), enricher, _Collect())
    texts = [f"2026-12-04 10:00:0{n},000 INFO app: served {n}" for n in range(10)]
    data = "".join(text + "\n" for text in texts).encode()
    sink.extend(lines(texts), data, 0)
    assert calls == [data]
    assert sink._unwrappers == {SOURCE.key: None}  # decided once: nothing to unwrap


def test_a_partial_line_is_never_emitted_before_its_end_and_flush_all_leaves_it_unread():
    """Nothing covers a partial line still waiting (so nothing commits past
    it); the end of --once drops it; read again from there, it joins whole."""
    handoff = _Collect()
    sink = Sink(ParseSettings(format="json", container_format="cri"), _enricher(), handoff)
    head = _cri_lines(['F {"message": "one"}'])
    waiting = _cri_lines(['P {"message": ', 'P "two'], start=head[-1].end)
    sink.extend(head + waiting[:1])
    sink.extend(waiting[1:])
    sink.flush_all()
    assert [(event.offset, event.end) for event in handoff.events] == [(0, head[0].end)]

    again = Sink(ParseSettings(format="json", container_format="cri"), _enricher(), handoff)
    rest = _cri_lines(['F "}', 'F {"message": "three"}'], start=waiting[-1].end)
    again.extend(waiting + rest)
    again.flush_all()
    joined, three = [json.loads(event.data) for event in handoff.events[1:]]
    assert joined["message"] == "two" and joined["log"]["offset"] == waiting[0].offset
    assert handoff.events[1].end == rest[0].end and three["message"] == "three"


def test_a_closed_file_releases_its_waiting_partial_line_tagged():
    handoff = _Closing()
    sink = Sink(ParseSettings(format="plain"), _enricher(), handoff)
    read = _cri_lines(["F 2026-12-04 10:00:00,000 INFO app: up", "P cut sh", "P ort"])
    sink.extend(read)
    assert [event.offset for event in handoff.events] == []
    sink.source_closed(SOURCE)
    first, released = [json.loads(event.data) for event in handoff.events]
    assert first["message"] == "2026-12-04 10:00:00,000 INFO app: up"
    assert released["message"] == "cut short" and released["tags"] == ["partial_line"]
    assert handoff.events[-1].end == read[-1].end


def test_a_reload_that_changes_a_files_settings_releases_its_partial_line():
    handoff = _Collect()
    sink = Sink(ParseSettings(format="plain"), _enricher(), handoff)
    read = _cri_lines(["P half"])
    sink.extend(read)
    sink.reconfigure(ParseSettings(format="json"), (), None)
    [released] = [json.loads(event.data) for event in handoff.events]
    assert released["message"] == "half" and released["tags"] == ["partial_line"]
    sink.extend(_cri_lines(['F {"message": "after"}'], start=read[-1].end))
    sink.flush_all()
    assert json.loads(handoff.events[-1].data)["message"] == "after"


def test_an_input_sets_the_container_format_of_its_files(tmp_path):
    from agent.config.resolve import InputSpec

    docker = Source("d1", str(tmp_path / "docker" / "a.log"))
    handoff = _Collect()
    inputs = (InputSpec((str(tmp_path / "docker" / "*.log"),), container_format="docker"),)
    sink = Sink(ParseSettings(format="json", container_format="off"), _enricher(), handoff, inputs)
    entry_text = json.dumps({"log": '{"message": "in docker"}\n', "stream": "stdout", "time": CRI_TIME, "x": 1})
    sink.extend([Line(docker, 0, 100, entry_text, 1.0)])
    cri = _cri_lines(['F {"message": "left wrapped"}'])
    sink.extend(cri)
    sink.flush_all()
    unwrapped, wrapped = [json.loads(event.data) for event in handoff.events]
    assert unwrapped["message"] == "in docker" and unwrapped["@timestamp"] == "2026-12-04T10:00:00.250Z"
    assert wrapped["message"] == cri[0].text  # container_format off: as read
