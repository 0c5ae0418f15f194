"""``setup watchers`` and ``setup rules``: put the generated rules where they run.

``install_watchers(request)``, on an Elasticsearch cluster:

1. ``GET /_license``. Watcher needs an active Standard, Gold, Platinum,
   Enterprise or trial licence. On any other (Basic, expired) nothing is
   written and the result says why and what to use instead (Kibana rules,
   ElastAlert2): a skip, not an error.
2. ``PUT /_watcher/watch/<rule id>`` for each rule, in order. The response's
   ``created`` tells a new watch from an updated one. A cluster whose licence
   allows Watcher but whose Watcher is off answers "no handler": reported as
   such, with the watches not yet installed.

``install_rules(settings)``, on Kibana (the client is agent.kibana.importer's,
shared with ``setup dashboards``):

1. ``GET /api/status``: reachable, credentials accepted, version at least
   kibana_rules.OLDEST_KIBANA, else refused before anything is written.
2. ``GET /api/spaces/space/<id>`` when a space is named: a missing space is a
   configuration error (exit code 2).
3. The index connector (kibana_rules.CONNECTOR_ID), then each rule:
   ``POST [/s/<space>]/api/actions/connector/<id>`` and
   ``POST .../api/alerting/rule/<id>`` with ``kbn-xsrf``; a 409 (it exists)
   becomes a ``PUT`` of the same id (update). The connector is an index
   connector: on a Basic licence only the index and server-log connectors
   exist, and an index works on every licence; the report says so.

Both install ``rules``: by default ``rules.RULES`` (60-second health
windows); the commands pass ``rules.for_windows(window, lateness)`` for the
agents' windows. Both return a list of ``Installed`` (what, id, outcome). A failure after some
objects were written raises ``PartialInstall``, whose message lists what was
installed before it, then the cause; its exit code is the cause's
(3 unreachable / refused / missing privilege / too old, 2 a bad option,
4 an object refused by the engine).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from agent.alerting import kibana_rules, watcher
from agent.alerting.rules import ALERTS_INDEX, RULES, Rule, require_fields
from agent.errors import AuthError, ModelscribeError, PermanentOutputError

# request(method, path, body) -> (status, parsed body); see agent.setup.templates.Request.
Request = Callable[[str, str, Any], "tuple[int, Any]"]

WATCHER_LICENCES = frozenset({"standard", "gold", "platinum", "enterprise", "trial"})
EXIT_REFUSED = 4
CREATED, UPDATED, SKIPPED = "created", "updated", "skipped"


@dataclass(frozen=True)
class Installed:
    """One object written (or skipped) by an install."""

    what: str  # watch | connector | rule | licence
    id: str
    outcome: str  # created | updated | skipped
    detail: str = ""


class RuleRefused(PermanentOutputError):
    """The engine refused one of our objects (exit code 4); the message has its answer."""

    exit_code = EXIT_REFUSED


class PartialInstall(ModelscribeError):
    """Some objects were installed, then one step failed. Exit code: the cause's."""

    def __init__(self, installed: list[Installed], cause: ModelscribeError) -> None:
        done = ", ".join(f"{item.what} {item.id}" for item in installed) or "nothing"
        super().__init__(f"{cause} - installed before this failure: {done}")
        self.installed = installed
        self.cause = cause
        self.exit_code = cause.exit_code


def format_installed(items: list[Installed]) -> list[str]:
    """The report lines the commands print."""
    return [f"{item.outcome:<8} {item.what:<9} {item.id}" + (f"  ({item.detail})" if item.detail else "")
            for item in items]


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("reason") or error)[:300]
        return str(body.get("message") or error or body)[:300]
    return str(body)[:300]


# ------------------------------------------------------------------ Watcher

def watcher_licence(request: Request) -> tuple[bool, str]:
    """(whether Watcher may run, the licence type and status as text)."""
    status, body = request("GET", "/_license", None)
    if status in (401, 403):
        raise AuthError(f"GET /_license -> {status}: the credentials cannot read the licence "
                        f"(cluster privilege monitor): {_reason(body)}")
    if status != 200 or not isinstance(body, dict) or "license" not in body:
        raise PermanentOutputError(f"GET /_license -> {status}: {_reason(body)}")
    licence = body["license"]
    kind, state = str(licence.get("type", "?")).lower(), str(licence.get("status", "?")).lower()
    return kind in WATCHER_LICENCES and state == "active", f"{kind} ({state})"


def install_watchers(request: Request, rules: tuple[Rule, ...] = RULES) -> list[Installed]:
    """Install one watch per rule, or skip them all with the reason (see the module docstring)."""
    require_fields()
    allowed, licence = watcher_licence(request)
    if not allowed:
        reason = (f"licence {licence}: Watcher needs an active Standard, Gold, Platinum or Enterprise "
                  f"licence (or a trial); nothing was written. On Basic use `modelscribe setup rules "
                  f"--kibana-url URL` (Kibana ES query rules) or the ElastAlert2 files in kibana/elastalert/")
        return [Installed("licence", licence, SKIPPED, reason)]
    installed: list[Installed] = []
    for rule in rules:
        status, body = request("PUT", f"/_watcher/watch/{rule.id}", watcher.watch(rule))
        if status == 200 and isinstance(body, dict):
            installed.append(Installed("watch", rule.id, CREATED if body.get("created") else UPDATED))
            continue
        if status in (401, 403):
            cause: ModelscribeError = AuthError(
                f"PUT /_watcher/watch/{rule.id} -> {status}: the credentials lack the cluster privilege "
                f"manage_watcher: {_reason(body)}")
        elif "no handler" in _reason(body) or status in (404, 405):
            cause = PermanentOutputError(
                f"PUT /_watcher/watch/{rule.id} -> {status}: Watcher is not enabled on this cluster "
                f"(xpack.watcher.enabled) although the licence ({licence}) allows it: {_reason(body)}")
        else:
            cause = RuleRefused(f"PUT /_watcher/watch/{rule.id} -> {status}: {_reason(body)}")
        raise PartialInstall(installed, cause)
    return installed


# ------------------------------------------------------------------ Kibana

def _space_prefix(space: str | None) -> str:
    return f"/s/{urllib.parse.quote(space, safe='')}" if space and space != "default" else ""


def _put_or_post(kibana: Any, base: str, path: str, create: dict[str, Any], update: dict[str, Any],
                 what: str, ident: str) -> Installed:
    status, body = kibana.call("POST", path, json.dumps(create).encode(), "application/json")
    outcome = CREATED
    if status == 409:
        status, body = kibana.call("PUT", path, json.dumps(update).encode(), "application/json")
        outcome = UPDATED
    if status in (200, 201, 204):
        return Installed(what, ident, outcome)
    kibana.check_access(status, body, f"write {what} {ident} (Stack Rules and Actions and Connectors: all, "
                                      f"in the space)")
    if status == 404:
        raise PermanentOutputError(f"Kibana at {base} answered 404 for {path}: {_reason(body)} "
                                   f"(is the space right, and the Alerting plugin enabled?)")
    raise RuleRefused(f"Kibana at {base} refused {what} {ident}: HTTP {status}: {_reason(body)}")


def _check_version(kibana: Any) -> None:
    # The rules' oldest Kibana is their own, not the dashboards'.
    oldest = tuple(int(part) for part in kibana_rules.OLDEST_KIBANA.split("."))
    kibana.version(oldest, needs="the rules need", nothing="nothing was installed")


def install_rules(settings: Any, rules: tuple[Rule, ...] = RULES) -> list[Installed]:
    """Install the index connector and one ES query rule per rule into Kibana."""
    from agent.kibana.importer import Kibana  # shared client (setup dashboards)

    require_fields()
    kibana = Kibana(settings)
    base = settings.url.rstrip("/")
    _check_version(kibana)
    if settings.space and settings.space != "default":
        kibana.check_space(settings.space)
    prefix = _space_prefix(settings.space)
    installed: list[Installed] = []
    try:
        connector = kibana_rules.connector_body()
        item = _put_or_post(kibana, base, f"{prefix}/api/actions/connector/{kibana_rules.CONNECTOR_ID}",
                            connector, {"name": connector["name"], "config": connector["config"]},
                            "connector", kibana_rules.CONNECTOR_ID)
        installed.append(Installed(item.what, item.id, item.outcome,
                                   f"index connector into {ALERTS_INDEX}: on a Basic licence only the index "
                                   "and server-log connectors exist"))
        for rule in rules:
            installed.append(_put_or_post(kibana, base, f"{prefix}/api/alerting/rule/{rule.id}",
                                          kibana_rules.rule_body(rule), kibana_rules.update_body(rule),
                                          "rule", rule.id))
    except ModelscribeError as error:
        raise PartialInstall(installed, error) from error
    return installed
