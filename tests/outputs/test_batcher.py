"""Batcher: flush by count, bytes and age; bounded in-flight batches; events
registered at dispatch and queue space freed only after delivery."""

import contextlib
import threading
import time

from agent.acks import AckTracker
from agent.errors import StateError, TransientOutputError
from agent.events import Event
from agent.outputs.batcher import Aborted, Batcher, _Workers
from agent.spool import MemoryQueue
from agent.stats import Stats


def _event(i, size=10):
    return Event("k", i, i + 1, f"id{i}", b"x" * size)


def _batcher(queue, deliver, **options):
    settings = dict(max_docs=3, max_bytes=10_000, flush_interval=60.0, workers=1, stats=Stats())
    settings.update(options)
    return Batcher(queue, deliver, AckTracker(lambda key, offset: None), **settings)


def _run(events, **options):
    queue = MemoryQueue(1000)
    batches = []
    lock = threading.Lock()

    def deliver(batch):
        with lock:
            batches.append([e.offset for e in batch])

    batcher = _batcher(queue, deliver, **options)
    queue.append(events[:2])
    queue.append(events[2:])
    batcher.finish(drain=True)
    batcher.run()
    return batches


def test_flush_by_count_and_at_end():
    assert _run([_event(i) for i in range(7)]) == [[0, 1, 2], [3, 4, 5], [6]]


def test_flush_by_bytes():
    # each event counts 100 + 40 bytes: the third one crosses 300 and flushes the batch
    assert _run([_event(i, 100) for i in range(5)], max_docs=100, max_bytes=300) == [[0, 1, 2], [3, 4]]


def test_flush_by_age():
    queue = MemoryQueue(1000)
    delivered = threading.Event()
    batcher = _batcher(queue, lambda batch: delivered.set(), max_docs=100, flush_interval=0.05)
    thread = threading.Thread(target=batcher.run)
    thread.start()
    queue.append([_event(0)])
    assert delivered.wait(5), "a lone event was not flushed after the flush interval"
    batcher.finish(drain=False)
    thread.join(5)
    assert not thread.is_alive()


def test_queue_space_is_freed_only_after_delivery_and_events_registered_once():
    queue = MemoryQueue(1000)
    release = threading.Event()
    acks = AckTracker(lambda key, offset: None)

    def deliver(batch):
        release.wait(5)
        acks.acknowledge(batch)

    batcher = Batcher(queue, deliver, acks, max_docs=2, max_bytes=10_000, flush_interval=0.01, workers=1,
                      stats=Stats())
    thread = threading.Thread(target=batcher.run)
    thread.start()
    queue.append([_event(i) for i in range(4)])
    deadline = time.monotonic() + 5
    while acks.in_flight() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    # Registered as dispatched (the second batch waits for the one worker),
    # and every event still holds its place in the queue until delivered.
    assert acks.in_flight() == 4 and queue.pending() == 4
    release.set()
    batcher.finish(drain=True)
    thread.join(5)
    assert queue.pending() == 0 and acks.in_flight() == 0


def test_failures_are_recorded_not_raised():
    queue = MemoryQueue(1000)

    def deliver(batch):
        raise TransientOutputError("down")

    stats = Stats()
    batcher = _batcher(queue, deliver, max_docs=1, workers=2, stats=stats)
    queue.append([_event(0), _event(1)])
    batcher.finish(drain=True)
    batcher.run()
    assert len(batcher.failures) == 2 and stats.snapshot().batches_failed == 2
    assert queue.pending() == 2  # a failed batch keeps its place: nothing freed


def test_an_aborted_batch_is_neither_acknowledged_nor_failed():
    def deliver(batch):
        raise Aborted()

    acked = []
    stats = Stats()
    workers = _Workers(deliver, 1, stats)
    workers.submit([_event(0)], after=lambda: acked.append(True))
    workers.close()
    assert acked == [] and workers.failures == [] and stats.snapshot().batches_failed == 0


def test_an_unexpected_error_in_delivery_is_a_dead_stage():
    deaths = []

    def deliver(batch):
        raise KeyError("bug")

    workers = _Workers(deliver, 1, Stats(), on_death=lambda stage, error: deaths.append((stage, error)))
    workers.submit([_event(0)])
    workers.close()
    assert [stage for stage, _ in deaths] == ["output"] and isinstance(deaths[0][1], KeyError)


def test_acks_the_spool_cannot_record_are_logged_not_fatal():
    """A full disk under the spool makes ``DiskQueue.ack`` raise StateError after
    the acknowledgement is in memory: a restart only re-delivers, so the agent
    goes on (an unexpected error would stop it)."""
    deaths, stats = [], Stats()

    def release():
        raise StateError("cannot record acknowledgements in /spool: [Errno 28] No space left on device")

    workers = _Workers(lambda batch: None, 1, stats, on_death=lambda stage, error: deaths.append((stage, error)))
    workers.submit([_event(0)], release)
    workers.submit([_event(1)])
    workers.close()
    assert deaths == [] and workers.failures == []
    assert "No space left on device" in stats.snapshot().last_error


def test_quit_stops_waiting_for_a_hung_request():
    queue = MemoryQueue(1000)
    hung = threading.Event()

    def deliver(batch):
        hung.set()
        time.sleep(30)  # a request that never answers (the worker is a daemon thread)

    batcher = _batcher(queue, deliver, max_docs=1, flush_interval=0.01)
    thread = threading.Thread(target=batcher.run, daemon=True)
    thread.start()
    queue.append([_event(0), _event(1)])
    assert hung.wait(5)
    batcher.finish(drain=False)
    thread.join(1.0)
    assert thread.is_alive()  # still waiting for the batch in flight, as it should before the deadline
    started = time.monotonic()
    batcher.quit()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2


def test_a_spool_on_a_full_disk_is_sent_without_waiting_for_the_flush_interval(tmp_path, monkeypatch):
    # Audit 5: the batcher held the spool's last records for --flush-interval
    # while the full disk let nothing new in, so each freed segment cost one
    # interval (257 lines/s with 600 KiB free).
    from agent.spool import DiskQueue
    from small_disk import small_disk

    directory = tmp_path / "spool"
    directory.mkdir()
    small_disk(monkeypatch, directory, capacity=20_000)
    queue = DiskQueue(directory, 16 << 20)
    queue.open()
    appended = []
    while queue.append(batch := [_event(len(appended) + i, 400) for i in range(10)], timeout=0.2):
        appended += batch
    assert queue.disk_full and appended
    delivered = []
    batcher = _batcher(queue, lambda events: delivered.extend(events), max_docs=1000, flush_interval=60.0)
    thread = threading.Thread(target=batcher.run)
    thread.start()
    try:
        for _ in range(100):
            if len(delivered) == len(appended):
                break
            time.sleep(0.05)
        assert [e.offset for e in delivered] == [e.offset for e in appended]
    finally:
        batcher.finish(drain=False)
        thread.join(5)
        queue.close()



def _sent_behind_a_full_queue(queue, make_batch, count=200):
    """A writer thread appends ``count`` batches (the later ones wait for room)
    while a batcher with a flush interval of 60 s sends to a list; returns the
    offsets sent within 5 s (at most one interval's worth when it waited)."""
    batches = [make_batch(b) for b in range(count)]
    writer = threading.Thread(target=lambda: [queue.append(batch, timeout=10) for batch in batches], daemon=True)
    writer.start()
    delivered = []
    batcher = _batcher(queue, lambda events: delivered.extend(events), max_docs=1000, max_bytes=1 << 20,
                       flush_interval=60.0)
    thread = threading.Thread(target=batcher.run)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while len(delivered) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        return [e.offset for e in delivered]
    finally:
        batcher.finish(drain=False)
        thread.join(5)
        queue.close()
        writer.join(15)


def test_a_spool_whose_writer_waits_for_room_is_sent_without_waiting_for_the_flush_interval(tmp_path):
    # A spool smaller than a few reader groups: the writer waits for room while
    # the batcher held the records it took for --flush-interval, so every turn
    # cost one (25,000 lines: 52 s with a 400 KiB spool, 1.3 s with 4 MiB).
    from agent.spool import DiskQueue

    queue = DiskQueue(tmp_path / "spool", 64 * 1024)
    queue.open()
    sent = _sent_behind_a_full_queue(queue, lambda b: [_event(b * 20 + i, 400) for i in range(20)])  # 9 KiB each
    assert len(sent) >= 200 and sent == list(range(len(sent)))


def test_a_memory_queue_whose_writer_waits_for_room_is_sent_without_waiting_for_the_flush_interval():
    queue = MemoryQueue(40)
    sent = _sent_behind_a_full_queue(queue, lambda b: [_event(b * 10 + i) for i in range(10)])
    assert len(sent) >= 200 and sent == list(range(len(sent)))


def test_acknowledgements_that_cannot_be_recorded_are_warned_of_once_a_minute(caplog):
    import logging

    from agent.clock import FakeClock

    clock = FakeClock()
    workers = _Workers(lambda events: None, 1, Stats(), clock=clock)
    failing = [True]
    calls = []

    def ack():
        calls.append(1)
        if failing[0]:
            raise StateError("cannot record acknowledgements in /spool: [Errno 28] No space left on device")

    def send(n):
        expected = len(calls) + n
        for i in range(n):
            workers.submit([_event(i)], ack)
        deadline = time.monotonic() + 5
        while len(calls) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.02)  # (the worker logs right after the call)

    with caplog.at_level(logging.INFO, logger="modelscribe"):
        send(20)
        clock.advance(30)
        send(5)
        assert [r.getMessage() for r in caplog.records] == [
            "the spool could not record acknowledgements; after a restart those records are sent again and land "
            "as duplicates of their ids, nothing is lost"]
        clock.advance(31)
        send(1)
        failing[0] = False
        send(1)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[1].startswith("still the spool could not record") and caplog.records[1].kv["failing_for"] == 61
    assert messages[2:] == ["the spool records acknowledgements again"]
    workers.close()


@contextlib.contextmanager
def _one_batch_in_flight(writer_events: int):
    """A queue of 40 and a batcher of batches of 25 (flush interval 60 s): 30
    events appended, 25 sent and held in flight (until ``release`` is set), 5
    held by the batcher; then a writer thread appends ``writer_events`` more.
    Yields (queue, release, calls: the sizes of the batches sent, batcher,
    its thread, the writer)."""
    queue = MemoryQueue(40)
    release, calls = threading.Event(), []

    def deliver(events):
        calls.append(len(events))
        release.wait(5)

    batcher = _batcher(queue, deliver, max_docs=25, max_bytes=1 << 20, flush_interval=60.0, workers=2)
    thread = threading.Thread(target=batcher.run)
    thread.start()
    try:
        assert queue.append([_event(i) for i in range(30)])
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        writer = threading.Thread(target=lambda: queue.append([_event(30 + i) for i in range(writer_events)],
                                                              timeout=10))
        writer.start()
        yield queue, release, calls, batcher, thread, writer
    finally:
        release.set()
        batcher.finish(drain=False)
        thread.join(5)


def test_while_a_batch_is_in_flight_a_full_queue_does_not_make_the_batcher_send_small_batches():
    # Its acknowledgement will free room: sending what the batcher holds at every
    # wait of the writer made batches small (a 4 MiB spool shipped at half speed).
    with _one_batch_in_flight(20) as (queue, release, calls, batcher, thread, writer):  # 30 + 20 > 40: waits
        time.sleep(0.3)
        assert queue.blocked and calls == [25], calls  # (not the 5 held, in a batch of their own)
        release.set()
        writer.join(5)
        assert not writer.is_alive(), "the first batch's acknowledgement made room"
        batcher.finish(drain=True)
        thread.join(5)
        assert calls == [25, 25], calls


def test_when_the_batch_in_flight_settles_without_making_room_the_batch_held_goes_at_once():
    # Audit 8: the batcher then waited out --flush-interval with the records the
    # writer was waiting behind (25,000 lines through a 1 MiB spool: 8 s).
    with _one_batch_in_flight(36) as (queue, release, calls, batcher, thread, writer):
        time.sleep(0.2)  # 5 + 36 > 40 even once the 25 are acknowledged: it waits for the 5 held
        started = time.monotonic()
        release.set()
        writer.join(5)
        assert not writer.is_alive() and time.monotonic() - started < 2, calls
        assert calls[:2] == [25, 5], calls
