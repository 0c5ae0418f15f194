"""The Elasticsearch test harness itself, against the real session node.

Checks what every other Elasticsearch test relies on: both credentials work,
anonymous requests are refused, TLS verifies only with the generated CA, the
node listens on loopback only, runs the requested version, the ``es`` helper
copes with data streams, and a stopped node comes back with its data.
"""
from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

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
