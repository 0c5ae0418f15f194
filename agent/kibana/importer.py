"""``modelscribe setup dashboards``: import kibana/modelscribe.ndjson into Kibana.

The steps, each with a message naming the URL and what is wrong when it fails:

1. ``GET /api/status``: reachable, credentials accepted, version at least
   ``OLDEST_KIBANA`` (8.8); an older Kibana is refused before anything is
   written (its migrations do not know our objects' format).
2. ``GET /api/spaces/space/<id>`` when ``--space`` names one: a space that
   does not exist is a configuration error (exit code 2), not an import into
   the default space.
3. ``POST [/s/<space>]/api/saved_objects/_import?overwrite=true``: one
   multipart/form-data request (field ``file``, ``modelscribe.ndjson``,
   ``application/ndjson``) with ``kbn-xsrf``; Kibana imports every object or
   reports per object why not.

The report lists every object of the file with its outcome (``created``,
``overwritten``, ``failed: <reason>``, or ``not reported`` when Kibana said
nothing of it), so a partial import says exactly what was installed.

Exit codes (agent.errors): 0 every object imported; 2 a bad option (a
malformed ``--kibana-url``, checked before any request, or an unknown
space); 3 Kibana unreachable, the credentials refused, a missing
privilege, or a Kibana too old; 4 some objects failed (the report says which).

What is not Kibana's answer is one of these errors too, never a traceback:
a peer that does not speak HTTP (a transport port: ``BadStatusLine``), an
answer cut short (``IncompleteRead``), an overlong header line, and JSON of
another shape than Kibana's (a ``version`` that is not an object, an import
answer whose ``errors`` or ``successResults`` are not lists of objects) are
exit code 3 with the URL named; an import error whose ``error`` is a plain
string is that object's failure (exit code 4) with the string as its reason.

Credentials and TLS are the Elasticsearch connection's (``--api-key-file``,
``--username``/``--password-file``, ``--ca-cert``, ``--client-cert``,
``--tls-verify``): Kibana accepts the same API keys and users.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from agent.errors import AuthError, ConfigError, ModelscribeError, PermanentOutputError, TransientOutputError
from agent.kibana.render import OLDEST_KIBANA
from agent.selflog import Secret

EXIT_PARTIAL = 4
_VERSION = re.compile(r"(\d+)\.(\d+)")


class PartialImport(ModelscribeError):
    """Kibana imported some objects and refused others (exit code 4)."""

    exit_code = EXIT_PARTIAL


@dataclass(frozen=True)
class KibanaSettings:
    url: str
    space: str | None = None
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    timeout: float = 30.0


@dataclass(frozen=True)
class Outcome:
    type: str
    id: str
    title: str
    result: str  # created, overwritten, failed: <reason>, not reported


class Kibana:
    """The few Kibana HTTP calls setup needs; every failure becomes one of our errors."""

    def __init__(self, settings: KibanaSettings) -> None:
        expected = "expected http(s)://HOST[:PORT][/base-path]"
        try:
            parsed = urllib.parse.urlsplit(settings.url)
            # .port raises ValueError too, for a port out of range or not a number.
            valid = parsed.scheme in ("http", "https") and bool(parsed.hostname) and parsed.port != 0
        except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
            raise ConfigError(f"--kibana-url {settings.url!r}: {error}; {expected}") from None
        if not valid:
            raise ConfigError(f"--kibana-url {settings.url!r}: {expected}")
        self._settings = settings
        self._base = settings.url.rstrip("/")
        self._context = _ssl_context(settings) if parsed.scheme == "https" else None

    def _auth(self) -> dict[str, str]:
        settings = self._settings
        if settings.api_key is not None:
            return {"Authorization": "ApiKey " + settings.api_key.reveal()}
        if settings.username and settings.password is not None:
            raw = f"{settings.username}:{settings.password.reveal()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
        return {}

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str | None = None) -> tuple[int, Any]:
        headers = {"kbn-xsrf": "modelscribe", "Accept": "application/json", **self._auth()}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self._base + path, data=body, headers=headers, method=method)
        try:
            try:
                with urllib.request.urlopen(request, timeout=self._settings.timeout,
                                            context=self._context) as answer:
                    return answer.status, _json_or_text(answer.read())
            except urllib.error.HTTPError as error:
                # The error's body is read here, inside the net: it can be cut short too.
                return error.code, _json_or_text(error.read())
        except http.client.IncompleteRead as error:
            more = f", {error.expected} more expected" if error.expected is not None else ""
            raise TransientOutputError(
                f"Kibana at {self._base} closed the connection in the middle of its answer to {method} {path} "
                f"({len(error.partial)} bytes read{more}): a proxy or Kibana dropped it; try again") from error
        except http.client.HTTPException as error:
            # BadStatusLine, LineTooLong, too many headers...: not an HTTP server, or not Kibana.
            raise TransientOutputError(
                f"Kibana at {self._base} is unreachable: what answers there does not speak HTTP as Kibana does "
                f"({error!r}); is --kibana-url Kibana's HTTP port?") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TransientOutputError(f"Kibana at {self._base} is unreachable: {reason}") from error

    def version(self, oldest: tuple[int, int] = OLDEST_KIBANA, needs: str = "the dashboards need",
                nothing: str = "nothing was imported") -> tuple[int, int]:
        """Kibana's (major, minor); PermanentOutputError when older than ``oldest``
        (``needs``/``nothing`` word the message for the command that asks)."""
        status, body = self.call("GET", "/api/status")
        self.check_access(status, body, "read its status (GET /api/status)")
        version = body.get("version") if isinstance(body, dict) else None
        number = version.get("number", "") if isinstance(version, dict) else ""
        match = _VERSION.match(number) if isinstance(number, str) else None
        if status != 200 or not match:
            found = f", version {str(version)[:80]!r}" if status == 200 and version is not None else ""
            raise PermanentOutputError(f"{self._base} did not answer as Kibana does on /api/status "
                                       f"(HTTP {status}{found}); is --kibana-url the Kibana URL, not "
                                       f"Elasticsearch's?")
        found = (int(match.group(1)), int(match.group(2)))
        if found < oldest:
            raise PermanentOutputError(
                f"Kibana at {self._base} is {number}; {needs} Kibana "
                f"{oldest[0]}.{oldest[1]} or later (upgrade Kibana; {nothing})")
        return found

    def check_space(self, space: str) -> None:
        status, body = self.call("GET", f"/api/spaces/space/{urllib.parse.quote(space, safe='')}")
        if status == 404:
            raise ConfigError(f"--space {space}: Kibana at {self._base} has no such space "
                              f"(create it, or leave out --space for the default space); nothing was imported")
        self.check_access(status, body, f"read the space {space!r}")
        if status != 200:
            raise PermanentOutputError(f"Kibana at {self._base} answered HTTP {status} for the space {space!r}: "
                                       f"{_reason(body)}")

    def import_objects(self, ndjson: bytes, space: str | None) -> dict[str, Any]:
        boundary = f"modelscribe-{uuid.uuid4().hex}"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"modelscribe.ndjson\""
                f"\r\nContent-Type: application/ndjson\r\n\r\n").encode() + ndjson + f"\r\n--{boundary}--\r\n".encode()
        prefix = f"/s/{urllib.parse.quote(space, safe='')}" if space and space != "default" else ""
        status, answer = self.call("POST", f"{prefix}/api/saved_objects/_import?overwrite=true", body,
                                   f"multipart/form-data; boundary={boundary}")
        self.check_access(status, answer, "import saved objects (the Saved Objects Management or "
                                           "Dashboard privilege: all)")
        if status != 200 or not isinstance(answer, dict):
            raise PermanentOutputError(f"Kibana at {self._base} refused the import: HTTP {status}: {_reason(answer)}")
        return answer

    def check_access(self, status: int, body: Any, doing: str) -> None:
        """AuthError naming the URL for a 401 or a 403 (``doing``: what was refused)."""
        if status == 401:
            raise AuthError(f"Kibana at {self._base} refused the credentials (401): pass --api-key-file or "
                            f"--username/--password-file of a user Kibana accepts")
        if status == 403:
            raise AuthError(f"Kibana at {self._base}: the credentials lack the privilege to {doing} (403): "
                            f"{_reason(body)}")


def import_dashboards(settings: KibanaSettings, ndjson: bytes) -> list[Outcome]:
    """Import the file; the outcome of each of its objects, in file order.
    Raises PartialImport (with the outcomes in its message) if any failed."""
    kibana = Kibana(settings)
    kibana.version()
    if settings.space and settings.space != "default":
        kibana.check_space(settings.space)
    answer = kibana.import_objects(ndjson, settings.space)
    outcomes = outcomes_of(ndjson, answer, settings.url.rstrip("/"))
    failed = [o for o in outcomes if o.result != "created" and o.result != "overwritten"]
    if failed:
        raise PartialImport(format_outcomes(outcomes) + f"\n{len(failed)} of {len(outcomes)} objects were not "
                            f"imported into {settings.url}")
    return outcomes


def _entries(answer: dict[str, Any], key: str, url: str) -> list[dict[str, Any]]:
    """``answer[key]`` as a list of objects; PermanentOutputError naming the URL otherwise."""
    entries = answer.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise PermanentOutputError(f"Kibana at {url} answered the import with {key} of an unexpected shape "
                                   f"({str(entries)[:200]}); is --kibana-url Kibana? What was imported is "
                                   f"unknown: check the objects in Kibana")
    return entries


def _error_detail(error: Any) -> str:
    # Kibana's errors[].error is an object ({"type": ..., "references"|"message": ...});
    # anything else is shown as it came.
    if not isinstance(error, dict):
        return str(error)[:200] if error not in (None, "") else "unknown"
    detail = str(error.get("type", "unknown"))
    references = error.get("references")
    if isinstance(references, list) and references:
        detail += " " + ", ".join(f"{r.get('type')}/{r.get('id')}" if isinstance(r, dict) else str(r)
                                  for r in references)
    elif error.get("message"):
        detail += f" ({error['message']})"
    return detail


def outcomes_of(ndjson: bytes, answer: dict[str, Any], url: str = "Kibana") -> list[Outcome]:
    done = {(r.get("type"), r.get("id")): r for r in _entries(answer, "successResults", url)}
    errors = {(e.get("type"), e.get("id")): e for e in _entries(answer, "errors", url)}
    outcomes = []
    for line in ndjson.decode().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        key = (obj["type"], obj["id"])
        title = obj.get("attributes", {}).get("title", "")
        if key in errors:
            outcomes.append(Outcome(*key, title, f"failed: {_error_detail(errors[key].get('error'))}"))
        elif key in done:
            outcomes.append(Outcome(*key, title, "overwritten" if done[key].get("overwrite") else "created"))
        else:
            outcomes.append(Outcome(*key, title, "not reported"))
    return outcomes


def format_outcomes(outcomes: list[Outcome]) -> str:
    return "\n".join(f"{o.result:<12} {o.type:<14} {o.id}  {o.title}" for o in outcomes)


def _ssl_context(settings: KibanaSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_cert) if settings.ca_cert \
        else ssl.create_default_context()
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    return context


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested beyond the parser
        return raw.decode("utf-8", "replace")[:500]


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]
