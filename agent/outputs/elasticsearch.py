"""The Elasticsearch output: one bulk attempt per call, errors translated here.

Compatibility: elasticsearch-py 9 rewrites ``Accept``/``Content-Type`` to
``application/vnd.elasticsearch+json; compatible-with=9``, which an 8.x node
refuses. We use the client only to build the transport (node pool, TLS,
gzip) and send requests through ``client.transport`` with the plain
``application/json`` / ``application/x-ndjson`` media types, which every 8.x
and 9.x node accepts. For the same reason the Authorization header is ours:
it is rebuilt from the key or password file when the file changes, so a
rotated credential is picked up without a restart; a key or password from the
environment or ``$CREDENTIALS_DIRECTORY`` is replaced on a reload (SIGHUP,
``set_credentials``).

Every document is sent as ``create`` with its deterministic ``_id`` (see
``enrich.document_id``): a re-send can only produce a 409, never a second
copy. This is also the only op_type a data stream accepts.

What a TLS failure says, and the client certificate without verification,
are ``agent.outputs.tls``'s.

This module is the one boundary where elastic_transport/urllib3/ssl errors
become the agent's TransientOutputError / PermanentOutputError.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import elastic_transport
import orjson
import urllib3
from elasticsearch import Elasticsearch

from agent import AGENT_NAME, __version__
from agent.config.secrets import check_secret
from agent.outputs.connection import ConnectionSettings
from agent.errors import AuthError, ConfigError, OutputError, PermanentOutputError, TransientOutputError
from agent.events import Event
from agent.outputs import entry_pipeline, tls
from agent.outputs.base import CheckReport, Response
from agent.selflog import Secret, get_logger
from agent.setup.privileges import access

if TYPE_CHECKING:
    from agent.config import Config

log = get_logger("output.elasticsearch")

PREFLIGHT_TIMEOUT = 10.0  # seconds
_JSON = "application/json"
_NDJSON = "application/x-ndjson"
_BULK_FILTER = "errors,items.*._id,items.*.status,items.*.error.type,items.*.error.reason"
# Privileges a writer needs on its target (data streams: auto_configure creates it).
_WRITE_PRIVILEGES = ("create_doc", "auto_configure")


class _Credential:
    """The Authorization header, re-read when its file changes."""

    def __init__(self, config: ConnectionSettings) -> None:
        self._config = config
        self._stamp: tuple[float, int] | None = None
        self._header = self._build(config.api_key, config.password)

    def _build(self, api_key: Secret | None, password: Secret | None) -> str | None:
        if api_key is not None:
            return "ApiKey " + api_key.reveal()
        if password is not None and self._config.username:
            raw = f"{self._config.username}:{password.reveal()}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return None

    def header(self) -> str | None:
        path = self._config.api_key_file or self._config.password_file
        if path:
            try:
                info = os.stat(path)
                stamp = (info.st_mtime, info.st_size)
                if self._stamp is not None and stamp != self._stamp:
                    with open(path, encoding="utf-8") as handle:
                        value = Secret(handle.read().strip())
                    if value.reveal():
                        check_secret("api_key" if self._config.api_key_file else "password", value, path)
                        self._header = self._build(value if self._config.api_key_file else None,
                                                   value if self._config.password_file else None)
                        log.info("credential file changed, using the new value", path=path)
                self._stamp = stamp
            except OSError as error:
                log.warning("cannot re-read the credential file, keeping the previous value",
                            path=path, error=error.strerror)
            except (UnicodeDecodeError, ConfigError) as error:
                self._stamp = stamp  # said once per change of the file
                reason = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else str(error)
                log.warning("the credential file changed but its new value cannot be used; keeping the "
                            "previous value", path=path, error=reason)
        return self._header


class ElasticsearchOutput:
    name = "elasticsearch"

    def __init__(self, config: ConnectionSettings) -> None:
        self._config = config
        self._target = config.target
        # --parse-at elasticsearch: the target is checked once, before the first document.
        self._target_unchecked = config.raw_documents
        self._target_lock = threading.Lock()
        self._bulk_path = f"/{self._target}/_bulk"
        self._credential = _Credential(config)
        self._client = _build_client(config)
        self._transport = self._client.transport

    def set_credentials(self, settings: ConnectionSettings) -> None:
        """Authenticate with ``settings``' credentials from the next request
        (a reload: a key or password from the environment or
        ``$CREDENTIALS_DIRECTORY`` changed, or another file or user is named).
        Only the credential fields are taken; URLs, TLS and the target stay.
        Any thread: workers see either the old or the new header, whole."""
        self._config = dataclasses.replace(
            self._config, api_key=settings.api_key, api_key_file=settings.api_key_file,
            api_key_origin=settings.api_key_origin, username=settings.username,
            password=settings.password, password_file=settings.password_file)
        self._credential = _Credential(self._config)

    @classmethod
    def from_config(cls, config: "Config") -> "ElasticsearchOutput":
        return cls(ConnectionSettings.from_config(config))

    # -- one request -----------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, content_type: str = _JSON,
                params: dict[str, str] | None = None, timeout: float | None = None) -> Response:
        headers = {"accept": _JSON, "user-agent": f"{AGENT_NAME}/{__version__}"}
        auth = self._credential.header()
        if auth:
            headers["authorization"] = auth
        if body is not None:
            headers["content-type"] = content_type
        if params:
            path += "?" + "&".join(f"{key}={value}" for key, value in params.items())
        try:
            meta, data = self._transport.perform_request(method, path, headers=headers, body=body,
                                                         request_timeout=self._config.request_timeout if timeout is None
                                                         else timeout)
        except elastic_transport.TlsError as error:
            detail = _root_message(error)
            if tls.hung_up(self._config, detail):  # nothing about TLS failed: the peer went away
                raise TransientOutputError(tls.hung_up_message(self._config, detail)) from error
            raise PermanentOutputError(tls.handshake_problem(self._config, detail)) from error
        except elastic_transport.ConnectionTimeout as error:
            waited = self._config.request_timeout if timeout is None else timeout
            raise TransientOutputError(f"Elasticsearch did not answer within {waited:g}s ({method} {path})") \
                from error
        except elastic_transport.ConnectionError as error:
            unread = tls.unread_file(self._config, _chain(error))
            if unread is not None:  # a TLS file missing (mid-rotation?): nothing was sent
                raise PermanentOutputError(unread) from error
            if _broke(error):  # sent, then the answer never came whole: it may have been applied
                # (An HTTPS port given http:// closes without an answer: checked on 9.2.8.)
                hint = "; if that port serves HTTPS, use https:// in --es-url" \
                    if any(url.startswith("http://") for url in self._config.es_urls) else ""
                raise TransientOutputError(
                    f"the connection to Elasticsearch at {', '.join(self._config.es_urls)} broke before the "
                    f"answer ({method} {path}): {_root_message(error)}{hint}") from error
            raise TransientOutputError(f"cannot connect to Elasticsearch at "
                                       f"{', '.join(self._config.es_urls)}: {_root_message(error)}") from error
        except elastic_transport.SerializationError as error:
            raise TransientOutputError(f"malformed response from Elasticsearch: {_shorten(str(error))}") from error
        except elastic_transport.TransportError as error:
            raise TransientOutputError(f"transport error talking to Elasticsearch: {error}") from error
        return Response(meta.status, data)

    # -- Output ------------------------------------------------------------
    def send(self, events: Sequence[Event]) -> Response:
        if self._target_unchecked:  # the start-up check got no answer (the cluster was down then)
            self._check_target()
        parts = []
        for event in events:
            if event.target is None:
                parts.append(b'{"create":{"_id":"' + event.doc_id.encode("ascii") + b'"}}\n')
            else:
                parts.append(orjson.dumps({"create": {"_index": event.target, "_id": event.doc_id}}) + b"\n")
            parts.append(event.data)
            parts.append(b"\n")
        return self.request("POST", self._bulk_path, b"".join(parts), _NDJSON,
                            {"filter_path": _BULK_FILTER})

    def preflight(self) -> None:
        """Fail fast when the cluster is unreachable or refuses the credentials;
        with raw documents, refuse a target that would store them unparsed
        (``entry_pipeline.NoEntryPipeline``)."""
        timeout = self.preflight_timeout()
        self._authenticate(timeout)
        self._check_target(timeout)

    def _authenticate(self, timeout: float) -> None:
        """``_authenticate`` needs no privilege, so a write-only key passes; a
        cluster without security answers it with an error that is not 401."""
        response = self.request("GET", "/_security/_authenticate", timeout=timeout)
        raise_for_auth(self._config, response)
        missing = self._no_api(response, timeout)
        if missing is not None:
            raise PermanentOutputError(missing)

    def _no_api(self, response: Response, timeout: float | None = None) -> str | None:
        """Why the URL does not lead to the cluster's API, or None. Both a
        node without security and a wrong path answer ``_authenticate`` (and
        OpenSearch's ``authinfo``) with ``400 no handler found for uri``
        (checked on Elasticsearch 9.2.8 and OpenSearch 2.19.1); only a wrong
        path answers ``_nodes/_local`` so too."""
        if response.status != 400 or "no handler found for uri" not in str(response.body):
            return None
        nodes = self.request("GET", "/_nodes/_local", params={"filter_path": "cluster_name"}, timeout=timeout)
        if nodes.status != 400 or "no handler found for uri" not in str(nodes.body):
            return None
        error = nodes.body.get("error") if isinstance(nodes.body, dict) else nodes.body
        return (f"{self._config.es_urls[0]} does not lead to the cluster's API (HTTP 400: {_shorten(str(error))}): "
                "check the path of --es-url (the cluster's root, or the proxy path that maps to it)")

    def _check_target(self, timeout: float | None = None) -> None:
        """``--parse-at elasticsearch``: once, in ``preflight`` or, when the
        cluster did not answer that, before the first bulk request (where a
        refusal stops the agent as a dead output stage would)."""
        with self._target_lock:
            if self._target_unchecked:
                entry_pipeline.require(lambda method, path: self.request(method, path, timeout=timeout),
                                       self._target)
                self._target_unchecked = False

    def check_raw_target(self) -> None:
        """A reload turned ``--parse-at elasticsearch`` on: the target is checked
        now (``NoEntryPipeline`` refuses the reload), or, when the cluster does
        not answer, before the next bulk request, as at start-up."""
        with self._target_lock:
            self._target_unchecked = True
        try:
            self._check_target(self.preflight_timeout())
        except OutputError:
            pass  # (unreachable: still unchecked, checked before the next bulk request)

    def preflight_timeout(self) -> float:
        """The start-up check waits at most this: the daemon starts reading
        (and tells systemd it is ready) only after it, whatever it finds."""
        return min(self._config.request_timeout, PREFLIGHT_TIMEOUT)

    def _version(self) -> tuple[str, str] | None:
        """(version, cluster name). ``GET /`` lives in a module that minimal
        distributions leave out; ``_nodes/_local`` is the fallback."""
        root = self.request("GET", "/")
        if root.status == 200 and isinstance(root.body, dict):
            return str(root.body.get("version", {}).get("number", "?")), str(root.body.get("cluster_name", "?"))
        nodes = self.request("GET", "/_nodes/_local", params={"filter_path": "cluster_name,nodes.*.version"})
        if nodes.status == 200 and isinstance(nodes.body, dict):
            versions = [node.get("version", "?") for node in nodes.body.get("nodes", {}).values()]
            return (versions[0] if versions else "?"), str(nodes.body.get("cluster_name", "?"))
        return None

    def check(self) -> CheckReport:
        """Connectivity, version, identity and write privileges on the target."""
        lines: list[tuple[str, str]] = [("url", ", ".join(self._config.es_urls))]
        who = self._who_am_i(lines)
        if isinstance(who, CheckReport):
            return who
        found = self._version()
        ok = True
        if found is None:
            lines.append(("version", "unknown (no privilege to read it)"))
        else:
            version, cluster = found
            lines.append(("version", f"{version} (cluster {cluster})"))
            if version.split(".")[0] not in ("8", "9"):
                ok = False
                lines.append(("compatibility", f"FAILED: Elasticsearch {version} is not supported (8.x, 9.x)"))
        if who.status == 200 and isinstance(who.body, dict):
            realm = who.body.get("authentication_type") or who.body.get("authentication_realm", {}).get("type")
            lines.append(("auth", f"ok as {who.body.get('username')} ({realm})"))
            privileges = self.request("POST", "/_security/user/_has_privileges", orjson.dumps(
                {"index": [{"names": [self._target], "privileges": list(_WRITE_PRIVILEGES)}]}))
            granted = privileges.body.get("index", {}).get(self._target, {}) \
                if isinstance(privileges.body, dict) else {}
            missing = [name for name in _WRITE_PRIVILEGES if not granted.get(name)]
            if missing:
                ok = False
                lines.append(("privileges", f"FAILED: missing {', '.join(missing)} on {self._target}"))
            else:
                lines.append(("privileges", f"ok: {', '.join(_WRITE_PRIVILEGES)} on {self._target}"))
            lines += self._roles()
        elif who.status == 400:  # (no handler: what a node without security answers)
            lines.append(("auth", "security is not enabled on this cluster"))
        else:
            lines.append(("auth", f"unknown: HTTP {who.status}: {_shorten(str(who.body))}"))
        target = self._target_line()
        lines.append(target)
        return CheckReport(ok and not target[1].startswith("FAILED"), tuple(lines))

    def index_state(self, name: str) -> tuple[int, list[str]]:
        """(200, the closed indices behind ``name``) when it exists (a data stream
        or alias may stand for several), (404, []) when it does not, else (the
        HTTP status, []): the credentials may not read its metadata."""
        found = self.request("GET", f"/_cat/indices/{name}", params={"format": "json", "h": "index,status",
                                                                      "expand_wildcards": "all"})
        if found.status == 200 and isinstance(found.body, list) and found.body:
            return 200, sorted(str(row.get("index")) for row in found.body
                               if isinstance(row, dict) and row.get("status") == "close")
        return (404 if found.status in (200, 404) else found.status), []

    def write_block(self, name: str) -> tuple[str, str, str] | None:
        """(index, block setting, what to do) when the index that takes the
        documents sent to ``name`` (itself, a data stream's or an alias's
        write index) refuses them for a block, else None (also when its
        settings cannot be read). Only the write index: ILM puts write blocks
        on the older backing indices of a data stream."""
        # (index.uuid: every index answers, blocked or not)
        found = self.request("GET", f"/{name}/_settings/index.uuid,index.blocks*", params={
            "flat_settings": "true", "expand_wildcards": "all"})
        if found.status != 200 or not isinstance(found.body, dict) or not found.body:
            return None
        index = name if name in found.body else self._write_index(name, sorted(found.body))
        settings = (found.body.get(index) or {}).get("settings") or {}
        for block in ("index.blocks.read_only_allow_delete", "index.blocks.read_only", "index.blocks.write"):
            if str(settings.get(block)).lower() == "true":
                lift = f'PUT /{index}/_settings {{"{block}": null}}'
                if block.endswith("allow_delete"):
                    return index, block, ("the cluster sets it when a node's disk passes the flood-stage watermark: "
                                          f"free disk space (it is lifted once the disk is below the high "
                                          f"watermark), or {lift}")
                return index, block, lift
        return None

    def _write_index(self, name: str, indices: list[str]) -> str | None:
        """The write index of the data stream or alias ``name`` among ``indices``:
        a data stream's backing index of the highest generation (as
        ``entry_pipeline``: minimal distributions have no ``_data_stream`` API),
        the alias's ``is_write_index`` one, or its only index."""
        if all(index.startswith(".ds-") for index in indices):
            return max(indices, key=entry_pipeline._generation)  # noqa: SLF001 (one rule for both)
        alias = self.request("GET", f"/_alias/{name}")
        if alias.status == 200 and isinstance(alias.body, dict):
            writers = [index for index, body in alias.body.items()
                       if ((body.get("aliases") or {}).get(name) or {}).get("is_write_index")]
            return writers[0] if writers else (indices[0] if len(indices) == 1 else None)
        return None

    def _target_line(self) -> tuple[str, str]:
        """Whether the target can take a document now: it exists and is open, or
        the cluster creates it at the first one. (Privileges say nothing of it:
        audit 5 saw "can ship: yes" for an index that did not exist and could not
        be created.) What the credentials may not read is said, not guessed."""
        name = self._target
        status, closed = self.index_state(name)
        if status == 200:
            if closed:
                return ("target", f"FAILED: {name}: {', '.join(closed[:3])} is closed, so documents are retried "
                                  f"until it is opened (POST /{closed[0]}/_open)")
            blocked = self.write_block(name)
            if blocked is not None:
                index, block, lift = blocked
                return ("target", f"FAILED: {name}: {index} refuses documents ({block}), so they are retried until "
                                  f"the block is lifted: {lift}")
            return ("target", f"{name} (exists, open)")
        if status != 404:
            return ("target", f"{name} (whether it exists is unknown: HTTP {status}; the credentials may "
                              "not read its metadata)")
        settings = self.request("GET", "/_cluster/settings", params={
            "include_defaults": "true", "filter_path": "*.action.auto_create_index"})
        body = settings.body if settings.status == 200 and isinstance(settings.body, dict) else {}
        values = [(body[part].get("action") or {}).get("auto_create_index")
                  for part in ("transient", "persistent", "defaults") if isinstance(body.get(part), dict)]
        value = next((str(v) for v in values if v is not None), None)  # (in the order the cluster applies them)
        if value is None:
            return ("target", f"{name} (does not exist yet; created at the first document if the cluster allows "
                              "it: action.auto_create_index could not be read)")
        if value.strip().lower() == "false":
            return ("target", f"FAILED: {name} does not exist and the cluster does not create indices "
                              "(action.auto_create_index: false): create it, or allow it there")
        if value.strip().lower() != "true":
            return ("target", f"{name} (does not exist yet; created at the first document if its name matches "
                              f"action.auto_create_index: {value})")
        return ("target", f"{name} (does not exist yet; created at the first document)")

    _WHO_AM_I = "/_security/_authenticate"

    def _who_am_i(self, lines: list[tuple[str, str]]) -> Response | CheckReport:
        """``check``'s first steps: the answer of the who-am-I endpoint, or the
        failed report (``lines`` and why) when the connection, the credentials
        or the URL's path fail; ``lines`` gets the connection's line."""
        try:
            who = self.request("GET", self._WHO_AM_I)
        except (TransientOutputError, PermanentOutputError) as error:
            return CheckReport(False, tuple(lines + [("connection", f"FAILED: {error}")]))
        lines.append(("connection", "ok"))
        if who.status in (401, 403):
            return CheckReport(False, tuple(lines + [("auth", "FAILED: " + self._refusal(who))]))
        missing = self._no_api(who)
        if missing is not None:
            return CheckReport(False, tuple(lines + [("api", f"FAILED: {missing}")]))
        return who

    def _refusal(self, response: Response) -> str:
        """What a 401 or 403 of the who-am-I endpoint means for these credentials."""
        return _auth_hint(self._config, response)

    def _roles(self) -> list[tuple[str, str]]:
        """Which of the two roles of docs/security.md (shipping, setup) the credentials hold."""
        def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            response = self.request(method, path, None if body is None else orjson.dumps(body))
            return response.status, response.body

        shipping, setup = access(request)
        return [("can ship (modelscribe run)", shipping.describe()),
                ("can set up (modelscribe setup)", setup.describe())]

    def close(self) -> None:
        self._client.close()


def _auth_hint(config: ConnectionSettings, response: Response) -> str:
    detail = ""
    if isinstance(response.body, dict) and isinstance(response.body.get("error"), dict):
        detail = f" ({response.body['error'].get('reason')})"
    if response.status == 403:
        return f"HTTP 403: the credentials lack a privilege{detail}"
    if config.api_key is not None:
        return f"HTTP 401: the API key from {config.api_key_origin} was rejected{detail}"
    if config.password is not None:
        return f"HTTP 401: user {config.username!r} and the password were rejected{detail}"
    return "HTTP 401: Elasticsearch requires credentials: set --api-key-file or --username " \
           "with --password-file"


def raise_for_auth(config: ConnectionSettings, response: Response) -> None:
    if response.status in (401, 403):
        raise AuthError(_auth_hint(config, response))


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes, outermost first."""
    found = [error]
    while found[-1].__cause__ is not None or found[-1].__context__ is not None:
        found.append(found[-1].__cause__ or found[-1].__context__)  # type: ignore[arg-type]
    return found


def _root_message(error: BaseException) -> str:
    """The innermost useful message of a transport error chain."""
    seen = _chain(error)[-1]
    return _shorten(str(seen) or type(seen).__name__)


def _shorten(text: str) -> str:
    """At most 300 characters of ``text`` (a response body may be megabytes, logged on every retry)."""
    return text if len(text) < 300 else text[:300] + "..."


# What the chain ends with when the server took the request and then dropped the connection.
_BROKEN = ("RemoteDisconnected", "IncompleteRead", "ProtocolError", "ConnectionResetError", "BrokenPipeError")


def _broke(error: BaseException) -> bool:
    return any(type(e).__name__ in _BROKEN for e in _chain(error))


def _build_client(config: ConnectionSettings) -> Elasticsearch:
    options: dict[str, Any] = {
        "request_timeout": config.request_timeout,
        "max_retries": 0,  # retries are the sender's job, with backoff and per-item care
        "retry_on_timeout": False,
        "http_compress": config.gzip,
        "verify_certs": config.tls_verify,
        "connections_per_node": config.connections_per_node,
    }
    if config.ca_cert:
        options["ca_certs"] = config.ca_cert
    if config.client_cert:
        options["client_cert"] = config.client_cert
        options["client_key"] = config.client_key
    try:
        if not config.tls_verify:
            options["ssl_show_warn"] = False
            log.warning("TLS verification is off (--no-tls-verify): the server's identity is not checked")
            if config.client_cert:
                # elastic_transport loads the client certificate only when it verifies
                # the server (9.x: audit 5 found it silently dropped), so a node that
                # requires one could never be reached: a context carries it instead,
                # which the client takes without the file options.
                for option in ("ca_certs", "client_cert", "client_key"):
                    options.pop(option, None)
                options["ssl_context"] = tls.ClientCertContext.of(config.client_cert, config.client_key)
        with warnings.catch_warnings():
            # The client warns about verify_certs=False itself; we logged it once above.
            warnings.simplefilter("ignore")
            client = Elasticsearch(list(config.es_urls), **options)
    except (ValueError, TypeError, OSError) as error:
        raise ConfigError(f"--es-url / TLS options: cannot set up the Elasticsearch client: {error}") from error
    if not config.tls_verify:
        # urllib3 warns at every request without verification; the client's own call
        # that silences it ran inside catch_warnings above, which undid it on exit.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return client
