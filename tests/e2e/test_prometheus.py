"""A real Prometheus (Debian's ``prometheus`` package, run here as a plain
subprocess) scrapes two real agents every second:

- ``shipping``: ``modelscribe run --output null`` on a file of known lines;
- ``blocked``: ``modelscribe run`` whose Elasticsearch URL is a closed port,
  with ``--health-blocked-after 1s``.

PromQL through the Prometheus HTTP API must give the counts the agents
reached, and every expression of the Grafana dashboard must return data.
No Prometheus is a failure, not a skip: CI installs it (``.ci/run``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import __version__
from e2e_helpers import Daemon, run_once, wait_for

ROOT = Path(__file__).resolve().parents[2]
LINES = 500
SCRAPE_INTERVAL = "1s"
RATE_WINDOW = "1m"  # stands for Grafana's $__rate_interval: at 1 s scrapes a minute always holds samples


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Setup:
    prometheus: str          # base URL of the Prometheus HTTP API
    shipping: str            # instance label (host:port) of the shipping agent
    blocked: str             # instance label of the blocked agent
    log_path: Path

    def query(self, promql: str) -> list[dict]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = _http(url)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (promql, answer)
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The value of a query that yields one series (None: no series yet)."""
        result = self.query(promql)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, expected: float, timeout: float = 60.0) -> None:
        wait_for(lambda: self.value(promql) == expected, timeout, f"{promql} == {expected} "
                 f"(last: {self.value(promql)})")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: `apt-get install prometheus` (.ci/run installs it)")
    work = tmp_path_factory.mktemp("prometheus")
    logs = work / "logs"
    logs.mkdir()
    log_path = logs / "model.log"
    log_path.write_text("".join(f"2026-12-04 10:00:{i % 60:02d} INFO model.serve: request={i} status=200\n"
                                for i in range(LINES)))
    shipping_port, blocked_port, prometheus_port = (_free_port() for _ in range(3))
    # The blocked agent's "Elasticsearch": a port held bound but not listening, so that a
    # connection is refused for the whole test. A port merely found free can be taken as
    # the source port of a connection to itself (a TCP self-connect on loopback), and the
    # agent then talks to its own request: once seen in CI as a never-blocked agent.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: modelscribe\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{shipping_port}', '127.0.0.1:{blocked_port}']\n")
    common = ["--path", str(logs / "*.log"), "--shutdown-timeout", "2s", "--log-level", "info"]
    agents = [
        Daemon([*common, "--state-dir", str(work / "shipping"), "--output", "null",
                "--metrics-addr", f"127.0.0.1:{shipping_port}"], work / "shipping.log"),
        # No self-metrics document: one written after its 60 s would be a 501st record in the
        # spool (CI saw it once, on a loaded machine), and the test counts the spool's records.
        Daemon([*common, "--state-dir", str(work / "blocked"), "--es-url", f"http://127.0.0.1:{closed_port}",
                "--backoff-max", "1s", "--health-blocked-after", "1s", "--self-metrics-interval", "off",
                "--metrics-addr", f"127.0.0.1:{blocked_port}"], work / "blocked.log"),
    ]
    prometheus_log = open(work / "prometheus.log", "wb")
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
        stdout=prometheus_log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{prometheus_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if prometheus.poll() is not None:
                pytest.fail(f"prometheus exited with {prometheus.returncode}: "
                            f"{(work / 'prometheus.log').read_text(errors='replace')[-2000:]}")
            try:
                if _http(base + "/-/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus was not ready within 60 s: "
                            f"{(work / 'prometheus.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        setup = Setup(base, f"127.0.0.1:{shipping_port}", f"127.0.0.1:{blocked_port}", log_path)
        for agent in agents:
            assert agent.process.poll() is None, agent.log()
        setup.wait_value(f'count(up{{job="modelscribe"}} == 1)', 2, timeout=60)
        yield setup
    finally:
        closed.close()
        prometheus.terminate()
        try:
            prometheus.wait(20)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait(10)
        prometheus_log.close()
        for agent in agents:
            try:
                agent.stop(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()


def test_prometheus_sees_every_line_read_and_acknowledged(scraped):
    on = f'{{instance="{scraped.shipping}"}}'
    scraped.wait_value(f"modelscribe_acknowledged_events_total{on}", LINES)
    assert scraped.value(f"modelscribe_read_lines_total{on}") == LINES
    assert scraped.value(f"modelscribe_emitted_events_total{on}") == LINES
    assert scraped.value(f"modelscribe_sent_events_total{on}") == LINES
    for name in ("duplicate_events", "rejected_events", "dropped_events", "given_up_events", "failed_batches",
                 "lost_bytes"):
        assert scraped.value(f"modelscribe_{name}_total{on}") == 0, name
    assert scraped.value(f"sum(modelscribe_retried_requests_total{on})") == 0
    assert scraped.value(f"count(modelscribe_retried_requests_total{on})") == 5
    assert scraped.value(f"sum(modelscribe_stage_deaths_total{on})") == 0
    assert scraped.value(f"modelscribe_emitted_bytes_total{on}") == scraped.value(f"modelscribe_sent_bytes_total{on}")
    assert scraped.value(f"modelscribe_emitted_bytes_total{on}") > scraped.log_path.stat().st_size
    # Every request was observed once in the latency histogram.
    requests = scraped.value(f"modelscribe_bulk_request_duration_seconds_count{on}")
    assert requests >= 1
    assert scraped.value(f'modelscribe_bulk_request_duration_seconds_bucket{{instance="{scraped.shipping}",'
                         f'le="+Inf"}}') == requests
    build = scraped.query(f"modelscribe_build_info{on}")
    assert len(build) == 1 and build[0]["value"][1] == "1" and build[0]["metric"]["version"] == __version__
    # The spool gauges: present, the default limit, and empty once everything is acknowledged.
    scraped.wait_value(f"modelscribe_spool_records{on}", 0, timeout=30)
    assert scraped.value(f"modelscribe_spool_max_bytes{on}") == 1024 ** 3
    assert scraped.value(f"modelscribe_spool_used_bytes{on}") is not None
    assert scraped.value(f"modelscribe_spool_oldest_unacked_age_seconds{on}") == 0
    scraped.wait_value(f'modelscribe_file_lag_bytes{{instance="{scraped.shipping}",path="{scraped.log_path}"}}', 0,
                       timeout=30)
    assert scraped.value(f'modelscribe_file_lag_bytes{{instance="{scraped.shipping}",path="other"}}') == 0
    assert scraped.value(f"modelscribe_open_files{on}") == 1
    assert scraped.value(f"modelscribe_healthy{on}") == 1
    acked_at = scraped.value(f"modelscribe_last_acknowledgement_timestamp_seconds{on}")
    assert acked_at is not None and abs(acked_at - time.time()) < 300
    code, body = _http(f"http://{scraped.shipping}/health")
    assert code == 200 and json.loads(body)["status"] == "ok"


def test_a_blocked_output_shows_in_retries_by_reason_and_health(scraped):
    on = f'{{instance="{scraped.blocked}"}}'
    scraped.wait_value(f"modelscribe_healthy{on}", 0, timeout=60)
    wait_for(lambda: (scraped.value(f'modelscribe_retried_requests_total{{instance="{scraped.blocked}",'
                                    f'reason="connection"}}') or 0) > 0, 60, "retries for reason=connection")
    assert scraped.value(f"modelscribe_acknowledged_events_total{on}") == 0
    assert scraped.value(f"modelscribe_read_lines_total{on}") == LINES
    assert scraped.value(f"modelscribe_spool_records{on}") == LINES
    assert scraped.value(f"modelscribe_last_acknowledgement_timestamp_seconds{on}") is None
    assert scraped.value(f'modelscribe_file_lag_bytes{{instance="{scraped.blocked}",path="{scraped.log_path}"}}') \
        == scraped.log_path.stat().st_size
    code, body = _http(f"http://{scraped.blocked}/health")
    health = json.loads(body)
    assert code == 503 and health["status"] == "blocked" and health["pending_events"] == LINES
    assert health["reason"].startswith(f"{LINES} events wait for the output")


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "packaging" / "grafana" / "modelscribe.json").read_text())
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(METRIC, LABEL): the series of METRIC, grouped by LABEL
            metric, label = variable["definition"][len("label_values("):-1].split(", ")
            queries.append((f"${variable['name']}", f"group by ({label}) ({metric})"))
    return queries


def test_every_dashboard_expression_returns_data(scraped):
    scraped.wait_value(f'modelscribe_acknowledged_events_total{{instance="{scraped.shipping}"}}', LINES)
    queries = _dashboard_queries()
    assert len(queries) >= 25
    pending = {}
    for title, expr in queries:
        concrete = expr.replace("$__rate_interval", RATE_WINDOW).replace("$instance", scraped.shipping)
        assert "$" not in concrete, concrete
        pending[concrete] = title
    deadline = time.monotonic() + 60  # rate() needs two scrapes in its window
    while pending and time.monotonic() < deadline:
        for concrete in list(pending):
            if scraped.query(concrete):
                del pending[concrete]
        if pending:
            time.sleep(1)
    assert not pending, "dashboard expressions without data: " + "; ".join(
        f"{title}: {expr}" for expr, title in pending.items())


def test_a_metrics_port_in_use_stops_the_agent_with_exit_code_2(tmp_path):
    (tmp_path / "a.log").write_text("one\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_once(["run", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "state"),
                           "--output", "null", "--metrics-addr", address], timeout=60)
    assert result.code == 2, result.stderr
    assert f"modelscribe: error: --metrics-addr {address}: the port is already in use" in result.stderr
    assert "new file" not in result.stderr  # refused before reading anything
