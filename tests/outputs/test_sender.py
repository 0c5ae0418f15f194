"""Sender: per-item acknowledgement, retries of only the failed items, dead
letters before acks. Uses a scripted fake output (allowed for the batcher and
retry logic); what Elasticsearch really answers is tested against the node."""

import json
import logging
import threading

import orjson
import pytest

from agent.acks import AckTracker
from agent.clock import SYSTEM_CLOCK, FakeClock
from agent.errors import AuthError, TransientOutputError
from agent.events import Event
from agent.outputs.base import Response, all_created
from agent.outputs.batcher import _Workers
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.sender import ONCE_AUTH_ATTEMPTS, LettersNotWritten, Sender
from agent.stats import Stats


class ScriptedOutput:
    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def send(self, events):
        self.sent.append([e.doc_id for e in events])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(events) if callable(answer) else answer


def _events(n):
    return [Event("k", i * 10, i * 10 + 10, f"id{i}", json.dumps({"n": i}).encode()) for i in range(n)]


def _items(*statuses):
    def build(events):
        assert len(events) == len(statuses)
        items = []
        for status in statuses:
            result = {"status": status}
            if status >= 300:
                result["error"] = {"type": {409: "version_conflict_engine_exception",
                                            400: "document_parsing_exception"}.get(status, "es_rejected_execution_exception"),
                                   "reason": "because"}
            items.append({"create": result})
        return Response(200, {"errors": True, "items": items})
    return build


@pytest.fixture
def harness(tmp_path):
    def make(answers, max_retries=None, retry_permanent=True, give_up_to_dead_letters=True,
             letters=None, clock=SYSTEM_CLOCK):
        commits = {}
        acks = AckTracker(lambda key, offset: commits.__setitem__(key, offset))
        stats = Stats()
        dead = DeadLetters(str(letters or tmp_path / "dead.ndjson"), "logs-x")
        output = ScriptedOutput(answers)
        sender = Sender(output, acks, dead, stats, threading.Event(), max_retries, backoff_max=0.0,
                        retry_permanent=retry_permanent, clock=clock,
                        give_up_to_dead_letters=give_up_to_dead_letters)
        return sender, output, acks, commits, stats, dead
    return make


def test_only_failed_items_are_resent(harness):
    sender, output, acks, commits, stats, _ = harness([_items(201, 429, 201, 429), _items(201, 201)])
    events = _events(4)
    for event in events:
        acks.register([event])
    sender.deliver(events)
    assert output.sent == [["id0", "id1", "id2", "id3"], ["id1", "id3"]]
    assert commits == {"k": 40}
    snap = stats.snapshot()
    assert (snap.events_acked, snap.events_retried, snap.events_rejected) == (4, 2, 0)


def test_duplicates_are_acknowledged_and_counted(harness):
    sender, _, acks, commits, stats, _ = harness([_items(409, 201)])
    events = _events(2)
    for event in events:
        acks.register([event])
    sender.deliver(events)
    assert commits == {"k": 20}
    assert stats.snapshot().events_duplicate == 1


def test_rejected_items_go_to_dead_letters_then_are_acknowledged(harness, tmp_path):
    sender, output, acks, commits, stats, dead = harness([_items(201, 400, 201)])
    events = _events(3)
    for event in events:
        acks.register([event])
    sender.deliver(events)
    assert len(output.sent) == 1
    assert commits == {"k": 30}
    lines = (tmp_path / "dead.ndjson").read_text().splitlines()
    assert len(lines) == 1
    letter = json.loads(lines[0])
    assert letter["_id"] == "id1" and letter["document"] == {"n": 1}
    assert letter["error"] == {"type": "document_parsing_exception", "reason": "because"}
    assert (tmp_path / "dead.ndjson").stat().st_mode & 0o777 == 0o600


def test_transient_request_errors_retry_until_success(harness):
    sender, output, acks, commits, _, _ = harness([TransientOutputError("refused"), Response(503, None),
                                                   all_created])
    events = _events(2)
    for event in events:
        acks.register([event])
    sender.deliver(events)
    assert len(output.sent) == 3 and commits == {"k": 20}


def test_once_gives_up_without_acknowledging(harness):
    sender, output, acks, commits, _, _ = harness([Response(503, None)] * 3, max_retries=2,
                                                  give_up_to_dead_letters=False)
    events = _events(1)
    acks.register([events[0]])
    with pytest.raises(TransientOutputError):
        sender.deliver(events)
    assert len(output.sent) == 3 and commits == {} and acks.in_flight() == 1


def test_the_daemon_gives_up_into_the_dead_letters_with_the_reason(harness, tmp_path):
    """--max-retries reached: the pending events go to the dead letters and are
    settled, so the file's offset and the spool move on (issue 8, item 6)."""
    sender, output, acks, commits, stats, _ = harness([_items(201, 503), Response(503, None),
                                                       TransientOutputError("connection refused")],
                                                      max_retries=2)
    events = _events(2)
    acks.register(events)
    sender.deliver(events)  # does not raise: given up, not failed
    assert output.sent == [["id0", "id1"], ["id1"], ["id1"]]
    assert commits == {"k": 20} and acks.in_flight() == 0
    letters = [json.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert [letter["_id"] for letter in letters] == ["id1"]
    assert letters[0]["error"]["type"] == "retries_exhausted"
    assert "connection refused" in letters[0]["error"]["reason"]
    assert letters[0]["status"] == 0  # the last error had no HTTP answer
    snap = stats.snapshot()
    assert (snap.events_acked, snap.events_given_up, snap.events_rejected) == (1, 1, 1)


def test_a_give_up_records_the_last_http_status(harness, tmp_path):
    sender, output, acks, commits, stats, _ = harness([Response(503, None), _items(201, 429)], max_retries=1)
    events = _events(2)
    acks.register(events)
    sender.deliver(events)
    letters = [json.loads(line) for line in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert [(letter["_id"], letter["status"]) for letter in letters] == [("id1", 429)]
    assert "the first: HTTP 429 es_rejected_execution_exception" in letters[0]["error"]["reason"]


def test_a_split_request_never_settles_an_event_twice(harness):
    """413, then the first half is stored and the second half must be retried:
    the retry carries only the second half, and every event is acknowledged
    exactly once (issue 8, item 2: in_flight went negative)."""
    sender, output, acks, commits, stats, _ = harness([Response(413, None), all_created,
                                                       Response(503, None), all_created])
    events = _events(4)
    acks.register(events)
    sender.deliver(events)
    assert output.sent == [["id0", "id1", "id2", "id3"], ["id0", "id1"], ["id2", "id3"], ["id2", "id3"]]
    assert acks.in_flight() == 0 and commits == {"k": 40}
    assert stats.snapshot().events_acked == 4


def test_a_split_request_with_a_connection_error_in_one_half(harness):
    sender, output, acks, commits, _, _ = harness([Response(413, None), TransientOutputError("refused"),
                                                   all_created,
                                                   all_created])
    events = _events(4)
    acks.register(events)
    sender.deliver(events)
    assert output.sent == [["id0", "id1", "id2", "id3"], ["id0", "id1"], ["id2", "id3"], ["id0", "id1"]]
    assert acks.in_flight() == 0 and commits == {"k": 40}


REFUSED = Response(401, {"error": {"type": "security_exception", "reason": "unable to authenticate"}})


def test_auth_failure_is_fatal_when_not_retrying_permanent_errors(harness):
    sender, output, _, commits, _, _ = harness([REFUSED] * ONCE_AUTH_ATTEMPTS, retry_permanent=False)
    with pytest.raises(AuthError, match="unable to authenticate"):
        sender.deliver(_events(1))
    assert len(output.sent) == ONCE_AUTH_ATTEMPTS and commits == {}


def test_once_outlasts_a_moment_of_refused_credentials(harness):
    # A restarting Elasticsearch 9.2.8 answered a valid API key 401 for about a
    # second (audit 4): --once ended with exit 3 and 19,000 lines unsent.
    sender, output, acks, commits, _, _ = harness([REFUSED] * (ONCE_AUTH_ATTEMPTS - 1) + [all_created],
                                                  retry_permanent=False)
    events = _events(2)
    acks.register(events)
    sender.deliver(events)
    assert len(output.sent) == ONCE_AUTH_ATTEMPTS and commits == {"k": 20}


def _refused_items(error_type, reason):
    item = {"create": {"status": 403, "error": {"type": error_type, "reason": reason}}}
    return lambda events: Response(200, {"errors": True, "items": [item] * len(events)})


def test_items_refused_for_a_privilege_end_once_naming_the_reason(harness):
    # The key may not write the target: the node answers 200 with 403 items;
    # --once retried them forever with only "HTTP 403 on the first" (audit 4).
    reason = "action [indices:data/write/bulk[s]] is unauthorized for API key id [k] of user [u] on indices [r3]"
    sender, output, _, commits, _, _ = harness([_refused_items("security_exception", reason)] * ONCE_AUTH_ATTEMPTS,
                                               retry_permanent=False)
    with pytest.raises(AuthError, match=r"for want of a privilege: 1 of the documents .*security_exception: "
                                        r"action \[indices:data/write/bulk\[s\]\] is unauthorized"):
        sender.deliver(_events(1))
    assert len(output.sent) == ONCE_AUTH_ATTEMPTS and commits == {}


def test_a_write_block_is_retried_naming_the_block(harness, caplog):
    block = "index [r2] blocked by: [FORBIDDEN/8/index write (api)];"
    sender, output, acks, commits, _, _ = harness([_refused_items("cluster_block_exception", block), all_created],
                                                  retry_permanent=False)
    events = _events(1)
    acks.register(events)
    with caplog.at_level(logging.WARNING, logger="modelscribe"):
        sender.deliver(events)
    assert commits == {"k": 10}
    (retrying,) = [r for r in caplog.records if r.getMessage() == "delivery failed, retrying"]
    assert block in retrying.kv["error"]  # type: ignore[attr-defined]


def test_too_large_requests_are_split(harness):
    sender, output, acks, commits, _, _ = harness([Response(413, None), all_created,
                                                   all_created])
    events = _events(4)
    for event in events:
        acks.register([event])
    sender.deliver(events)
    assert output.sent == [["id0", "id1", "id2", "id3"], ["id0", "id1"], ["id2", "id3"]]
    assert commits == {"k": 40}


def test_a_document_too_large_alone_is_a_letter_naming_its_size_and_the_limits(harness):
    # Audit 7: the letter said only "request body too large (413)": neither the
    # document's size nor which limit (the node's, a proxy's) to raise.
    sender, output, acks, commits, _, dead = harness([Response(413, None), all_created, Response(413, None)])
    events = [Event("k", 0, 10, "id0", b'{"m": "x"}'), Event("k", 10, 20, "id1", b'{"m": "%s"}' % (b"y" * 150_000))]
    acks.register(events)
    sender.deliver(events)
    assert output.sent == [["id0", "id1"], ["id0"], ["id1"]] and commits == {"k": 20}
    with open(dead.path, "rb") as handle:
        (letter,) = [orjson.loads(line) for line in handle]
    assert letter["_id"] == "id1" and letter["error"]["type"] == "request_too_large"
    reason = letter["error"]["reason"]
    assert "150" in reason and "bytes" in reason and "decompressed" in reason
    assert "http.max_content_length" in reason and "proxy" in reason and "--max-line-bytes" in reason


def test_abort_stops_retrying_at_once(harness):
    sender, output, _, _, _, _ = harness([Response(503, None)] * 100)
    sender._abort.set()
    with pytest.raises(TransientOutputError):
        sender.deliver(_events(1))
    assert len(output.sent) == 1


# -- dead letters that cannot be written (audit 2, flow #2) -------------------------


class _Waits(FakeClock):
    """Time moves only in the sender's waits; ``on_wait(n)`` runs at the n-th."""

    def __init__(self, on_wait):
        super().__init__()
        self.on_wait = on_wait
        self.waits = []

    def wait(self, event, seconds):
        self.waits.append(seconds)
        self.on_wait(len(self.waits))
        return super().wait(event, seconds)


def _agent_log(caplog):
    logger = logging.getLogger("modelscribe")
    logger.addHandler(caplog.handler)  # the agent's logger may not propagate (selflog.configure)
    return logger


def _logged(caplog, start):
    """Records whose message starts with ``start``, once each (they may also propagate)."""
    found = {id(r): r for r in caplog.records if r.getMessage().startswith(start)}
    return list(found.values())


def test_unwritable_dead_letters_wait_and_lose_nothing(harness, tmp_path, caplog):
    """The directory is gone: the stored documents are acknowledged at once,
    the rejected one waits unacknowledged (the offset stops before it) while
    the write is retried with a bounded backoff; the error is logged once a
    minute, not at every try; once the directory is back the letter is
    written, then acknowledged. Nothing raises, so the worker does not die."""
    directory = tmp_path / "gone"
    seen = []

    def on_wait(n):
        seen.append((dict(commits), acks.in_flight()))
        if n == 9:
            directory.mkdir()

    clock = _Waits(on_wait)
    sender, output, acks, commits, stats, _ = harness([_items(201, 400, 201)], letters=directory / "dead.ndjson",
                                                      clock=clock)
    events = _events(3)
    acks.register(events)
    logger = _agent_log(caplog)
    try:
        sender.deliver(events)
    finally:
        logger.removeHandler(caplog.handler)
    assert seen == [({"k": 10}, 1)] * 9  # id0 committed; id2 acknowledged but behind id1
    assert clock.waits == [1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert len(output.sent) == 1  # not sent again: only the letter was missing
    assert commits == {"k": 30} and acks.in_flight() == 0
    letters = [json.loads(line) for line in (directory / "dead.ndjson").read_text().splitlines()]
    assert [letter["_id"] for letter in letters] == ["id1"]
    errors = _logged(caplog, "cannot write the dead letters")
    assert [r.kv["failing_for"] for r in errors] == ["0s", "61s", "121s"]  # 9 failed tries, 3 errors
    assert errors[0].kv["path"] == str(directory / "dead.ndjson")
    assert "No such file or directory" in errors[0].kv["error"]
    back = _logged(caplog, "the dead letters can be written again")
    assert [r.kv["failed_for"] for r in back] == ["151s"]
    snap = stats.snapshot()
    assert (snap.events_acked, snap.events_rejected) == (2, 1)


def test_shutdown_ends_the_wait_and_the_rejected_stay_unacknowledged(harness, tmp_path):
    def on_wait(n):
        if n == 3:
            sender._abort.set()  # the --shutdown-timeout deadline

    sender, output, acks, commits, stats, _ = harness([_items(201, 400, 201)], letters=tmp_path / "gone" / "d",
                                                      clock=_Waits(on_wait))
    events = _events(3)
    acks.register(events)
    with pytest.raises(LettersNotWritten, match="1 rejected documents stay unacknowledged"):
        sender.deliver(events)
    assert commits == {"k": 10} and acks.in_flight() == 1
    assert len(output.sent) == 1 and stats.snapshot().events_rejected == 0


def test_a_worker_blocked_on_the_dead_letters_neither_dies_nor_frees_the_batch(harness, tmp_path):
    """Through the output workers, as in the daemon: at shutdown the batch is
    left in the queue (``after`` not called) and no stage death is reported."""
    def on_wait(n):
        if n == 2:
            sender._abort.set()

    sender, _, acks, _, stats, _ = harness([_items(400)], letters=tmp_path / "gone" / "d", clock=_Waits(on_wait))
    deaths, released = [], []
    workers = _Workers(sender.deliver, 1, stats, on_death=lambda stage, error: deaths.append(error))
    events = _events(1)
    acks.register(events)
    workers.submit(events, lambda: released.append(True))
    workers.close()
    assert deaths == [] and released == [] and acks.in_flight() == 1
    assert isinstance(workers.failures[0], LettersNotWritten)
