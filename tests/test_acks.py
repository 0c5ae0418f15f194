"""AckTracker: committed offsets cover only acknowledged prefixes."""

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.acks import AckTracker
from agent.events import Event


def _event(key, offset, end):
    return Event(key, offset, end, f"{key}-{offset}", b"{}")


def test_commits_the_longest_acknowledged_prefix():
    commits = []
    tracker = AckTracker(lambda key, offset: commits.append((key, offset)))
    events = [_event("a", i * 10, i * 10 + 10) for i in range(4)]
    for event in events:
        tracker.register([event])
    tracker.acknowledge([events[1], events[3]])
    assert commits == []  # a hole at the first event: nothing may be committed
    tracker.acknowledge([events[0]])
    assert commits == [("a", 20)]
    tracker.acknowledge([events[2]])
    assert commits[-1] == ("a", 40)
    assert tracker.in_flight() == 0


def test_files_are_independent_and_double_acks_are_ignored():
    commits = {}
    tracker = AckTracker(lambda key, offset: commits.__setitem__(key, offset))
    a, b = _event("a", 0, 5), _event("b", 0, 7)
    tracker.register([a, b])
    tracker.acknowledge([b, b])
    assert commits == {"b": 7}
    assert tracker.in_flight() == 1
    tracker.acknowledge([a])
    assert commits == {"a": 5, "b": 7}


def test_acknowledging_a_settled_event_again_changes_nothing():
    """Once an event left the in-flight set (even at the head, already
    committed), a second acknowledgement must not count it again."""
    commits = []
    tracker = AckTracker(lambda key, offset: commits.append(offset))
    a, b = _event("f", 0, 10), _event("f", 10, 20)
    tracker.register([a, b])
    tracker.acknowledge([a])
    tracker.acknowledge([a])
    assert tracker.in_flight() == 1 and commits == [10]
    tracker.acknowledge([_event("f", 99, 120)])  # never registered
    assert tracker.in_flight() == 1
    tracker.acknowledge([b])
    assert tracker.in_flight() == 0 and commits == [10, 20]


def test_events_are_told_apart_by_offset_so_equal_ends_are_fine():
    """Per-thread joining lowers an event's end to the oldest open event's
    first line, so two events of a file may share an end (see acks doc)."""
    commits = []
    tracker = AckTracker(lambda key, offset: commits.append(offset))
    first, second, third = _event("f", 10, 0), _event("f", 20, 0), _event("f", 0, 40)
    tracker.register([first, second, third])
    tracker.acknowledge([second, first])
    assert tracker.in_flight() == 1 and commits == [0]
    tracker.acknowledge([third])
    assert tracker.in_flight() == 0 and commits == [0, 40]


def test_wait_idle():
    tracker = AckTracker(lambda key, offset: None)
    event = _event("a", 0, 1)
    tracker.register([event])
    assert tracker.wait_idle(0.01) is False
    threading.Timer(0.05, tracker.acknowledge, args=([event],)).start()
    assert tracker.wait_idle(5) is True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=40), st.randoms())
def test_committed_offset_never_passes_an_unacknowledged_event(sizes, random):
    commits = []
    tracker = AckTracker(lambda key, offset: commits.append(offset))
    events, offset = [], 0
    for size in sizes:
        events.append(_event("f", offset, offset + size))
        offset += size
    for event in events:
        tracker.register([event])
    order = list(events)
    random.shuffle(order)
    acked = set()
    for event in order:
        tracker.acknowledge([event])
        acked.add(event.end)
        if commits:
            assert all(e.end in acked for e in events if e.end <= commits[-1])
    assert commits[-1] == offset
    assert commits == sorted(commits)


class _OneByOne:
    """The tracker's rules event by event, as the module doc states them: the
    reference the batch implementation is held to."""

    def __init__(self):
        self.files, self.in_flight, self.commits = {}, 0, []

    def register(self, events):
        for event in events:
            order, pending = self.files.setdefault(event.source_key, ([], set()))
            if event.offset not in pending:
                order.append((event.offset, event.end))
                pending.add(event.offset)
                self.in_flight += 1

    def acknowledge(self, events):
        commits = {}
        for event in events:
            state = self.files.get(event.source_key)
            if state is None or event.offset not in state[1]:
                continue
            order, pending = state
            pending.discard(event.offset)
            self.in_flight -= 1
            while order and order[0][0] not in pending:
                commits[event.source_key] = order.pop(0)[1]
            if not order:
                del self.files[event.source_key]
        self.commits += commits.items()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(),
                          st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 12)), max_size=12)),
                max_size=25))
def test_batches_settle_as_events_one_by_one(operations):
    """Batches of runs of one file's events, events of several files,
    repeated or unknown events, in any order: the same commits, in the same
    order, and the same count in flight as the rules applied event by event."""
    commits = []
    tracker, reference = AckTracker(lambda key, offset: commits.append((key, offset))), _OneByOne()
    for is_ack, batch in operations:
        events = [_event(key, offset * 10, offset * 10 + 10) for key, offset in batch]
        (tracker.acknowledge if is_ack else tracker.register)(events)
        (reference.acknowledge if is_ack else reference.register)(events)
        assert commits == reference.commits
        assert tracker.in_flight() == reference.in_flight
