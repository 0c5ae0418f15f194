"""Bad input of every kind: a clear message, the other files keep flowing,
and the exit codes documented in agent/errors.py."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_helpers import Daemon, es_flags, run_once, wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.elasticsearch
def test_garbage_huge_lines_and_invalid_utf8_are_shipped_and_tagged(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(7)
    (logs / "garbage.log").write_bytes(bytes(rng.getrandbits(8) for _ in range(20_000)) + b"\n")
    (logs / "huge.log").write_bytes(b"x" * (5 * 1024 * 1024) + b"\nafter the huge line\n")
    (logs / "latin1.log").write_bytes("caf\u00e9 ol\u00e9\n".encode("latin-1"))
    (logs / "normal.log").write_bytes(b"".join(f"normal {i}\n".encode() for i in range(100)))
    result = run_once(["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                       *es_flags(es_node, "e2e-bad-lines")])
    assert result.code == 0, result.stderr
    docs = es.search_all("e2e-bad-lines")
    by_file: dict[str, list[dict]] = {}
    for doc in docs:
        by_file.setdefault(Path(doc["log"]["file"]["path"]).name, []).append(doc)
    assert len(by_file["normal.log"]) == 100
    huge = sorted(by_file["huge.log"], key=lambda d: d["log"]["offset"])
    assert "truncated" in huge[0]["tags"] and len(huge[0]["message"]) == 1024 * 1024
    assert huge[1]["message"] == "after the huge line" and huge[1]["log"]["offset"] == 5 * 1024 * 1024 + 1
    assert by_file["latin1.log"][0]["message"] == "caf\ufffd ol\ufffd"
    assert "invalid_utf8" in by_file["latin1.log"][0]["tags"]
    assert by_file["garbage.log"], "binary garbage must be shipped, not dropped"


def test_unreadable_file_is_reported_and_others_flow(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "secret.log").write_text("you cannot read me\n")
    (logs / "secret.log").chmod(0o000)
    (logs / "ok.log").write_text("readable 1\nreadable 2\n")
    out = tmp_path / "out.ndjson"
    command = [sys.executable, "-m", "agent", "run", "--once", "--path", str(logs / "*.log"),
               "--state-dir", str(tmp_path / "state"), "--output", f"file:{out}"]
    if os.geteuid() == 0:
        # Root reads anything; without the DAC capabilities it meets permissions like anyone.
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["message"] for line in out.read_text().splitlines()] == ["readable 1", "readable 2"]
    assert "secret.log" in done.stderr and "Permission denied" in done.stderr


def test_file_deleted_while_being_read_is_released(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out.ndjson"
    big = logs / "big.log"
    big.write_bytes(b"".join(b"line %d of a file that will be deleted\n" % i for i in range(200_000)))
    agent = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                    "--output", f"file:{out}", "--scan-interval", "1s"], tmp_path / "agent.log")
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0, 30, "the first documents")
        big.unlink()
        (logs / "other.log").write_text("".join(f"other {i}\n" for i in range(50)))
        wait_for(lambda: b'"other 49"' in out.read_bytes(), 60, "the other file's lines")

        def released() -> bool:
            fds = Path(f"/proc/{agent.process.pid}/fd")
            return not any("big.log" in os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink())
        wait_for(released, 30, "the deleted file to be closed")
    finally:
        code = agent.stop()
    assert code == 0, agent.log()


@pytest.mark.parametrize("args, env, message", [
    (["--workers", "zero"], {}, "--workers: 'zero' is not a whole number"),
    ([], {"MODELSCRIBE_FLUSH_INTERVAL": "often"}, "MODELSCRIBE_FLUSH_INTERVAL: 'often' is not a duration"),
    (["--output", "kafka"], {}, "--output: 'kafka' is not an output"),
])
def test_bad_config_values_exit_2_naming_the_setting(tmp_path, args, env, message):
    result = run_once(["run", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"), *args], env=env)
    assert result.code == 2
    assert message in result.stderr


def test_missing_path_exits_2(tmp_path):
    result = run_once(["run", "--state-dir", str(tmp_path)])
    assert result.code == 2 and "--path: at least one glob" in result.stderr


@pytest.mark.elasticsearch
def test_wrong_api_key_exits_3_and_says_so(es_node, tmp_path):
    (tmp_path / "a.log").write_text("hello\n")
    bad_key = tmp_path / "bad_key"
    bad_key.write_text("bm90OmFrZXk=\n")
    flags = ["--es-url", es_node.url, "--ca-cert", es_node.ca_cert, "--api-key-file", str(bad_key)]
    result = run_once(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       *flags])
    assert result.code == 3, result.stderr
    assert f"the API key from file {bad_key} was rejected" in result.stderr
    assert "bm90OmFrZXk" not in result.stderr
    check = run_once(["check", "output", *flags])
    assert check.code == 3 and "auth: FAILED" in check.stdout


def test_unreachable_url_exits_3(tmp_path):
    (tmp_path / "a.log").write_text("hello\n")
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = run_once(["run", "--once", "--path", str(tmp_path / "*.log"), "--state-dir", str(tmp_path / "s"),
                       "--es-url", url])
    assert result.code == 3, result.stderr
    assert f"cannot connect to Elasticsearch at {url}" in result.stderr
    assert time.monotonic() - started < 60


@pytest.mark.elasticsearch
def test_check_output_reports_version_auth_and_privileges(es_node):
    result = run_once(["check", "output", *es_flags(es_node)])
    assert result.code == 0, result.stdout + result.stderr
    assert f"version: {es_node.version}" in result.stdout
    assert "auth: ok as" in result.stdout
    assert "privileges: ok" in result.stdout


def test_check_config_masks_secrets_and_shows_origins(tmp_path):
    key = tmp_path / "key"
    key.write_text("dG9wc2VjcmV0\n")
    cfg = tmp_path / "m.yaml"
    cfg.write_text("workers: 3\npaths: ['/var/log/none/*.log']\n")
    result = run_once(["check", "config", "--config", str(cfg), "--api-key-file", str(key)],
                      env={"MODELSCRIBE_BULK_MAX_DOCS": "77"})
    assert result.code == 0, result.stderr
    assert "dG9wc2VjcmV0" not in result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "(file " in lines["workers"] and "3" in lines["workers"]
    assert "(env MODELSCRIBE_BULK_MAX_DOCS)" in lines["bulk_max_docs"]
    assert "***" in lines["api_key"]


def test_version():
    from agent import __version__

    result = run_once(["--version"])
    assert result.code == 0 and result.stdout.strip() == f"modelscribe {__version__}"
