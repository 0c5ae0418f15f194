"""ElastAlert2 in its own virtual environment, run against the real node.

ElastAlert2 pins its own Elasticsearch client (7.10.1) and needs Python
3.12, so it lives in a venv built once and cached under
``$MODELSCRIBE_ELASTALERT_CACHE`` (default ``~/.cache/modelscribe/elastalert2-<version>``):
a marker file written last tells a finished venv from an interrupted build,
which is removed and built again. The interpreter is
``$MODELSCRIBE_PYTHON312`` or /root/.pyenv/versions/3.12.1/bin/python3;
without one the fixture fails (it is never skipped).

How it reaches the node: TLS with the node's CA and the ``elastic``
password. The integ-test node does not answer ``GET /``, where ElastAlert2
reads the cluster version; ElastAlert2's own ``ES_VERSION`` environment
variable (elastalert/util.py, get_version_from_cluster_info) supplies it
instead, set to the node's real version. Nothing else is bypassed.

``run_rule`` runs ``elastalert-test-rule --alert`` (ElastAlert2's own rule
runner, with real alerters) over a time range; the rule's ``alert`` is
replaced by the ``command`` alerter, which pipes each match as JSON into a
file the test reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

VERSION = "2.31.0"
PYTHON312 = os.environ.get("MODELSCRIBE_PYTHON312", "/root/.pyenv/versions/3.12.1/bin/python3")


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "modelscribe" / f"elastalert2-{VERSION}"
    return Path(os.environ.get("MODELSCRIBE_ELASTALERT_CACHE", default))


def ensure_venv() -> Path:
    """The venv's directory, built on first use (pip install elastalert2==VERSION)."""
    venv = cache_dir()
    marker = venv / "modelscribe-complete"
    if marker.exists():
        return venv
    if not Path(PYTHON312).exists():
        raise RuntimeError(f"ElastAlert2 needs Python 3.12: {PYTHON312} does not exist "
                           "(set MODELSCRIBE_PYTHON312)")
    # A venv's scripts name its absolute path, so it is built in place; the
    # marker, written last, tells a finished venv from an interrupted build.
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON312, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"elastalert2=={VERSION}"],
                          capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"pip install elastalert2=={VERSION} into {venv} failed:\n{done.stderr[-3000:]}")
    marker.write_text(VERSION + "\n", encoding="utf-8")
    return venv


def write_config(work: Path, node: Any) -> Path:
    """ElastAlert2's global config for `node` (an elasticsearch_local.Node)."""
    url = node.url.removeprefix("https://")
    host, port = url.rsplit(":", 1)
    config = {
        "rules_folder": str(work / "rules"),
        "run_every": {"minutes": 1},
        "buffer_time": {"minutes": 15},
        "es_host": host, "es_port": int(port),
        "use_ssl": True, "verify_certs": True, "ca_certs": str(node.ca_cert),
        "es_username": "elastic", "es_password": node.password,
        "writeback_index": "elastalert",
        "alert_time_limit": {"days": 1},
    }
    (work / "rules").mkdir(parents=True, exist_ok=True)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_rule(venv: Path, config: Path, rule_file: Path, start: datetime, end: datetime,
             es_version: str, work: Path) -> tuple[list[dict[str, Any]], str]:
    """(matches, output) of the rule in `rule_file` run from `start` to `end`."""
    rule = yaml.safe_load(rule_file.read_text(encoding="utf-8"))
    matches = work / f"{rule_file.stem}.matches"
    matches.unlink(missing_ok=True)
    # One JSON document per alert (pipe_match_json writes the matches as a
    # JSON list without a newline: one line per alert call).
    rule.update({"alert": ["command"], "pipe_match_json": True,
                 "command": ["/bin/sh", "-c", f"cat >> '{matches}'; echo >> '{matches}'"]})
    runnable = work / "rules" / rule_file.name
    runnable.write_text(yaml.safe_dump(rule, sort_keys=False), encoding="utf-8")
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the
    # ca_certs ElastAlert2 passes it: drop them so the node's CA is used.
    env = {key: value for key, value in os.environ.items()
           if key not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["ES_VERSION"] = es_version
    done = subprocess.run(
        [str(venv / "bin" / "elastalert-test-rule"), "--config", str(config), "--alert", "--stop-error",
         "--start", start.strftime("%Y-%m-%dT%H:%M:%S"), "--end", end.strftime("%Y-%m-%dT%H:%M:%S"),
         str(runnable)],
        capture_output=True, text=True, timeout=300, env=env, cwd=work)
    output = done.stdout + done.stderr
    if done.returncode:
        raise AssertionError(f"elastalert-test-rule exited {done.returncode}:\n{output[-4000:]}")
    found: list[dict[str, Any]] = []
    if matches.exists():
        for line in matches.read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.extend(json.loads(line))
    return found, output


def match_group(match: dict[str, Any], field: str) -> str | None:
    """The value of `field` in one ElastAlert2 match (flatline reports it as ``key``)."""
    if field in match:
        return str(match[field])
    value: Any = match
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return str(match["key"]) if "key" in match else None
        value = value[part]
    return str(value)


if __name__ == "__main__":
    # CI: build (or find) the cached venv on its own, so a pip failure is reported by itself.
    print(ensure_venv())
