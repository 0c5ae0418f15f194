"""`modelscribe setup rules` against a local HTTP server that records what it is
sent and answers as Kibana's alerting and connector APIs do (a contract test:
no Kibana can run on the build machines). Invoked through agent.cli.main, so
the command's registration on `setup` is tested too."""

from __future__ import annotations

import json
import socket

from click.testing import CliRunner

import kibana_fake

from agent.alerting import kibana_rules
from agent.alerting.rules import RULES
from agent.cli import main

KEY = "a2V5OnNlY3JldA=="


class FakeKibana(kibana_fake.FakeKibana):
    """Connector and rule endpoints on top of status and spaces; `existing` ids answer
    409 to a create; `forbid` (a path fragment) answers 403 to writes matching it."""

    def __init__(self, existing: frozenset[str] = frozenset(), forbid: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.existing, self.forbid = existing, forbid

    def write(self, method, path, headers, body):
        ident = path.rsplit("/", 1)[1]
        if self.forbid and self.forbid in path:
            return 403, {"statusCode": 403, "error": "Forbidden",
                         "message": "Unauthorized to create a \".es-query\" rule for \"stackAlerts\""}
        if method == "POST" and ident in self.existing:
            return 409, {"statusCode": 409, "error": "Conflict",
                         "message": f"Saved object [alert/{ident}] conflict"}
        if headers.get("kbn-xsrf") is None:
            return 400, {"message": "Request must contain a kbn-xsrf header."}
        return 200, {"id": ident, **json.loads(body)}


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
