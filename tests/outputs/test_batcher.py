"""Batcher: flush by count, bytes and age; bounded in-flight batches."""

import queue
import threading

from agent.events import Event
from agent.outputs.batcher import END, Batcher
from agent.stats import Stats


def _event(i, size=10):
    return Event("k", i, i + 1, f"id{i}", b"x" * size)


def _run(events, **options):
    q = queue.Queue()
    batches = []
    lock = threading.Lock()

    def deliver(batch):
        with lock:
            batches.append([e.offset for e in batch])

    settings = dict(max_docs=3, max_bytes=10_000, flush_interval=60.0, workers=1, stats=Stats())
    settings.update(options)
    batcher = Batcher(q, deliver, **settings)
    q.put(events[:2])
    q.put(events[2:])
    q.put(END)
    batcher.run()
    return batches


def test_flush_by_count_and_at_end():
    assert _run([_event(i) for i in range(7)]) == [[0, 1, 2], [3, 4, 5], [6]]


def test_flush_by_bytes():
    # each event counts 100 + 40 bytes: the third one crosses 300 and flushes the batch
    assert _run([_event(i, 100) for i in range(5)], max_docs=100, max_bytes=300) == [[0, 1, 2], [3, 4]]


def test_flush_by_age():
    q = queue.Queue()
    delivered = threading.Event()
    batcher = Batcher(q, lambda batch: delivered.set(), max_docs=100, max_bytes=10_000, flush_interval=0.05,
                      workers=1, stats=Stats())
    thread = threading.Thread(target=batcher.run)
    thread.start()
    q.put([_event(0)])
    assert delivered.wait(5), "a lone event was not flushed after the flush interval"
    q.put(END)
    thread.join(5)


def test_failures_are_recorded_not_raised():
    from agent.errors import TransientOutputError

    q = queue.Queue()

    def deliver(batch):
        raise TransientOutputError("down")

    stats = Stats()
    batcher = Batcher(q, deliver, max_docs=1, max_bytes=10_000, flush_interval=1.0, workers=2, stats=stats)
    q.put([_event(0), _event(1)])
    q.put(END)
    batcher.run()
    assert len(batcher.failures) == 2 and stats.snapshot().batches_failed == 2


def test_an_aborted_batch_is_neither_acknowledged_nor_failed():
    from agent.outputs.batcher import Aborted, _Workers

    def deliver(batch):
        raise Aborted()

    acked = []
    stats = Stats()
    workers = _Workers(deliver, 1, stats)
    workers.submit([_event(0)], after=lambda: acked.append(True))
    workers.close()
    assert acked == [] and workers.failures == [] and stats.snapshot().batches_failed == 0
