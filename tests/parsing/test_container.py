"""Container runtime log files (``agent.parsing.container``): the CRI and
Docker json-file wrapping taken off, partial lines joined, offsets kept; and
the agent run end to end on a Kubernetes pod log."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import TAG_INVALID_UTF8, TAG_PARTIAL, TAG_TRUNCATED, Line, Source
from agent.parsing.container import CRI, DOCKER, OFF, Unwrapper, cri, decide, docker, parse_time
from e2e_helpers import run_once

SOURCE = Source("pod-key", "/var/log/pods/prod_ts-1_uid-1/model/0.log")
T0 = "2026-12-04T10:00:00.123456789Z"
EPOCH0 = datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=timezone.utc).timestamp()


def physical(texts: list[str], start: int = 0, tags: list[tuple[str, ...]] | None = None) -> list[Line]:
    """Lines as the reader cuts them: they tile the file from ``start``."""
    out, offset = [], start
    for index, text in enumerate(texts):
        end = offset + len(text.encode()) + 1
        out.append(Line(SOURCE, offset, end, text, 5.0, tags[index] if tags else ()))
        offset = end
    return out


def unwrap(mode: str, lines: list[Line], max_bytes: int = 1 << 20) -> list[Line]:
    unwrapper = Unwrapper(mode, max_bytes)
    return unwrapper.feed(lines) + unwrapper.release()


# -- the runtime's time ------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (T0, EPOCH0),
    ("2026-12-04T10:00:00Z", datetime(2026, 12, 4, 10, tzinfo=timezone.utc).timestamp()),
    ("2026-12-04T10:00:00.5Z", datetime(2026, 12, 4, 10, 0, 0, 500000, tzinfo=timezone.utc).timestamp()),
    ("2026-12-04T12:00:00.000001+02:00", datetime(2026, 12, 4, 10, 0, 0, 1, tzinfo=timezone.utc).timestamp()),
    ("2026-12-04T04:30:00.999999999-05:30", datetime(2026, 12, 4, 10, 0, 0, 999999, tzinfo=timezone.utc).timestamp()),
    ("2024-02-29t23:59:59z", datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc).timestamp()),
])
def test_rfc3339nano_is_read_exactly_to_the_microsecond(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "", "x", "2026-12-04T10:00:00", "2026-12-04 10:00:00Z", "2026-12-04T10:00:00.Z", "2026-02-30T10:00:00Z",
    "2025-02-29T10:00:00Z", "2026-12-04T24:00:00Z", "2026-12-04T10:00:61Z", "2026-12-04T10:00:00+24:00",
    "2026-12-04T10:00:00+0200", "2026-12-04T10:00:00.1234567890Z", "٢٠٢٦-12-04T10:00:00Z", "0000-01-01T00:00:00Z",
])
def test_anything_else_is_not_a_time(text):
    assert parse_time(text) is None


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)),
       st.integers(0, 999), st.sampled_from(["Z", "+00:00", "+05:30", "-11:45"]))
def test_every_written_time_reads_back(moment, nanos, zone):
    from datetime import timedelta

    sign, hours, minutes = (1, 0, 0) if zone in ("Z", "+00:00") else (
        1 if zone[0] == "+" else -1, int(zone[1:3]), int(zone[4:6]))
    local = moment + sign * timedelta(hours=hours, minutes=minutes)
    if not datetime(1, 1, 1, tzinfo=timezone.utc) < local < datetime(9999, 12, 31, tzinfo=timezone.utc):
        return
    written = (f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:{local.minute:02d}:"
               f"{local.second:02d}" + f".{local.microsecond:06d}{nanos:03d}".rstrip("0") + zone)
    written = written.replace(".Z", "Z").replace(".+", "+").replace(".-", "-")
    assert parse_time(written) == moment.timestamp()


# -- the shapes ---------------------------------------------------------------

def test_a_cri_line_gives_time_partial_flag_and_content():
    assert cri(f"{T0} stdout F hello  world ") == (T0, False, "hello  world ")
    assert cri(f"{T0} stderr P part") == (T0, True, "part")
    assert cri(f"{T0} stdout F:x content") == (T0, False, "content")
    assert cri(f"{T0} stdout F ") == (T0, False, "")
    assert cri(f"{T0} stdout F") == (T0, False, "")
    for text in ("", "hello", f"{T0} stdin F x", f"{T0} stdout X x", f"{T0} stdout FF x", f"{T0}  stdout F x"):
        assert cri(text) is None, text


def test_a_docker_line_gives_time_partial_flag_and_content():
    line = json.dumps({"log": "hello\r\n", "stream": "stderr", "time": T0})
    assert docker(line) == (T0, False, "hello")
    assert docker(json.dumps({"log": "part", "stream": "stdout", "time": T0})) == (T0, True, "part")
    with_attrs = json.dumps({"log": "x\n", "stream": "stdout", "attrs": {"tag": "a"}, "time": T0})
    assert docker(with_attrs, exact=True) == (T0, False, "x")
    other = json.dumps({"log": "x\n", "level": "info"})
    assert docker(other) == ("", False, "x") and docker(other, exact=True) is None
    for text in ("", "{", "[1]", '{"log": 1}', '"log"', "plain"):
        assert docker(text) is None, text


@pytest.mark.parametrize("text, mode", [
    (f"{T0} stdout F hello", CRI),
    ("not-a-time stdout F hello", OFF),  # auto claims a line only with a readable time
    (json.dumps({"log": "x\n", "stream": "stdout", "time": T0}), DOCKER),
    (json.dumps({"log": "x\n", "stream": "stdout", "time": T0, "level": "info"}), OFF),  # an application's JSON
    (json.dumps({"message": "x"}), OFF),
    ("2026-12-04 10:00:00,000 INFO app: hello", OFF),
])
def test_auto_decides_on_the_shape(text, mode):
    assert decide(text) == mode


# -- unwrapping ---------------------------------------------------------------

def test_complete_lines_keep_their_offsets_and_take_the_runtime_time():
    read = physical([f"{T0} stdout F first", "2026-12-04T10:00:01Z stderr F second", "bad-time stdout F third"])
    got = unwrap(CRI, read)
    assert [(line.offset, line.end, line.text) for line in got] == [
        (read[0].offset, read[0].end, "first"), (read[1].offset, read[1].end, "second"),
        (read[2].offset, read[2].end, "third")]
    second = datetime(2026, 12, 4, 10, 0, 1, tzinfo=timezone.utc).timestamp()
    assert [line.read_time for line in got] == [EPOCH0, second, 5.0]  # an unreadable time: the read time


def test_partial_lines_join_up_to_the_final_one_and_their_tags_merge():
    read = physical([f"{T0} stdout P {{\"a\": ", "2026-12-04T10:00:09Z stdout P 1, \"b\"", f"{T0} stdout F : 2}}",
                     f"{T0} stdout F next"], tags=[(TAG_INVALID_UTF8,), (), (TAG_TRUNCATED, TAG_INVALID_UTF8), ()])
    joined, after = unwrap(CRI, read)
    assert joined.text == '{"a": 1, "b": 2}' and json.loads(joined.text) == {"a": 1, "b": 2}
    assert (joined.offset, joined.end, joined.read_time) == (read[0].offset, read[2].end, EPOCH0)
    assert joined.tags == (TAG_INVALID_UTF8, TAG_TRUNCATED)
    assert (after.offset, after.end, after.text) == (read[3].offset, read[3].end, "next")


def test_docker_partials_join_until_a_log_ends_with_a_newline():
    texts = [json.dumps({"log": part, "stream": "stdout", "time": T0}) for part in ("a" * 5, "b" * 5, "c\n", "d\n")]
    joined, after = unwrap(DOCKER, physical(texts))
    assert (joined.text, after.text) == ("aaaaabbbbbc", "d")
    assert joined.end == after.offset


def test_a_stray_line_passes_as_it_is_after_the_parts_waiting_before_it():
    read = physical([f"{T0} stdout P waiting", "stray line", f"{T0} stdout F done"])
    first, stray, done = unwrap(CRI, read)
    assert (first.text, first.tags, first.end) == ("waiting", (TAG_PARTIAL,), read[0].end)
    assert stray is read[1]
    assert (done.text, done.offset) == ("done", read[2].offset)


def test_parts_still_waiting_are_released_only_when_asked():
    unwrapper = Unwrapper(CRI, 1 << 20)
    read = physical([f"{T0} stdout F one", f"{T0} stdout P tw", f"{T0} stdout P o"])
    assert [line.text for line in unwrapper.feed(read)] == ["one"]
    assert unwrapper.pending
    [released] = unwrapper.release()
    assert (released.text, released.offset, released.end, released.tags) == ("two", read[1].offset, read[2].end,
                                                                            (TAG_PARTIAL,))
    assert not unwrapper.pending and unwrapper.release() == []


def test_a_joined_line_is_cut_at_max_bytes_and_tagged_truncated():
    read = physical([f"{T0} stdout P " + "é" * 6, f"{T0} stdout P " + "x" * 10, f"{T0} stdout F tail", f"{T0} stdout F ok"])
    joined, ok = unwrap(CRI, read, max_bytes=15)
    assert joined.text == "é" * 6 + "xxx" and TAG_TRUNCATED in joined.tags
    assert (joined.offset, joined.end) == (read[0].offset, read[2].end)
    assert ok.text == "ok" and ok.tags == ()


def test_off_and_undecided_files_get_their_very_list_back():
    plain = physical(["2026-12-04 10:00:00,000 INFO app: hello", f"{T0} stdout F looks like cri"])
    unwrapper = Unwrapper("auto", 1 << 20)
    assert unwrapper.feed(plain) is plain and unwrapper.off
    assert unwrapper.feed(plain[1:]) == plain[1:]  # decided once: not unwrapped later
    blank = physical(["", "  "])
    undecided = Unwrapper("auto", 1 << 20)
    assert undecided.feed(blank) is blank and undecided.mode == "auto"
    rest = physical([f"{T0} stdout F hello"], start=blank[-1].end)
    assert [line.text for line in undecided.feed(rest)] == ["hello"] and undecided.mode == CRI
    assert Unwrapper(OFF, 1).feed(rest) is rest


def test_auto_passes_the_blank_lines_before_its_decision():
    read = physical(["", f"{T0} stdout P a", f"{T0} stdout F b"])
    assert [(line.text, line.offset) for line in unwrap("auto", read)] == [("", 0), ("ab", read[1].offset)]


# -- properties ---------------------------------------------------------------

_CONTENT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40)


def _split(content: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(content)) for cut in cuts} | {0, len(content)})
    parts = [content[a:b] for a, b in zip(points, points[1:])]
    return parts or [""]


def _wrap(mode: str, parts: list[str], stamp: str) -> list[str]:
    if mode == CRI:
        return [f"{stamp} {'stdout' if n % 2 else 'stderr'} {'F' if n == len(parts) - 1 else 'P'} {part}"
                for n, part in enumerate(parts)]
    return [json.dumps({"log": part + ("\n" if n == len(parts) - 1 else ""), "stream": "stdout", "time": stamp})
            for n, part in enumerate(parts)]


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from([CRI, DOCKER]),
       contents=st.lists(st.tuples(_CONTENT, st.lists(st.integers(0, 40), max_size=5)), min_size=1, max_size=8),
       chunks=st.lists(st.integers(0, 60), max_size=6), stray=st.booleans())
def test_any_split_joins_back_whatever_the_chunks_of_reading(mode, contents, chunks, stray):
    """Any content split into any partial parts joins back to the content,
    with the offset of its first physical line and the end of its last; and
    the lines cut into any reads (``feed`` calls) give the same result."""
    texts, expected = [], []
    for content, cuts in contents:
        parts = _split(content, cuts)
        if mode == DOCKER:  # Docker's partial is a log without newline: an empty part would end nothing
            parts = [part for part in parts if part] or [""]
        start = len(texts)
        texts += _wrap(mode, parts, T0)
        expected.append((content, start, len(texts) - 1))
    if stray:
        texts.append("a stray line")
    read = physical(texts)
    want = [(content, read[first].offset, read[last].end, EPOCH0) for content, first, last in expected]
    if stray:
        want.append(("a stray line", read[-1].offset, read[-1].end, 5.0))
    points = sorted({min(cut, len(read)) for cut in chunks} | {0, len(read)})
    unwrapper = Unwrapper(mode if chunks[:1] != [0] else "auto", 1 << 20)
    got = []
    for a, b in zip(points, points[1:]):
        got += unwrapper.feed(read[a:b])
    assert not unwrapper.pending
    if unwrapper.mode == OFF:  # auto, and the first line claimed nothing (an empty CRI part never is)
        return
    assert [(line.text, line.offset, line.end, line.read_time) for line in got] == want
    assert all(a.end == b.offset for a, b in zip(got, got[1:]))  # still tiling the file


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.one_of(st.text(max_size=30), st.sampled_from(
    [f"{T0} stdout P x", f"{T0} stderr F y", '{"log": "z", "stream": "stdout", "time": "t"}', "{",
     '{"log": "w\\n", "stream": "stderr", "time": "2026-13-01T00:00:00Z"}'])), max_size=12),
    mode=st.sampled_from(["auto", CRI, DOCKER, OFF]), max_bytes=st.integers(1, 64))
def test_no_input_raises_and_no_physical_line_is_lost(texts, mode, max_bytes):
    texts = [text.replace("\n", " ") for text in texts]
    read = physical(texts)
    unwrapper = Unwrapper(mode, max_bytes)
    got = unwrapper.feed(read) + unwrapper.release()
    covered = [(line.offset, line.end) for line in got]
    assert covered == sorted(covered)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    if read:
        assert covered[0][0] == 0 and covered[-1][1] == read[-1].end


# -- end to end ---------------------------------------------------------------

def _cri(stamp: str, stream: str, flag: str, content: str) -> str:
    return f"{stamp} {stream} {flag} {content}\n"


def test_a_kubernetes_pod_log_is_unwrapped_end_to_end(tmp_path):
    """``modelscribe run --once`` on a pod log: JSON content parsed, a
    traceback written over several CRI lines joined into one event, a line the
    runtime split joined, the runtime's time where the content has none; a
    second run reads nothing again; a partial line at the end of the file is
    left for the next run, which joins it whole."""
    log = tmp_path / "pods" / "prod_torchserve-7f9c_1234-abcd" / "model" / "0.log"
    log.parent.mkdir(parents=True)
    request = {"model_name": "resnet", "model_version": "3", "level": "info", "message": "served", "latency_ms": 12}
    big = {"model_name": "resnet", "message": "x" * 50, "status_code": 200}
    text = json.dumps(big)
    log.write_text(
        _cri("2026-12-04T10:00:00.123456789Z", "stdout", "F", json.dumps(request))
        + _cri("2026-12-04T10:00:01.5Z", "stderr", "F", "2026-12-04 10:00:01,200 ERROR model.handler: predict failed")
        + _cri("2026-12-04T10:00:01.6Z", "stderr", "F", "Traceback (most recent call last):")
        + _cri("2026-12-04T10:00:01.6Z", "stderr", "F", '  File "/srv/model.py", line 3, in predict')
        + _cri("2026-12-04T10:00:01.7Z", "stderr", "F", "ValueError: bad input")
        + _cri("2026-12-04T12:00:02.25+02:00", "stdout", "P", text[:20])
        + _cri("2026-12-04T10:00:02.3Z", "stdout", "P", text[20:45])
        + _cri("2026-12-04T10:00:02.4Z", "stdout", "F", text[45:])
        + _cri("2026-12-04T10:00:03.000999Z", "stdout", "F", "model ready"))
    out, state = tmp_path / "out.ndjson", tmp_path / "state"
    args = ["run", "--once", "--path", str(tmp_path / "pods" / "*" / "*" / "*.log"), "--state-dir", str(state),
            "--output", f"file:{out}", "--metrics-addr", "off"]

    first = run_once(args)
    assert first.code == 0, first.stderr
    assert "lines=9 events=4 " in first.stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    served, failed, joined, ready = docs
    assert served["message"] == "served" and served["model"]["name"] == "resnet"
    assert served["model"]["version"] == "3" and served["event"]["duration"] == 12_000_000
    assert served["kubernetes"]["pod"]["name"] == "torchserve-7f9c"
    assert served["@timestamp"] == "2026-12-04T10:00:00.123Z"  # the content has no time: the runtime's
    assert failed["log"]["level"] == "error"
    assert failed["message"].splitlines()[1:] == ["Traceback (most recent call last):",
                                                  '  File "/srv/model.py", line 3, in predict', "ValueError: bad input"]
    assert failed["@timestamp"] == "2026-12-04T10:00:01.200Z"  # the content's own time wins
    assert joined["message"] == "x" * 50 and joined["http"]["response"]["status_code"] == 200
    assert joined["@timestamp"] == "2026-12-04T10:00:02.250Z"  # the first part's time
    assert ready["message"] == "model ready" and ready["@timestamp"] == "2026-12-04T10:00:03.000Z"
    offsets = [doc["log"]["offset"] for doc in docs]
    raw = log.read_bytes()
    starts = [0] + [index + 1 for index, byte in enumerate(raw) if byte == ord("\n")][:-1]
    assert offsets == [starts[0], starts[1], starts[5], starts[8]]
    assert all("tags" not in doc for doc in docs)

    second = run_once(args)
    assert second.code == 0 and "lines=0 " in second.stderr, second.stderr
    assert len(out.read_text().splitlines()) == 4

    size = log.stat().st_size
    with log.open("a") as handle:
        handle.write(_cri("2026-12-04T10:00:04Z", "stdout", "P", '{"message": "written '))
    third = run_once(args)
    assert third.code == 0 and "lines=1 events=0 " in third.stderr, third.stderr
    registry = json.loads((state / "registry.json").read_text())
    assert [entry["offset"] for entry in registry["entries"]] == [size]  # not past the waiting part
    with log.open("a") as handle:
        handle.write(_cri("2026-12-04T10:00:05Z", "stdout", "F", 'late"}'))
    fourth = run_once(args)
    assert fourth.code == 0 and "lines=2 events=1 " in fourth.stderr, fourth.stderr
    last = json.loads(out.read_text().splitlines()[-1])
    assert last["message"] == "written late" and last["log"]["offset"] == size
    assert last["@timestamp"] == "2026-12-04T10:00:04.000Z"
    registry = json.loads((state / "registry.json").read_text())
    assert [entry["offset"] for entry in registry["entries"]] == [log.stat().st_size]


def test_a_docker_json_file_is_unwrapped_end_to_end(tmp_path):
    """Docker's json-file format, forced for one input of the config file:
    each ``log`` unwrapped, a line Docker split at 16 KiB joined, the
    trailing newline removed, ``time`` as the time of lines without one."""
    logs = tmp_path / "containers" / "abc"
    logs.mkdir(parents=True)
    long_line = "y" * (16384 + 100)

    def entry(log: str, second: int, stream: str = "stdout") -> str:
        return json.dumps({"log": log, "stream": stream, "time": f"2026-12-04T10:00:0{second}.5Z"}) + "\n"

    (logs / "abc-json.log").write_text(
        entry('{"model_name": "llama", "message": "loaded"}\n', 0)
        + entry(long_line[:16384], 1) + entry(long_line[16384:] + "\n", 2)
        + entry("2026-12-04 10:00:09,000 WARNING app: slow\n", 3, "stderr"))
    config = tmp_path / "agent.yml"
    config.write_text(f"inputs:\n  - paths: ['{logs}/*.log']\n    container_format: docker\n")
    out = tmp_path / "out.ndjson"
    done = run_once(["run", "--once", "--config", str(config), "--state-dir", str(tmp_path / "state"),
                     "--output", f"file:{out}", "--metrics-addr", "off"])
    assert done.code == 0, done.stderr
    loaded, joined, slow = [json.loads(line) for line in out.read_text().splitlines()]
    assert loaded["model"]["name"] == "llama" and loaded["message"] == "loaded"
    assert loaded["@timestamp"] == "2026-12-04T10:00:00.500Z"
    assert joined["message"] == long_line and joined["@timestamp"] == "2026-12-04T10:00:01.500Z"
    assert slow["log"]["level"] == "warning" and slow["@timestamp"] == "2026-12-04T10:00:09.000Z"


def test_the_setting_reaches_the_parse_settings_from_flag_variable_file_and_input(tmp_path):
    from agent.config import stages
    from agent.config.resolve import resolve
    from agent.errors import ConfigError

    state = str(tmp_path / "state")
    assert stages.parse_settings(resolve({"state_dir": state}, {})).container_format == "auto"
    assert stages.parse_settings(resolve({"state_dir": state, "container_format": "cri"}, {})).container_format == "cri"
    by_env = resolve({"state_dir": state}, {"MODELSCRIBE_CONTAINER_FORMAT": "docker"})
    assert stages.parse_settings(by_env).container_format == "docker"
    config = tmp_path / "agent.yml"
    config.write_text("container_format: 'off'\ninputs:\n  - paths: [/var/log/pods/*/*/*.log]\n"
                      "    container-format: cri\n")
    resolved = resolve({"state_dir": state}, {}, str(config))
    assert resolved.container_format == "off"
    assert resolved.inputs[0].apply(stages.parse_settings(resolved)).container_format == "cri"
    config.write_text("container_format: off\n")  # unquoted: YAML's false, taken as off where off is a value
    assert resolve({"state_dir": state}, {}, str(config)).container_format == "off"
    config.write_text("inputs:\n  - paths: [/x/*.log]\n    container_format: crio\n")
    with pytest.raises(ConfigError, match=r"inputs\[1\]\.container_format: 'crio' is not one of: auto, cri"):
        resolve({"state_dir": state}, {}, str(config))


def test_the_daemon_takes_the_global_setting(tmp_path):
    from agent.config import stages
    from agent.config.resolve import resolve
    from agent.pipeline import parse_settings

    config = resolve({"state_dir": str(tmp_path / "state"), "container_format": "cri"}, {})
    assert parse_settings(config) == stages.parse_settings(config)
