"""`setup dashboards` and `setup rules` when --kibana-url answers something that is
not Kibana's answer (audit 3, finding 3): not HTTP at all, a body cut short, an
overlong header line, or JSON of another shape. Each must be one of our errors
naming the URL, with the README's exit code (3 unreachable or not Kibana, 4 an
object refused), never an internal error (exit 1) with a traceback.

A local HTTP server (tests/kibana_fake.py) writes the bytes of each case."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kibana_fake

from agent.alerting import kibana_rules
from agent.cli import main

KEY = "a2V5OnNlY3JldA=="
# What an Elasticsearch transport port (9300) answers an HTTP request with.
TRANSPORT_PORT = b"This is not an HTTP port"
CUT_SHORT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"version\":"
ERROR_CUT_SHORT = CUT_SHORT.replace(b"200 OK", b"500 Internal Server Error")
LONG_HEADER = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 70_000 + b"\r\n\r\n"


class Answers(kibana_fake.FakeKibana):
    """`raw_for`: path prefix -> bytes sent as they are; `status_body` replaces the
    /api/status JSON; `import_answer` is the saved-objects import's JSON; rules
    and the connector are accepted."""

    def __init__(self, raw_for: dict[str, bytes] | None = None, status_body: object = None,
                 import_answer: object = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.raw_for, self.status_body, self.import_answer = raw_for or {}, status_body, import_answer

    def raw(self, method, path):
        for prefix, data in self.raw_for.items():
            if path.startswith(prefix):
                return data
        return None

    def read(self, path):
        if path == "/api/status" and self.status_body is not None:
            return 200, self.status_body
        return super().read(path)

    def write(self, method, path, headers, body):
        if "_import" in path:
            return 200, self.import_answer
        return 200, {"id": path.rsplit("/", 1)[1], **json.loads(body)}


def _run(command: str, url: str):
    result = CliRunner().invoke(main, ["setup", command, "--kibana-url", url], env={"MODELSCRIBE_API_KEY": KEY})
    # Our errors end in sys.exit(code); anything else is the bug this file guards against.
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    return result


@pytest.mark.parametrize("command", ["dashboards", "rules"])
@pytest.mark.parametrize("data, words", [
    (TRANSPORT_PORT, "does not speak HTTP"),
    (b"HELLO THIS IS NOT HTTP\r\n\r\n", "does not speak HTTP"),
    (LONG_HEADER, "does not speak HTTP"),
    (CUT_SHORT, "closed the connection in the middle of its answer to GET /api/status (11 bytes read, "
                "989 more expected)"),
    (ERROR_CUT_SHORT, "closed the connection in the middle of its answer"),
], ids=["transport-port", "garbage", "long-header", "cut-short", "error-cut-short"])
def test_an_answer_that_is_not_http_names_the_url_and_exits_3(command, data, words):
    with Answers(raw_for={"/api/status": data}) as kibana:
        result = _run(command, kibana.url)
    assert result.exit_code == 3, result.output
    assert f"Kibana at {kibana.url}" in result.output and words in result.output


@pytest.mark.parametrize("command", ["dashboards", "rules"])
@pytest.mark.parametrize("status_body", [{"version": "8.15.0"}, {"version": {"number": 8}}, ["8.15.0"]],
                         ids=["version-string", "number-not-text", "a-list"])
def test_a_status_of_another_shape_is_not_kibana(command, status_body):
    with Answers(status_body=status_body) as kibana:
        result = _run(command, kibana.url)
    assert result.exit_code == 3, result.output
    assert f"{kibana.url} did not answer as Kibana does on /api/status" in result.output
    assert kibana.writes() == []


def test_an_import_error_given_as_a_string_is_that_objects_failure():
    answer = {"success": False, "errors": [{"type": "dashboard", "id": "modelscribe-drift", "error": "conflict"}]}
    with Answers(import_answer=answer) as kibana:
        result = _run("dashboards", kibana.url)
    assert result.exit_code == 4, result.output
    assert "failed: conflict dashboard      modelscribe-drift" in result.output
    assert f"were not imported into {kibana.url}" in result.output


@pytest.mark.parametrize("answer", [{"success": False, "errors": "boom"},
                                    {"success": True, "successResults": ["modelscribe-drift"]}],
                         ids=["errors-not-a-list", "results-not-objects"])
def test_an_import_answer_of_another_shape_names_the_url(answer):
    with Answers(import_answer=answer) as kibana:
        result = _run("dashboards", kibana.url)
    assert result.exit_code == 3, result.output
    assert f"Kibana at {kibana.url} answered the import with" in result.output
    assert "unexpected shape" in result.output


def test_a_rule_answer_cut_short_lists_what_was_installed():
    with Answers(raw_for={"/api/alerting/rule/": CUT_SHORT}) as kibana:
        result = _run("rules", kibana.url)
    assert result.exit_code == 3, result.output
    assert f"Kibana at {kibana.url} closed the connection in the middle of its answer to POST" in result.output
    assert f"installed before this failure: connector {kibana_rules.CONNECTOR_ID}" in result.output
