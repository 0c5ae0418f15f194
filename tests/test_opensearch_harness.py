"""The OpenSearch test harness itself, against real nodes.

Checks what the pipeline and OpenSearch-output tests rely on: the session
node is secured by the real security plugin (password works, anonymous and
the plugin's public demo password are refused, TLS verifies only with the
generated CA), listens on loopback only, runs the requested version, has
the real ingest engine (every ingest-common processor the portable pipelines
use, painless scripts, on_failure), keeps its data across a restart; the
``opensearch-local`` CLI prints the ``ES_*`` lines; an insecure node speaks
plain HTTP; ``fetch`` fills an empty cache and reports a download error on
its own; an unexpected module jar is refused.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os as os_module  # `os` is the OpenSearch helper fixture here
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import opensearch_dist
import opensearch_local as osl

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
# The processors issue 9 lists as shared by Elasticsearch and OpenSearch.
PORTABLE = {"append", "bytes", "convert", "csv", "date", "dissect", "dot_expander", "drop",
            "fail", "foreach", "grok", "gsub", "join", "json", "kv", "lowercase", "pipeline",
            "remove", "rename", "script", "set", "sort", "split", "trim", "uppercase",
            "urldecode"}


def _mode(path: str) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def test_password_authenticates_as_admin(os_node):
    assert Path(os_node.password_file).read_text() == os_node.password
    assert _mode(os_node.password_file) == 0o600
    status, body = osl.request(os_node, "GET", "/_plugins/_security/authinfo")
    assert status == 200, body
    assert body["user_name"] == "admin"
    assert "all_access" in body["roles"]


def test_anonymous_and_demo_password_are_refused(os_node):
    assert osl.request(os_node, "GET", "/_cluster/health", auth=None)[0] == 401
    # The plugin's shipped internal_users.yml has admin/admin: it must be gone.
    demo = dataclasses.replace(os_node, password="admin")
    assert osl.request(demo, "GET", "/_cluster/health")[0] == 401


def test_no_api_keys(os_node):
    assert os_node.api_key == "" and os_node.api_key_file == ""


def test_tls_verifies_only_with_generated_ca(os_node):
    assert os_node.url.startswith("https://127.0.0.1:")
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(os_node.url + "/_cluster/health", timeout=10)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value.reason)


def test_loopback_only_and_version(os_node):
    status, body = osl.request(os_node, "GET", "/_nodes/_local/http,transport")
    assert status == 200, body
    (info,) = body["nodes"].values()
    assert info["version"] == osl.default_version()
    for layer in ("http", "transport"):
        for address in info[layer]["bound_address"]:
            host = address.rsplit(":", 1)[0].strip("[]")
            assert ipaddress.ip_address(host).is_loopback, (layer, address)
    status, root = osl.request(os_node, "GET", "/")
    assert root["version"]["distribution"] == "opensearch"


def test_ingest_engine_has_the_portable_processors_and_painless(os_node):
    status, body = osl.request(os_node, "GET", "/_nodes/_local/ingest,plugins")
    (info,) = body["nodes"].values()
    types = {p["type"] for p in info["ingest"]["processors"]}
    assert PORTABLE <= types, sorted(PORTABLE - types)
    modules = {m["name"] for m in info["modules"]}
    assert {"ingest-common", "lang-painless", "lang-mustache", "analysis-common"} <= modules


def test_simulate_runs_real_processors(os):
    pipeline = {"processors": [
        {"grok": {"tag": "g", "field": "message", "patterns": [
            "%{IP:client.ip} %{WORD:http.request.method} %{NOTSPACE:url.original} %{NUMBER:s:int}"]}},
        {"dissect": {"tag": "d", "field": "url.original", "pattern": "%{url.path}?%{url.query}"}},
        {"kv": {"tag": "kv", "field": "url.query", "field_split": "&", "value_split": "=",
                "target_field": "q"}},
        {"urldecode": {"tag": "u", "field": "q.name"}},
        {"convert": {"tag": "c", "field": "q.n", "type": "integer"}},
        {"json": {"tag": "j", "field": "payload", "target_field": "p"}},
        {"date": {"tag": "dt", "field": "ts", "formats": ["ISO8601"]}},
        {"script": {"tag": "sc", "lang": "painless",
                    "source": "ctx.http.response = ['status_code': ctx.remove('s') * 1]"}},
    ]}
    (doc,) = os.simulate(pipeline, [{
        "message": "10.0.0.1 GET /v1/predict?name=a%20b&n=7 200",
        "payload": '{"model": "m"}', "ts": "2026-01-02T03:04:05Z"}])
    assert doc["client"] == {"ip": "10.0.0.1"}
    assert doc["url"] == {"original": "/v1/predict?name=a%20b&n=7", "path": "/v1/predict",
                          "query": "name=a%20b&n=7"}
    assert doc["q"] == {"name": "a b", "n": 7}
    assert doc["p"] == {"model": "m"}
    assert doc["@timestamp"] == "2026-01-02T03:04:05.000Z"
    assert doc["http"] == {"request": {"method": "GET"}, "response": {"status_code": 200}}


def test_on_failure_records_the_failing_processor(os):
    pipeline = {"processors": [{"grok": {"tag": "g1", "field": "message",
                                         "patterns": ["%{IP:client.ip}"]}}],
                "on_failure": [{"set": {"tag": "f", "field": "error.message", "value":
                                        "{{ _ingest.on_failure_processor_type }} "
                                        "{{ _ingest.on_failure_processor_tag }}"}}]}
    (doc,) = os.simulate(pipeline, [{"message": "not an address"}])
    assert doc["error"]["message"] == "grok g1"


def test_restart_keeps_data(os_node, os):
    os.ok("PUT", "/harness-restart/_doc/1?refresh=true", {"a": 1})
    assert osl.stop_node(os_node)
    node = osl.restart_node(os_node)
    assert node.url == os_node.url and node.password == os_node.password
    assert os.count("harness-restart") == 1
    os.delete_index("harness-restart")
    assert os.count("harness-restart") == 0


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / "opensearch-local"), *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cli_status_prints_es_lines(os_node):
    proc = _cli("status", "--home", os_node.home)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert lines["ES_URL"] == os_node.url
    assert lines["ES_CA_CERT"] == os_node.ca_cert
    assert lines["ES_PASSWORD_FILE"] == os_node.password_file
    assert lines["ES_API_KEY_FILE"] == "''"
    assert lines["ES_USERNAME"] == "admin"
    assert lines["ES_STATUS"] == "answering"


def test_insecure_node_speaks_plain_http(tmp_path):
    node = osl.start_node(tmp_path / "plain", security=False)
    try:
        assert node.url.startswith("http://127.0.0.1:") and not node.security
        assert osl.request(node, "GET", "/_cluster/health", auth=None)[0] == 200
        status, body = osl.request(node, "GET", "/_nodes/_local/plugins")
        (info,) = body["nodes"].values()
        assert "lang-painless" in {m["name"] for m in info["modules"]}
    finally:
        osl.remove_node(node)
    assert not osl.node_status(tmp_path / "plain")[1]


def test_fetch_fills_an_empty_cache(tmp_path):
    cache = tmp_path / "fresh" / "cache"
    env = dict(os_module.environ, MODELSCRIBE_OS_CACHE=str(cache))
    proc = _cli("fetch", env=env)
    assert proc.returncode == 0, proc.stderr
    tree = Path(proc.stdout.strip())
    assert tree == cache / f"opensearch-{osl.default_version()}"
    assert (tree / opensearch_dist.MARKER).exists()
    assert opensearch_dist.has_security(tree)
    for module in opensearch_dist.MODULES:
        assert (tree / "modules" / module / "plugin-descriptor.properties").exists()
    assert not list(cache.glob(".unpack-*"))


def test_fetch_reports_a_download_error(tmp_path):
    env = dict(os_module.environ, MODELSCRIBE_OS_CACHE=str(tmp_path / "cache"))
    proc = _cli("fetch", "--version", "2.0.99", env=env)
    assert proc.returncode == 1
    assert "mvn could not fetch org.opensearch.distribution.integ-test-zip:opensearch:2.0.99:zip" \
        in proc.stderr
    assert not (tmp_path / "cache" / "opensearch-2.0.99").exists()


def test_unexpected_module_jar_is_refused(tmp_path):
    import zipfile
    jars = []
    for classname, _extended, artifact, _prefixes in opensearch_dist.MODULES.values():
        jar = tmp_path / f"{artifact}-9.9.9.jar"
        with zipfile.ZipFile(jar, "w") as zf:  # a main jar holding its plugin class
            zf.writestr(classname.replace(".", "/") + ".class", b"")
        jars.append(jar)
    (tmp_path / "surprise-1.0.jar").write_bytes(b"")
    jars.append(tmp_path / "surprise-1.0.jar")
    with pytest.raises(opensearch_dist.HarnessError, match="surprise-1.0.jar"):
        opensearch_dist._assemble_modules(tmp_path / "tree", "9.9.9", jars)


def test_java_range_per_major():
    assert opensearch_dist.java_range("2.19.1") == (11, 23)
    assert opensearch_dist.java_range("3.3.2")[0] == 21


def test_plugin_class_is_taken_from_the_jar_when_renamed(tmp_path):
    import zipfile
    jar = tmp_path / "lang-painless-3.3.2.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        for name in ("org/opensearch/painless/PainlessModulePlugin.class",
                     "org/opensearch/painless/PainlessModulePlugin$Inner.class",
                     "org/opensearch/painless/spi/WhitelistPlugin.class"):
            zf.writestr(name, b"")
    assert opensearch_dist._plugin_class(jar, "org.opensearch.painless.PainlessPlugin") == \
        "org.opensearch.painless.PainlessModulePlugin"
    with zipfile.ZipFile(jar, "a") as zf:
        zf.writestr("org/opensearch/painless/OtherPlugin.class", b"")
    with pytest.raises(opensearch_dist.HarnessError, match="2 other candidates"):
        opensearch_dist._plugin_class(jar, "org.opensearch.painless.PainlessPlugin")
