"""`modelscribe setup rules` against a local HTTP server that records what it is
sent and answers as Kibana's alerting and connector APIs do (a contract test:
no Kibana can run on the build machines). Invoked through agent.cli.main, so
the command's registration on `setup` is tested too."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from click.testing import CliRunner

from agent.alerting import kibana_rules
from agent.alerting.rules import RULES
from agent.cli import main

KEY = "a2V5OnNlY3JldA=="


class FakeKibana:
    """Status, spaces, connector and rule endpoints; `existing` ids answer 409 to
    a create; `forbid` (a path fragment) answers 403 to writes matching it."""

    def __init__(self, version: str = "8.15.2", spaces: tuple[str, ...] = ("default", "ml"),
                 existing: frozenset[str] = frozenset(), forbid: str | None = None, status_code: int = 200) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body))
                return body

            def do_GET(self) -> None:
                self._record()
                if self.path == "/api/status" and status_code != 200:
                    self._answer(status_code, {"statusCode": status_code, "error": "Unauthorized",
                                               "message": "[security_exception] unable to authenticate"})
                elif self.path == "/api/status":
                    self._answer(200, {"name": "kb", "version": {"number": version}})
                elif self.path.startswith("/api/spaces/space/"):
                    space = self.path.rsplit("/", 1)[1]
                    if space in spaces:
                        self._answer(200, {"id": space, "name": space})
                    else:
                        self._answer(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
                else:
                    self._answer(404, {"message": "Not Found"})

            def _write(self) -> None:
                body = json.loads(self._record())
                ident = self.path.rsplit("/", 1)[1]
                if forbid and forbid in self.path:
                    self._answer(403, {"statusCode": 403, "error": "Forbidden",
                                       "message": "Unauthorized to create a \".es-query\" rule for \"stackAlerts\""})
                elif self.command == "POST" and ident in existing:
                    self._answer(409, {"statusCode": 409, "error": "Conflict",
                                       "message": f"Saved object [alert/{ident}] conflict"})
                elif self.headers.get("kbn-xsrf") is None:
                    self._answer(400, {"message": "Request must contain a kbn-xsrf header."})
                else:
                    self._answer(200, {"id": ident, **body})

            do_POST = do_PUT = _write

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeKibana":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str, dict]]:
        return [(method, path, json.loads(body)) for method, path, _, body in self.requests
                if method in ("POST", "PUT")]


def _run(*args: str):
    return CliRunner().invoke(main, ["setup", "rules", *args], env={"MODELSCRIBE_API_KEY": KEY})


def test_creates_the_connector_then_every_rule_in_the_space():
    with FakeKibana() as kibana:
        result = _run("--kibana-url", kibana.url, "--space", "ml")
    assert result.exit_code == 0, result.output
    paths = [(method, path) for method, path, _, _ in kibana.requests]
    assert paths == [("GET", "/api/status"), ("GET", "/api/spaces/space/ml"),
                     ("POST", f"/s/ml/api/actions/connector/{kibana_rules.CONNECTOR_ID}"),
                     *[("POST", f"/s/ml/api/alerting/rule/{rule.id}") for rule in RULES]]
    for _, _, headers, _ in kibana.requests:
        assert headers["kbn-xsrf"] and headers["authorization"] == f"ApiKey {KEY}"
    writes = kibana.writes()
    assert writes[0][2] == kibana_rules.connector_body()
    assert writes[0][2]["connector_type_id"] == ".index"
    for (_, _, body), rule in zip(writes[1:], RULES):
        assert body == kibana_rules.rule_body(rule)
        assert body["rule_type_id"] == ".es-query"
        assert body["actions"][0]["id"] == kibana_rules.CONNECTOR_ID
    assert "only the index and server-log connectors" in result.output
    assert f"{len(RULES)} rules installed" in result.output


def test_existing_objects_are_updated_in_place_with_put():
    existing = frozenset({kibana_rules.CONNECTOR_ID, RULES[0].id})
    with FakeKibana(existing=existing) as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 0, result.output
    writes = kibana.writes()
    assert [(method, path) for method, path, _ in writes[:4]] == [
        ("POST", f"/api/actions/connector/{kibana_rules.CONNECTOR_ID}"),
        ("PUT", f"/api/actions/connector/{kibana_rules.CONNECTOR_ID}"),
        ("POST", f"/api/alerting/rule/{RULES[0].id}"), ("PUT", f"/api/alerting/rule/{RULES[0].id}")]
    # An update carries no rule type nor consumer (Kibana rejects them on PUT).
    assert writes[3][2] == kibana_rules.update_body(RULES[0])
    assert "rule_type_id" not in writes[3][2] and "consumer" not in writes[3][2]
    assert f"updated  rule      {RULES[0].id}" in result.output


def test_a_missing_space_is_a_bad_option_and_nothing_is_written():
    with FakeKibana() as kibana:
        result = _run("--kibana-url", kibana.url, "--space", "nope")
    assert result.exit_code == 2, result.output
    assert "--space nope" in result.output and kibana.url in result.output
    assert kibana.writes() == []


def test_a_403_names_the_url_and_the_privilege_and_lists_what_was_installed():
    with FakeKibana(forbid="/api/alerting/rule/") as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 3, result.output
    assert kibana.url in result.output and "403" in result.output
    assert "Stack Rules" in result.output
    assert f"installed before this failure: connector {kibana_rules.CONNECTOR_ID}" in result.output


def test_an_unreachable_kibana_names_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        result = _run("--kibana-url", url)
    assert result.exit_code == 3, result.output
    assert url in result.output and "unreachable" in result.output


def test_a_kibana_older_than_the_rule_options_is_refused_before_writing():
    with FakeKibana(version="8.6.2") as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 3, result.output
    assert "8.6" in result.output and kibana_rules.OLDEST_KIBANA in result.output
    assert kibana.writes() == []


def test_refused_credentials_name_the_url_and_the_flags():
    with FakeKibana(status_code=401) as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 3, result.output
    assert kibana.url in result.output and "401" in result.output and "--api-key-file" in result.output
    assert kibana.writes() == []
