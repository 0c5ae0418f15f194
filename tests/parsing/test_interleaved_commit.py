"""Per-thread joining keeps the acknowledgement contract: a property test.

Several TorchServe threads write at once: workers' ordinary lines and Python
tracebacks of various lengths (some chained, some without a log line before
them), the frontend's lines, log4j's own Java stack traces (one message of
several lines, written at once) and access lines. Their lines interleave at
random. They go through the real parser (``make_parser``) as real ``Line``s
with real byte offsets; the records become events, registered in emission
order with the real ``AckTracker``, and a random subset is acknowledged in
random order at random moments. Checked against a model of which line
belongs to which event (see ``agent.parsing.multiline``, "The commit point"):

- the committed offset never passes the first byte of a line that belongs to
  an unacknowledged or not yet emitted record (nor of a line not yet read),
  and never moves back; at the end it is the end of the file;
- every line is in exactly one record; ``end`` never decreases in emission
  order and no record has lines on both sides of it;
- each thread's event (a log line and its whole traceback) is one record,
  however interleaved, unless a cap cuts it: then its parts are consecutive
  pieces of it, each tagged ``multiline_split``;
- a restart at a committed offset (a crash at a random moment) loses no
  line, and rebuilds every record that began there or later with the same
  lines (so the same document id): nothing is indexed twice under two ids.
  Records the clock emitted (``flush_expired``) before the crash are rebuilt
  the same from the cuts the parser listed in ``timed`` (``agent.cuts``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import event as count_case
from hypothesis import strategies as st

import records_kit
from agent.acks import AckTracker
from agent.events import TAG_MULTILINE_SPLIT, Event, Line, Record, Source
from agent.parsing import ParseSettings, make_parser

SOURCE = Source("interleaved", "/var/log/torchserve/model_log.log")
WORKERS = ["W-9000-m_1.0-stdout", "W-9001-m_1.0-stdout", "W-9000-m_1.0-stderr", "W-9002-m_1.0-stdout"]
FRONTEND = "W-9000-m_1.0"
EPOLL = "epollEventLoopGroup-3-1"
ACCESS = ""  # the short layout: no thread


@dataclass
class Log:
    """The generated file, and the model: which event each line belongs to."""

    lines: list[Line] = field(default_factory=list)
    thread: list[str] = field(default_factory=list)  # per line, its writer
    event: list[int] = field(default_factory=list)  # per line, its event's number
    events: list[list[int]] = field(default_factory=list)  # per event, its line numbers
    error: dict[int, str] = field(default_factory=dict)  # per traceback event, the error type
    offset: int = 0

    def write(self, thread: str, text: str, event: int, prefixed: bool = True) -> None:
        n = len(self.lines)
        if prefixed:  # the time makes every line unique (the model reads records back by text)
            stamp = f"2024-05-01T10:{n // 60000 % 60:02}:{n // 1000 % 60:02},{n % 1000:03}"
            if thread == ACCESS:
                text = f"{stamp} - {text}"
            else:
                logger = "MODEL_LOG" if thread in WORKERS else "org.pytorch.serve.wlm.WorkerThread"
                text = f"{stamp} [INFO ] {thread} {logger} - {text}"
        end = self.offset + len(text.encode()) + 1
        self.lines.append(Line(SOURCE, self.offset, end, text, float(n)))
        self.offset = end
        self.thread.append(thread)
        self.event.append(event)
        self.events[event].append(n)

    def new_event(self) -> int:
        self.events.append([])
        return len(self.events) - 1


# An item is what one thread writes for one call: ("plain",), ("tb", frames,
# with_log_line, chained), ("java", depth), ("access",).
_WORKER_ITEM = st.one_of(
    st.just(("plain",)),
    st.tuples(st.just("tb"), st.integers(1, 4), st.booleans(), st.booleans()),
)
_ITEMS = st.fixed_dictionaries({
    **{worker: st.lists(_WORKER_ITEM, max_size=4) for worker in WORKERS},
    FRONTEND: st.lists(st.just(("plain",)), max_size=4),
    EPOLL: st.lists(st.tuples(st.just("java"), st.integers(1, 3)), max_size=2),
    ACCESS: st.lists(st.just(("access",)), max_size=3),
})


def _render(item: tuple, tag: int) -> tuple[list[tuple[str, bool]], str | None]:
    """The lines of one item (text, prefixed) and the error type if it is a traceback."""
    kind = item[0]
    if kind == "plain":
        return [(f"Backend received inference at: {tag}", True)], None
    if kind == "access":
        return [(f'/10.0.3.17:{40000 + tag} "POST /predictions/m HTTP/1.1" 200 {tag}', True)], None
    if kind == "java":
        return ([(f"Failed to handle request {tag}", True),
                 (f"java.lang.IllegalStateException: request {tag}", False)]
                + [(f"\tat org.pytorch.serve.X.m{tag}_{n}(X.java:{n})", False) for n in range(item[1])]), None
    _, frames, with_log, chained = item
    texts = [f"Invoking custom service failed. {tag}"] if with_log else []
    texts.append("Traceback (most recent call last):")
    for n in range(frames):
        texts += [f'  File "/srv/handler.py", line {tag * 10 + n}, in f{n}', f"    return g({tag}, {n})"]
    texts.append(f"ValueError: boom {tag}")
    if chained:
        texts += ["", "During handling of the above exception, another exception occurred:", "",
                  "Traceback (most recent call last):", f'  File "/srv/handler.py", line {tag}, in h',
                  f"KeyError: 'label {tag}'"]
    return [(text, True) for text in texts], "KeyError" if chained else "ValueError"


def generate(items: dict[str, list[tuple]], data: st.DataObject) -> Log:
    """Interleave the threads' items at random: a Python traceback line by
    line (TorchServe logs each line the worker prints), a Java message whole."""
    log = Log()
    queues = {thread: list(thread_items) for thread, thread_items in items.items() if thread_items}
    current: dict[str, tuple[list[tuple[str, bool]], int]] = {}  # thread -> (lines left, event)
    last_plain: dict[str, int] = {}  # thread -> its open ordinary line's event (a traceback may join it)
    tag = 0
    while queues or current:
        thread = data.draw(st.sampled_from(sorted(set(queues) | set(current))))
        if thread not in current:
            item = queues[thread].pop(0)
            if not queues[thread]:
                del queues[thread]
            tag += 1
            texts, error = _render(item, tag)
            joins = item[0] == "tb" and not item[2] and thread in last_plain
            event = last_plain[thread] if joins else log.new_event()
            if error is not None:
                log.error[event] = error
            if item[0] == "plain":
                last_plain[thread] = event
            else:
                last_plain.pop(thread, None)
            current[thread] = (texts, event)
        texts, event = current[thread]
        count = len(texts) if texts[0][0].startswith("Failed to handle") else 1  # Java: at once
        for text, prefixed in texts[:count]:
            log.write(thread, text, event, prefixed)
        del texts[:count]
        if not texts:
            del current[thread]
    return log


def to_event(record: Record) -> Event:
    return Event(record.source.key, record.offset, record.end, f"{record.offset}", b"")


class Run:
    """Feeds a log through a parser, registering and acknowledging its events."""

    def __init__(self, log: Log, options: ParseSettings, rng: random.Random) -> None:
        self.log = log
        self.parser = make_parser(options, SOURCE)
        self.rng = rng
        self.commits: list[int] = []
        self.tracker = AckTracker(lambda key, offset: self.commits.append(offset))
        self.records: list[Record] = []
        self.in_flight: list[Record] = []
        self.acked: set[int] = set()  # record offsets
        self.owner: dict[int, Record] = {}  # line offset -> its record
        self.by_text = {line.text: line for line in log.lines}
        self.fed = 0

    @property
    def committed(self) -> int:
        return self.commits[-1] if self.commits else 0

    def emit(self, records: list[Record]) -> None:
        for record in records:
            for text in record.original.split("\n"):
                line = self.by_text[text]
                assert line.offset < self.log.lines[self.fed - 1].end, "a record of lines not read yet"
                assert line.offset not in self.owner, "a line in two records"
                self.owner[line.offset] = record
            if self.records:
                assert record.end >= self.records[-1].end, "a commit point moved back"
                assert record.offset >= self.records[-1].end, "a record begins before an earlier commit point"
            self.records.append(record)
            self.in_flight.append(record)
        self.tracker.register([to_event(record) for record in records])

    def feed(self, line: Line, expire: float | None) -> None:
        self.fed += 1
        self.emit(self.parser.feed(line))
        if expire is not None:
            self.emit(self.parser.flush_expired(line.read_time + expire))
        self.check()

    def acknowledge(self, count: int) -> None:
        self.rng.shuffle(self.in_flight)
        for record in self.in_flight[:count]:
            self.tracker.acknowledge([to_event(record)])
            self.acked.add(record.offset)
            self.check()
        del self.in_flight[:count]

    def check(self) -> None:
        """The contract: the committed offset passes no line that is not delivered."""
        committed = self.committed
        assert self.commits == sorted(self.commits), "the committed offset moved back"
        for line in self.log.lines[:self.fed]:
            if line.offset >= committed:
                break
            record = self.owner.get(line.offset)
            assert record is not None, f"committed past a line not yet emitted: {line.offset} < {committed}"
            assert record.offset in self.acked, f"committed past a line of an unacknowledged record: {line.offset}"
        assert committed <= (self.log.lines[self.fed - 1].end if self.fed else 0), "committed past the read"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(items=_ITEMS, data=st.data(),
       fmt=st.sampled_from(["torchserve", "torchserve", "auto"]),
       max_lines=st.integers(2, 6) | st.just(500),
       max_bytes=st.integers(60, 600) | st.just(1048576),
       timeouts=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_commit_never_passes_an_undelivered_line(items: dict[str, list[tuple]], data: st.DataObject, fmt: str,
                                                 max_lines: int, max_bytes: int, timeouts: bool, seed: int) -> None:
    log = generate(items, data)
    options = ParseSettings(format=fmt, keep_original=True, multiline_max_lines=max_lines,
                            multiline_max_bytes=max_bytes, multiline_timeout=2.5)
    run = Run(log, options, random.Random(seed))
    crash_at = data.draw(st.integers(0, len(log.lines)), label="crash after line")
    crash: tuple[int, set[int]] | None = None
    for number, line in enumerate(log.lines):
        if number == crash_at:
            crash = (run.committed, set(run.acked), list(run.parser.timed), len(run.records))
        expire = data.draw(st.sampled_from([None, 1.0, 3.0]), label="flush_expired") if timeouts else None
        run.feed(line, expire)
        if run.in_flight and data.draw(st.booleans(), label="acknowledge now"):
            run.acknowledge(data.draw(st.integers(1, len(run.in_flight)), label="how many"))
    if crash is None:
        crash = (run.committed, set(run.acked), list(run.parser.timed), len(run.records))
    run.emit(run.parser.flush())
    run.check()
    run.acknowledge(len(run.in_flight))
    assert not run.parser.pending()
    assert run.tracker.in_flight() == 0

    # Every line in exactly one record; the commit points by the contract; all delivered.
    records_kit.assert_commit_contract(run.records, log.lines)
    groups = records_kit.lines_of(run.records, log.lines)
    assert run.committed == (log.lines[-1].end if log.lines else 0)
    for record, mine in zip(run.records, groups):
        assert not any(mine[0].offset < record.end < line.end for line in mine[1:]), "a record straddles its end"

    # Each thread's event is one record, unless a cap cut it into consecutive pieces.
    number = {line.offset: n for n, line in enumerate(log.lines)}
    if any(number[mine[-1].offset] - number[mine[0].offset] >= len(mine) for mine in groups):
        count_case("a record of non-contiguous lines")
    if any(record.end < mine[-1].end for record, mine in zip(run.records, groups)):
        count_case("a commit point held back")
    pieces: dict[int, list[tuple[Record, list[int]]]] = {}
    for record, mine in zip(run.records, groups):
        numbers = [number[line.offset] for line in mine]
        events = {log.event[n] for n in numbers}
        if not timeouts:
            assert len(events) == 1, f"a record mixes events: {record.original!r}"
        for event in events:
            pieces.setdefault(event, []).append((record, numbers))
    if not timeouts:
        for event, parts in pieces.items():
            ordered = sorted(parts, key=lambda part: part[1][0])
            assert [n for _, part in ordered for n in part] == log.events[event]
            if len(parts) == 1:
                record = parts[0][0]
                assert TAG_MULTILINE_SPLIT not in record.tags
                if event in log.error:
                    assert record.fields["error"]["type"] == log.error[event]
            else:
                assert all(TAG_MULTILINE_SPLIT in record.tags for record, _ in parts)
                cap = max_lines < 500 or max_bytes < 1048576
                assert cap, "an event was cut although no cap applies"

    # A crash: restart at the committed offset with a new parser.
    committed, acked, timed, emitted = crash
    starts = [line.offset for line in log.lines] + [log.offset]
    assert committed in starts
    rest = [line for line in log.lines if line.offset >= committed]
    again = make_parser(options, SOURCE)
    cuts = {first: end for first, end in timed if first >= committed}
    if cuts:
        again.cut_at(cuts)
        count_case("a restart with cuts by time")
    reread = [record for line in rest for record in again.feed(line)] + again.flush()
    if rest:
        records_kit.assert_commit_contract(reread, rest)
    before = {record.offset: set(map(id, mine)) for record, mine in zip(run.records, groups)}
    delivered = {id(line) for record, mine in zip(run.records, groups) if record.offset in acked for line in mine}
    assert all(id(line) in delivered for line in log.lines if line.offset < committed), "a line lost"
    if any(record.offset < committed < mine[-1].end and number[mine[-1].offset] - number[mine[0].offset] >= len(mine)
           for record, mine in zip(run.records, groups)):
        raise AssertionError("a record straddles the committed offset")
    if 0 < committed < log.offset:
        count_case("a restart in the middle")
    again_lines = {record.offset: set(map(id, mine)) for record, mine in zip(reread, records_kit.lines_of(reread, rest))}
    if not timeouts:
        for record in reread:
            assert record.offset in before, f"a record of new lines after the restart: {record.original!r}"
            # The same first line: the same document id, so the same lines.
            assert again_lines[record.offset] == before[record.offset], f"re-read differently: {record.original!r}"
    # With the clock: every record emitted before the crash that begins at or
    # after the committed offset comes back with the same lines (what came
    # after the crash is read anew, with the new run's own timing). Not when
    # the restart is right at the end of an event the clock ended: lines that
    # continued it without naming their writer (log4j's stack lines) have
    # lost the line that told whose they are (the corner agent.cuts documents).
    if committed in {end for _, end in timed}:
        count_case("a restart right after a cut by time")
        return
    for record in run.records[:emitted]:
        if record.offset >= committed:
            assert again_lines.get(record.offset) == before[record.offset], (
                f"a record emitted before the crash re-read differently: {record.original!r}")
