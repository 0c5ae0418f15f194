"""TLS for the Elasticsearch (and OpenSearch) output: what a failure says, and
the client certificate without verification.

The TLS files are read again at each new connection: with ``--tls-verify``
urllib3 does it, without it ``ClientCertContext`` (urllib3 would load the
certificate once into the context it is given, and the client library loads
it only when it verifies). So a certificate and key rotated in place are
used without a restart.

A handshake that fails because of our own files (a key that no longer
matches, a file missing mid-rotation, a certificate out of its dates) names
the flag and the file and says that nothing was sent; one the node refuses
says what to check. The checks of the files are ``agent.config.stages``'s,
so a start and a running agent say the same.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import threading
from typing import Any, Sequence

from agent.config.stages import client_cert_dates_problem, tls_files_problem
from agent.outputs.connection import ConnectionSettings
from agent.selflog import get_logger

log = get_logger("output.elasticsearch")

# The flags of the TLS files, which the messages about them name.
FLAGS = {"ca_cert": "--ca-cert", "client_cert": "--client-cert", "client_key": "--client-key"}


def files_problem(config: ConnectionSettings) -> str | None:
    """Why the TLS files the client reads at each new connection do not load
    now (``--ca-cert`` only when it verifies), or None."""
    settings = config if config.tls_verify else dataclasses.replace(config, ca_cert=None)
    return tls_files_problem(settings, FLAGS)


def hung_up(config: ConnectionSettings, detail: str) -> bool:
    """Whether a failed handshake is a connection closed before the server's
    first answer, with no certificate in question: a proxy or load balancer
    with no live node behind it (audit 9: blamed on --ca-cert, counted as
    retry reason other). With a client certificate, the node's way of
    refusing it looks the same (``handshake_problem``)."""
    return not config.client_cert and "EOF" in detail.upper() and files_problem(config) is None


def hung_up_message(config: ConnectionSettings, detail: str) -> str:
    return (f"{config.es_urls[0]} closed the connection during the TLS handshake, before any answer (a proxy or "
            f"load balancer with no node behind it, or a node restarting); nothing was sent ({detail})")


def handshake_problem(config: ConnectionSettings, detail: str) -> str:
    """The message of a failed TLS handshake whose innermost error says ``detail``."""
    own = files_problem(config)
    if own is not None:  # (read at each new connection: they changed since the start)
        return f"cannot open a TLS connection to {config.es_urls[0]}: {own}; nothing was sent ({detail})"
    upper = detail.upper()
    if "CERTIFICATE_REQUIRED" in upper:
        hint = "check --client-cert / --client-key"
    elif config.client_cert and ("ALERT" in upper or "EOF" in upper):
        # The node sent an alert (or hung up) in the handshake: it refused what we
        # presented, our certificate (checked on 9.2.8: a certificate of another
        # CA gets "alert certificate unknown", then "EOF occurred" on retries).
        dated = client_cert_dates_problem(config.client_cert, FLAGS["client_cert"])
        hint = f"the node refused the client certificate: {dated}" if dated else \
            "the node refused the client certificate: check that --client-cert / --client-key " \
            "are signed by a CA the node trusts, and not expired"
    elif "WRONG_VERSION_NUMBER" in upper:  # (the answer was not TLS: checked on 9.2.8)
        hint = "the port does not speak TLS: use http:// in --es-url"
    else:
        hint = "check --ca-cert / --tls-verify"
    return f"TLS handshake with {config.es_urls[0]} failed: {detail} ({hint})"


def unread_file(config: ConnectionSettings, chain: Sequence[BaseException]) -> str | None:
    """The message when the error ``chain`` (outermost first) comes from a TLS
    file that could not be read (urllib3 reports it as a connection aborted),
    else None."""
    paths = {config.ca_cert, config.client_cert, config.client_key} - {None}
    failed = next((e for e in chain if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError))),
                  None)
    if failed is None or not paths:
        return None
    problem = files_problem(config)  # (OpenSSL's errors carry no file name: the files are tried)
    if problem is None and failed.filename in paths:
        problem = f"{failed.filename}: cannot be read ({failed.strerror or failed})"
    if problem is None:
        return None
    return f"cannot open a TLS connection to {config.es_urls[0]}: {problem}; nothing was sent"


def unverified_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A TLS context that presents the client certificate and checks nothing of the server's."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])  # (what urllib3 sets on the context it is given)
    context.load_cert_chain(cert, key)
    return context


class ClientCertContext(ssl.SSLContext):
    """``--no-tls-verify`` with a client certificate: the context urllib3 is
    given, which hands each new connection to an ``unverified_context`` of
    the files as they are now, rebuilt when their mtime or size changed. A
    pair that does not load fails the connection as it would with
    verification (``handshake_problem`` names the file)."""

    _files: tuple[str, str | None]
    _stamp: tuple[tuple[int, int], ...] | None
    _context: ssl.SSLContext
    _lock: threading.Lock

    @classmethod
    def of(cls, cert: str, key: str | None) -> "ClientCertContext":
        self = cls(ssl.PROTOCOL_TLS_CLIENT)
        self.check_hostname = False
        self.verify_mode = ssl.CERT_NONE
        self._files, self._lock = (cert, key), threading.Lock()
        self._stamp, self._context = self._stat(), unverified_context(cert, key)
        return self

    def _stat(self) -> tuple[tuple[int, int], ...]:
        return tuple((info.st_mtime_ns, info.st_size) for info in map(os.stat, filter(None, self._files)))

    def current(self) -> ssl.SSLContext:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._context = unverified_context(*self._files)  # (raises, and is tried again, when half-written)
                self._stamp = stamp
                log.info("client certificate files changed, using the new ones for new connections",
                         path=self._files[0])
            return self._context

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.current().wrap_socket(sock, *args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.current().wrap_bio(*args, **kwargs)
