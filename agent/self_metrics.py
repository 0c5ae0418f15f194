"""The agent's own metric documents: one per interval, shipped like any event.

Prometheus (``agent.metrics``) serves the same figures for scraping; these
documents put them next to the data in Elasticsearch, where the *Agent*
dashboard and the "agent stalled" / "dead letters growing" rules read them.

Every ``--self-metrics-interval`` seconds (default 60; ``off`` disables;
``auto``, the default, turns them on only for the Elasticsearch output
writing to data streams) the reader thread's tick asks ``SelfMetrics.due``,
which returns one ``Event`` for the data stream ``metrics-modelscribe-<namespace>``
(the namespace of the logs data stream; every metric document of the agent
goes there, told apart by ``event.dataset``, so the one ``metrics-modelscribe``
index template maps them all) with::

    @timestamp                                end of the interval
    event.kind: metric, event.dataset: modelscribe.agent
    host.name, agent.*                        as on every document
    modelscribe.agent.interval_seconds        length of the interval
    modelscribe.agent.lines_read              \\
    modelscribe.agent.events_acknowledged      |  counted during the interval
    modelscribe.agent.events_retried           |  (deltas: a sum over time and
    modelscribe.agent.dead_letters             |  over agents is meaningful)
    modelscribe.agent.events_given_up         /
    modelscribe.agent.spool_bytes             \\
    modelscribe.agent.spool_records            |  values at the end of the
    modelscribe.agent.file_lag_bytes           |  interval (gauges)
    modelscribe.agent.open_files               |
    modelscribe.agent.last_ack_age_seconds    /   (absent before the first ack)

Guarantees:

- The documents take the agent's one delivery path (hand-off, spool, batcher,
  acknowledgement), so they are retried, spooled and dead-lettered like log
  events. Their source key (``self-metrics:<agent id>``) is unknown to the
  registry, so acknowledging them commits nothing.
- The figures are about the user's events, so the documents never count
  themselves: an idle agent reports ``events_acknowledged: 0``. The rule,
  for every stage that counts events (the sink's emitted, the sender's
  sent, acknowledged, duplicate, rejected, retried and given up, the
  hand-off's dropped; events and bytes): it MUST leave out the documents
  ``own_documents`` finds (their source key starts with ``KEY_PREFIX``) and
  count them apart, as ``agent.metrics`` exports them
  (``modelscribe_self_metrics_documents_total{counter}``). Model health's
  documents are not the agent's figures but the user's models': they count
  in sent and acknowledged like log events.
- Their ``_id`` is derived from the agent id and the interval's number, so a
  document re-sent after a crash is a 409, never a second point.
- Reading the figures costs a few locks and one ``stat`` per tracked file,
  once per interval: nothing is counted per line for this module.
- A restart starts the deltas again from zero: the interval during which the
  agent was down has no document (a gap, never a doubled count).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Sequence

import orjson

from agent import AGENT_NAME, __version__
from agent.enrich import document_id, format_timestamp
from agent.events import Event

DATASET = "modelscribe.agent"
KEY_PREFIX = "self-metrics:"  # the source key of the agent's metric documents: this, then the agent id
_KEYS = operator.attrgetter("source_key")
_COUNTERS = ("lines_read", "events_acknowledged", "events_retried", "dead_letters", "events_given_up")


@dataclass(frozen=True, slots=True)
class Reading:
    """The agent's figures at one moment: cumulative counters, then gauges."""

    lines_read: int
    events_acknowledged: int
    events_retried: int
    dead_letters: int
    events_given_up: int
    spool_bytes: int
    spool_records: int
    file_lag_bytes: int
    open_files: int
    last_ack_time: float | None


def own_documents(events: Sequence[Event]) -> tuple[int, int]:
    """(how many, their document bytes) of ``events`` are the agent's own
    metric documents: what the counters of the user's events leave out.

    About 40 ns an event when there is none (the usual case): a batch holds
    runs of a few files' events, so the distinct source keys are few and
    only they are looked at."""
    if not any(key.startswith(KEY_PREFIX) for key in set(map(_KEYS, events))):
        return 0, 0
    own = [event for event in events if event.source_key.startswith(KEY_PREFIX)]
    return len(own), sum(len(event.data) for event in own)


def target_for(data_stream: str) -> str:
    """``logs-modelscribe-NS`` -> ``metrics-modelscribe-NS``; any other name -> ``metrics-modelscribe-default``."""
    prefix = "logs-modelscribe-"
    namespace = data_stream[len(prefix):] if data_stream.startswith(prefix) else "default"
    return f"metrics-modelscribe-{namespace or 'default'}"


class SelfMetrics:
    """Builds the periodic document; called from the reader thread only."""

    def __init__(self, interval: float, read: Callable[[], Reading], host_name: str, agent_identifier: str,
                 target: str, now: float) -> None:
        self._interval = interval
        self._read = read
        self._key = f"{KEY_PREFIX}{agent_identifier}"
        self._base = {"host": {"name": host_name},
                      "agent": {"name": AGENT_NAME, "type": AGENT_NAME, "version": __version__,
                                "id": agent_identifier},
                      "event": {"kind": "metric", "dataset": DATASET}}
        self._target = target
        self._last = read()
        self._since = now
        # The first document is due at the end of the interval the agent starts in.
        self._next_slot = int(now // interval) + 1

    def due(self, now: float) -> Event | None:
        """The document for the interval that ended, if one did since the last call."""
        slot = int(now // self._interval)
        if slot < self._next_slot:
            return None
        reading = self._read()
        last, self._last = self._last, reading
        figures: dict[str, float | int] = {"interval_seconds": round(now - self._since, 3)}
        for name in _COUNTERS:
            figures[name] = max(0, getattr(reading, name) - getattr(last, name))
        figures.update(spool_bytes=reading.spool_bytes, spool_records=reading.spool_records,
                       file_lag_bytes=reading.file_lag_bytes, open_files=reading.open_files)
        if reading.last_ack_time is not None:
            figures["last_ack_age_seconds"] = round(max(0.0, now - reading.last_ack_time), 3)
        doc = {"@timestamp": format_timestamp(now), **self._base, "modelscribe": {"agent": figures}}
        self._since = now
        self._next_slot = slot + 1
        return Event(self._key, slot, slot + 1, document_id(self._key, slot), orjson.dumps(doc), self._target)
