"""`--client-cert` / `--client-key` against a real node that requires a client
certificate (``xpack.security.http.ssl.client_authentication: required``,
``elasticsearch_local.start_node(..., client_auth=True)``).

The node refuses any TLS connection without a certificate signed by its CA,
so a document that lands proves the agent presented the certificate; the
credentials are still the API key (the certificate only opens the connection).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest

import elasticsearch_local
from e2e_helpers import es_flags, run_once

pytestmark = pytest.mark.elasticsearch


def _client_flags(node) -> list[str]:
    return ["--client-cert", node.client_cert, "--client-key", node.client_key]


def _count(node, index: str) -> int | None:
    """Documents in `index` after a refresh; None if it does not exist."""
    status, body = elasticsearch_local.request(node, "POST", f"/{index}/_refresh")
    if status == 404:
        return None
    assert status == 200, body
    status, body = elasticsearch_local.request(node, "GET", f"/{index}/_count")
    assert status == 200, body
    return body["count"]


def test_node_requires_a_client_certificate(mtls_node):
    assert Path(mtls_node.client_cert).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(os.stat(mtls_node.client_key).st_mode) == 0o600
    # The harness presents the client certificate itself.
    status, body = elasticsearch_local.request(mtls_node, "GET", "/_security/_authenticate",
                                               auth="api_key")
    assert status == 200, body
    # Trusting the CA is not enough without a client certificate.
    with pytest.raises(OSError) as err:
        urllib.request.urlopen(mtls_node.url + "/_cluster/health", timeout=10,
                               context=ssl.create_default_context(cafile=mtls_node.ca_cert))
    assert "certificate required" in str(err.value).lower(), err.value


def test_cli_prints_client_certificate_only_when_present(mtls_node, capsys):
    elasticsearch_local._print_env(mtls_node)
    lines = capsys.readouterr().out.splitlines()
    assert f"ES_CLIENT_CERT={mtls_node.client_cert}" in lines
    assert f"ES_CLIENT_KEY={mtls_node.client_key}" in lines
    elasticsearch_local._print_env(dataclasses.replace(mtls_node, client_cert=None, client_key=None))
    assert "ES_CLIENT_" not in capsys.readouterr().out


def test_run_once_ships_with_the_client_certificate(mtls_node, tmp_path):
    (tmp_path / "a.log").write_text("".join(f"served model=resnet50 request={i}\n" for i in range(7)))
    result = run_once(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       *es_flags(mtls_node, "client-cert-shipped"), *_client_flags(mtls_node)])
    assert result.code == 0, result.stderr
    assert _count(mtls_node, "client-cert-shipped") == 7


def test_run_once_without_the_client_certificate_exits_3(mtls_node, tmp_path):
    (tmp_path / "a.log").write_text("never shipped\n")
    result = run_once(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       *es_flags(mtls_node, "client-cert-refused")])
    assert result.code == 3, result.stderr
    assert f"TLS handshake with {mtls_node.url} failed" in result.stderr
    assert "certificate required" in result.stderr.lower()
    assert "(check --client-cert / --client-key)" in result.stderr
    assert "nothing was read" in result.stderr
    assert _count(mtls_node, "client-cert-refused") is None
    check = run_once(["check", "output", *es_flags(mtls_node)])
    assert check.code == 3, check.stdout + check.stderr
    assert f"connection: FAILED: TLS handshake with {mtls_node.url} failed" in check.stdout


def test_check_output_with_the_client_certificate(mtls_node):
    result = run_once(["check", "output", *es_flags(mtls_node), *_client_flags(mtls_node)])
    assert result.code == 0, result.stdout + result.stderr
    assert "connection: ok" in result.stdout
    assert f"version: {mtls_node.version}" in result.stdout
    assert "auth: ok as" in result.stdout
    assert "privileges: ok" in result.stdout


def test_no_tls_verify_still_presents_the_client_certificate_and_warns_once(mtls_node):
    # Audit 5: elastic_transport drops the client certificate when it does not
    # verify the server, so the node refused every connection; and urllib3's
    # InsecureRequestWarning came on every request (82 against 6 log lines).
    flags = ["--es-url", mtls_node.url, "--api-key-file", mtls_node.api_key_file, "--no-tls-verify"]
    result = run_once(["check", "output", *flags, *_client_flags(mtls_node)])
    assert result.code == 0, result.stdout + result.stderr
    assert "connection: ok" in result.stdout and "auth: ok as" in result.stdout
    assert "InsecureRequestWarning" not in result.stderr, result.stderr
    assert result.stderr.count("TLS verification is off") == 1, result.stderr


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make the certificates")
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def test_a_client_certificate_the_node_does_not_trust_is_named(mtls_node, tmp_path):
    # Audit 5: the node's alert ("certificate unknown") was told to check --ca-cert / --tls-verify.
    cert, key = tmp_path / "other.crt", tmp_path / "other.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-subj", "/CN=not-of-this-ca", "-days", "2")
    result = run_once(["check", "output", *es_flags(mtls_node), "--client-cert", str(cert), "--client-key", str(key)])
    assert result.code == 3, result.stdout + result.stderr
    assert "the node refused the client certificate: check that --client-cert / --client-key are signed by a " \
           "CA the node trusts" in result.stdout, result.stdout


def test_an_encrypted_client_key_is_refused_naming_it(mtls_node, tmp_path):
    encrypted = tmp_path / "encrypted.key"
    _openssl("pkey", "-in", mtls_node.client_key, "-aes256", "-passout", "pass:secret", "-out", str(encrypted))
    result = run_once(["check", "output", *es_flags(mtls_node), "--client-cert", mtls_node.client_cert,
                       "--client-key", str(encrypted)])
    assert result.code == 2, result.stdout + result.stderr
    assert f"--client-key {encrypted}: the key is encrypted" in result.stderr, result.stderr
