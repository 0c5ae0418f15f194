"""``modelscribe setup`` stopped part-way, and on a cluster too old for it
(audit 2, findings 3 and 6), through the command against a fake cluster.

``FakeCluster`` is a local HTTP server holding the objects setup writes
(pipelines, component and index templates) in dicts and answering the reads
of detection as a current Elasticsearch does (every privilege granted, every
ingest processor the shipped pipelines use, no lifecycle mechanism). A test
makes it refuse one request (403), break the connection from the Nth request
on (a node dying), or report an old version. The same refusals on the real
nodes are in test_setup_es.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.setup.pipelines import processor_types, shipped


class FakeCluster:
    def __init__(self, version: str = "9.2.8", distribution: str | None = None, forbid: str | None = None,
                 die_after: int = 0) -> None:
        self.version, self.distribution = version, distribution
        self.forbid = re.compile(forbid) if forbid else None
        self.die_after = die_after
        self.pipelines: dict[str, Any] = {}
        self.components: dict[str, Any] = {}
        self.index_templates: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        processors = set().union(*(processor_types(body) for body in shipped().bodies.values()))
        self.processors = [{"type": kind} for kind in sorted(processors)]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.command, self.path))
                if fake.die_after and len(fake.requests) > fake.die_after:
                    self.close_connection = True  # no answer at all: the node is gone
                    return
                status, answer = fake.answer(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeCluster":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method in ("PUT", "DELETE")]

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        route, _, query = path.partition("?")
        if self.forbid and self.forbid.search(f"{method} {route}"):
            return 403, {"error": {"type": "security_exception", "reason": f"action [x] is unauthorized for "
                                                                            f"user [setup] on {route}"}, "status": 403}
        if route == "/_security/user/_has_privileges":
            granted = {"cluster": {name: True for name in body.get("cluster", [])}, "index": {}}
            for item in body.get("index", []):
                for name in item["names"]:
                    granted["index"][name] = {privilege: True for privilege in item["privileges"]}
            return 200, {"has_all_requested": True, **granted}
        if route == "/":
            version = {"number": self.version, **({"distribution": self.distribution} if self.distribution else {})}
            return 200, {"name": "fake", "version": version, "tagline": "You Know, for Search"}
        if route == "/_nodes/ingest":
            return 200, {"nodes": {"n1": {"ingest": {"processors": self.processors}}}}
        if route == "/_license":
            return 200, {"license": {"type": "basic", "status": "active"}}
        if route == "/_index_template/_simulate":
            return 200, {"template": {}}
        for prefix, store, key in (("/_ingest/pipeline/", self.pipelines, None),
                                   ("/_component_template/", self.components, "component_templates"),
                                   ("/_index_template/", self.index_templates, "index_templates")):
            if route.startswith(prefix) or route == prefix.rstrip("/"):
                return self._object(method, route[len(prefix):], query, body, store, key)
        return 400, {"error": f"no handler found for uri [{route}] and method [{method}]"}

    @staticmethod
    def _object(method: str, name: str, query: str, body: Any, store: dict, key: str | None) -> tuple[int, Any]:
        if method == "PUT":
            if "create=true" in query and name in store:
                return 400, {"error": {"type": "illegal_argument_exception", "reason": f"[{name}] exists"}}
            store[name] = body
            return 200, {"acknowledged": True}
        if method == "DELETE":
            return (200, {"acknowledged": True}) if store.pop(name, None) is not None else (404, {})
        found = {stored: value for stored, value in store.items()
                 if not name or any(fnmatch.fnmatchcase(stored, pattern) for pattern in name.split(","))}
        if not found and name and "*" not in name:
            return 404, {}
        if key is None:
            return 200, found
        inner = key[:-1]  # component_templates -> component_template
        return 200, {key: [{"name": stored, inner: value} for stored, value in found.items()]}


def _setup(fake: FakeCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "setup", *args, "--es-url", fake.url],
                          capture_output=True, text=True, timeout=120)


def _pipeline_names() -> list[str]:
    return sorted(shipped().bodies)


def test_a_refusal_part_way_prints_what_was_written_then_the_error():
    with FakeCluster(forbid=r"^PUT /_index_template/metrics-modelscribe$") as fake:
        done = _setup(fake, "all")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cluster: Elasticsearch 9.2.8; licence basic; ")
    pipelines = [f"ingest pipeline {name}: created" for name in _pipeline_names()]
    assert sorted(lines[1:1 + len(pipelines)]) == pipelines
    assert lines[-4:] == [
        "component template modelscribe-settings: created",
        "component template modelscribe-mappings: created",
        "index template logs-modelscribe: created",
        f"incomplete: stopped by the error below after writing {len(pipelines) + 3} objects "
        f"({len(pipelines) + 3} created, 1 skipped); nothing else was written"]
    assert done.stderr.startswith("modelscribe: error: installing index template metrics-modelscribe: the "
                                  "credentials lack the manage_index_templates cluster privilege (HTTP 403): ")
    assert "logs-modelscribe" in fake.index_templates and "metrics-modelscribe" not in fake.index_templates


def test_a_foreign_template_after_pipelines_were_written_says_what_was_written():
    """Only the templates step wrote nothing: the message says no more."""
    with FakeCluster() as fake:
        fake.index_templates["metrics-modelscribe"] = {"index_patterns": ["metrics-modelscribe-*"], "priority": 250,
                                                       "data_stream": {}}
        done = _setup(fake, "all")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("ingest pipeline ")) == [
        f"ingest pipeline {name}: created" for name in _pipeline_names()]
    assert lines[-1].startswith(f"incomplete: stopped by the error below after writing {len(_pipeline_names())} "
                                f"objects (")
    assert "nothing was written" not in done.stdout + done.stderr
    assert done.stderr.startswith(
        "modelscribe: error: cannot install the modelscribe templates, no template was written:\n"
        "  index template 'metrics-modelscribe' exists and is not managed by modelscribe (it has no "
        "_meta.managed_by): rename or delete it, then run this again (--force does not overwrite it)")
    assert not [path for _, path in fake.writes() if "template" in path]


def test_a_node_dying_part_way_prints_what_was_written_and_what_may_have_been():
    with FakeCluster() as fake:
        first = _setup(fake, "templates")
        assert first.returncode == 0, first.stderr
        assert fake.writes()[0] == fake.requests[-4]  # the four PUTs come last
        reads = len(fake.requests) - 4
        fake.components.clear()
        fake.index_templates.clear()
        fake.requests.clear()
        fake.die_after = reads + 2  # the third PUT gets no answer: the node is gone
        done = _setup(fake, "templates")
    assert done.returncode == 3, done.stdout + done.stderr
    entry, final = shipped().entry, shipped().final
    assert done.stdout.splitlines()[1:] == [
        f"component template modelscribe-settings: created (not wired to ingest pipelines: {entry}, {final} not "
        f"installed (run `modelscribe setup pipelines`, then this again))",
        "component template modelscribe-mappings: created",
        "incomplete: stopped by the error below after writing 2 objects (2 created); nothing else was written, "
        "unless the request that failed was applied first"]
    assert done.stderr.startswith("modelscribe: error: the connection to Elasticsearch at ")


def test_nothing_written_before_the_failure_is_said_plainly():
    with FakeCluster(forbid=r"^PUT /_component_template/modelscribe-settings$") as fake:
        done = _setup(fake, "templates")
    assert done.returncode == 3
    assert done.stdout.splitlines()[-1] == "stopped by the error below: nothing was written"
    assert "manage_index_templates" in done.stderr


@pytest.mark.parametrize("version, distribution, message", [
    ("6.8.23", None, "Elasticsearch 6.8.23 is not supported by modelscribe setup: it needs Elasticsearch 8.13 or "
                     "later (OpenSearch: 2.7 or later); nothing was written"),
    ("8.12.2", None, "Elasticsearch 8.12.2 is not supported by modelscribe setup: it needs Elasticsearch 8.13 or "
                     "later (OpenSearch: 2.7 or later); nothing was written"),
    ("1.3.20", "opensearch", "OpenSearch 1.3.20 is not supported by modelscribe setup: it needs OpenSearch 2.7 or "
                             "later (Elasticsearch: 8.13 or later); nothing was written"),
])
def test_a_cluster_too_old_is_named_before_anything_else(version, distribution, message):
    with FakeCluster(version=version, distribution=distribution) as fake:
        done = _setup(fake, "all")
        dry = _setup(fake, "all", "--dry-run")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.strip() == f"modelscribe: error: {message}"
    assert done.stdout == ""
    assert dry.returncode == 3 and dry.stderr.strip() == f"modelscribe: error: {message}"
    # The privilege check, then GET /: nothing else was asked, nothing written.
    assert fake.requests == [("POST", "/_security/user/_has_privileges"), ("GET", "/")] * 2


def test_a_supported_cluster_is_not_refused():
    with FakeCluster(version="8.13.0") as fake:
        done = _setup(fake, "templates", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cluster: Elasticsearch 8.13.0; ")
