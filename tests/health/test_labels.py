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


# -- the join against a plain model of it (expire's early return must change nothing) ----

from collections import OrderedDict  # noqa: E402

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


class _PlainJoin:
    """The rules, written the simplest way: insertion order, a re-waited id moves to the
    end, the cap forgets the first, expire forgets from the first while it is too old."""

    def __init__(self, ttl: float, cap: int) -> None:
        self.ttl, self.cap, self.rows = ttl, cap, OrderedDict()

    def wait(self, rid, time) -> bool:
        self.rows.pop(rid, None)
        self.rows[rid] = time
        if len(self.rows) > self.cap:
            self.rows.popitem(last=False)
            return False
        return True

    def take(self, rid):
        return self.rows.pop(rid, None)

    def expire(self, now) -> int:
        gone = 0
        while self.rows and next(iter(self.rows.values())) < now - self.ttl:
            self.rows.popitem(last=False)
            gone += 1
        return gone


_steps = st.lists(st.tuples(st.sampled_from(["wait", "take", "expire", "round_trip"]), st.integers(0, 6),
                            st.one_of(st.integers(0, 100).map(float), st.floats(0, 100))), max_size=60)


@settings(max_examples=1000, deadline=None)
@given(ttl=st.sampled_from([0.0, 5.0, 30.0]), cap=st.integers(1, 5), steps=_steps)
# The first waiting prediction taken, then the cap forgetting it, while the next one is older.
@example(ttl=5.0, cap=5, steps=[("wait", 1, 50.0), ("wait", 2, 10.0), ("take", 1, 0.0), ("expire", 0, 40.0)])
@example(ttl=5.0, cap=1, steps=[("wait", 1, 50.0), ("wait", 2, 10.0), ("expire", 0, 40.0)])
def test_the_join_follows_its_rules_step_by_step(ttl, cap, steps):
    join, plain = LabelJoin(ttl, cap), _PlainJoin(ttl, cap)
    for action, rid, time in steps:
        if action == "wait":
            assert join.wait(f"r{rid}", ("m", "", "", ""), 0.0, "p", time) == plain.wait(f"r{rid}", time)
        elif action == "take":
            taken, expected = join.take(f"r{rid}"), plain.take(f"r{rid}")
            assert (taken.time if taken else None) == expected
        elif action == "expire":
            assert join.expire(time) == plain.expire(time)
        else:
            join = LabelJoin.from_state(orjson.loads(orjson.dumps(join.to_state())), ttl, cap)
        assert [row[0] for row in join.to_state()["waiting"]] == list(plain.rows)


def test_labels_waiting_for_their_prediction_survive_a_checkpoint():
    join = LabelJoin(ttl=60, cap=10)
    join.hold("r1", "cat", ("m", "", "", ""), 100.0)
    join.hold("r2", "dog", None, 101.0)
    again = LabelJoin.from_state(orjson.loads(orjson.dumps(join.to_state())), 60, 10)
    assert again.take_label("r1") == ("r1", "cat", ("m", "", "", ""), 100.0)
    again.expire(101.0 + 61)
    assert [row[0] for row in again.drain_given_up()] == ["r2"]
    assert again.take_label("r2") is None


def test_a_label_with_no_usable_time_is_given_up_at_once():
    join = LabelJoin(ttl=60, cap=10)
    join.hold("r1", "cat", None, float("nan"))
    assert [row[0] for row in join.drain_given_up()] == ["r1"]
    assert not join.early
