"""A client certificate out of its validity dates is named, with its date
(audit 7, faults 5: ``check config`` said "config ok", a reload said
"configuration reloaded", and the handshake's refusal gave the message of a
certificate of another CA). The dates are read from the file by
``agent.config.stages.client_cert_dates``; resolution (``run``, ``check
config``, a reload) logs a warning, the output's handshake error names it
(tests/outputs/test_tls_client_files.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent.config import resolve
from agent.config import stages

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def make_pair(directory: Path, name: str, not_before: dt.datetime, not_after: dt.datetime,
              issuer: tuple | None = None, rsa_key: bool = False) -> tuple[str, str]:
    """A client certificate and its key (PEM) in ``directory``, signed by
    ``issuer`` (key, certificate) or self-signed; an EC key, or RSA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key \
        else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, subject)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .sign(signer, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)


def test_the_dates_are_read_from_the_certificate(tmp_path):
    # A date past 2049 is a GeneralizedTime in DER, before it a UTCTime: both are read.
    cert, _ = make_pair(tmp_path, "long", NOW - dt.timedelta(days=1), dt.datetime(2051, 3, 4, 5, 6, 7,
                                                                                  tzinfo=dt.timezone.utc))
    assert stages.client_cert_dates(cert) == (NOW - dt.timedelta(days=1),
                                              dt.datetime(2051, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc))
    assert stages.client_cert_dates(str(tmp_path / "long.key")) is None  # (no certificate: the load says why)
    assert stages.client_cert_dates(str(tmp_path / "absent.crt")) is None


def test_an_expired_or_not_yet_valid_certificate_is_named_with_its_date(tmp_path):
    expired, _ = make_pair(tmp_path, "expired", dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc), dt.datetime(
        2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc))
    later, _ = make_pair(tmp_path, "later", dt.datetime(2040, 5, 6, 7, 8, tzinfo=dt.timezone.utc),
                         dt.datetime(2041, 1, 1, tzinfo=dt.timezone.utc))
    good, _ = make_pair(tmp_path, "good", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    at = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert stages.client_cert_dates_problem(expired, "--client-cert", at) == \
        f"--client-cert {expired}: expired on 2026-01-02 03:04 UTC"
    assert stages.client_cert_dates_problem(later, "--client-cert", at) == \
        f"--client-cert {later}: not valid before 2040-05-06 07:08 UTC"
    assert stages.client_cert_dates_problem(good, "--client-cert") is None


def test_resolution_warns_about_an_expired_certificate_and_still_resolves(tmp_path, agent_log):
    """``run`` starts anyway (as with an output it cannot reach yet), a reload
    is not refused for it: both log the warning, naming where the flag came from."""
    cert, key = make_pair(tmp_path, "expired", NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=2))
    config = resolve({"es_urls": ("https://127.0.0.1:9",), "client_cert": cert, "client_key": key,
                      "index": "i"}, {})
    assert config.client_cert == cert
    expiry = f"{NOW - dt.timedelta(days=2):%Y-%m-%d %H:%M} UTC"
    warned = [r.getMessage() for r in agent_log if "client certificate" in r.getMessage()]
    assert warned == [f"--client-cert {cert}: expired on {expiry}: a node that checks client certificates refuses "
                      "it; replace the certificate and its key (the files are read again at each new connection)"]


def test_a_valid_certificate_gives_no_warning(tmp_path, agent_log):
    cert, key = make_pair(tmp_path, "good", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    resolve({"es_urls": ("https://127.0.0.1:9",), "client_cert": cert, "client_key": key, "index": "i"}, {})
    assert not [r for r in agent_log if "client certificate" in r.getMessage()]


def test_a_tls_file_that_cannot_be_read_is_named(tmp_path):
    """What the output asks when a handshake fails mid-run (the files are read
    at each new connection): the flag and the file, not the TLS layer's words."""
    cert, key = make_pair(tmp_path, "good", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    flags = {"ca_cert": "--ca-cert", "client_cert": "--client-cert", "client_key": "--client-key"}

    class Files:
        ca_cert = None
        client_cert, client_key = cert, str(tmp_path / "gone.key")

    assert stages.tls_files_problem(Files, flags) == \
        f"--client-key {Files.client_key}: cannot be read (No such file or directory)"
    Files.client_key = make_pair(tmp_path, "other", NOW, NOW + dt.timedelta(days=1))[1]
    assert stages.tls_files_problem(Files, flags) == \
        f"--client-key {Files.client_key}: is not the key of the certificate in {cert}"
    rsa_cert, _ = make_pair(tmp_path, "rsa", NOW, NOW + dt.timedelta(days=1), rsa_key=True)
    Files.client_cert, Files.client_key = rsa_cert, key  # (a key of another type: NO_CERTIFICATE_ASSIGNED)
    assert stages.tls_files_problem(Files, flags) == \
        f"--client-key {key}: is not the key of the certificate in {rsa_cert}"
    Files.client_cert = cert
    assert stages.tls_files_problem(Files, flags) is None
