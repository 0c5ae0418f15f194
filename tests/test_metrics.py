"""agent.metrics: the collector's metric set and values, /health's rule (200,
503 blocked, 503 failed) over real HTTP, the per-file lag cap, the listen
address setting, and what the sender records per request. The end-to-end
test with a real Prometheus is tests/e2e/test_prometheus.py."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.acks import AckTracker
from agent.config.resolve import resolve
from agent.errors import ConfigError, TransientOutputError
from agent.events import Event
from agent.metrics import (METRICS, OTHER_FILES, AgentCollector, AgentView, MetricsServer, SpoolUse, capped,
                           check_health, file_lags, spool_use)
from agent.outputs.base import Response, all_created
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.sender import Sender
from agent.pipeline import Pipeline
from agent.registry import Entry, Registry
from agent.stats import LATENCY_BUCKETS, RETRY_REASONS, Stats

NOW = 1_800_000_000.0


def _view(stats: Stats | None = None, *, records: int = 0, age: float | None = None, deaths=(),
          started: float = NOW - 600, now: float = NOW, blocked_after: float = 60.0,
          files=(("/var/log/a.log", 10),), top_files: int = 50, max_records: int | None = None) -> AgentView:
    stats = stats or Stats()
    spool = SpoolUse(used_bytes=4096, records=records, max_bytes=None if max_records else 1 << 30,
                     max_records=max_records, oldest_unacked_age=age)
    return AgentView(stats=stats, live=lambda: {"lines_read": 7, "events_emitted": 6},
                     spool=lambda: spool, files=lambda: list(files), open_files=lambda: 3,
                     in_flight=lambda: 2, deaths=lambda: list(deaths), started=started,
                     blocked_after=blocked_after, top_files=top_files, time=lambda: now)


def _scrape(view: AgentView) -> dict[str, list]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(view))
    text = generate_latest(registry).decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _base_name(sample_name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix) and sample_name[:-len(suffix)] in METRICS:
            return sample_name[:-len(suffix)]
    return sample_name


# -- the collector -------------------------------------------------------------

def test_every_catalogued_metric_is_exported_and_nothing_else():
    stats = Stats()
    stats.acknowledged(NOW - 5)
    samples = _scrape(_view(stats))
    exported = {_base_name(name) for name in samples}
    # The memory queue's limit is exported instead of the disk spool's: both are catalogued.
    assert exported | {"modelscribe_spool_max_records"} == set(METRICS)
    memory = {_base_name(name) for name in _scrape(_view(stats, max_records=8192))}
    assert "modelscribe_spool_max_records" in memory and "modelscribe_spool_max_bytes" not in memory
    for name in exported:
        assert name.startswith("modelscribe_")
        metric = METRICS[name]
        assert (metric.kind == "counter") == name.endswith("_total"), name


def test_counter_values_come_from_stats_and_the_live_reader_counts():
    stats = Stats()
    stats.add("events_acked", 5)
    stats.add("events_duplicate", 1)
    stats.add("events_rejected", 2)
    stats.set("lines_read", 3)  # older than the live count: the live one wins
    stats.request(0.02, events=8, size=800)
    stats.request(3.0, events=2, size=200)
    stats.retried("429")
    stats.retried("429")
    stats.retried("connection")
    samples = _scrape(_view(stats))
    value = lambda name, **labels: next(v for l, v in samples[name] if l == labels)  # noqa: E731
    assert value("modelscribe_read_lines_total") == 7
    assert value("modelscribe_emitted_events_total") == 6
    assert value("modelscribe_acknowledged_events_total") == 5
    assert value("modelscribe_duplicate_events_total") == 1
    assert value("modelscribe_rejected_events_total") == 2
    assert value("modelscribe_sent_events_total") == 10
    assert value("modelscribe_sent_bytes_total") == 1000
    assert {l["reason"]: v for l, v in samples["modelscribe_retried_requests_total"]} == \
        {"429": 2, "5xx": 0, "connection": 1, "auth": 0, "other": 0}
    assert {l["kind"] for l, _ in samples["modelscribe_caught_errors_total"]} == {"detector", "watcher", "metrics"}
    assert {l["stage"] for l, _ in samples["modelscribe_stage_deaths_total"]} == \
        {"reader", "spool-writer", "batcher", "output"}
    buckets = {l["le"]: v for l, v in samples["modelscribe_bulk_request_duration_seconds_bucket"]}
    assert buckets["0.01"] == 0 and buckets["0.025"] == 1 and buckets["2.5"] == 1 and buckets["5.0"] == 2
    assert buckets["+Inf"] == 2 and len(buckets) == len(LATENCY_BUCKETS) + 1
    assert value("modelscribe_bulk_request_duration_seconds_count") == 2
    assert value("modelscribe_bulk_request_duration_seconds_sum") == pytest.approx(3.02)
    assert value("modelscribe_open_files") == 3
    assert value("modelscribe_waiting_files") == 0
    assert value("modelscribe_in_flight_events") == 2
    assert value("modelscribe_spool_used_bytes") == 4096
    assert value("modelscribe_file_lag_bytes", path="/var/log/a.log") == 10
    assert value("modelscribe_file_lag_bytes", path=OTHER_FILES) == 0
    assert value("modelscribe_healthy") == 1
    build = samples["modelscribe_build_info"]
    assert len(build) == 1 and build[0][1] == 1 and set(build[0][0]) == {"version", "python"}
    # Never acknowledged yet: no timestamp rather than a misleading 0.
    assert "modelscribe_last_acknowledgement_timestamp_seconds" not in samples


def test_the_agents_own_metric_documents_are_exported_apart_by_counter():
    view = _view()
    own = AgentView(**{**vars(view), "own": lambda: {"events_emitted": 4, "events_acked": 3, "bytes_sent": 900}})
    samples = _scrape(own)
    assert {l["counter"]: v for l, v in samples["modelscribe_self_metrics_documents_total"]} == {
        "emitted": 4, "sent": 0, "acknowledged": 3, "duplicate": 0, "rejected": 0, "given_up": 0, "retried": 0,
        "dropped": 0}
    assert "modelscribe_self_metrics_documents_total" in METRICS
    for name in ("emitted_events", "emitted_bytes", "sent_events", "sent_bytes", "acknowledged_events"):
        assert "own metric documents are not counted" in METRICS[f"modelscribe_{name}_total"].help, name


def test_stage_deaths_are_counted_by_stage_and_output_workers_share_one_label():
    deaths = [("reader", OSError("disk")), ("output", RuntimeError("bug")), ("output-1", RuntimeError("bug"))]
    samples = _scrape(_view(deaths=deaths))
    assert {l["stage"]: v for l, v in samples["modelscribe_stage_deaths_total"]} == \
        {"reader": 1, "spool-writer": 0, "batcher": 0, "output": 2}
    assert samples["modelscribe_healthy"][0][1] == 0


def test_file_lag_is_capped_to_the_top_files_plus_other():
    lags = [(f"/logs/{i:03}.log", i) for i in range(120)]
    top = capped(lags, 50)
    assert len(top) == 51
    assert top[0] == ("/logs/119.log", 119) and top[49] == ("/logs/070.log", 70)
    assert top[50] == (OTHER_FILES, sum(range(70)))
    samples = _scrape(_view(files=lags, top_files=5))
    assert len(samples["modelscribe_file_lag_bytes"]) == 6


def test_a_file_name_that_is_not_utf8_is_a_readable_label():
    """os.listdir gives such a name as surrogate-escaped text, which the
    exposition cannot encode: every scrape failed while one was tailed."""
    name = b"/logs/bad\xff.log".decode("utf-8", "surrogateescape")
    samples = _scrape(_view(files=[(name, 5), ("/logs/good.log", 3)]))
    paths = {labels["path"]: value for labels, value in samples["modelscribe_file_lag_bytes"]}
    assert paths == {"/logs/bad\\xff.log": 5, "/logs/good.log": 3, OTHER_FILES: 0}


def test_file_lags_read_real_files_against_the_registry(tmp_path):
    registry = Registry(tmp_path / "state")
    registry.load()
    grown, gone, replaced = tmp_path / "grown.log", tmp_path / "gone.log", tmp_path / "replaced.log"
    grown.write_bytes(b"x" * 100)
    replaced.write_bytes(b"y" * 50)
    for number, path in enumerate((grown, gone, replaced)):
        info = path.stat() if path.exists() else None
        registry.track(Entry(key=f"k{number}", path=str(path), dev=info.st_dev if info else 1,
                             inode=info.st_ino if info else 1, fp_len=1, fp_hash="h", generation=0,
                             offset=0, updated=0.0))
    registry.commit("k0", 40)
    # The same path now holds another file (another inode): no lag is claimed for it.
    replaced.rename(tmp_path / "replaced.log.1")  # the old inode lives on, so the new file gets another
    replaced.write_bytes(b"z" * 70)
    assert file_lags(registry.entries()) == [(str(grown), 60)]


# -- /health -------------------------------------------------------------------

def test_health_ok_while_acknowledgements_flow():
    stats = Stats()
    stats.acknowledged(NOW - 1)
    health = check_health(_view(stats, records=5000, age=300.0))  # a backlog, but it moves
    assert health.code == 200 and health.status == "ok" and health.reason is None


def test_health_ok_when_idle_with_nothing_waiting():
    stats = Stats()
    stats.acknowledged(NOW - 3600)
    assert check_health(_view(stats, records=0, age=None)).code == 200


def test_health_blocked_when_events_wait_and_nothing_is_acknowledged():
    stats = Stats()
    stats.acknowledged(NOW - 90)
    health = check_health(_view(stats, records=12, age=75.0))
    assert health.code == 503 and health.status == "blocked"
    assert "12 events wait" in health.reason and "nothing was acknowledged for 90s" in health.reason
    assert "--health-blocked-after 60s" in health.reason
    body = json.loads(health.body())
    assert body["status"] == "blocked" and body["pending_events"] == 12
    assert body["seconds_since_acknowledgement"] == 90


def test_health_not_blocked_before_the_threshold_since_start():
    # Records recovered from a previous run look old, but the agent just started.
    health = check_health(_view(records=12, age=5000.0, started=NOW - 10))
    assert health.code == 200
    assert check_health(_view(records=12, age=5000.0, started=NOW - 61)).status == "blocked"
    # A new event after a long idle spell is not "blocked" until it has waited itself.
    stats = Stats()
    stats.acknowledged(NOW - 3600)
    assert check_health(_view(stats, records=1, age=2.0)).code == 200


def test_health_failed_when_a_stage_died():
    health = check_health(_view(deaths=[("batcher", RuntimeError("boom"))]))
    assert health.code == 503 and health.status == "failed"
    assert health.reason == "a stage died: batcher (RuntimeError); the agent is stopping"
    assert json.loads(health.body())["dead_stages"] == ["batcher"]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_server_answers_metrics_and_health_over_http():
    state = {"records": 0, "age": None}
    stats = Stats()
    stats.acknowledged(NOW - 120)
    view = AgentView(stats=stats, live=dict, files=list, open_files=lambda: 0, in_flight=lambda: 0,
                     spool=lambda: SpoolUse(0, state["records"], 1 << 20, None, state["age"]),
                     deaths=list, started=NOW - 600, blocked_after=60.0, time=lambda: NOW)
    server = MetricsServer("127.0.0.1:0", view)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        code, kind, body = _get(base + "/metrics")
        assert code == 200 and kind.startswith("text/plain")
        assert b"modelscribe_build_info{" in body and b"process_cpu_seconds_total" in body
        code, kind, body = _get(base + "/health")
        assert (code, kind) == (200, "application/json") and json.loads(body)["status"] == "ok"
        state.update(records=3, age=100.0)
        code, _, body = _get(base + "/health")
        assert code == 503
        assert json.loads(body)["status"] == "blocked" and "3 events wait" in json.loads(body)["reason"]
        assert _get(base + "/nothing")[0] == 404
    finally:
        server.stop()


def test_a_failing_scrape_answers_500_and_is_logged_and_counted():
    stats = Stats()

    def broken() -> SpoolUse:
        raise RuntimeError("spool closed under us")

    view = AgentView(stats=stats, live=dict, files=list, open_files=lambda: 0, in_flight=lambda: 0, spool=broken,
                     deaths=list, started=NOW, blocked_after=60.0, time=lambda: NOW)
    server = MetricsServer("127.0.0.1:0", view)
    server.start()
    try:
        assert _get(f"http://127.0.0.1:{server.port}/metrics")[0] == 500
        assert _get(f"http://127.0.0.1:{server.port}/health")[0] == 500
    finally:
        server.stop()
    assert stats.snapshot().metrics_errors == 2


@pytest.mark.parametrize("origin, named", [
    (None, "--metrics-addr {}"), ("flag --metrics-addr", "--metrics-addr {}"),
    ("default", "--metrics-addr {} (the default)"), ("env MODELSCRIBE_METRICS_ADDR", "MODELSCRIBE_METRICS_ADDR {}"),
    ("file /etc/modelscribe/modelscribe.yml", "/etc/modelscribe/modelscribe.yml: metrics_addr {}")])
def test_a_port_in_use_is_a_config_error_naming_where_the_address_came_from(origin, named):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        server = MetricsServer(address, _view(), origin=origin)
        with pytest.raises(ConfigError) as caught:
            server.start()
    assert str(caught.value).startswith(named.format(address) + ": the port is already in use")
    assert caught.value.exit_code == 2


def test_the_agent_names_the_variable_or_file_its_taken_port_came_from(tmp_path):
    """Under systemd the address comes from the config file: the error named --metrics-addr."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        settings = {"paths": (str(tmp_path / "*.log"),), "output": "null"}
        config = resolve({**settings, "state_dir": str(tmp_path / "env")}, {"MODELSCRIBE_METRICS_ADDR": address})
        with pytest.raises(ConfigError, match=rf"^MODELSCRIBE_METRICS_ADDR {address}: the port is already in use"):
            Pipeline(config).run()
        (tmp_path / "agent.yml").write_text(f"metrics_addr: '{address}'\n")
        config = resolve({**settings, "state_dir": str(tmp_path / "file")}, {}, str(tmp_path / "agent.yml"))
        with pytest.raises(ConfigError, match="^" + re.escape(f"{tmp_path / 'agent.yml'}: metrics_addr {address}: ")):
            Pipeline(config).run()


# -- settings --------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [("127.0.0.1:9464", "127.0.0.1:9464"), ("0.0.0.0:1", "0.0.0.0:1"),
                                           ("[::1]:9464", "[::1]:9464"), ("localhost:80", "localhost:80"),
                                           ("off", None), ("OFF", None)])
def test_metrics_addr_accepts(raw, expected):
    assert resolve({"metrics_addr": raw}, {}).metrics_addr == expected


def test_metrics_addr_default_and_health_threshold():
    config = resolve({}, {})
    assert config.metrics_addr == "127.0.0.1:9464" and config.health_blocked_after == 60.0
    assert resolve({}, {"MODELSCRIBE_HEALTH_BLOCKED_AFTER": "2m"}).health_blocked_after == 120.0


@pytest.mark.parametrize("raw", ["9464", ":9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                 "host:port", "[::zz]:9464", "http://127.0.0.1:9464", "a b:1"])
def test_metrics_addr_rejects_naming_where(raw, tmp_path):
    with pytest.raises(ConfigError, match=r"^--metrics-addr: "):
        resolve({"metrics_addr": raw}, {})
    with pytest.raises(ConfigError, match=r"^MODELSCRIBE_METRICS_ADDR: "):
        resolve({}, {"MODELSCRIBE_METRICS_ADDR": raw})
    config_file = tmp_path / "agent.yml"
    config_file.write_text(f"metrics-addr: '{raw}'\n")
    with pytest.raises(ConfigError, match=rf"^{config_file}: metrics-addr: "):
        resolve({}, {}, str(config_file))


def test_the_output_metavar_shows_every_output():
    """Not a metrics setting: kept here until tests/test_cli.py's metavar test takes it."""
    from agent import cli_options
    from agent.config import values
    from agent.config.options import BY_NAME

    choices = cli_options.metavar(BY_NAME["output"]).strip("[]").split("|")
    assert choices == ["elasticsearch", "opensearch", "file:PATH", "console", "null"]
    assert all(values.output(choice.replace("PATH", "/x.ndjson")) for choice in choices)


def test_health_blocked_after_must_be_positive():
    with pytest.raises(ConfigError, match=r"^--health-blocked-after: "):
        resolve({"health_blocked_after": "0s"}, {})


# -- what the pipeline and the sender record -----------------------------------------

def test_once_serves_no_metrics(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("one\ntwo\n")
    with socket.socket() as taken:  # serving would fail on this port: --once must not try
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"), "output": "null",
                          "once": True, "metrics_addr": f"127.0.0.1:{taken.getsockname()[1]}"}, {})
        assert Pipeline(config).run() == 0


def test_daemon_serves_on_its_address_and_stops_serving(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("".join(f"line {i}\n" for i in range(20)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"), "output": "null",
                      "metrics_addr": f"127.0.0.1:{port}"}, {})
    pipeline = Pipeline(config)
    done: list[int] = []
    runner = threading.Thread(target=lambda: done.append(pipeline.run()))
    runner.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            try:
                code, _, body = _get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                deadline.wait(0.1)
                continue
            if b"modelscribe_read_lines_total 20.0" in body:
                break
            deadline.wait(0.1)
        else:
            pytest.fail("the daemon never reported its 20 lines on /metrics")
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 200
    finally:
        pipeline.stop()
        runner.join(30)
    assert done == [0]
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/metrics")


def _event(i: int) -> Event:
    return Event("k", i * 10, i * 10 + 10, f"id{i}", b'{"n": %d}' % i)


class _Scripted:
    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)

    def send(self, events):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(events) if callable(answer) else answer


def test_sender_counts_each_retry_by_reason_and_observes_each_request(tmp_path):
    item_429 = Response(200, {"errors": True, "items": [
        {"create": {"status": 201}},
        {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "busy"}}}]})
    answers = [Response(503, {"error": "unavailable"}), TransientOutputError("cannot connect"), item_429,
               all_created]
    stats = Stats()
    acks = AckTracker(lambda key, offset: None)
    events = [_event(0), _event(1)]
    acks.register(events)
    sender = Sender(_Scripted(answers), acks, DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x"), stats,
                    threading.Event(), max_retries=None, backoff_max=0.0, retry_permanent=True)
    sender.deliver(events)
    assert stats.retries() == {"5xx": 1, "connection": 1, "429": 1, "auth": 0, "other": 0}
    assert set(stats.retries()) == set(RETRY_REASONS)
    buckets, _ = stats.latency()
    assert buckets[-1] == (float("inf"), 4)  # one observation per request, whatever its outcome
    snapshot = stats.snapshot()
    assert snapshot.events_sent == 2 + 2 + 2 + 1 and snapshot.events_acked == 2
    assert snapshot.bytes_sent == sum(len(_event(i).data) for i in (0, 1, 0, 1, 0, 1, 1))
    assert stats.last_ack_time is not None


# -- the Grafana dashboard ---------------------------------------------------------

def test_the_checked_in_grafana_dashboard_is_up_to_date():
    import gen_grafana

    assert gen_grafana.DASHBOARD.read_text(encoding="utf-8") == gen_grafana.render(), \
        "packaging/grafana/modelscribe.json is out of date: run `python3 scripts/gen_grafana.py`"


def test_the_dashboard_only_names_exported_metrics():
    import gen_grafana

    with pytest.raises(KeyError, match="modelscribe_lines_total: not a metric"):
        gen_grafana.metric("modelscribe_lines_total")
    assert gen_grafana.metric("modelscribe_bulk_request_duration_seconds_bucket")
    dashboard = gen_grafana.build()
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    assert all(panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
               for panel in dashboard["panels"])


def test_spool_use_reads_the_disk_spool_and_the_memory_queue(tmp_path):
    from agent.spool import DiskQueue, MemoryQueue

    disk = DiskQueue(tmp_path / "spool", 4 * 1024 * 1024)
    disk.open()
    memory = MemoryQueue(64)
    memory.open()
    try:
        for queue in (disk, memory):
            queue.append([_event(0), _event(1)])
        on_disk, in_memory = spool_use(disk), spool_use(memory)
        assert (on_disk.records, on_disk.max_bytes, on_disk.max_records) == (2, 4 * 1024 * 1024, None)
        assert on_disk.used_bytes > 0 and on_disk.oldest_unacked_age is not None
        assert (in_memory.records, in_memory.max_bytes, in_memory.max_records) == (2, None, 64)
        assert in_memory.used_bytes == len(_event(0).data) + len(_event(1).data)
    finally:
        disk.close()
        memory.close()
