"""Model logs into the real node the way a user ships them: templates first,
then every fixture of every format with auto-detection — zero mapping
errors, each schema field with its declared type, metrics in their own data
stream; and secrets never reach the output or the spool."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from e2e_helpers import es_flags, run_once

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.mark.elasticsearch
def test_every_fixture_indexes_cleanly_with_typed_fields(es_node, es, tmp_path):
    setup = run_once(["setup", "templates", *es_flags(es_node)])
    assert setup.code == 0, setup.stdout + setup.stderr
    shutil.copytree(FIXTURES / "servers", tmp_path / "logs" / "servers")
    shutil.copytree(FIXTURES / "parsing", tmp_path / "logs" / "parsing")
    result = run_once(["run", "--once", "--path", str(tmp_path / "logs" / "**" / "*"),
                       "--state-dir", str(tmp_path / "state"), "--data-stream", "logs-modelscribe-fixtures",
                       "--partial-line-timeout", "0s", *es_flags(es_node)])
    assert result.code == 0, result.stderr  # 4 would mean Elasticsearch rejected documents
    summary = re.search(r"events=(\d+) acked=(\d+) duplicates=(\d+) rejected=(\d+)", result.stderr)
    events, acked, duplicates, rejected = map(int, summary.groups())
    assert rejected == 0 and duplicates == 0 and acked == events > 150
    logs, metrics = es.count("logs-modelscribe-fixtures"), es.count("metrics-modelscribe-fixtures")
    assert logs + metrics == events and metrics > 0
    status, caps = es.request("GET", "/logs-modelscribe-fixtures,metrics-modelscribe-fixtures/_field_caps"
                                     "?fields=event.duration,client.ip,http.response.status_code,model.name,"
                                     "model.server,gen_ai.usage.input_tokens,model.metric.value,log.level,"
                                     "@timestamp")
    assert status == 200, caps
    types = {name: sorted(kinds) for name, kinds in caps["fields"].items() if "object" not in kinds}
    assert types == {"event.duration": ["long"], "client.ip": ["ip"], "http.response.status_code": ["long"],
                     "model.name": ["keyword"], "model.server": ["keyword"], "gen_ai.usage.input_tokens": ["long"],
                     "model.metric.value": ["double"], "log.level": ["keyword"], "@timestamp": ["date"]}
    status, found = es.request("POST", "/logs-modelscribe-fixtures/_search", {
        "size": 0, "aggs": {"servers": {"terms": {"field": "model.server", "size": 50}}}})
    servers = {bucket["key"] for bucket in found["aggregations"]["servers"]["buckets"]}
    assert {"torchserve", "triton", "bentoml", "kserve", "uvicorn", "gunicorn", "rayserve", "vllm",
            "mlflow"} <= servers, servers


SECRETS = {
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZw",
    "api_key": "sk-proj-4f9XbQ2mN8rT1vK7wZ3pL6yH0sD5aJ",
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
}


def test_secrets_never_reach_the_output_or_the_spool(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    prompt = f"my card is {SECRETS['card']} and mail {SECRETS['email']}"
    (logs / "vllm.log").write_text(
        f"INFO 11-27 10:00:00 logger.py:39] Received request chatcmpl-1: prompt: '{prompt}', "
        "params: SamplingParams(n=1, temperature=0.7, top_p=0.95, top_k=-1, max_tokens=64), "
        "prompt_token_ids: [1, 2, 3], lora_request: None.\n")
    (logs / "app.log").write_text(
        f"2026-11-27 10:00:01,000 ERROR serving: upstream call failed with {SECRETS['bearer']}\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app/client.py", line 12, in call\n'
        f"    raise PermissionError('key {SECRETS['api_key']} rejected for {SECRETS['email']}')\n"
        f"PermissionError: key {SECRETS['api_key']} rejected for {SECRETS['email']}\n"
        f"2026-11-27 10:00:02,000 INFO serving: done\n")
    (logs / "payload.jsonl").write_text(json.dumps({
        "message": "request served", "level": "info",
        "http.request.body.content": f"card={SECRETS['card']}", "user": SECRETS["email"]}) + "\n")
    out = tmp_path / "out.ndjson"
    state = tmp_path / "state"
    result = run_once(["run", "--once", "--path", str(logs / "*"), "--state-dir", str(state),
                       "--output", f"file:{out}", "--redact-pattern", "email", "--redact-pattern", "card",
                       "--keep-original", "--partial-line-timeout", "0s"])
    assert result.code == 0, result.stderr
    written = out.read_bytes() + b"".join(p.read_bytes() for p in (state / "spool").iterdir())
    assert len(out.read_text().splitlines()) == 4
    for kind, secret in SECRETS.items():
        token = secret.split()[-1] if kind == "bearer" else secret
        assert token.encode() not in written, f"{kind} secret leaked"
    assert b"my card is" not in written  # the prompt itself is dropped without --keep-payloads
    assert out.read_bytes().count(b"[REDACTED:") >= 4
