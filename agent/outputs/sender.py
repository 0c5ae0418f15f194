"""Delivery of one batch: attempt, classify, acknowledge, retry, dead-letter.

MUST: an event is acknowledged (``AckTracker.acknowledge``, which lets the
registry commit its offset) only when the output stored it, reported it as a
duplicate of a stored document (409 on create), or it was written to the
dead letters. Each event is settled at most once: an attempt returns exactly
the events it did not settle, and only those are retried, also when a 413
split the request and one half failed after the other was settled. The
backoff is capped exponential with full jitter (tenacity), unlimited by
default (``--max-retries``), and interrupted at once by shutdown.

Dead letters that cannot be written (disk full, directory removed or
read-only, permission denied) never stop the agent and never lose a
document: the batch's stored and duplicate documents are acknowledged, its
rejected ones are not (so no offset moves past them) while the worker
retries the write with a backoff of 1 s doubling to at most
``LETTERS_RETRY_MAX``. The error names the file and the cause, logged at
once and then at most every ``LETTERS_LOG_INTERVAL`` seconds while it
lasts; a warning says when writing works again. A blocked worker holds its
slot, so when every worker waits the batcher stops taking and reading
pauses: the backpressure of a full spool. Shutdown ends the wait (the
``abort`` flag, set at the ``--shutdown-timeout`` deadline): the documents
stay unacknowledged and are read or re-delivered after a restart, where
Elasticsearch answers 409 for those it stored and rejects the bad ones
again. ``--once`` waits the same way.

Giving up (``--max-retries`` reached, daemon mode): the events still pending
go to the dead letters with the reason ``retries_exhausted`` and the last
error, are counted (``events_given_up``) and logged, and are then settled
like rejected documents, so their file's offset and the spool move on;
``dlq replay`` sends them again once the output is fixed. Without this the
batch would sit in the spool, unacknowledged and never handed out again,
until a restart. ``--once`` gives up differently: it reports the failure
(exit code 3) and leaves the events unacknowledged for the next run; refused
credentials (a 401/403 on the request, or items refused for a privilege) end
it at the ``ONCE_AUTH_ATTEMPTS``-th refusal in a row, not the first.

Self-monitoring is per request, never per event: each request's latency
and size, each retry's reason (``RETRY_REASONS``: the status of the
request or of its first retried item, or the kind of transport error), the
time of the last acknowledgement (``Stats``, read by ``agent.metrics``).
"""

from __future__ import annotations

import operator
import threading
from typing import Sequence

from tenacity import (Retrying, retry_if_exception_type, stop_after_attempt, stop_any, stop_never,
                      stop_when_event_set, wait_random_exponential)

from agent.acks import AckTracker
from agent.clock import SYSTEM_CLOCK, Clock
from agent.errors import AuthError, OutputError, PermanentOutputError, StateError, TransientOutputError
from agent.events import Event
from agent.outputs.base import Output
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.retry import Action, ItemVerdict, classify, refused_privilege, retry_reason, too_large_reason
from agent.self_metrics import own_documents
from agent.selflog import get_logger
from agent.stats import Stats

log = get_logger("output")
_DATA = operator.attrgetter("data")
LETTERS_RETRY_FIRST = 1.0    # seconds before the first new try of an unwritable dead-letter file
LETTERS_RETRY_MAX = 30.0     # the longest wait between two tries
LETTERS_LOG_INTERVAL = 60.0  # at most one error per this many seconds while it lasts
# --once gives up on refused credentials at the fifth refusal in a row of one
# batch (at most 7.5 s of backoff): a node restarting refuses valid API keys
# for about a second while its security index recovers (audit 4, on 9.2.8:
# one refusal used to end the run with exit 3 and 19,000 lines unsent).
ONCE_AUTH_ATTEMPTS = 5


def _status_reason(status: int) -> str:
    """The retry reason (a ``RETRY_REASONS`` label) of an HTTP status."""
    if status == 429:
        return "429"
    if status in (401, 403):
        return "auth"
    return "5xx" if status >= 500 else "other"


def _error_reason(error: OutputError) -> str:
    """The retry reason of a request that got no HTTP answer to classify."""
    if isinstance(error, AuthError):
        return "auth"
    return "connection" if isinstance(error, TransientOutputError) else "other"


class _ItemsToRetry(TransientOutputError):
    """Some items of the request must be sent again."""


class _RefusedForNow(TransientOutputError):
    """``--once``: credentials refused, retried ``ONCE_AUTH_ATTEMPTS`` times
    before giving up (a restarting node refuses valid ones for a moment)."""


class LettersNotWritten(OutputError):
    """Shutdown came while the dead letters could not be written: the
    rejected documents stay unacknowledged. An OutputError so that every
    caller of ``deliver`` (the batcher's workers, health shipping) keeps
    them for later, as it does when shutdown cuts retries short."""


class Sender:
    def __init__(self, output: Output, acks: AckTracker, dead_letters: DeadLetters, stats: Stats,
                 abort: threading.Event, max_retries: int | None, backoff_max: float,
                 retry_permanent: bool, clock: Clock = SYSTEM_CLOCK, give_up_to_dead_letters: bool = True) -> None:
        self._output = output
        self._acks = acks
        self._dead = dead_letters
        self._stats = stats
        self._abort = abort
        self._clock = clock
        self._give_up_to_dead_letters = give_up_to_dead_letters and max_retries is not None
        self._retry_permanent = retry_permanent
        # Shared by the workers: one error a minute for the file, however many wait.
        self._letters_lock = threading.Lock()
        self._letters_failing_since: float | None = None
        self._letters_logged = 0.0
        # The daemon keeps retrying even "permanent" request errors (bad TLS,
        # 401) because a fixed certificate or rotated key must heal it
        # without a restart; --once reports them instead.
        retried: tuple[type[BaseException], ...] = (TransientOutputError,)
        if retry_permanent:
            retried = (TransientOutputError, PermanentOutputError)
        stop = stop_when_event_set(abort)
        self._retrying = Retrying(
            stop=stop_any(stop, stop_after_attempt(max_retries + 1)) if max_retries is not None
            else stop_any(stop, stop_never),
            wait=wait_random_exponential(multiplier=0.5, max=backoff_max),
            retry=retry_if_exception_type(retried),
            sleep=lambda seconds: abort.wait(seconds),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def deliver(self, events: Sequence[Event]) -> None:
        """Deliver ``events``. Giving up (see the module doc) dead-letters the
        pending events in the daemon; with ``--once``, or when shutdown cut the
        retries short, the last OutputError is raised and they stay pending."""
        pending = list(events)
        refusals = 0
        try:
            for attempt in self._retrying.copy():
                with attempt:
                    pending, error, reason = self._attempt(pending)
                    if pending:
                        self._stats.add("events_retried", len(pending), own_documents(pending)[0])
                        self._stats.retried(reason)
                        if isinstance(error, AuthError) and not self._retry_permanent:
                            refusals += 1
                            if refusals < ONCE_AUTH_ATTEMPTS:
                                error = _RefusedForNow(f"{error} (refusal {refusals} of {ONCE_AUTH_ATTEMPTS} "
                                                       "before --once gives up)", error.status)
                        else:
                            refusals = 0
                        raise error or _ItemsToRetry(f"{len(pending)} of the documents must be retried")
        except OutputError as error:
            if self._abort.is_set() or not self._give_up_to_dead_letters:
                raise
            self._give_up(pending, error)

    def _give_up(self, pending: list[Event], error: OutputError) -> None:
        status = error.status
        verdicts = [(event, ItemVerdict(i, Action.REJECT, status, "retries_exhausted", str(error)))
                    for i, event in enumerate(pending)]
        log.error("gave up after --max-retries; the documents go to the dead letters", count=len(pending),
                  error=str(error))
        self._stats.add("events_given_up", len(pending), own_documents(pending)[0])
        self._settle([], [], verdicts)

    def _before_sleep(self, state) -> None:  # type: ignore[no-untyped-def]
        error = state.outcome.exception() if state.outcome else None
        self._stats.error(str(error))
        level = log.warning if isinstance(error, (TransientOutputError,)) else log.error
        level("delivery failed, retrying", attempt=state.attempt_number,
              wait=f"{state.upcoming_sleep:.1f}s", error=str(error))

    def _attempt(self, events: list[Event]) -> tuple[list[Event], OutputError | None, str]:
        """One request (or, after a 413, its halves): settles what it can and
        returns the events still pending, with the error that kept them and
        the retry reason (meaningful only when events are pending)."""
        started = self._clock.monotonic()
        try:
            response = self._output.send(events)
        except OutputError as error:
            return events, error, _error_reason(error)
        finally:
            self._stats.request(self._clock.monotonic() - started, len(events), sum(map(len, map(_DATA, events))),
                                own_documents(events))
        decision = classify(response, len(events), [event.doc_id for event in events])
        if decision.kind == "ack":
            self._settle(events, [], [])
            return [], None, ""
        if decision.kind == "retry":
            return (events, TransientOutputError(f"the request must be sent again: {decision.reason}",
                                                 response.status), _status_reason(response.status))
        if decision.kind == "auth":
            return (events, AuthError(f"Elasticsearch refused the credentials: {decision.reason}", response.status),
                    "auth")
        if decision.kind == "split":
            if len(events) == 1:
                reason = too_large_reason(events[0].data, events[0].doc_id, events[0].target) + \
                    ", or lower --max-line-bytes"
                verdict = ItemVerdict(0, Action.REJECT, 413, "request_too_large", reason)
                self._settle([], [], [(events[0], verdict)])
                return [], None, ""
            half = len(events) // 2
            first, first_error, first_reason = self._attempt(events[:half])
            second, second_error, second_reason = self._attempt(events[half:])
            return first + second, first_error or second_error, first_reason if first else second_reason
        if decision.kind == "reject":
            rejected = [(event, ItemVerdict(i, Action.REJECT, response.status, "request_rejected",
                                            decision.reason)) for i, event in enumerate(events)]
            self._settle([], [], rejected)
            return [], None, ""
        stored, duplicates, rejected, retry = [], [], [], []
        first_retry: ItemVerdict | None = None
        for verdict in decision.items:
            event = events[verdict.position]
            if verdict.action is Action.ACK:
                stored.append(event)
            elif verdict.action is Action.DUPLICATE:
                duplicates.append(event)
            elif verdict.action is Action.REJECT:
                rejected.append((event, verdict))
            else:
                retry.append(event)
                if first_retry is None or (refused_privilege(verdict) and not refused_privilege(first_retry)):
                    first_retry = verdict
        self._settle(stored, duplicates, rejected)
        if first_retry is None:
            return [], None, ""
        why = f"{len(retry)} of the documents must be retried; the first: {retry_reason(first_retry)}"
        if refused_privilege(first_retry):
            return (retry, AuthError(f"Elasticsearch refused the documents for want of a privilege: {why}",
                                     first_retry.status), "auth")
        # (A 403 item that is not a missing privilege is a cluster block: not "auth".)
        reason = "other" if first_retry.status == 403 else _status_reason(first_retry.status)
        return (retry, _ItemsToRetry(why, first_retry.status), reason)

    def _settle(self, stored: list[Event], duplicates: list[Event],
                rejected: list[tuple[Event, ItemVerdict]]) -> None:
        self._stats.add("events_acked", len(stored), own_documents(stored)[0])
        if duplicates:
            self._stats.add("events_duplicate", len(duplicates), own_documents(duplicates)[0])
        if stored or duplicates:
            # First, and whatever happens to the letters: these are stored.
            self._acks.acknowledge(stored + duplicates)
            self._stats.acknowledged(self._clock.time())
        if not rejected:
            return
        # Written (and fsynced) before the ack, so the offset never advances
        # past a document that exists nowhere.
        store = self._write_letters(rejected)
        first = rejected[0][1]
        # Named: the store that took them (the index, or the file it fell back to).
        where = {"index": self._dead.index_name} if store == "index" else {"path": self._dead.path}
        log.error(f"documents rejected, written to the dead-letter {store}", count=len(rejected), **where,
                  status=first.status, error_type=first.error_type, reason=first.reason)
        self._stats.add("events_rejected", len(rejected), own_documents([event for event, _ in rejected])[0])
        self._acks.acknowledge([event for event, _ in rejected])
        self._stats.acknowledged(self._clock.time())

    def _write_letters(self, rejected: list[tuple[Event, ItemVerdict]]) -> str:
        """Write the letters, waiting (backoff, interruptible) while the dead
        letters cannot take them; LettersNotWritten if shutdown comes first.
        Returns the store that took them: "index" or "file"."""
        delay = LETTERS_RETRY_FIRST
        while True:
            try:
                store = self._dead.write(rejected, self._clock.time())
            except StateError as error:
                self._letters_failed(error, len(rejected))
                if self._clock.wait(self._abort, delay):
                    raise LettersNotWritten(f"shutting down while the dead letters could not be written; "
                                            f"{len(rejected)} rejected documents stay unacknowledged: "
                                            f"{error}") from error
                delay = min(delay * 2, LETTERS_RETRY_MAX)
                continue
            self._letters_written()
            return store

    def _letters_failed(self, error: StateError, count: int) -> None:
        self._stats.error(str(error))
        now = self._clock.monotonic()
        with self._letters_lock:
            if self._letters_failing_since is None:
                self._letters_failing_since = now
            elif now - self._letters_logged < LETTERS_LOG_INTERVAL:
                return
            self._letters_logged = now
            failing_for = now - self._letters_failing_since
        log.error("cannot write the dead letters; the rejected documents stay unacknowledged (their "
                  "file's offset waits) and writing is retried until it works", path=self._dead.path,
                  documents=count, failing_for=f"{failing_for:.0f}s", error=str(error))

    def _letters_written(self) -> None:
        with self._letters_lock:
            since, self._letters_failing_since = self._letters_failing_since, None
        if since is not None:
            log.warning("the dead letters can be written again", path=self._dead.path,
                        failed_for=f"{self._clock.monotonic() - since:.0f}s")


__all__ = ["LettersNotWritten", "OutputError", "Sender"]
