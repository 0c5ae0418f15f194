"""The client certificate and key files while the agent runs, on a real node
that requires a client certificate (``start_node(..., client_auth=True)``).

Audit 7 (faults 3, 4, 5), on 9.2.8:

- a key that stopped matching its certificate was told to "check --ca-cert /
  --tls-verify", and a key file missing mid-rotation was reported as a
  connection that "broke before the answer" (which means "it may have been
  applied"): both now name ``--client-key`` and the file, and say nothing
  was sent;
- an expired certificate got the message of a certificate of another CA: the
  refusal now names the date;
- with ``--no-tls-verify`` the certificate was loaded once, at start, so a
  rotation in place was never used until a restart, while with verification
  urllib3 reads the files at each new connection: now both do.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import orjson
import pytest

from agent.config import resolve
from agent.errors import PermanentOutputError
from agent.events import Event
from agent.outputs.elasticsearch import ElasticsearchOutput

from config.test_tls_client_cert_dates import NOW, make_pair  # noqa: E402

pytestmark = pytest.mark.elasticsearch


@pytest.fixture
def pair(tmp_path, mtls_node):
    """Copies of the node's client certificate and key, which a test may rotate."""
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    shutil.copy(mtls_node.client_cert, cert)
    shutil.copy(mtls_node.client_key, key)
    return str(cert), str(key)


def _output(node, cert: str, key: str, **flags) -> ElasticsearchOutput:
    config = {"es_urls": (node.url,), "ca_cert": node.ca_cert, "api_key_file": node.api_key_file,
              "client_cert": cert, "client_key": key, "index": "tls-files"}
    config.update(flags)
    return ElasticsearchOutput.from_config(resolve(config, {}))


def _send(output: ElasticsearchOutput, n: int = 0):
    return output.send([Event("src", n, n + 1, f"tls-{n}", orjson.dumps({"message": "m"}))])


def _replace(path: str, source: str) -> None:
    """An atomic rotation: the new file is renamed over the old one."""
    shutil.copy(source, path + ".new")
    os.replace(path + ".new", path)


def test_an_expired_certificate_is_named_with_its_date(mtls_node, tmp_path):
    cert, key = make_pair(tmp_path, "expired", NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=2))
    output = _output(mtls_node, cert, key)
    try:
        connection = dict(output.check().lines)["connection"]
        with pytest.raises(PermanentOutputError) as raised:
            output.preflight()  # run: --once stops (exit 3), the daemon starts anyway, saying this
    finally:
        output.close()
    expiry = f"{NOW - dt.timedelta(days=2):%Y-%m-%d %H:%M} UTC"
    assert connection.startswith("FAILED: TLS handshake with ")
    assert connection.endswith(f"(the node refused the client certificate: --client-cert {cert}: "
                               f"expired on {expiry})"), connection
    assert f"expired on {expiry}" in str(raised.value)


@pytest.mark.parametrize("tls_verify", [True, False])
def test_a_key_that_no_longer_matches_names_the_key_file(mtls_node, pair, tmp_path, tls_verify):
    cert, key = pair
    output = _output(mtls_node, cert, key, tls_verify=tls_verify)
    try:
        _replace(key, make_pair(tmp_path, "other", NOW, NOW + dt.timedelta(days=1), rsa_key=True)[1])  # half done
        with pytest.raises(PermanentOutputError) as raised:
            _send(output)
    finally:
        output.close()
    message = str(raised.value)
    assert message.startswith(f"cannot open a TLS connection to {mtls_node.url}: --client-key {key}: is not the "
                              f"key of the certificate in {cert}; nothing was sent ("), message
    assert "--ca-cert" not in message and "--tls-verify" not in message


@pytest.mark.parametrize("tls_verify", [True, False])
@pytest.mark.parametrize("missing", ["--client-cert", "--client-key"])
def test_a_missing_file_is_named_and_nothing_was_sent(mtls_node, pair, tls_verify, missing):
    cert, key = pair
    output = _output(mtls_node, cert, key, tls_verify=tls_verify)
    gone = key if missing == "--client-key" else cert
    try:
        os.unlink(gone)
        with pytest.raises(PermanentOutputError) as raised:  # (the daemon retries it: the files may be mid-rotation)
            _send(output)
    finally:
        output.close()
    assert str(raised.value) == (f"cannot open a TLS connection to {mtls_node.url}: {missing} {gone}: cannot be "
                                 "read (No such file or directory); nothing was sent")


@pytest.mark.parametrize("tls_verify", [True, False])
def test_a_certificate_rotated_in_place_is_used_at_the_next_connection(mtls_node, pair, tmp_path, tls_verify):
    """Start with a pair of another CA (refused), rename the node's pair over it:
    the next request connects, with or without --tls-verify, no restart."""
    good_cert, good_key = pair
    # RSA, as the node's pair: with verification urllib3 loads the new pair into the context it
    # keeps, where OpenSSL holds one certificate per key type, so an EC pair would stay in use.
    cert, key = make_pair(tmp_path, "stranger", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30),
                          rsa_key=True)
    output = _output(mtls_node, cert, key, tls_verify=tls_verify, index=f"tls-rotated-{tls_verify}".lower())
    try:
        with pytest.raises(PermanentOutputError, match="the node refused the client certificate"):
            _send(output)
        _replace(key, good_key)
        _replace(cert, good_cert)
        response = _send(output)
    finally:
        output.close()
    assert response.status == 200 and not response.body["errors"], response.body
