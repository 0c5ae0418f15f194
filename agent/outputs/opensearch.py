"""The OpenSearch output: the Elasticsearch output's delivery path, OpenSearch's APIs around it.

Why a subclass and not the opensearch-py client: delivery (bulk ``create``
with the deterministic ``_id``, plain ``application/json`` and
``application/x-ndjson`` bodies, the Authorization header re-read from its
file, error translation) already goes through elastic_transport, a generic
HTTP transport, and never through elasticsearch-py's API layer, whose
product check is what refuses a non-Elastic server.  OpenSearch answers the
same ``_bulk`` request with the same per-item statuses (201, 409
``version_conflict_engine_exception``, 400 mapping errors, 429), so the one
``retry.classify`` / ``sender`` / dead-letter path applies unchanged: same
acknowledgement, retry, dead-letter and ``_id`` semantics, checked on a real
OpenSearch node (tests/outputs/test_opensearch_output.py).  A second client
would mean a second transport and a second error translation to keep
equivalent.

What differs, and is overridden here:

* credentials are checked with ``GET /_plugins/_security/authinfo`` (the
  security plugin's "who am I"; Elasticsearch's ``_security/_authenticate``
  does not exist there).  OpenSearch has no API keys: username and password
  (or a client certificate) only.  A cluster without the security plugin
  answers 400/404, which is not an authentication failure.
* ``check`` reports the distribution and version from ``GET /`` (1.x, 2.x
  and 3.x are accepted), the user and its roles.  OpenSearch has no
  has-privileges API, so write privileges on the target are not checked in
  advance: a missing one shows up as a 403 on the first bulk request (retried
  by the daemon, reported by ``--once``).
* ``detect_engine`` tells the two engines apart from the root endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.errors import AuthError, PermanentOutputError
from agent.outputs.base import CheckReport, Response
from agent.outputs.connection import ConnectionSettings
from agent.outputs.elasticsearch import ElasticsearchOutput

if TYPE_CHECKING:
    from agent.config import Config

AUTHINFO = "/_plugins/_security/authinfo"
SUPPORTED_MAJORS = ("1", "2", "3")


def detect_engine(root: Response) -> str | None:
    """"opensearch" or "elasticsearch" from a ``GET /`` response, None if it cannot tell."""
    if root.status != 200 or not isinstance(root.body, dict):
        return None
    version = root.body.get("version")
    if not isinstance(version, dict):
        return None
    return "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"


def _auth_hint(config: ConnectionSettings, response: Response) -> str:
    detail = ""
    if isinstance(response.body, dict) and isinstance(response.body.get("error"), dict):
        detail = f" ({response.body['error'].get('reason')})"
    elif isinstance(response.body, str) and response.body.strip():
        detail = f" ({response.body.strip()[:200]})"
    if response.status == 403:
        return f"HTTP 403: the OpenSearch user lacks a permission{detail}"
    if config.password is not None and config.username:
        return f"HTTP 401: OpenSearch rejected user {config.username!r} and the password{detail}"
    if config.api_key is not None:
        return ("HTTP 401: OpenSearch has no API keys: use --username with --password-file "
                "(or a client certificate)")
    return "HTTP 401: OpenSearch requires credentials: set --username with --password-file"


class OpenSearchOutput(ElasticsearchOutput):
    name = "opensearch"
    _WHO_AM_I = AUTHINFO

    @classmethod
    def from_config(cls, config: "Config") -> "OpenSearchOutput":
        return cls(ConnectionSettings.from_config(config))

    def _authenticate(self, timeout: float) -> None:
        """The security plugin's "who am I" (``preflight`` calls it first)."""
        response = self.request("GET", AUTHINFO, timeout=timeout)
        if response.status in (401, 403):
            raise AuthError(_auth_hint(self._config, response))
        missing = self._no_api(response, timeout)
        if missing is not None:
            raise PermanentOutputError(missing)

    def _refusal(self, response: Response) -> str:
        return _auth_hint(self._config, response)

    def check(self) -> CheckReport:
        """Connectivity, distribution and version, identity and roles."""
        lines: list[tuple[str, str]] = [("url", ", ".join(self._config.es_urls))]
        who = self._who_am_i(lines)
        if isinstance(who, CheckReport):
            return who
        ok = True
        root = self.request("GET", "/")
        engine = detect_engine(root)
        if engine is None:
            lines.append(("version", f"unknown (GET / answered HTTP {root.status})"))
        else:
            body: dict[str, Any] = root.body
            number = str(body["version"].get("number", "?"))
            lines.append(("version", f"{engine} {number} (cluster {body.get('cluster_name', '?')})"))
            if engine != "opensearch":
                ok = False
                lines.append(("compatibility", "FAILED: this is Elasticsearch: use --output elasticsearch"))
            elif number.split(".")[0] not in SUPPORTED_MAJORS:
                ok = False
                lines.append(("compatibility", f"FAILED: OpenSearch {number} is not supported (1.x, 2.x, 3.x)"))
        if who.status == 200 and isinstance(who.body, dict):
            roles = ", ".join(who.body.get("roles") or []) or "none"
            lines.append(("auth", f"ok as {who.body.get('user_name')} (roles: {roles})"))
            lines.append(("privileges", "not checked in advance: OpenSearch has no has-privileges API; "
                                        "a missing permission shows as HTTP 403 on the first bulk request"))
        else:
            lines.append(("auth", "the security plugin is not enabled on this cluster"))
        target = self._target_line()
        lines.append(target)
        return CheckReport(ok and not target[1].startswith("FAILED"), tuple(lines))
