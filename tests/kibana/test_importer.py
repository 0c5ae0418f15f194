"""`modelscribe setup dashboards` against a local HTTP server that records
what it is sent and answers as Kibana does (a contract test of the calls:
no Kibana can run on the build machines)."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import socket

import pytest
from click.testing import CliRunner

import kibana_fake

from agent.cli import main
from agent.kibana.render import ndjson, saved_objects


class FakeKibana(kibana_fake.FakeKibana):
    """The saved-objects import on top of status and spaces: `import_code` other than
    200 refuses it; objects whose id is in `failing` come back as errors."""

    def __init__(self, import_code: int = 200, failing: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.import_code, self.failing = import_code, failing

    def write(self, method, path, headers, body):
        if self.import_code != 200:
            return self.import_code, {"statusCode": self.import_code, "error": "Forbidden",
                                      "message": "Unable to bulk_create dashboard"}
        objects = [json.loads(line) for line in _file_part(headers, body).splitlines() if line]
        ok = [o for o in objects if o["id"] not in self.failing]
        bad = [o for o in objects if o["id"] in self.failing]
        return 200, {
            "success": not bad, "successCount": len(ok),
            "successResults": [{"type": o["type"], "id": o["id"], "meta": {"title": "t"},
                                **({"overwrite": True} if o["type"] == "index-pattern" else {})}
                               for o in ok],
            **({"errors": [{"type": o["type"], "id": o["id"], "title": "t",
                            "error": {"type": "missing_references",
                                      "references": [{"type": "index-pattern", "id": "gone"}]}}
                           for o in bad]} if bad else {})}


def _file_part(headers, body: bytes) -> str:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body)
    parts = list(message.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "modelscribe.ndjson"
    assert part.get_content_type() == "application/ndjson"
    return part.get_payload(decode=True).decode()


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["setup", "dashboards", *args], env={"MODELSCRIBE_API_KEY": "a2V5OnNlY3JldA==",
                                                                         **(env or {})})


def test_imports_the_file_in_one_multipart_request_with_the_headers_kibana_needs():
    with FakeKibana() as kibana:
        result = _run("--kibana-url", kibana.url + "/", "--space", "ml")
    assert result.exit_code == 0, result.output
    methods = [(method, path) for method, path, _, _ in kibana.requests]
    assert methods == [("GET", "/api/status"), ("GET", "/api/spaces/space/ml"),
                       ("POST", "/s/ml/api/saved_objects/_import?overwrite=true")]
    _, _, headers, body = kibana.requests[-1]
    assert headers["kbn-xsrf"] and headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert _file_part(headers, body) == ndjson()
    for obj in saved_objects():
        assert obj["id"] in result.output
    assert "overwritten" in result.output and "created" in result.output


def test_basic_auth_and_the_default_space_need_no_space_lookup(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    with FakeKibana() as kibana:
        result = CliRunner().invoke(main, ["setup", "dashboards", "--kibana-url", kibana.url, "--username", "ops",
                                           "--password-file", str(secret)])
    assert result.exit_code == 0, result.output
    assert [path for _, path, _, _ in kibana.requests] == ["/api/status", "/api/saved_objects/_import?overwrite=true"]
    assert kibana.requests[-1][2]["authorization"] == "Basic " + base64.b64encode(b"ops:s3cret").decode()


def test_a_kibana_older_than_8_8_is_refused_before_anything_is_written():
    with FakeKibana(version="8.7.1") as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 3
    assert "8.7.1" in result.output and "8.8 or later" in result.output and kibana.url in result.output
    assert [method for method, *_ in kibana.requests] == ["GET"]


def test_a_space_that_does_not_exist_is_a_bad_option():
    with FakeKibana() as kibana:
        result = _run("--kibana-url", kibana.url, "--space", "nope")
    assert result.exit_code == 2
    assert "--space nope" in result.output and "no such space" in result.output
    assert all(method == "GET" for method, *_ in kibana.requests)


@pytest.mark.parametrize("where, code, words", [("status", 401, "refused the credentials"),
                                               ("import", 403, "lack the privilege to import")])
def test_refused_credentials_and_missing_privileges_name_the_url(where, code, words):
    kwargs = {"status_code": code} if where == "status" else {"import_code": code}
    with FakeKibana(**kwargs) as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 3, result.output
    assert words in result.output and kibana.url in result.output


def test_an_unreachable_kibana_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _run("--kibana-url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 3
    assert f"http://127.0.0.1:{port} is unreachable" in result.output


def test_a_partial_import_says_which_objects_were_installed():
    with FakeKibana(failing=("modelscribe-agent",)) as kibana:
        result = _run("--kibana-url", kibana.url)
    assert result.exit_code == 4
    assert "failed: missing_references index-pattern/gone" in result.output
    assert "1 of" in result.output and "were not imported" in result.output
    assert "created" in result.output  # the others are listed as installed


def test_a_malformed_url_is_a_bad_option():
    result = _run("--kibana-url", "kibana:5601")
    assert result.exit_code == 2 and "--kibana-url" in result.output


@pytest.mark.parametrize("command", ["dashboards", "rules"])
@pytest.mark.parametrize("url, why", [("http://[::1", "Invalid IPv6 URL"),
                                      ("http://127.0.0.1:99999", "Port out of range"),
                                      ("http://kibana:port", "Port could not be cast")])
def test_a_url_python_cannot_parse_is_a_bad_option_not_an_internal_error(command, url, why):
    """Audit 2 finding 4: urlsplit's ValueError was an internal error (exit 1)."""
    result = CliRunner().invoke(main, ["setup", command, "--kibana-url", url],
                                env={"MODELSCRIBE_API_KEY": "a2V5OnNlY3JldA=="})
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"modelscribe: error: --kibana-url {url!r}: {why}" in result.output
    assert "expected http(s)://HOST[:PORT][/base-path]" in result.output
