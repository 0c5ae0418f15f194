"""A TLS endpoint that accepts the connection and hangs up before answering
(a proxy or load balancer with no live node behind it): a transient
connection failure, not a certificate problem (audit 9: "check --ca-cert /
--tls-verify", and retries counted as reason "other")."""

from __future__ import annotations

import socket
import threading

import orjson
import pytest

from agent.config import resolve
from agent.errors import PermanentOutputError, TransientOutputError
from agent.events import Event
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.sender import _error_reason


@pytest.fixture
def hangs_up():
    """127.0.0.1:port that accepts every connection and closes it at once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(5)


def _send(config: dict) -> None:
    output = ElasticsearchOutput.from_config(resolve({"index": "x", "max_retries": 0, **config}, {}))
    output.send([Event("src", 0, 1, "id-0", orjson.dumps({"message": "m"}))])


def test_a_hang_up_in_the_handshake_is_a_connection_failure(hangs_up, tmp_path):
    with pytest.raises(TransientOutputError) as caught:
        _send({"es_urls": (f"https://127.0.0.1:{hangs_up}",), "tls_verify": False})
    message = str(caught.value)
    assert "closed the connection during the TLS handshake" in message and "--ca-cert" not in message
    assert _error_reason(caught.value) == "connection"


def test_with_a_client_certificate_it_is_still_named_as_its_refusal(hangs_up, mtls_node):
    # A node that refuses the certificate hangs up the same way (checked on 9.2.8).
    with pytest.raises(PermanentOutputError) as caught:
        _send({"es_urls": (f"https://127.0.0.1:{hangs_up}",), "ca_cert": mtls_node.ca_cert,
               "client_cert": mtls_node.client_cert, "client_key": mtls_node.client_key})
    assert "client certificate" in str(caught.value)
