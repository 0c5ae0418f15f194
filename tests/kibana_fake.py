"""A recording fake of Kibana's HTTP API for contract tests (no Kibana can run on the build machines).

Used by tests/alerting/test_setup_rules.py and tests/kibana/test_importer.py
(tests/ is on pytest's pythonpath).  ``FakeKibana`` binds 127.0.0.1 on a free
port, records every request as (method, path, lower-cased headers, body) in
``requests`` and answers ``GET /api/status`` (Kibana's version, or
`status_code` with a security error) and ``GET /api/spaces/space/<id>``
(200 for `spaces`, else 404) as Kibana does; any other GET is 404.  POST and
PUT are answered by ``write``, which each test module overrides with the
API it exercises.  ``raw`` may answer a request with bytes written as they
are, in place of an HTTP response (not HTTP at all, a body cut short), the
connection closed after them.  Used as a context manager: served on enter,
stopped on exit.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeKibana:
    def __init__(self, version: str = "8.15.2", spaces: tuple[str, ...] = ("default", "ml"),
                 status_code: int = 200) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.version, self.spaces, self.status_code = version, spaces, status_code
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((self.command, self.path, headers, body))
                raw = fake.raw(self.command, self.path)
                if raw is not None:
                    self.wfile.write(raw)
                    self.close_connection = True
                    return
                if self.command == "GET":
                    code, answer = fake.read(self.path)
                else:
                    code, answer = fake.write(self.command, self.path, headers, body)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def read(self, path: str) -> tuple[int, object]:
        if path == "/api/status" and self.status_code != 200:
            return self.status_code, {"statusCode": self.status_code, "error": "Unauthorized",
                                      "message": "[security_exception] unable to authenticate"}
        if path == "/api/status":
            return 200, {"name": "kb", "version": {"number": self.version}}
        if path.startswith("/api/spaces/space/"):
            space = path.rsplit("/", 1)[1]
            if space in self.spaces:
                return 200, {"id": space, "name": space}
            return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
        return 404, {"message": "Not Found"}

    def raw(self, method: str, path: str) -> bytes | None:
        """Bytes to send as they are instead of an answer (None: answer as Kibana does)."""
        return None

    def write(self, method: str, path: str, headers: dict[str, str],
              body: bytes) -> tuple[int, object]:
        """The answer to a POST or PUT (already recorded)."""
        return 404, {"message": "Not Found"}

    def writes(self) -> list[tuple[str, str, dict]]:
        """The JSON-bodied POSTs and PUTs received, in order."""
        return [(method, path, json.loads(body)) for method, path, _, body in self.requests
                if method in ("POST", "PUT")]

    def __enter__(self) -> "FakeKibana":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
