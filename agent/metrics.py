"""Self-monitoring: Prometheus ``/metrics`` and ``/health`` over HTTP.

``--metrics-addr HOST:PORT`` (default ``127.0.0.1:9464``, ``off`` disables)
serves, from a daemon thread, while ``modelscribe run`` runs as a daemon
(``--once`` never serves: it ends before a scrape could see it; its summary
line and exit code report the run):

- ``GET /metrics``: the Prometheus text format, through ``prometheus-client``;
- ``GET /health``: ``200 {"status": "ok", ...}`` while the agent ships,
  ``503`` with ``status`` ``failed`` or ``blocked`` and a ``reason`` otherwise
  (the rule is ``check_health``'s docstring).

Guarantees:

- Nothing is counted per line for this module. ``AgentCollector`` reads
  the agent's own counters (``agent.stats.Stats``, the reader's line and
  event counts, the spool, the registry) when Prometheus scrapes; the
  sender records a request's latency, size and retry reason once per bulk
  request, and the reader adds up the document bytes of each group it hands
  over (one C-level sum per group, about 50 ns an event). A scrape costs a
  few locks and one ``stat`` per tracked file.
- Labels are low-cardinality: ``reason`` and ``kind`` are fixed sets
  (``RETRY_REASONS``, ``ERROR_KINDS``), ``stage`` is one of ``STAGES``, and
  per-file lag is capped: the ``TOP_FILES`` (50) files with the largest
  lag get their own ``path`` series, the rest are summed into
  ``path="other"`` (always present, 0 when there is no rest).
- Every labelled counter is exported with all its label values from the
  start (at 0), so ``rate()`` and dashboards see a series before the first
  event of that kind.
- A port already taken, or an address that cannot be bound, stops the agent
  at start-up with a ``ConfigError`` (exit code 2) naming the setting where
  its value came from: ``--metrics-addr``, ``MODELSCRIBE_METRICS_ADDR`` or
  ``FILE: metrics_addr``.
- No client can hold more than a bounded share of the agent's threads and
  descriptors, nor keep a scrape or the agent waiting: at most 64
  connections, 10 s for a request's line and headers (``agent.metrics_http``).
- No secret is ever exported: label values are file paths, fixed reasons,
  stage names and the version.
- The counters of events (emitted, sent, acknowledged, duplicate, rejected,
  given up, retried, dropped, and the bytes emitted and sent) are about the
  user's events: the agent's own metric documents (``agent.self_metrics``)
  are left out of them and counted apart, in
  ``modelscribe_self_metrics_documents_total{counter}`` (bytes: not at all).
  Model health's documents skip the queue: they count in sent and
  acknowledged only.

The metrics (``METRICS``; counters end in ``_total``; the Grafana dashboard
``packaging/grafana/modelscribe.json`` is generated from these names by
``scripts/gen_grafana.py``)::

    modelscribe_read_lines_total                     lines read from the files
    modelscribe_emitted_events_total                 events parsed and handed to the queue
    modelscribe_emitted_bytes_total                  their document bytes (serialised JSON)
    modelscribe_sent_events_total                    events in bulk requests (re-sends included)
    modelscribe_sent_bytes_total                     their document bytes
    modelscribe_acknowledged_events_total            events the output stored
    modelscribe_duplicate_events_total               events the output already had (409)
    modelscribe_rejected_events_total                events written to the dead letters
                                                     (rejected, or given up after --max-retries)
    modelscribe_given_up_events_total                events given up after --max-retries
    modelscribe_retried_events_total                 events in requests that left them to retry
    modelscribe_retried_requests_total{reason}       requests that left events to retry:
                                                     429, 5xx, connection, auth, other
    modelscribe_dropped_events_total                 events dropped (--when-full drop-newest)
    modelscribe_self_metrics_documents_total{counter}  the agent's own metric documents, by the
                                                     event counter above that leaves them out
    modelscribe_lost_bytes_total                     unread bytes of deleted files released
                                                     while the output was blocked
    modelscribe_failed_batches_total                 batches given up without acknowledgement
    modelscribe_caught_errors_total{kind}            errors a stage logged and survived:
                                                     detector, watcher, metrics (a failed scrape: 500)
    modelscribe_stage_deaths_total{stage}            stages that died (the agent stops)
    modelscribe_bulk_request_duration_seconds        histogram: one observation per bulk request
    modelscribe_in_flight_events                     events sent or being sent, not yet acknowledged
    modelscribe_spool_used_bytes                     bytes the spool (or memory queue) holds
    modelscribe_spool_max_bytes                      --spool-max-bytes (disk spool only)
    modelscribe_spool_records                        events queued and not yet acknowledged
    modelscribe_handoff_events                       events read and made, not in the queue yet (at
                                                     most two groups: what a full queue holds back)
    modelscribe_spool_max_records                    --queue-events (memory queue only)
    modelscribe_spool_oldest_unacked_age_seconds     age of the oldest of them (0: none)
    modelscribe_file_lag_bytes{path}                 file size minus committed offset (top N + other)
    modelscribe_open_files                           files the tailer holds open
    modelscribe_waiting_files                        files matched but waiting for an open-file slot
                                                     (not in file_lag_bytes: never read, no entry)
    modelscribe_last_acknowledgement_timestamp_seconds  when the output last settled events
                                                     (absent until it first did)
    modelscribe_start_time_seconds                   when the agent started
    modelscribe_healthy                              1 while /health answers 200, else 0
    modelscribe_build_info{version,python}           always 1
    process_*                                        prometheus-client's ProcessCollector: CPU
                                                     seconds, resident memory, open fds, ...
"""

from __future__ import annotations

import errno
import os
import platform
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import orjson
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily, Metric as Family)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

from agent import __version__
from agent.config.options import BY_NAME
from agent.errors import ConfigError
from agent.metrics_http import MAX_CONNECTIONS, REQUEST_TIMEOUT, BoundedHTTPServer
from agent.selflog import get_logger
from agent.stats import ERROR_KINDS, Stats

log = get_logger("metrics")

TOP_FILES = 50
def _label(path: str) -> str:
    """A path as a label value: the exposition is UTF-8, and a file name need
    not be; its undecodable bytes show as ``\\xNN`` (as in ``status``)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


OTHER_FILES = "other"  # the path label of the files past the top N (paths are absolute: no clash)
# Stage names as the supervisor reports deaths (output workers all count as "output").
STAGES = ("reader", "spool-writer", "batcher", "output")


@dataclass(frozen=True)
class Metric:
    """One exported metric: its name as Prometheus stores it, its type, help and labels."""

    name: str
    kind: str  # counter, gauge, histogram or info
    help: str
    labels: tuple[str, ...] = ()


# The rule of the counters of events (agent.self_metrics: the documents never count themselves).
_NOT_OWN = " The agent's own metric documents are not counted: see modelscribe_self_metrics_documents_total."
_HEALTH_TOO = " Model health's documents count here like log events."

# Counters read from ``Stats.snapshot()`` (field -> metric).
_SNAPSHOT_COUNTERS = {
    "lines_read": Metric("modelscribe_read_lines_total", "counter", "Lines read from the files."),
    "events_emitted": Metric("modelscribe_emitted_events_total", "counter",
                             "Events parsed, enriched and handed to the queue (model health's documents "
                             "skip the queue: they count in sent and acknowledged only)." + _NOT_OWN),
    "bytes_emitted": Metric("modelscribe_emitted_bytes_total", "counter",
                            "Document bytes (serialised JSON) of the events handed to the queue." + _NOT_OWN),
    "events_sent": Metric("modelscribe_sent_events_total", "counter",
                          "Events in bulk requests to the output, re-sends included." + _HEALTH_TOO + _NOT_OWN),
    "bytes_sent": Metric("modelscribe_sent_bytes_total", "counter", "Document bytes of those events." + _NOT_OWN),
    "events_acked": Metric("modelscribe_acknowledged_events_total", "counter",
                           "Events the output stored." + _HEALTH_TOO + _NOT_OWN),
    "events_duplicate": Metric("modelscribe_duplicate_events_total", "counter",
                               "Events the output already had (409 on create): acknowledged, not stored twice."
                               + _NOT_OWN),
    "events_rejected": Metric("modelscribe_rejected_events_total", "counter",
                              "Events written to the dead letters: rejected by the output, or given up "
                              "after --max-retries." + _NOT_OWN),
    "events_given_up": Metric("modelscribe_given_up_events_total", "counter",
                              "Events given up after --max-retries (also counted as rejected)." + _NOT_OWN),
    "events_retried": Metric("modelscribe_retried_events_total", "counter",
                             "Events in requests that left them to be retried." + _NOT_OWN),
    "events_dropped": Metric("modelscribe_dropped_events_total", "counter",
                             "Events dropped because the spool was full (--when-full drop-newest)." + _NOT_OWN),
    "lost_bytes": Metric("modelscribe_lost_bytes_total", "counter",
                         "Unread bytes of deleted files released while the output was blocked."),
    "batches_failed": Metric("modelscribe_failed_batches_total", "counter",
                             "Batches given up without acknowledgement (read again after a restart)."),
}
# The agent's own metric documents, apart: the Stats field of each event counter -> its ``counter`` label.
OWN_COUNTERS = {"events_emitted": "emitted", "events_sent": "sent", "events_acked": "acknowledged",
                "events_duplicate": "duplicate", "events_rejected": "rejected", "events_given_up": "given_up",
                "events_retried": "retried", "events_dropped": "dropped"}

METRICS: dict[str, Metric] = {m.name: m for m in (
    *_SNAPSHOT_COUNTERS.values(),
    Metric("modelscribe_retried_requests_total", "counter", "Bulk requests that left events to be retried, "
           "by reason: 429, 5xx, connection (timeout, refused, transport), auth (401/403), other.",
           ("reason",)),
    Metric("modelscribe_self_metrics_documents_total", "counter", "The agent's own metric documents "
           "(event.dataset modelscribe.agent), by the counter of events that leaves them out: emitted, sent, "
           "acknowledged, duplicate, rejected, given_up, retried, dropped.", ("counter",)),
    Metric("modelscribe_caught_errors_total", "counter", "Errors a stage logged and survived, by kind.",
           ("kind",)),
    Metric("modelscribe_stage_deaths_total", "counter", "Stages that died; the agent stops and exits 1.",
           ("stage",)),
    Metric("modelscribe_bulk_request_duration_seconds", "histogram",
           "Duration of each bulk request to the output, failed ones included."),
    Metric("modelscribe_in_flight_events", "gauge", "Events sent or being sent, not yet acknowledged."),
    Metric("modelscribe_spool_used_bytes", "gauge", "Bytes the spool (or the memory queue) holds."),
    Metric("modelscribe_spool_max_bytes", "gauge", "--spool-max-bytes (disk spool only)."),
    Metric("modelscribe_spool_records", "gauge", "Events queued and not yet acknowledged."),
    Metric("modelscribe_handoff_events", "gauge",
           "Events read and made, not in the queue yet (at most two groups: what a full queue holds back)."),
    Metric("modelscribe_spool_max_records", "gauge", "--queue-events (memory queue only)."),
    Metric("modelscribe_spool_oldest_unacked_age_seconds", "gauge",
           "Age of the oldest event not yet acknowledged (0: none)."),
    Metric("modelscribe_file_lag_bytes", "gauge", f"Bytes of a file not yet acknowledged (size minus "
           f"committed offset): the {TOP_FILES} largest by path, the rest summed as path=\"other\".",
           ("path",)),
    Metric("modelscribe_open_files", "gauge", "Files the tailer holds open."),
    Metric("modelscribe_waiting_files", "gauge", "Files the globs match that wait for an open-file slot "
           "(beyond the descriptor limit less 256): none of their lines is read, nor in file_lag_bytes."),
    Metric("modelscribe_last_acknowledgement_timestamp_seconds", "gauge",
           "When the output last settled events (Unix time; absent until it first did)."),
    Metric("modelscribe_start_time_seconds", "gauge", "When the agent started (Unix time)."),
    Metric("modelscribe_healthy", "gauge", "1 while /health answers 200, else 0."),
    Metric("modelscribe_build_info", "info", "The agent's version, and the Python running it.",
           ("version", "python")),
)}


@dataclass(frozen=True)
class SpoolUse:
    used_bytes: int
    records: int
    max_bytes: int | None          # disk spool
    max_records: int | None        # memory queue
    oldest_unacked_age: float | None


def spool_use(spool: Any) -> SpoolUse:
    """What a DiskQueue or MemoryQueue holds (their shared reading interface)."""
    max_bytes = getattr(spool, "max_bytes", None)
    max_events = getattr(spool, "max_events", None)
    return SpoolUse(spool.used_bytes(), spool.pending(), max_bytes() if max_bytes else None,
                    max_events() if max_events else None, spool.oldest_unacked_age())


def file_lags(entries: Iterable[Any]) -> list[tuple[str, int]]:
    """(path, bytes not yet acknowledged) of each file the registry tracks and
    that is still at its path: size minus the committed offset of its newest
    content (a truncated file's older generations are ignored)."""
    newest: dict[str, Any] = {}
    for entry in entries:
        if entry.gone:
            continue
        known = newest.get(entry.path)
        if known is None or (entry.generation, entry.updated) > (known.generation, known.updated):
            newest[entry.path] = entry
    lags = []
    for path, entry in newest.items():
        try:
            info = os.stat(path)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (entry.dev, entry.inode):
            lags.append((path, max(0, info.st_size - entry.offset)))
    return lags


def capped(lags: Sequence[tuple[str, int]], top: int) -> list[tuple[str, int]]:
    """The ``top`` largest lags by path, then ("other", the sum of the rest)."""
    ordered = sorted(lags, key=lambda item: (-item[1], item[0]))
    return ordered[:top] + [(OTHER_FILES, sum(lag for _, lag in ordered[top:]))]


@dataclass(frozen=True)
class AgentView:
    """What the collector and /health read from a running agent; each callable
    is cheap and safe to call from the HTTP thread."""

    stats: Stats
    live: Callable[[], Mapping[str, int]]   # reader counters newer than the snapshot (lines_read, ...)
    spool: Callable[[], SpoolUse]
    files: Callable[[], Sequence[tuple[str, int]]]
    open_files: Callable[[], int]
    in_flight: Callable[[], int]
    deaths: Callable[[], Sequence[tuple[str, BaseException]]]
    started: float
    blocked_after: float
    top_files: int = TOP_FILES
    time: Callable[[], float] = time.time
    waiting_files: Callable[[], int] = lambda: 0
    handoff: Callable[[], int] = lambda: 0  # events read, not in the queue yet (Handoff.events)
    # The agent's own metric documents the stages counted apart (Stats field -> count: OWN_COUNTERS).
    own: Callable[[], Mapping[str, int]] = dict


@dataclass(frozen=True)
class Health:
    status: str           # ok, blocked or failed
    reason: str | None
    details: Mapping[str, Any]

    @property
    def code(self) -> int:
        return 200 if self.status == "ok" else 503

    def body(self) -> bytes:
        return orjson.dumps({"status": self.status, "reason": self.reason, **self.details})


def check_health(view: AgentView) -> Health:
    """The /health rule.

    - ``failed`` (503): a stage died (``Supervisor.deaths``); the agent is stopping.
    - ``blocked`` (503): events are waiting for the output (the spool or
      memory queue holds events not yet acknowledged), the oldest of them has
      waited at least ``--health-blocked-after``, and the output settled
      nothing (stored, duplicate or dead-lettered) for at least as long,
      counting from the agent's start if it never did. A slow output that
      still acknowledges, and an idle agent with nothing to send, are ``ok``.
    - ``ok`` (200) otherwise.
    """
    now = view.time()
    spool = view.spool()
    last_ack = view.stats.last_ack_time
    quiet = now - max(last_ack or view.started, view.started)
    age = spool.oldest_unacked_age or 0.0
    details = {"pending_events": spool.records, "oldest_unacked_age_seconds": round(age, 3),
               "seconds_since_acknowledgement": round(quiet, 3),
               "blocked_after_seconds": view.blocked_after,
               "last_acknowledgement": last_ack}
    deaths = list(view.deaths())
    if deaths:
        stages = ", ".join(f"{stage} ({type(error).__name__})" for stage, error in deaths)
        return Health("failed", f"a stage died: {stages}; the agent is stopping",
                      {**details, "dead_stages": [stage for stage, _ in deaths]})
    if spool.records and age >= view.blocked_after and quiet >= view.blocked_after:
        return Health("blocked", f"{spool.records} events wait for the output, the oldest for {age:.0f}s, "
                      f"and nothing was acknowledged for {quiet:.0f}s (--health-blocked-after "
                      f"{view.blocked_after:g}s)", details)
    return Health("ok", None, details)


class AgentCollector:
    """A prometheus-client collector that reads the agent's counters at scrape time."""

    def __init__(self, view: AgentView) -> None:
        self._view = view

    def collect(self) -> Iterator[Family]:
        view = self._view
        counts = {**vars(view.stats.snapshot()), **view.live()}
        for field, metric in _SNAPSHOT_COUNTERS.items():
            yield CounterMetricFamily(_stem(metric), metric.help, value=counts[field])
        yield _labelled("modelscribe_retried_requests_total", view.stats.retries())
        own = view.own()
        yield _labelled("modelscribe_self_metrics_documents_total",
                        {label: own.get(field, 0) for field, label in OWN_COUNTERS.items()})
        yield _labelled("modelscribe_caught_errors_total",
                        {kind: counts[f"{kind}_errors"] for kind in ERROR_KINDS})
        deaths = dict.fromkeys(STAGES, 0)
        for stage, _ in view.deaths():
            stage = "output" if stage.startswith("output") else stage
            deaths[stage] = deaths.get(stage, 0) + 1
        yield _labelled("modelscribe_stage_deaths_total", deaths)
        buckets, total = view.stats.latency()
        yield HistogramMetricFamily("modelscribe_bulk_request_duration_seconds",
                                    METRICS["modelscribe_bulk_request_duration_seconds"].help,
                                    buckets=[(floatToGoString(bound), count) for bound, count in buckets],
                                    sum_value=total)
        spool = view.spool()
        yield _gauge("modelscribe_in_flight_events", view.in_flight())
        yield _gauge("modelscribe_spool_used_bytes", spool.used_bytes)
        if spool.max_bytes is not None:
            yield _gauge("modelscribe_spool_max_bytes", spool.max_bytes)
        yield _gauge("modelscribe_spool_records", spool.records)
        yield _gauge("modelscribe_handoff_events", view.handoff())
        if spool.max_records is not None:
            yield _gauge("modelscribe_spool_max_records", spool.max_records)
        yield _gauge("modelscribe_spool_oldest_unacked_age_seconds", spool.oldest_unacked_age or 0.0)
        lag = GaugeMetricFamily("modelscribe_file_lag_bytes", METRICS["modelscribe_file_lag_bytes"].help,
                                labels=["path"])
        for path, value in capped(view.files(), view.top_files):
            lag.add_metric([_label(path)], value)
        yield lag
        yield _gauge("modelscribe_open_files", view.open_files())
        yield _gauge("modelscribe_waiting_files", view.waiting_files())
        if view.stats.last_ack_time is not None:
            yield _gauge("modelscribe_last_acknowledgement_timestamp_seconds", view.stats.last_ack_time)
        yield _gauge("modelscribe_start_time_seconds", view.started)
        yield _gauge("modelscribe_healthy", 1 if check_health(view).code == 200 else 0)
        yield InfoMetricFamily("modelscribe_build", METRICS["modelscribe_build_info"].help,
                               value={"version": __version__, "python": platform.python_version()})


def _stem(metric: Metric) -> str:
    """prometheus-client appends ``_total`` to a counter's name itself."""
    return metric.name[:-len("_total")] if metric.kind == "counter" else metric.name


def _labelled(name: str, values: Mapping[str, int]) -> CounterMetricFamily:
    metric = METRICS[name]
    family = CounterMetricFamily(_stem(metric), metric.help, labels=list(metric.labels))
    for label, value in values.items():
        family.add_metric([label], value)
    return family


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name].help, value=value)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (as ``values.listen_address`` accepts it) -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def origin_label(origin: str | None, name: str = "metrics_addr") -> str:
    """How messages name a setting, from its ``Config.origins`` entry, as
    ``agent.config.resolve``'s messages do: ``MODELSCRIBE_METRICS_ADDR``,
    ``FILE: metrics_addr``, else the flag ``--metrics-addr``."""
    kind, _, where = (origin or "").partition(" ")
    if kind == "env":
        return where
    if kind == "file":
        return f"{where}: {name}"
    return BY_NAME[name].flag


class MetricsServer:
    """``/metrics`` and ``/health`` on ``address`` from a daemon thread
    (``agent.metrics_http``: its connection limit and timeouts).

    ``origin``: the ``Config.origins`` entry of ``metrics_addr``, so that an
    address that cannot be bound is named where the user wrote it."""

    def __init__(self, address: str, view: AgentView, origin: str | None = None) -> None:
        self.address = address
        self._view = view
        # How a ConfigError names the address: "--metrics-addr 127.0.0.1:9464 (the default)".
        self._named = f"{origin_label(origin)} {address}" + (" (the default)" if origin == "default" else "")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AgentCollector(view))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, resident memory, open fds
        self._server: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self, max_connections: int = MAX_CONNECTIONS, request_timeout: float = REQUEST_TIMEOUT) -> None:
        """Bind and serve; a ConfigError naming the setting if the address cannot be bound."""
        host, port = split_address(self.address)
        try:
            self._server = BoundedHTTPServer((host, port), self._route, max_connections, request_timeout)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                why = "the port is already in use (another modelscribe or exporter?): choose a free port, or off"
            else:
                why = f"cannot listen there: {error.strerror or error}"
            raise ConfigError(f"{self._named}: {why}") from error
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="metrics", daemon=True)
        self._thread.start()
        log.info("serving metrics and health", address=self.address, port=self.port)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/health":
            health = check_health(self._view)
            return health.code, "application/json", health.body()
        if path == "/":
            return 200, "text/plain; charset=utf-8", b"modelscribe: /metrics (Prometheus), /health\n"
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n"

    def stop(self) -> None:
        """Stop accepting, then end the live connections: at most a poll interval."""
        if self._server is not None:
            self._server.shutdown()
            self._server.shut_all()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
