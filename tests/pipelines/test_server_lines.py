"""Parity beyond the fixtures for the server formats: hand-picked corner
lines of each server's shapes (the branches of the agent's parser that no
fixture takes), and the fixtures' lines mutated at random (characters cut,
inserted, repeated; lines shuffled, so events join differently), through
both implementations, forced and detected."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline_parity import FIXTURES
from test_generated_lines import _compare, _json_lines

TORCHSERVE = [
    "2024-05-01T10:00:00,123 - /127.0.0.1:52486 \"POST /predictions/m/3.0 HTTP/1.1\" 200 25",
    "2024-05-01 10:00:00.5 - host.example/10.0.0.1 \"GET /models HTTP/1.1\" 200 -1",
    "2024-05-01T10:00:00 - /10.0.0.1:1 \"POST /models HTTP/1.1\" 201 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"PUT /models/m/2.0/set-default HTTP/1.1\" 200 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"DELETE /models/m/ HTTP/1.1\" 200 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"GET /metrics HTTP/1.1\" 200 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"POST /wfpredict/flow/1 HTTP/1.1\" 200 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:123456 \"GET /a%2Fb+c?x=1 HTTP/1.0\" 404 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"GET /noprotocol\" 200 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"gRPC x.Service/Unknown HTTP/2.0\" 0 3",
    "2024-05-01T10:00:00,1 - /10.0.0.1:1 \"gRPC x.Service/Ping\" 0 3",
    "2024-05-01T10:00:00,1 - Lat.ms:inf|#ModelName:m,model_version:2|#type:COUNTER|#hostname:h,requestID:r1,timestamp:1714557600",
    "2024-05-01T10:00:00,1 - Lat.ms: 12 |#a:1,b,:c|#hostname:,1714557600123,req-9",
    "2024-05-01T10:00:00,1 - Lat.ms:1e3|#|#hostname:h,timestamp:x",
    "2024-05-01T10:00:00,1 - Lat.ms:abc|#ModelName:m|#hostname:h,17145576000000000000",
    "Mem.Percent:12.5|#Level:Host|#hostname:h,1714557600",
    "2024-05-01T10:00:00,1 [INFO ] BackendWorker-9000 org.pytorch.serve.wlm.WorkerThread - started",
    "2024-05-01T10:00:00,1 [INFO ] W-9000-plain-stderr MODEL_LOG - no version",
    "2024-05-01T10:00:00,1 [INFO ] W-9000-my_model_v_1.0 MODEL_METRICS - X.ms:1|#ModelName:other|#hostname:h,timestamp:1714557600",
    "2024-05-01T10:00:00,1 [INFO ] W-9000-m_1 ACCESS_LOG - not an access line",
    "2024-05-01T10:00:00,1 [INFO ] W-9000-other_2.0 ACCESS_LOG - /10.0.0.1:1 \"POST /predictions/m HTTP/1.1\" 200 3",
    "2024-05-01T10:00:00,1 [INFO ] W-9000-other_2.0 ACCESS_LOG - /10.0.0.1:1 \"GET /models/m2 HTTP/1.1\" 200 3",
    "2024-05-01T10:00:00,1 [WARN ] main org.pytorch.serve.Other -",
    "a line of nothing TorchServe writes",
    "2024-05-01T10:00:00,1 [INFO ] W-9001-m_1-stdout MODEL_LOG - Traceback (most recent call last):",
    "2024-05-01T10:00:00,1 [INFO ] W-9002-m_1-stdout MODEL_LOG - unrelated",
    "2024-05-01T10:00:00,1 [INFO ] W-9001-m_1-stdout MODEL_LOG -   File \"/a.py\", line 1, in f",
    "2024-05-01T10:00:00,1 [INFO ] W-9001-m_1-stdout MODEL_LOG - ValueError: bad",
    "2024-05-01T10:00:00,1 [INFO ] W-9001-m_1-stdout MODEL_LOG - ",
]

VLLM = [
    "INFO 05-01 10:00:00 api_server.py:212] plain message",
    "INFO 02-29 10:00:00.25 [x.py:1] leap day",
    "INFO 02-30 10:00:00 [x.py:1] no such day",
    "DEBUG 05-01 10:00:00 [x.py:12345678901] long line number",
    "(VllmWorker rank=0 pid=77, ip=10.0.0.2) WARNING 05-01 10:00:00 [w.py:9] worker",
    "(pid=12345678901) INFO 05-01 10:00:00 [w.py:9] long pid",
    "(APIServer pid=1) INFO:     127.0.0.1:1 - \"GET /v1/models HTTP/1.1\" 200 OK",
    "(APIServer pid=1) \x1b[32mINFO\x1b[0m:     Started server process [1]",
    "(APIServer pid=1) something else",
    "INFO 05-01 10:00:00 [logger.py:1] Added request cmpl-1.",
    "INFO 05-01 10:00:00 [logger.py:1] Finished request a.b.c.",
    "INFO 05-01 10:00:00 [logger.py:1] Aborted request x (streaming complete):",
    "INFO 05-01 10:00:00 [logger.py:1] Received request r-2: params: SamplingParams(temperature=1, top_p=1e-1,"
    " top_k=-1, max_tokens=None, max_tokens=16, temperature=None), lora_request: LoRARequest(lora_name='ad1',"
    " lora_int_id=1), prompt_token_ids_len: 12, prompt_len: 3",
    "INFO 05-01 10:00:00 [logger.py:1] Received request r-3: params: SamplingParams(top_k=5.5, max_tokens=1e400)",
    "INFO 05-01 10:00:00 [logger.py:1] Generated response r-4: output_token_count: 7, finish_reason: stop",
    "INFO 05-01 10:00:00 [logger.py:1] Request nothing here",
    "INFO 05-01 10:00:00 [metrics.py:1] Prefix cache hit rate: GPU: 45.12%, CPU: 0.00%",
    "INFO 05-01 10:00:00 [metrics.py:1] Speculative metrics: Draft acceptance rate: 0.690, System efficiency: 0.5,"
    " Number of speculative tokens: 4, Number of accepted tokens: 10, Number of draft tokens: 12,"
    " Number of emitted tokens: 14.",
    "INFO 05-01 10:00:00 [metrics.py:1] Avg prompt throughput: 1 tokens/s, Weird: 3 bananas, Odd: -2.5",
    "INFO 05-01 10:00:00 [metrics.py:1] Avg prompt throughput: 1 tokens/s",
    "ERROR 05-01 10:00:00 [x.py:1] failed",
    "Traceback (most recent call last):",
    "  File \"/a.py\", line 1, in f",
    "ValueError: bad",
    "not vllm at all",
]

RAYSERVE = [
    "INFO 2024-12-31 01:22:10,101 default_Model 3npxyudx -- Started.",
    "WARNING 2024-12-31 01:22:10,101 default_Model 3npxyudx r1 -- [::1]:8000 GET /a%20b?x=1 404 1.25ms",
    "INFO 2024-12-31 01:22:10,101 proxy 10.0.0.5 r2 -- host-a:80 POST /v1/models/m:predict 200 0.5ms",
    "INFO 2024-12-31 01:22:10,101 default_Model 3npxyudx r3 -- GET 503 2ms",
    "INFO 2024-12-31 01:22:10,101 default_Model 3npxyudx r4 -- CALL predict TIMEOUT 2.5ms",
    "INFO 2024-12-31 01:22:10,101 default_Model 3npxyudx r5 -- HANDLE OK 0.0005ms",
    "INFO 2024-02-27 16:05:11,245 default_Model 256v3hq4 4db9 /route replica.py:373 - POST 200 0.6ms",
    "INFO 2024-02-27 16:05:11,245 default_Model 256v3hq4 4db9 / app <string>:12 - text",
    "INFO 2024-02-27 16:05:11,245 default_Model 256v3hq4 a b c d replica.py:1 - four tokens",
    "ERROR 2024-02-27 16:05:11,245 serve_controller 1 no tail at all",
    "(ServeReplica:app:M pid=42) \x1b[36mINFO 2024-12-31 01:22:10,101 app_M id -- coloured\x1b[0m",
    "(ProxyActor pid=1, ip=10.0.0.9) INFO:     10.0.0.1:5 - \"GET /-/healthz HTTP/1.1\" 200 OK",
    "(ProxyActor pid=1) plain actor output",
    "(raylet pid=2) 2023-04-10 15:57:32,100\tWARNING x.py:1 -- core line after a tag",
    "{\"levelname\": \"INFO\", \"deployment\": \"d\", \"replica\": \"r\", \"message\": \"<string>:7 - hello\"}",
    "{\"message\": \"CALL f OK 1ms\", \"lineno\": \"12\", \"filename\": \"a.py\", \"process\": 4294967296,"
    " \"component_name\": \"controller\", \"route\": \"\", \"model\": \"llm\", \"timestamp_ns\": \"soon\"}",
    "{\"message\": \"GET /x 200 1ms\", \"route\": \"/y\", \"model\": {\"version\": \"2\"}, \"log\": {\"origin\": 1},"
    " \"exc_text\": \"not a traceback\", \"component_name\": \"replica\", \"level\": \"warning\"}",
    "{\"message\": \"x\", \"route\": \"/r\", \"url\": {\"path\": \"/other\"}, \"timestamp_ns\": 1735787045678,"
    " \"exc_text\": \"Traceback (most recent call last):\\n  File \\\"a.py\\\", line 1\\nKeyError: 'k'\\n\"}",
    "{not json",
    "[1, 2]",
    "print output from user code",
]

BENTOML = [
    "2024-05-01T10:00:00+0000 [INFO] [cli] Starting",
    "2024-05-01T10:00:00.5-0130 [DEBUG] [] no component",
    "2024-05-01T10:00:00,123456+0200 [WARNING] [runner:clf:x] runner, worker not a number",
    "2024-05-01T10:00:00+0000 [INFO] [api_server:svc:3] [::1]:5 (scheme=https,method=GET,path=/healthz?a=b,"
    "type=,length=) (status=204,type=,length=) 0.5ms",
    "2024-05-01T10:00:00+0000 [INFO] [api_server:svc:3] 10.0.0.1:7 (scheme=http,method=POST,path=/v2/models/m/infer,"
    "type=application/json,length=12) (status=404,length=9) 1.25ms (trace=ab,span=cd,sampled=1)",
    "2024-05-01T10:00:00+0000 [INFO] [api_server:svc:3] _ (scheme=http,method=POST,path=/a%20b/c) (status=500) 2ms",
    "2024-05-01T10:00:00+0000 [INFO] [api_server:svc:3] h:1 (scheme=ws,path=/stream) - connection open",
    "2024-05-01T10:00:00+0000 [INFO] [api_server:svc:3] h:1 (scheme=http,method=GET,path=path=/x) (status=200) 1ms",
    "2024-05-01T10:00:00+0000 [INFO] [api_server:svc:3] not access (scheme=x (trace=zz,span=1,sampled=0)",
    "2024-05-01T10:00:00+0000 [INFO] [api_server::] text (trace=0a,span=0b,sampled=0,service.name=other)",
    '{"meta_data": {"bento_name": "b", "bento_version": "not available"}, "columns": [], "x": 1}',
    '{"meta_data": {"bento_name": "", "bento_version": "v1"}, "columns": "no list"}',
    '{"timestamp": "2024-05-01T10:00:00", "request_id": "r", "trace_id": "0", "sepal": 1.5}',
    '{"message": "other json", "level": "warning", "model": "m"}',
    "{not json",
    "plain text",
    "2024-05-01T10:00:04+0000 [ERROR] [api_server:svc:1] Exception on /classify [POST]",
    "Traceback (most recent call last):",
    '  File "a.py", line 1, in f',
    "KeyError: 'k'",
]


# Tracebacks behind a prefix repeated on every line (docs/pipelines.md, the
# agent's PrefixJoiner): vLLM's NewLineFormatter header, vLLM's and Ray's
# process tags, two processes interleaved, a coloured tag, a tagged traceback
# with no log line before it.
_API, _CORE = "(APIServer pid=1) ", "(EngineCore_DP0 pid=230) "
_HEADER = "ERROR 05-01 10:01:20 async_llm_engine.py:58] "
VLLM_PREFIXED = [
    _HEADER + "Engine background task failed",
    _HEADER + "Traceback (most recent call last):",
    _HEADER + '  File "/vllm/engine/async_llm_engine.py", line 48, in _log_task',
    _HEADER + "    return_value = task.result()",
    _HEADER + "                   ^^^^^^^^^^^^^",
    _HEADER + "RuntimeError: CUDA error: out of memory",
    "INFO 05-01 10:01:21 launcher.py:9] next record",
    _CORE + "INFO 05-01 10:00:00 [core.py:75] Initializing a V1 LLM engine (v0.10.1)",
    _CORE + "ERROR 05-01 10:00:01 [core.py:700] EngineCore failed to start.",
    _API + "Traceback (most recent call last):",
    _CORE + "Traceback (most recent call last):",
    _API + '  File "/usr/local/bin/vllm", line 10, in <module>',
    _CORE + '  File "/vllm/v1/engine/core.py", line 691, in run_engine_core',
    _API + "    sys.exit(main())",
    _CORE + "    engine_core = EngineCoreProc(*args, **kwargs)",
    _CORE + "ValueError: not enough KV cache",
    _API + "RuntimeError: Engine core initialization failed. See root cause above.",
    _API + "INFO 05-01 10:00:02 [launcher.py:9] Shutting down",
    _API + "ERROR 05-01 10:00:03 [serving.py:1] (APIServer pid=1) in the message, twice",
    _API + "ERROR 05-01 10:00:03 [serving.py:1] Traceback (most recent call last):",
    _API + "ERROR 05-01 10:00:03 [serving.py:1]   File \"/a.py\", line 1, in f",
    _API + "ERROR 05-01 10:00:03 [serving.py:1] (APIServer pid=1) KeyError: 'k'",
    "(pid=7) Traceback (most recent call last):",
    "(pid=7)   File \"/c.py\", line 3, in h",
    "(pid=7) OSError: no name before the pid",
    _API + "Traceback (most recent call last):",
    "not tagged, after a traceback of one line",
    _API + "INFO:     Traceback (most recent call last):",
    _API + "INFO:       File \"/d.py\", line 4, in k",
    _CORE + "  File \"/e.py\", line 5, in m",
    _CORE + "    a frame first, no header",
    _CORE + "ZeroDivisionError: division by zero",
]

_REPLICA, _OTHER = "(ServeReplica:default:Model pid=63520) ", "(ServeReplica:default:Other pid=7) "
RAYSERVE_PREFIXED = [
    _OTHER + "INFO 2023-04-10 15:59:45,400 default_Other abc 0 -- started",
    _REPLICA + "ERROR 2023-04-10 15:59:45,410 default_Model kTBlTj 733674e0 -- Request failed:",
    _REPLICA + "Traceback (most recent call last):",
    _OTHER + "INFO 2023-04-10 15:59:45,411 default_Other abc 1 -- another replica in between",
    _REPLICA + '  File "/home/ray/app/model.py", line 22, in __call__',
    "\x1b[36m" + _REPLICA.rstrip() + "\x1b[0m     return self.model(x)",
    _REPLICA + "RuntimeError: CUDA error: device-side assert triggered",
    _REPLICA + "ERROR 2023-04-10 15:59:45,411 default_Model kTBlTj 733674e0 -- CALL __call__ ERROR 3.2ms",
    "(ServeReplica:default:Model pid=42) Traceback (most recent call last):",
    "(ServeReplica:default:Model pid=42) " + '  File "a.py", line 1, in f',
    "(ServeReplica:default:Model pid=42) KeyError: 'k'",
    "(ProxyActor pid=1, ip=10.0.0.9) Traceback (most recent call last):",
    "(ProxyActor pid=1, ip=10.0.0.9)   File \"b.py\", line 2, in g",
    "(ProxyActor pid=1, ip=10.0.0.9) (ProxyActor pid=1) ValueError: tag in the message",
    "\x1b[33m(ServeReplica:default:Model pid=42)\x1b[0m Traceback (most recent call last):",
    "(ServeReplica:default:Model pid=42) \x1b[1m  File \"c.py\", line 3, in h\x1b[0m",
    "\x1b[33m(ServeReplica:default:Model pid=42)\x1b[0m TypeError: \x1b[31mcoloured\x1b[0m",
    "(ServeReplica:default:Model pid=42)   File \"d.py\", line 4, in k",
    "(ServeReplica:default:Model pid=42) ValueError: a frame first, no header",
]


# (lines, their server): each forced and detected (auto).
CORNER_LINES = {"torchserve": (TORCHSERVE, "torchserve"), "vllm": (VLLM, "vllm"), "rayserve": (RAYSERVE, "rayserve"),
                "bentoml": (BENTOML, "bentoml"), "vllm-prefixed": (VLLM_PREFIXED, "vllm"),
                "rayserve-prefixed": (RAYSERVE_PREFIXED, "rayserve")}


@pytest.mark.parametrize("forced", [True, False], ids=["forced", "auto"])
@pytest.mark.parametrize("case", sorted(CORNER_LINES))
def test_corner_lines(ingest: Any, tmp_path: Path, case: str, forced: bool) -> None:
    lines, server = CORNER_LINES[case]
    _compare(ingest, tmp_path, lines, server if forced else "auto")


def test_bentoml_monitor_records_are_parsed_on_the_host() -> None:
    """A monitor record's columns' roles are in a schema file on the host: the
    raw parser ships the agent's own document for it (no modelscribe.raw), and
    the schema line itself raw."""
    from agent.parsing import ParseSettings
    from pipeline_parity import FIXTURES, raw_documents
    folder = FIXTURES / "servers" / "bentoml" / "monitoring" / "iris_classifier_prediction"
    for fmt in ("bentoml", "auto"):
        records = raw_documents(folder / "data" / "data.0.log", ParseSettings(format=fmt))
        assert records and all("modelscribe" not in doc and doc["model"]["server"] == "bentoml" for doc in records)
        schema = raw_documents(folder / "schema" / "schema.0.log", ParseSettings(format=fmt))
        assert schema and all(doc["modelscribe"]["raw"]["format"] == "bentoml" for doc in schema)


SERVERS = ["torchserve", "vllm", "rayserve", "bentoml"]


def _mutate(line: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        if not line:
            break
        i = rng.randrange(len(line))
        op = rng.random()
        if op < 0.3:
            line = line[:i] + line[i + 1:]
        elif op < 0.5:
            line = line[:i] + rng.choice(" :,-()[]|#.0123456789x\"'{}/") + line[i:]
        elif op < 0.7:
            j = rng.randrange(len(line))
            line = line[:min(i, j)] + line[max(i, j):]
        else:
            line = line[:i] + line[i:i + 5] + line[i:]
    return line


def _documented_difference(line: str) -> bool:
    """Mutations that hit an intentional difference of docs/pipelines.md: a
    malformed % escape in a path (10), a JSON object with a duplicate key (9)."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", line):
        return True
    if line.startswith("{"):
        keys: list[bool] = []
        try:
            json.loads(line, object_pairs_hook=lambda pairs: keys.append(len(pairs) != len(dict(pairs))))
        except ValueError:
            return False
        return any(keys)
    return False


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("seed", range(5))
def test_mutated_fixture_lines(ingest: Any, tmp_path: Path, server: str, seed: int) -> None:
    rng = random.Random(seed * 100 + SERVERS.index(server))
    lines = [line for path in sorted((FIXTURES / "servers" / server).rglob("*")) if path.is_file()
             for line in path.read_text(encoding="utf-8").splitlines()]
    out = []
    for line in lines * 3:
        mutated = _mutate(line, rng) if rng.random() < 0.7 else line
        out.append(line if _documented_difference(mutated) else mutated)
    rng.shuffle(out)
    _compare(ingest, tmp_path, out, server if seed % 2 else "auto")


@pytest.mark.parametrize("seed", range(3))
def test_mutated_prefixed_lines(ingest: Any, tmp_path: Path, seed: int) -> None:
    """The prefixed tracebacks cut, grown and reordered: events group differently, the prefixes break."""
    rng = random.Random(seed)
    for lines, server in ((VLLM_PREFIXED, "vllm"), (RAYSERVE_PREFIXED, "rayserve")):
        out = [_mutate(line, rng) if rng.random() < 0.3 else line for line in lines * 2]
        for _ in range(len(out) // 4):  # neighbours swapped: processes interleave otherwise
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
        out = [line for line in out if not _documented_difference(line)]
        _compare(ingest, tmp_path, out, server if seed % 2 else "auto")


SERVE_KEYS = ["deployment", "replica", "request_id", "route", "application", "component_name", "component_id",
              "filename", "lineno", "process", "exc_text", "timestamp_ns"]
SERVE_VALUES = ["", "x", "/r", "/a%20b", "replica", "proxy", "controller", "a.py", 12, -3, 2**31, "12", 4242,
                "Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'k'\n", 1735787045678123456,
                "2024-05-01T10:00:00Z", None, True, {"a": 1}]
SERVE_MESSAGES = ["a.py:12 - hi", "<string>:3 - x", "GET /p 200 1ms", "CALL f OK 0.5ms", "1.2.3.4:5 POST / 404 2.5ms",
                  "plain"]


@pytest.mark.parametrize("seed", range(4))
def test_rayserve_json_records(ingest: Any, tmp_path: Path, seed: int) -> None:
    """Generated JSON lines (every catalogue key) with Ray Serve's keys and messages mixed in."""
    rng = random.Random(seed)
    lines = []
    for line in _json_lines(60, seed):
        obj = json.loads(line)
        for key in rng.sample(SERVE_KEYS, rng.randint(0, 6)):
            obj[key] = rng.choice(SERVE_VALUES)
        if rng.random() < 0.5:
            obj["message"] = rng.choice(SERVE_MESSAGES)
        lines.append(json.dumps(obj))
    _compare(ingest, tmp_path, lines, "rayserve")


@pytest.mark.parametrize("seed", range(2))
def test_bentoml_other_json_lines(ingest: Any, tmp_path: Path, seed: int) -> None:
    """JSON lines that are no monitor record nor schema: read as --format json reads them, with model.server."""
    _compare(ingest, tmp_path, _json_lines(100, seed), "bentoml")
