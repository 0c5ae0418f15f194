"""The label join: bounded by a TTL in event time and by a cap, checkpointable."""

from __future__ import annotations

import orjson

from agent.health.labels import LabelJoin, Waiting


def _w(t: float) -> Waiting:
    return Waiting(("m", "", "", ""), t - t % 10, 1, t)


def test_a_label_finds_its_prediction_once():
    join = LabelJoin(ttl=60, cap=10)
    join.remember("a", _w(5))
    assert join.take("a") == _w(5)
    assert join.take("a") is None


def test_predictions_expire_by_event_time():
    join = LabelJoin(ttl=60, cap=10)
    for i in range(5):
        join.remember(str(i), _w(i * 30))
    assert join.expire(120) == 2  # t=0 and t=30 are older than 120 - 60
    assert join.take("0") is None and join.take("2") is not None and join.expired == 2


def test_the_cap_forgets_the_oldest_and_counts_it():
    join = LabelJoin(ttl=3600, cap=3)
    results = [join.remember(str(i), _w(i)) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert len(join) == 3 and join.evicted == 2 and join.take("0") is None and join.take("4") is not None


def test_the_state_round_trips():
    join = LabelJoin(ttl=60, cap=10)
    join.remember("a", _w(1))
    join.remember("b", _w(2))
    join.expire(1000)
    join.remember("c", _w(1001))
    again = LabelJoin.from_state(orjson.loads(orjson.dumps(join.to_state())), 60, 10)
    assert again.to_state() == join.to_state() and again.take("c") == _w(1001)


def test_the_checkpoint_rows_keep_their_format():
    join = LabelJoin(ttl=60, cap=10)
    join.remember("a", Waiting(("m", "1", "", "h"), 0, "cat", 5.5))
    assert orjson.loads(orjson.dumps(join.to_state())) == {
        "waiting": [["a", ["m", "1", "", "h"], 0, "cat", 5.5]], "expired": 0, "evicted": 0}


def test_waiting_predictions_leave_the_garbage_collectors_work():
    # Up to caps.pending_labels rows wait: tracked ones made every full collection scan them.
    import gc

    join = LabelJoin(ttl=60, cap=10)
    join.remember("a", Waiting(("m", "", "", ""), 0, "cat", 5.5))
    gc.collect()
    gc.collect()  # the first may untrack the key tuple only after it looked at the row
    assert not any(gc.is_tracked(row) for row in join._waiting.values())
