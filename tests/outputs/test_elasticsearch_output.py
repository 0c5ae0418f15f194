"""The Elasticsearch output against real nodes: bulk creates with
deterministic ids, real per-item responses through the classifier, the
default data stream, credentials, and both supported majors (8.x and 9.x)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import orjson
import pytest

import elasticsearch_local
from agent.config import resolve
from agent.errors import AuthError, TransientOutputError
from agent.events import Event
from agent.outputs.elasticsearch import ElasticsearchOutput
from e2e_helpers import es_flags, run_once
from output_checks import check_bulk_items_classify

pytestmark = pytest.mark.elasticsearch


def _output(node, **flags) -> ElasticsearchOutput:
    base = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file}
    base.update(flags)
    return ElasticsearchOutput.from_config(resolve(base, {}))


def _event(i: int, body: dict) -> Event:
    return Event("src", i, i + 1, f"id-{i}", orjson.dumps({"@timestamp": "2026-11-27T10:00:00.000Z", **body}))


def test_real_bulk_responses_classify_per_item(es_node, es):
    check_bulk_items_classify(_output(es_node, index="out-items"), es, "out-items", _event)


def test_default_target_is_a_data_stream_once_templates_are_installed(es_node, es, tmp_path):
    setup = run_once(["setup", "templates", *es_flags(es_node)])
    assert setup.code == 0, setup.stdout + setup.stderr
    assert "index template logs-modelscribe:" in setup.stdout
    (tmp_path / "a.log").write_text("one\ntwo\n")
    result = run_once(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       "--data-stream", "logs-modelscribe-outputtest", *es_flags(es_node)])
    assert result.code == 0, result.stderr
    status, resolved = es.request("GET", "/_resolve/index/logs-modelscribe-outputtest")
    assert [stream["name"] for stream in resolved["data_streams"]] == ["logs-modelscribe-outputtest"]
    assert es.count("logs-modelscribe-outputtest") == 2
    again = run_once(["setup", "templates", "--dry-run", *es_flags(es_node)])
    assert again.code == 0 and "would-" not in again.stdout, again.stdout


def test_basic_auth_and_preflight_errors(es_node, tmp_path):
    output = _output(es_node, api_key_file=None, username="elastic", password_file=es_node.password_file)
    try:
        output.preflight()
    finally:
        output.close()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    output = _output(es_node, api_key_file=None, username="elastic", password_file=str(wrong))
    try:
        with pytest.raises(AuthError, match="user 'elastic' and the password were rejected"):
            output.preflight()
    finally:
        output.close()


def test_tls_without_the_ca_is_refused_clearly(es_node):
    output = ElasticsearchOutput.from_config(resolve({"es_urls": (es_node.url,), "api_key_file": es_node.api_key_file}, {}))
    try:
        with pytest.raises(Exception) as caught:
            output.preflight()
        assert "certificate" in str(caught.value).lower() or "TLS" in str(caught.value)
    finally:
        output.close()


def test_a_rotated_api_key_file_is_picked_up_without_restart(es_node, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("bm90OmFrZXk=\n")
    output = _output(es_node, api_key_file=str(key_file))
    try:
        with pytest.raises(AuthError):
            output.preflight()
        key_file.write_text(Path(es_node.api_key_file).read_text())
        output.preflight()
    finally:
        output.close()


def test_a_rotated_key_that_cannot_be_sent_keeps_the_previous_one(es_node, tmp_path, caplog):
    """A key file rewritten with a line break inside (a pasting mistake) would
    make every request fail in the HTTP client, printing the key: it is refused
    with a warning that does not show it, and the previous key stays in use."""
    key_file = tmp_path / "key"
    key = Path(es_node.api_key_file).read_text().strip()
    key_file.write_text(key + "\n")
    output = _output(es_node, api_key_file=str(key_file))
    try:
        output.preflight()
        time.sleep(0.01)  # a new mtime
        key_file.write_text(key[:10] + "\n" + key[10:] + "\n")
        with caplog.at_level("WARNING"):
            output.preflight()  # the previous key: no error
        warned = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(warned) == 1 and key[10:] not in str(warned[0].__dict__)
    finally:
        output.close()


@pytest.fixture(scope="module")
def es8_node(tmp_path_factory):
    work = tmp_path_factory.mktemp("elasticsearch8")
    node = elasticsearch_local.start_node(work, version="8.19.8")
    try:
        yield node
    finally:
        elasticsearch_local.remove_node(work)


def test_ships_into_elasticsearch_8(es8_node, tmp_path):
    (tmp_path / "a.log").write_text("".join(f"line {i}\n" for i in range(50)))
    result = run_once(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       *es_flags(es8_node, "compat-8")])
    assert result.code == 0, result.stderr
    status, body = elasticsearch_local.request(es8_node, "POST", "/compat-8/_refresh")
    assert status == 200, body
    status, body = elasticsearch_local.request(es8_node, "GET", "/compat-8/_count")
    assert body["count"] == 50
    check = run_once(["check", "output", *es_flags(es8_node)])
    assert check.code == 0 and "version: 8.19.8" in check.stdout, check.stdout


def test_unreachable_node_is_a_transient_error():
    output = ElasticsearchOutput.from_config(resolve({"es_urls": ("http://127.0.0.1:9",), "request_timeout": "2s"}, {}))
    try:
        with pytest.raises(TransientOutputError, match="cannot connect to Elasticsearch at http://127.0.0.1:9"):
            output.send([_event(0, {})])
    finally:
        output.close()


def _silent_server():
    """A socket on 127.0.0.1 that takes connections (the kernel's backlog) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def _one_answer_server(answer):
    """A socket server on 127.0.0.1 that reads a request and then calls ``answer(connection)``."""
    server = _silent_server()

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.recv(1 << 16)
            answer(connection)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _output_at(server, request_timeout="2s"):
    return ElasticsearchOutput.from_config(resolve(
        {"es_urls": (f"http://127.0.0.1:{server.getsockname()[1]}",), "request_timeout": request_timeout}, {}))


def test_request_timeout_is_the_configured_one(tmp_path):
    """A server that takes the request and never answers: the send fails after
    --request-timeout (1 s here), not after the transport's default of 10 s."""
    server = _silent_server()
    output = _output_at(server, "1s")
    try:
        started = time.monotonic()
        with pytest.raises(TransientOutputError, match="did not answer within 1s"):
            output.send([_event(0, {})])
        assert time.monotonic() - started < 8
    finally:
        output.close()
        server.close()


def test_the_start_up_check_waits_less_than_a_long_request_timeout(monkeypatch):
    """The daemon reads nothing (and tells systemd nothing) before its
    preflight: a hung cluster must not hold the start for --request-timeout."""
    import agent.outputs.elasticsearch as module

    monkeypatch.setattr(module, "PREFLIGHT_TIMEOUT", 1.0)
    server = _silent_server()
    output = _output_at(server, "120s")
    try:
        with pytest.raises(TransientOutputError, match="did not answer within 1s"):
            output.preflight()
    finally:
        output.close()
        server.close()


def test_a_connection_dropped_after_the_request_is_not_called_a_connect_failure():
    def reset(connection):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()

    server = _one_answer_server(reset)
    output = _output_at(server)
    try:
        with pytest.raises(TransientOutputError, match="broke before the answer") as caught:
            output.send([_event(0, {})])
        assert "cannot connect" not in str(caught.value)
    finally:
        output.close()
        server.close()


def test_a_truncated_body_is_not_logged_whole():
    def truncated(connection):
        body = b'{"errors":false,"items":[' + b'{"create":{"status":201}},' * 2000
        connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                           % (len(body), body))
        connection.close()

    server = _one_answer_server(truncated)
    output = _output_at(server)
    try:
        with pytest.raises(TransientOutputError, match="malformed response") as caught:
            output.send([_event(0, {})])
        assert len(str(caught.value)) < 500
    finally:
        output.close()
        server.close()


def test_an_unsupported_version_is_warned_about_at_start(caplog):
    """``run`` builds its output through ``build_output``, whose engine probe
    (``GET /``) also says when the version is not one we support."""
    import http.server

    from agent.outputs import build_output

    class Old(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the handler's API
            body = orjson.dumps({"cluster_name": "old", "version": {"number": "7.17.9"}})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Old)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level("WARNING"):
            output = build_output(resolve({"es_urls": (f"http://127.0.0.1:{server.server_address[1]}",)}, {}))
            output.close()
        assert type(output) is ElasticsearchOutput
        warned = [r for r in caplog.records if "version is not supported" in r.getMessage()]
        assert len(warned) == 1 and "7.17.9" in str(warned[0].__dict__)
    finally:
        server.shutdown()
        server.server_close()


def test_the_default_output_stays_elasticsearch_on_elasticsearch_and_when_down(es_node, caplog):
    from agent.outputs import build_output

    for flags in ({"es_urls": (es_node.url,), "ca_cert": es_node.ca_cert, "api_key_file": es_node.api_key_file},
                  {"es_urls": ("http://127.0.0.1:9",)}):  # nothing listens: cannot tell, Elasticsearch's APIs
        with caplog.at_level("WARNING"):
            output = build_output(resolve(flags, {}))
        assert not [r for r in caplog.records if "not supported" in r.getMessage()]
        try:
            assert type(output) is ElasticsearchOutput
        finally:
            output.close()
