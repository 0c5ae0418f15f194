"""The HTTP server behind ``--metrics-addr`` (``agent.metrics.MetricsServer``
routes ``/metrics`` and ``/health`` through it).

It listens on an address a remote Prometheus may reach (``0.0.0.0:9464``),
so no client may cost the agent more than a bounded share of its threads and
descriptors, nor keep it waiting.

Guarantees:

- At most ``max_connections`` (``MAX_CONNECTIONS``, 64) connections are open
  at once, each with its own thread. One more is answered ``503`` and closed
  by the serving thread at once (a non-blocking send: it never waits on that
  client), so a flood of connections costs no thread, and at most one
  warning a minute.
- The request line and headers are due within ``request_timeout``
  (``REQUEST_TIMEOUT``, 10 s) of the connection's opening (the server speaks
  HTTP/1.0: one request per connection): in total, not per byte, so a
  client sending nothing, or a byte at a time, loses its connection then. The
  serving thread checks the deadlines between accepts (at least every poll
  interval). Writing an answer is bounded by the same timeout, as the socket
  timeout (``sendall`` counts it over the whole answer).
- An HTTP/0.9 request line (``GET /metrics`` without a version) is answered
  ``400`` at once: http.server would wait for headers HTTP/0.9 never sends.
- A slow or stalled client holds only its own connection: others are served
  by their own threads, and the agent's stages never wait on this server.
  (Clients that keep all 64 connections busy, each reopened as it is shut,
  would keep scrapes out: the limit protects the agent, not the scrapes.)
- ``stop`` (``shutdown`` then ``shut_all``) ends every live connection and
  takes at most a poll interval: it never waits for a client.
- A client that resets, goes away or stalls is its own problem: no log line,
  no ``caught_errors``. An error of the agent's while answering is a ``500``,
  logged and counted (``caught_errors{kind="metrics"}``).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from agent.selflog import get_logger
from agent.stats import count_error

log = get_logger("metrics")

MAX_CONNECTIONS = 64
REQUEST_TIMEOUT = 10.0
REFUSED_LOG_INTERVAL = 60.0

# (status, content type, body) for a path; may raise (answered 500).
Route = Callable[[str], "tuple[int, str, bytes]"]

_BUSY_BODY = b"too many connections to the metrics port: retry later\n"
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))
_LATE = -1.0  # the deadline of a connection the server shut: a request read after it is not answered


class _Handler(BaseHTTPRequestHandler):
    server: "BoundedHTTPServer"
    # The socket timeout: a read or a write that stalls this long ends the connection.
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()

    def handle_one_request(self) -> None:
        # The request line and headers are due from now (also after an answer,
        # should the server ever keep connections open: HTTP/1.1).
        self.server.waiting(self.connection)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if len(self.raw_requestline.split()) == 2:
            self.command, self.request_version, self.close_connection = "", "HTTP/1.0", True
            self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
            self.send_error(400, None, "HTTP/0.9 is not supported: send HTTP/1.0 or HTTP/1.1")
            return False
        parsed = super().parse_request()
        if not self.server.answering(self.connection):
            self.close_connection = True  # the deadline passed while the headers came: no answer
            return False
        return parsed

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        try:
            code, content_type, body = self.server.route(self.path.split("?", 1)[0])
        except Exception as error:  # noqa: BLE001 - a failed scrape must not pass unseen, nor stop shipping
            count_error("metrics")
            log.error("a metrics request failed", path=self.path, error=repr(error), exc_info=error)
            code, content_type, body = 500, "text/plain; charset=utf-8", b"internal error: see the agent's log\n"
        # Not in the try: a client that went away or stopped reading is no
        # error of the agent's (handle_error lets its OSError go).
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # a scrape every few seconds, or a client timing out, is not worth a log line


class BoundedHTTPServer(ThreadingHTTPServer):
    """``route`` served with a thread per connection, within the limits above."""

    daemon_threads = True
    block_on_close = False  # stopping never waits for a client: shut_all ends the connections
    allow_reuse_address = True  # a restarted agent rebinds at once; a live listener still refuses

    def __init__(self, address: tuple[str, int], route: Route, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.route = route
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self._lock = threading.Lock()
        # Each live connection -> the monotonic deadline of the request it waits for
        # (None while a request is answered; _LATE once shut).
        self._live: dict[socket.socket, float | None] = {}
        self._refused = 0
        self._refused_logged: float | None = None
        super().__init__(address, _Handler)

    def connections(self) -> int:
        with self._lock:
            return len(self._live)

    # -- the serving thread -----------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._live) >= self.max_connections
            if not full:
                self._live[request] = time.monotonic() + self.request_timeout
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)  # no thread was started: the caller closes the connection
            raise

    def service_actions(self) -> None:
        """Shut the connections whose request is late (called between accepts)."""
        now = time.monotonic()
        with self._lock:
            late = [conn for conn, due in self._live.items() if due is not None and due != _LATE and due <= now]
            self._live.update(dict.fromkeys(late, _LATE))
        for conn in late:
            _shut(conn)  # its thread's read ends at once; the thread closes it

    def shut_all(self) -> None:
        """End every live connection (at stop, after ``shutdown``)."""
        with self._lock:
            live = list(self._live)
            self._live.update(dict.fromkeys(live, _LATE))
        for conn in live:
            _shut(conn)

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)  # the serving thread never waits on this client
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)
        self._refused += 1
        now = time.monotonic()
        if self._refused_logged is None or now - self._refused_logged >= REFUSED_LOG_INTERVAL:
            self._refused_logged = now
            log.warning("too many connections to the metrics port; new ones are answered 503 and closed",
                        limit=self.max_connections, refused_so_far=self._refused)

    # -- the connections' threads ---------------------------------------------------

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def waiting(self, connection: socket.socket) -> None:
        with self._lock:
            if self._live.get(connection) != _LATE:
                self._live[connection] = time.monotonic() + self.request_timeout

    def answering(self, connection: socket.socket) -> bool:
        """The request was read: no deadline while it is answered (the socket
        timeout bounds the write). False if it came too late."""
        with self._lock:
            if self._live.get(connection) == _LATE:
                return False
            self._live[connection] = None
            return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # the client reset, went away or stalled
        count_error("metrics")
        log.error("a metrics connection failed", error=repr(error), exc_info=error)

    def _forget(self, request: Any) -> None:
        with self._lock:
            self._live.pop(request, None)


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # its thread closed it already
