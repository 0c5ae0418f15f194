"""The Elasticsearch test harness itself, against the real session node.

Checks what every other Elasticsearch test relies on: both credentials work,
anonymous requests are refused, TLS verifies only with the generated CA, the
node listens on loopback only, runs the requested version, the ``es`` helper
copes with data streams, and a stopped node comes back with its data.  Also
the ``fetch`` command CI runs first (elasticsearch_dist.py): it prints the
prepared distribution, fills a cache that does not exist yet, and reports a
download error on its own.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

import elasticsearch_dist
import elasticsearch_local as esl

pytestmark = pytest.mark.elasticsearch


def test_api_key_authenticates(es_node):
    assert Path(es_node.api_key_file).read_text() == es_node.api_key
    assert stat.S_IMODE(os.stat(es_node.api_key_file).st_mode) == 0o600
    status, body = esl.request(es_node, "GET", "/_security/_authenticate", auth="api_key")
    assert status == 200, body
    assert body["authentication_type"] == "api_key"
    assert body["api_key"]["name"] == "modelscribe-tests"


def test_password_authenticates(es_node):
    assert Path(es_node.password_file).read_text() == es_node.password
    assert stat.S_IMODE(os.stat(es_node.password_file).st_mode) == 0o600
    status, body = esl.request(es_node, "GET", "/_security/_authenticate", auth="password")
    assert status == 200, body
    assert body["username"] == "elastic"


def test_anonymous_request_is_refused(es_node):
    status, body = esl.request(es_node, "GET", "/_cluster/health", auth=None)
    assert status == 401, body


def test_tls_verifies_only_with_generated_ca(es_node):
    assert es_node.url.startswith("https://127.0.0.1:")
    # The system trust store does not know the harness CA.
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(es_node.url + "/_cluster/health", timeout=10,
                               context=ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


def test_listens_only_on_loopback(es_node):
    group = psutil.Process(es_node.pid)
    sockets = []
    for proc in [group, *group.children(recursive=True)]:
        # psutil >= 6 renamed connections() and deprecates the old name.
        connections = getattr(proc, "net_connections", None) or proc.connections
        sockets += [c for c in connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    port = int(es_node.url.rsplit(":", 1)[1])
    assert port in {c.laddr.port for c in sockets}
    for conn in sockets:  # HTTP and transport
        address = ipaddress.ip_address(conn.laddr.ip)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # the JVM binds dual-stack sockets
        assert address == ipaddress.ip_address("127.0.0.1"), conn


def test_version_matches(es_node):
    assert es_node.version == esl.default_version()
    status, body = esl.request(es_node, "GET", "/_nodes/_local?filter_path=nodes.*.version")
    assert status == 200, body
    assert [n["version"] for n in body["nodes"].values()] == [es_node.version]


def test_helper_counts_searches_and_deletes_data_streams(es):
    template = {"index_patterns": ["harness-ds-*"], "data_stream": {}, "priority": 500,
                "template": {"mappings": {"properties": {"@timestamp": {"type": "date"}}}}}
    assert es.request("PUT", "/_index_template/harness-ds", template)[0] == 200
    lines = []
    for offset in (30, 10, 20):
        lines.append(f'{{"create":{{"_index":"harness-ds-default","_id":"{offset}"}}}}')
        lines.append(f'{{"@timestamp":"2025-01-01T00:00:00Z","log":{{"offset":{offset}}}}}')
    status, body = es.request("POST", "/_bulk", "\n".join(lines) + "\n")
    assert status == 200 and not body["errors"], body
    assert es.count("harness-ds-default") == 3
    assert [s["log"]["offset"] for s in es.search_all("harness-ds-default")] == [10, 20, 30]
    es.delete_index("harness-ds-*")
    assert es.count("harness-ds-default") == 0
    assert es.count("no-such-index") == 0
    es.delete_index("no-such-index")


def test_distribution_names_are_reexported():
    for name in ("fetch_distribution", "find_java_home", "cache_dir", "HarnessError"):
        assert getattr(esl, name) is getattr(elasticsearch_dist, name), name
    for name in ("default_version", "default_work_dir", "Node", "start_node", "stop_node",
                 "restart_node", "remove_node", "node_status", "request"):
        assert callable(getattr(esl, name)), name


def _assert_complete(dist):
    marker = dist / "plugins" / elasticsearch_dist.SHIM_NAME / "named_components.json"
    assert marker.is_file()
    assert os.access(dist / "bin" / "elasticsearch", os.X_OK)
    assert not list(dist.parent.glob(".unpack-*"))


def test_fetch_prints_the_prepared_distribution(capsys):
    assert esl.main(["fetch"]) == 0
    dist = esl.cache_dir() / f"elasticsearch-{esl.default_version()}"
    assert capsys.readouterr().out == f"{dist}\n"
    _assert_complete(dist)


@pytest.mark.slow
def test_fetch_fills_a_cache_that_does_not_exist_yet(tmp_path, monkeypatch, capsys):
    version = esl.default_version()
    archive = esl.fetch_distribution(version, esl.find_java_home(version)).parent / (
        f"elasticsearch-{version}.zip")
    downloads = []

    def download(version, cache):  # stands in for mvn: no second 100 MB download
        downloads.append(version)
        (cache / f"elasticsearch-{version}.zip").symlink_to(archive)

    monkeypatch.setattr(elasticsearch_dist, "_download", download)
    monkeypatch.setattr(esl, "_node_account", lambda: None)  # keep pytest's dirs as they are
    monkeypatch.delenv("MODELSCRIBE_ES_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "fresh"))  # no ~/.cache/modelscribe at all
    cache = tmp_path / "fresh" / ".cache" / "modelscribe" / "elasticsearch"
    assert esl.cache_dir() == cache and not cache.parent.exists()

    assert esl.main(["fetch"]) == 0
    dist = cache / f"elasticsearch-{version}"
    assert capsys.readouterr().out == f"{dist}\n"
    _assert_complete(dist)
    assert esl.main(["fetch"]) == 0  # cached: nothing fetched or unpacked again
    assert capsys.readouterr().out == f"{dist}\n"
    assert downloads == [version]
    shutil.rmtree(tmp_path / "fresh")  # 100+ MB: not kept among pytest's last runs


def test_fetch_reports_a_download_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELSCRIBE_ES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn
    assert esl.main(["fetch"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "`mvn` not found on PATH" in err
    assert not (tmp_path / "cache" / f"elasticsearch-{esl.default_version()}").exists()


@pytest.mark.slow
def test_stop_and_restart_keep_data_port_and_credentials(es_node, es):
    # Last in this file: it takes the session node down and back up.
    assert es.request("PUT", "/harness-restart/_doc/1?refresh=true", {"n": 1})[0] == 201
    esl.stop_node(es_node)
    with pytest.raises(urllib.error.URLError):
        esl.request(es_node, "GET", "/_cluster/health", timeout=5)
    node = esl.restart_node(es_node)
    assert (node.url, node.api_key, node.password) == (es_node.url, es_node.api_key,
                                                        es_node.password)
    assert node.pid != es_node.pid
    assert esl.request(node, "GET", "/_security/_authenticate", auth="api_key")[0] == 200
    assert es.count("harness-restart") == 1
    es.delete_index("harness-restart")


def test_a_node_that_is_not_ready_in_time_is_stopped_and_named(tmp_path):
    # boot's failure path stops what it launched (it once raised a TypeError
    # there instead, leaving the node running and hiding the reason).
    with pytest.raises(esl.HarnessError, match="did not get ready within 1s"):
        esl.start_node(tmp_path / "slow", timeout=1)
    # stop_node clears the pid only once the process group is seen gone.
    assert esl.local_node.read_state(tmp_path / "slow")["pid"] is None
