"""Timestamps round-trip to the millisecond: from the text a log line carries,
through the real parser and the real enrichment, to the indexed ``@timestamp``.

Elasticsearch's ``date`` type keeps milliseconds and drops what is finer, and
Python's logging prints ``%(msecs)03d`` the same way, so a source with
microseconds or nanoseconds is expected at the millisecond it falls in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.enrich import Enricher, format_timestamp
from agent.events import Line, Record, Source
from agent.parsing import ParseSettings, make_parser

SOURCE = Source("roundtrip", "/var/log/models/roundtrip.log")


def indexed_timestamps(texts: list[str], fmt: str = "auto", **options: object) -> list[str]:
    """Each record's ``@timestamp`` as the document sent to Elasticsearch holds it."""
    parser = make_parser(ParseSettings(format=fmt, **options), SOURCE)
    records: list[Record] = []
    offset = 0
    for text in texts:
        end = offset + len(text.encode()) + 1
        records.extend(parser.feed(Line(SOURCE, offset, end, text, 0.0)))
        offset = end
    records.extend(parser.flush())
    enricher = Enricher("host", "agent", keep_original=False)
    stamps = []
    for record in records:
        assert record.timestamp is not None, record
        event = enricher.build(record)
        assert event is not None
        stamps.append(orjson.loads(event.data)["@timestamp"])
    return stamps


@pytest.mark.parametrize("millis", ["004", "007", "501", "999", "000", "001"])
def test_python_asctime_keeps_its_millisecond(millis: str) -> None:
    """Issue 8, item 1: ``,004`` was indexed as ``.003``."""
    stamps = indexed_timestamps([f"2026-11-27 09:00:09,{millis} INFO app started"],
                                fmt="plain")
    # A naive asctime is the host's local time.
    second = datetime(2026, 11, 27, 9, 0, 9).astimezone(timezone.utc)
    assert stamps == [second.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis}Z"]


@pytest.mark.parametrize(("epoch", "expected"), [
    (1795770009.004, "2026-11-27T09:00:09.004Z"),
    (1795770009.007, "2026-11-27T09:00:09.007Z"),
    (1795770009.501, "2026-11-27T09:00:09.501Z"),
    (1795770009.004999, "2026-11-27T09:00:09.004Z"),  # µs: the millisecond it falls in
    (1795770009.9995, "2026-11-27T09:00:09.999Z"),
    (-0.001, "1969-12-31T23:59:59.999Z"),
    (-1.5, "1969-12-31T23:59:58.500Z"),
    (0.0, "1970-01-01T00:00:00.000Z"),
])
def test_format_timestamp_is_exact_to_the_millisecond(epoch: float, expected: str) -> None:
    assert format_timestamp(epoch) == expected


# -- every layout of every parser ----------------------------------------------
#
# A layout renders a moment the way a program writes it; the test parses the
# line with the real format and builds the real document. ``digits``: how many
# fraction digits the layout writes (0: whole seconds). ``local``: written in
# the host's local time without an offset. ``zoned``: written with an offset
# drawn from OFFSETS. ``years``: what the layout can hold (epoch numbers are
# told apart by magnitude, year-less stamps are placed near "now").


@dataclass(frozen=True)
class Layout:
    name: str
    fmt: str
    render: Callable[[datetime, str], str]  # (moment in the writer's zone, fraction digits)
    digits: int = 3
    local: bool = False
    zoned: bool = False
    years: tuple[int, int] = (1971, 2200)
    options: tuple[tuple[str, object], ...] = ()
    clock_bound: bool = False  # a year-less stamp: the year comes from the parser's "now"


OFFSETS = [timedelta(0), timedelta(hours=2), timedelta(hours=-5), timedelta(hours=5, minutes=30),
           timedelta(hours=-9, minutes=-30), timedelta(hours=14), timedelta(hours=-12)]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def ymd(w: datetime, sep: str = "-") -> str:
    return f"{w.year:04d}{sep}{w.month:02d}{sep}{w.day:02d}"


def hms(w: datetime) -> str:
    return f"{w.hour:02d}:{w.minute:02d}:{w.second:02d}"


def offset(w: datetime, colon: bool = True) -> str:
    delta = w.utcoffset()
    assert delta is not None
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def epoch_ms(w: datetime) -> int:
    """Whole milliseconds since the epoch (exact: no float involved)."""
    delta = w - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def json_line(**keys: object) -> str:
    return orjson.dumps({**keys, "message": "x"}).decode()


LAYOUTS = [
    # plain text, Python logging and friends
    Layout("asctime comma", "plain", lambda w, f: f"{ymd(w)} {hms(w)},{f} - app.worker - INFO - ready", local=True),
    Layout("asctime dot", "plain", lambda w, f: f"{ymd(w)} {hms(w)}.{f} INFO ready", local=True),
    Layout("asctime bracketed", "plain", lambda w, f: f"[{ymd(w)} {hms(w)},{f}] ERROR boom", local=True),
    Layout("iso µs +hh:mm", "plain", lambda w, f: f"{ymd(w)}T{hms(w)}.{f}{offset(w)} INFO up",
           digits=6, zoned=True, years=(1, 9999)),
    Layout("iso ms Z", "plain", lambda w, f: f"{ymd(w)}T{hms(w)},{f}Z [WARNING] x", years=(1, 9999)),
    Layout("iso ns +hhmm", "plain", lambda w, f: f"{ymd(w)}T{hms(w)}.{f}{offset(w, False)} x",
           digits=9, zoned=True, years=(1, 9999)),
    Layout("iso 1 digit", "plain", lambda w, f: f"{ymd(w)} {hms(w)}.{f}Z x", digits=1, years=(1, 9999)),
    Layout("asctime seconds +hhmm", "plain", lambda w, f: f"{ymd(w)} {hms(w)} {offset(w, False)} INFO x",
           digits=0, zoned=True, years=(1, 9999)),
    # JSON lines
    Layout("json @timestamp", "json", lambda w, f: json_line(**{"@timestamp": f"{ymd(w)}T{hms(w)}.{f}Z"}),
           years=(1, 9999)),
    Layout("json time offset µs", "auto", lambda w, f: json_line(time=f"{ymd(w)}T{hms(w)}.{f}{offset(w)}"),
           digits=6, zoned=True, years=(1, 9999)),
    Layout("json asctime", "json", lambda w, f: json_line(asctime=f"{ymd(w)} {hms(w)},{f}", levelname="INFO"),
           local=True),
    Layout("json epoch seconds", "json",
           lambda w, f: '{"timestamp": %d.%s, "message": "x"}' % (epoch_ms(w) // 1000, f), years=(1970, 5000)),
    Layout("json created µs", "json",
           lambda w, f: '{"created": %d.%s, "message": "x"}' % (epoch_ms(w) // 1000, f), digits=6,
           years=(1970, 2100)),
    Layout("json epoch ms", "json", lambda w, f: json_line(ts=epoch_ms(w)), years=(1974, 5000)),
    Layout("json epoch µs", "json",
           lambda w, f: json_line(ts=epoch_ms(w) // 1000 * 10**6 + int(f)), digits=6, years=(1974, 5000)),
    Layout("json epoch ns", "json",
           lambda w, f: json_line(timestamp=epoch_ms(w) // 1000 * 10**9 + int(f)), digits=9, years=(1974, 2200)),
    # model servers
    Layout("torchserve log4j", "torchserve",
           lambda w, f: f"{ymd(w)}T{hms(w)},{f} [INFO ] W-9000-resnet_1.0-stdout MODEL_LOG - hello", local=True),
    Layout("torchserve access", "torchserve",
           lambda w, f: f'{ymd(w)}T{hms(w)},{f} - /127.0.0.1:52486 "POST /predictions/resnet HTTP/1.1" 200 25',
           local=True),
    Layout("torchserve metric epoch", "torchserve",
           lambda w, f: (f"2024-05-01T10:00:00,000 - Requests2XX.Count:1.0|#Level:Host"
                         f"|#hostname:h,timestamp:{epoch_ms(w) // 1000}"), digits=0, years=(1970, 5000)),
    Layout("triton glog", "triton",
           lambda w, f: f'I{w.month:02d}{w.day:02d} {hms(w)}.{f} 1 model_lifecycle.cc:472] "loading: m:1"',
           digits=6, clock_bound=True),
    Layout("triton iso", "triton",
           lambda w, f: f'{ymd(w)}T{hms(w)}.{f}Z I 87 model_lifecycle.cc:472] "loading: m:1"', digits=6,
           years=(1, 9999)),
    Layout("uvicorn with asctime", "uvicorn",
           lambda w, f: f"{ymd(w)} {hms(w)},{f} INFO:     Started server process [12]", local=True),
    Layout("gunicorn error", "gunicorn",
           lambda w, f: f"[{ymd(w)} {hms(w)} {offset(w, False)}] [7] [INFO] Booting worker with pid: 7",
           digits=0, zoned=True, years=(1, 9999)),
    Layout("gunicorn access", "gunicorn",
           lambda w, f: (f'10.0.0.7 - - [{w.day:02d}/{MONTHS[w.month - 1]}/{w.year:04d}:{hms(w)} '
                         f'{offset(w, False)}] "GET /ping HTTP/1.1" 200 2 "-" "curl/8"'),
           digits=0, zoned=True, years=(1, 9999)),
    Layout("vllm v0", "vllm",
           lambda w, f: f"INFO {w.month:02d}-{w.day:02d} {hms(w)} api_server.py:212] server up",
           digits=0, local=True, clock_bound=True),
    Layout("vllm v1 with fraction", "vllm",
           lambda w, f: f"(APIServer pid=1) INFO {w.month:02d}-{w.day:02d} {hms(w)}.{f} [api_server.py:1805] up",
           local=True, clock_bound=True),
    Layout("rayserve replica", "rayserve",
           lambda w, f: f"INFO {ymd(w)} {hms(w)},{f} default_Model 3npxyudx -- Started initializing replica.",
           local=True),
    Layout("rayserve actor", "rayserve",
           lambda w, f: (f"(ServeReplica:SayHello pid=63520) INFO {ymd(w)} {hms(w)},{f} SayHello "
                         f"SayHello#kTBlTj HzIYOzaEgN / monitoring.py:16 - Hello world!"), local=True),
    Layout("rayserve core", "rayserve",
           lambda w, f: f"{ymd(w)} {hms(w)},{f}\tINFO scripts.py:380 -- Deploying", local=True),
    Layout("rayserve json asctime", "rayserve",
           lambda w, f: json_line(levelname="INFO", asctime=f"{ymd(w)} {hms(w)},{f}", deployment="d",
                                  replica="r"), local=True),
    Layout("rayserve json timestamp_ns", "rayserve",
           lambda w, f: json_line(levelname="INFO", asctime="2024-02-27 10:36:08,908", deployment="d",
                                  replica="r", timestamp_ns=epoch_ms(w) // 1000 * 10**9 + int(f)),
           digits=9, years=(1974, 2200)),
    Layout("bentoml", "bentoml",
           lambda w, f: f"{ymd(w)}T{hms(w)}.{f}{offset(w, False)} [INFO] [cli] Starting production server",
           zoned=True, years=(1, 9999)),
    Layout("bentoml µs", "bentoml",
           lambda w, f: f"{ymd(w)}T{hms(w)},{f}{offset(w, False)} [ERROR] [api_server:iris:1] boom",
           digits=6, zoned=True, years=(1, 9999)),
    Layout("mlflow", "mlflow",
           lambda w, f: f"{ymd(w, '/')} {hms(w)} INFO mlflow.models.flavor_backend_registry: Selected",
           digits=0, local=True),
    # --log-format: the user's own logging format string
    Layout("log_format asctime", "plain", lambda w, f: f"{ymd(w)} {hms(w)},{f} INFO app.worker: served",
           local=True, options=(("log_format", "%(asctime)s %(levelname)s %(name)s: %(message)s"),)),
    Layout("log_format asctime.msecs", "auto", lambda w, f: f"{ymd(w)} {hms(w)}.{f} 42 served",
           local=True, options=(("log_format", "%(asctime)s.%(msecs)03d %(process)d %(message)s"),)),
    Layout("log_format created", "plain",
           lambda w, f: "%d.%s INFO served" % (epoch_ms(w) // 1000, f), digits=6, years=(1970, 2100),
           options=(("log_format", "%(created)f %(levelname)s %(message)s"),)),
    Layout("kserve", "kserve",
           lambda w, f: f"{ymd(w)} {hms(w)}.{f} 1 kserve INFO [storage.py:_download():236] Copying", local=True),
]
LAYOUT_IDS = [layout.name for layout in LAYOUTS]


def fraction_digits(moment: datetime, digits: int, nanos: int) -> str:
    """The fraction a writer prints with ``digits`` digits (cut, as printers do)."""
    return f"{moment.microsecond:06d}{nanos:03d}"[:digits]


def expected_stamp(moment: datetime, digits: int) -> str:
    """The millisecond the written time falls in, as ``@timestamp`` must show it."""
    written = moment.replace(microsecond=int(f"{moment.microsecond:06d}"[:digits].ljust(6, "0")) if digits else 0)
    return f"{ymd(written)}T{hms(written)}.{written.microsecond // 1000:03d}Z"


# A year-less stamp (glog, vLLM) is placed in the latest year that is not after
# "now": the moments of those layouts lie within the last 300 days.
RECENT = (time.time() - 300 * 86400, time.time() - 2 * 86400)


def writer_view(layout: Layout, moment: datetime, zone_offset: timedelta) -> datetime | None:
    """``moment`` (UTC) as the writer's clock shows it, or None if ambiguous."""
    if layout.local:
        local = moment.astimezone()
        naive = local.replace(tzinfo=None)
        # A wall time that occurs twice (or never) around a DST change has no single answer.
        if naive.timestamp() != naive.replace(fold=1).timestamp() or \
                naive.timestamp() != moment.timestamp():
            return None
        return local
    if layout.zoned:
        return moment.astimezone(timezone(zone_offset))
    return moment


def render(layout: Layout, moment: datetime, zone_offset: timedelta, nanos: int) -> tuple[str, str] | None:
    """(line, expected @timestamp), or None when the moment cannot be written unambiguously."""
    view = writer_view(layout, moment, zone_offset)
    if view is None or not 1 <= view.year <= 9999:
        return None
    digits = layout.digits
    text = layout.render(view, fraction_digits(moment, digits, nanos))
    return text, expected_stamp(moment, digits)


def parse_and_index(layout: Layout, texts: list[str], now: float) -> list[str]:
    settings = ParseSettings(format=layout.fmt, **dict(layout.options))
    parser = make_parser(settings, SOURCE)
    if hasattr(parser._format, "clock"):  # triton: the year of a glog stamp comes from "now"
        parser._format.clock = lambda: now
    records: list[Record] = []
    offset_ = 0
    for text in texts:
        end = offset_ + len(text.encode()) + 1
        records.extend(parser.feed(Line(SOURCE, offset_, end, text, now)))
        offset_ = end
    records.extend(parser.flush())
    assert len(records) == len(texts), [record.message for record in records]
    enricher = Enricher("host", "agent", keep_original=False)
    stamps = []
    for record in records:
        assert record.timestamp is not None, (layout.name, record.message, record.fields)
        event = enricher.build(record)
        assert event is not None
        stamps.append(orjson.loads(event.data)["@timestamp"])
    return stamps


def moments(layout: Layout) -> st.SearchStrategy[datetime]:
    if layout.clock_bound:
        low, high = RECENT
        return st.integers(int(low * 1e6), int(high * 1e6)).map(
            lambda micros: EPOCH + timedelta(microseconds=micros))
    low_year, high_year = layout.years
    if layout.digits > 3:
        # Beyond ±2**32 s (1833 .. 2106) a float epoch is coarser than a
        # microsecond: only the millisecond is exact there.
        low_year, high_year = max(low_year, 1834), min(high_year, 2105)
    # One day's margin at the ends, so that every offset stays within 1..9999.
    low = max(datetime(low_year, 1, 1), datetime(1, 1, 2))
    high = min(datetime(high_year, 12, 31, 23, 59, 59, 999999), datetime(9999, 12, 30))
    return st.datetimes(min_value=low, max_value=high).map(lambda naive: naive.replace(tzinfo=timezone.utc))


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_layout_round_trips_to_the_millisecond(layout: Layout, data: st.DataObject) -> None:
    moment = data.draw(moments(layout), label="moment")
    zone_offset = data.draw(st.sampled_from(OFFSETS), label="offset")
    # Nanosecond digits below 200: a float epoch cannot tell 0.999999999 ms
    # from the next millisecond (see agent.enrich: _SLACK_MS).
    nanos = data.draw(st.integers(0, 199), label="nanos")
    rendered = render(layout, moment, zone_offset, nanos)
    assume(rendered is not None)
    text, expected = rendered
    now = time.time() if layout.clock_bound else moment.timestamp() + 3600
    assert parse_and_index(layout, [text], now) == [expected], text


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("second", [
    datetime(2026, 11, 27, 9, 0, 9, tzinfo=timezone.utc),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
    datetime(2100, 2, 28, 23, 59, 58, tzinfo=timezone.utc),
], ids=["2026", "1999", "2100"])
def test_every_millisecond_of_a_second(layout: Layout, second: datetime) -> None:
    """All 1000 milliseconds, with the sub-millisecond digits at both ends."""
    if layout.clock_bound:
        second = EPOCH + timedelta(seconds=int(RECENT[1]) - 86400 * (second.year % 97))
    elif not layout.years[0] <= second.year <= layout.years[1]:
        pytest.skip(f"{layout.name} cannot write {second.year}")
    texts, expected = [], []
    step = 1 if layout.digits >= 3 else 100  # fewer digits: fewer distinct times
    for millis in range(0, 1000, step):
        for micros, nanos in ((0, 0), (999, 199)):
            moment = second + timedelta(milliseconds=millis, microseconds=micros)
            rendered = render(layout, moment, OFFSETS[millis % len(OFFSETS)], nanos)
            assert rendered is not None
            texts.append(rendered[0])
            expected.append(rendered[1])
    now = time.time() if layout.clock_bound else second.timestamp() + 3600
    assert parse_and_index(layout, texts, now) == expected


# -- any epoch, at every entry point that reads one --------------------------

_EPOCH_LINES: list[tuple[str, Callable[[str], str], dict[str, object]]] = [
    *[("json", lambda number, key=key: f'{{"message": "m", "{key}": {number}}}', {})
      for key in ("@timestamp", "timestamp", "time", "ts", "created", "asctime")],
    ("json", lambda number: f'{{"message": "m", "ts": "{number}"}}', {}),
    ("torchserve", lambda number: ("2024-05-01T10:00:00,110 - HandlerTime.Milliseconds:3.21|#ModelName:r"
                                   f"|#hostname:h,requestID:x,timestamp:{number}"), {}),
    ("torchserve", lambda number: f"2024-05-01T10:00:00,110 - HandlerTime.ms:3.21|#ModelName:r|#hostname:h,{number},r",
     {}),
    ("rayserve", lambda number: f'{{"deployment": "d", "replica": "r", "message": "m", "timestamp_ns": {number}}}',
     {}),
    ("bentoml", lambda number: f'{{"timestamp": {number}, "request_id": "1", "trace_id": "2"}}', {}),
    ("plain", lambda number: f"{number}.000000 hi", {"log_format": "%(created)f %(message)s"}),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_EPOCH_LINES),
       st.integers(min_value=-(10 ** 21), max_value=10 ** 21)
       | st.sampled_from([-90_000_000_000_000, -99_999_999_999_999, -62_135_596_800_001, 253_402_300_800_000]))
def test_any_integer_epoch_gives_a_time_in_the_years_1_to_9999_or_the_read_time(case, number: int) -> None:
    # A negative epoch in milliseconds once passed the range check and made
    # the enrichment raise: the reader died and crash-looped on the line.
    fmt, make, options = case
    read_time = 1_700_000_000.5
    parser = make_parser(ParseSettings(format=fmt, **options), SOURCE)
    text = make(str(number))
    records = parser.feed(Line(SOURCE, 0, len(text) + 1, text, read_time)) + parser.flush()
    assert len(records) == 1 and records[0].tags == ()
    epoch = records[0].timestamp
    assert epoch is None or -62135596800.0 <= epoch <= 253402300799.999
    stamp = orjson.loads(Enricher("host", "agent", keep_original=False).build(records[0]).data)["@timestamp"]
    assert stamp == format_timestamp(read_time if epoch is None else epoch)
