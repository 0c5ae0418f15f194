"""`modelscribe setup watchers`: the Basic-licence skip on the real node (through
agent.cli.main, so the command's registration is tested), and the licensed
path's calls against a recorder (no Watcher can run on the build machines)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from agent.alerting import watcher
from agent.alerting.install import PartialInstall, RuleRefused, install_watchers
from agent.alerting.rules import RULES
from agent.cli import main
from agent.errors import AuthError


@pytest.mark.elasticsearch
def test_basic_licence_skips_with_the_reason_and_writes_nothing(es, es_node):
    status, licence = es.request("GET", "/_license")
    assert status == 200 and licence["license"]["type"] == "basic"
    result = CliRunner().invoke(main, ["setup", "watchers", "--es-url", es_node.url, "--ca-cert", es_node.ca_cert,
                                       "--api-key-file", es_node.api_key_file])
    assert result.exit_code == 0, result.output
    assert "basic (active)" in result.output and "Watcher needs" in result.output
    assert "setup rules" in result.output and "kibana/elastalert" in result.output
    assert "watchers: skipped" in result.output
    # Nothing was written: the integ-test node has no Watcher API at all, and
    # no watch index exists.
    status, _ = es.request("GET", "/.watches")
    assert status == 404


class Recorder:
    """A Request (agent.setup.templates) answering from a script; records the calls."""

    def __init__(self, licence: str = "platinum", state: str = "active",
                 put: tuple[int, dict[str, Any]] = (200, {"created": True})) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.licence, self.state, self.put = licence, state, put

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        if path == "/_license":
            return 200, {"license": {"type": self.licence, "status": self.state}}
        return self.put


@pytest.mark.parametrize("licence", ["standard", "gold", "platinum", "enterprise", "trial"])
def test_licences_with_watcher_get_one_put_per_rule(licence):
    request = Recorder(licence)
    installed = install_watchers(request)
    assert request.calls[0][:2] == ("GET", "/_license")
    assert request.calls[1:] == [("PUT", f"/_watcher/watch/{rule.id}", watcher.watch(rule)) for rule in RULES]
    assert [(item.what, item.id, item.outcome) for item in installed] == [
        ("watch", rule.id, "created") for rule in RULES]


def test_an_existing_watch_is_reported_updated():
    installed = install_watchers(Recorder(put=(200, {"created": False, "_version": 3})))
    assert {item.outcome for item in installed} == {"updated"}


@pytest.mark.parametrize("licence,state", [("basic", "active"), ("gold", "expired"), ("platinum", "invalid")])
def test_no_watcher_licence_means_no_put(licence, state):
    request = Recorder(licence, state)
    (item,) = install_watchers(request)
    assert item.outcome == "skipped" and f"{licence} ({state})" in item.detail
    assert [method for method, _, _ in request.calls] == ["GET"]


def test_a_refused_watch_stops_and_says_what_was_installed():
    calls = []

    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        calls.append(path)
        if path == "/_license":
            return 200, {"license": {"type": "gold", "status": "active"}}
        if path.endswith(RULES[2].id):
            return 400, {"error": {"type": "parse_exception", "reason": "could not parse watch"}}
        return 200, {"created": True}

    with pytest.raises(PartialInstall) as raised:
        install_watchers(request)
    assert isinstance(raised.value.cause, RuleRefused) and raised.value.exit_code == 4
    assert f"watch {RULES[0].id}, watch {RULES[1].id}" in str(raised.value)
    assert "could not parse watch" in str(raised.value)
    assert len(calls) == 4  # licence, two watches, the refused one; nothing after it


def test_missing_privilege_is_an_auth_error():
    with pytest.raises(PartialInstall) as raised:
        install_watchers(Recorder(put=(403, {"error": {"reason": "action [cluster:admin/xpack/watcher/watch/put] "
                                                                 "is unauthorized"}})))
    assert isinstance(raised.value.cause, AuthError) and raised.value.exit_code == 3
    assert "manage_watcher" in str(raised.value)
