"""The vllm format on real-looking v0 and v1 server logs, record by record.

Fixtures (tests/fixtures/servers/vllm) follow vLLM's logger format (without
and with the "[file:line]" brackets and the "(APIServer pid=1)" process
tags), the RequestLogger's lines (prompts written with repr(), as its %r
does), the v0 metrics.py and v1 loggers.py statistics, spec-decoding lines
and the OpenAI server's uvicorn access lines.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.parsing.servers.vllm as vllm_module
from agent.events import TAG_PARSE_FAILURE, Record, Source
import lanes_kit
from agent.parsing.servers.vllm import month_day_epoch

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "servers"
SOURCE = Source("servers-key", "/var/log/vllm.log")
PROMPT1 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
PROMPT2 = "It's a \"quoted\" prompt with 'both' quotes and é ü 日本"


def parse_lines(texts: list[str], check_payloads: bool = True, **options: object) -> list[Record]:
    records = lanes_kit.parse_lines(texts, "vllm", SOURCE, **options)
    for record in records:
        # The payload never reaches the message (nor the kept original).
        gen_ai = record.fields.get("gen_ai", {})
        for payload in (gen_ai.get("prompt"), gen_ai.get("completion")):
            if payload and check_payloads:
                assert payload not in record.message
                assert record.original is None or payload not in record.original
    return records


def parse(name: str, **options: object) -> list[Record]:
    return parse_lines((FIXTURES / name).read_text(encoding="utf-8").split("\n")[:-1], **options)


def stamp(text: str) -> float | None:
    return month_day_epoch(text, time.time())


def test_v0_server_log() -> None:
    records = parse("vllm/v0_server.log", keep_original=True)
    assert len(records) == 14
    (version, warning, blocks, started, running, received, added, metrics, finished, access, prefix_cache,
     received_lora, engine_failed, access_failed) = records

    assert version.timestamp == stamp("05-01 10:00:00")
    assert version.message == "vLLM API server version 0.5.4"
    assert version.fields == {"model": {"server": "vllm"}, "gen_ai": {"system": "vllm"},
                              "log": {"level": "info", "origin": {"file": {"name": "api_server.py", "line": 212}}}}
    assert warning.fields["log"]["level"] == "warning"
    assert "stats" not in blocks.fields["model"]  # "# GPU blocks: N" is not an engine statistic

    assert started.fields == {"model": {"server": "vllm"}, "log": {"level": "info"}, "process": {"pid": 1},
                              "gen_ai": {"system": "vllm"}}

    assert received.timestamp == stamp("05-01 10:01:02")
    assert received.message.startswith(
        f"Received request chat-5b0f3e: prompt: <prompt: {len(PROMPT1)} chars>, params: SamplingParams(n=1, ")
    assert received.message.endswith(
        "prompt_token_ids: <13 token ids>, lora_request: None, prompt_adapter_request: None.")
    assert received.original == received.message
    assert received.fields == {
        "model": {"server": "vllm"},
        "gen_ai": {"system": "vllm", "prompt": PROMPT1, "usage": {"input_tokens": 13},
                   "request": {"id": "chat-5b0f3e", "temperature": 0.7, "top_p": 0.95, "max_tokens": 256}},
        "log": {"level": "info", "origin": {"file": {"name": "logger.py", "line": 36}}},
    }
    assert added.fields["gen_ai"] == {"system": "vllm", "request": {"id": "chat-5b0f3e"}}
    assert finished.fields["gen_ai"]["request"] == {"id": "chat-5b0f3e"}

    assert metrics.fields == {
        "model": {"server": "vllm", "stats": {
            "avg_prompt_throughput_toks_per_s": 2.6, "avg_generation_throughput_toks_per_s": 12.4,
            "running_reqs": 1.0, "swapped_reqs": 0.0, "waiting_reqs": 0.0,
            "gpu_kv_cache_usage_perc": 0.1, "cpu_kv_cache_usage_perc": 0.0}},
        "gen_ai": {"system": "vllm"},
        "log": {"level": "info", "origin": {"file": {"name": "metrics.py", "line": 406}}},
        "event": {"kind": "metric"},
    }
    assert prefix_cache.fields["model"]["stats"] == {"gpu_prefix_cache_hit_rate_perc": 45.12,
                                                     "cpu_prefix_cache_hit_rate_perc": 0.0}

    assert access.fields["model"] == {"server": "vllm", "operation": "generate"}
    assert access.fields["http"]["response"] == {"status_code": 200}

    # Both quote kinds, non-ASCII text; max_tokens=None and a top_k that is set; a LoRA adapter.
    assert received_lora.fields["gen_ai"] == {
        "system": "vllm", "prompt": PROMPT2, "usage": {"input_tokens": 3},
        "request": {"id": "cmpl-9d1a-0", "temperature": 0.0, "top_p": 1.0, "top_k": 40, "model": "sql-lora"},
    }
    assert f"prompt: <prompt: {len(PROMPT2)} chars>, params:" in received_lora.message

    assert engine_failed.line_count == 6
    assert engine_failed.fields["error"]["type"] == "RuntimeError"
    assert engine_failed.fields["log"]["level"] == "error"
    assert access_failed.fields["event"] == {"outcome": "failure"}


def test_v1_server_log() -> None:
    records = parse("vllm/v1_server.log")
    assert len(records) == 10
    version, engine, started, received, details, access, metrics, spec, generated, idle = records

    assert version.timestamp == stamp("12-31 23:59:00")
    assert received.timestamp == stamp("01-01 00:01:02")
    assert version.fields["model"] == {"server": "vllm", "worker": "APIServer"}
    assert version.fields["process"] == {"pid": 1}
    assert engine.fields["model"]["worker"] == "EngineCore_0"
    assert engine.fields["process"] == {"pid": 230}
    assert started.message == "Started server process [1]"
    assert started.fields["process"] == {"pid": 1}

    # top_k=0 is "disabled": left out.
    assert received.fields["gen_ai"] == {"system": "vllm", "request": {
        "id": "chatcmpl-3c1e9f", "temperature": 0.6, "top_p": 0.9, "max_tokens": 512}}
    assert received.message.startswith("Received request chatcmpl-3c1e9f: params: SamplingParams(")

    assert details.message == ("Request chatcmpl-3c1e9f details: prompt: <prompt: 6 chars>, "
                               "prompt_token_ids: <3 token ids>, prompt_embeds shape: None.")
    assert details.fields["gen_ai"] == {"system": "vllm", "prompt": "Say hi", "usage": {"input_tokens": 3},
                                        "request": {"id": "chatcmpl-3c1e9f"}}
    assert details.fields["log"]["level"] == "debug"

    assert access.fields["model"] == {"server": "vllm", "operation": "generate", "worker": "APIServer"}
    assert access.fields["client"] == {"ip": "10.1.2.3", "port": 40000}

    assert metrics.fields["labels"] == {"engine": "000"}
    assert metrics.fields["event"] == {"kind": "metric"}
    assert metrics.fields["model"]["stats"] == {
        "avg_prompt_throughput_toks_per_s": 13.1, "avg_generation_throughput_toks_per_s": 48.7,
        "running_reqs": 1.0, "waiting_reqs": 0.0, "gpu_kv_cache_usage_perc": 0.4, "prefix_cache_hit_rate_perc": 0.0}

    assert spec.fields["model"]["stats"] == {"draft_acceptance_rate_perc": 69.2, "mean_acceptance_length": 2.38,
                                             "accepted_tokens": 1234.0, "drafted_tokens": 1782.0}
    assert spec.fields["extra"] == {"stats": {"Per-position acceptance rate": 0.8}}

    assert generated.message == ("Generated response chatcmpl-3c1e9f: output: <completion: 19 chars>, "
                                 "output_token_ids: <8 token ids>, finish_reason: stop")
    assert generated.fields["gen_ai"] == {"system": "vllm", "completion": "Hi! How can I help?",
                                          "usage": {"output_tokens": 8}, "request": {"id": "chatcmpl-3c1e9f"}}

    # n/a values are left out, the rest is still a metric line.
    assert idle.fields["labels"] == {"engine": "001"}
    assert idle.fields["model"]["stats"] == {"avg_prompt_throughput_toks_per_s": 0.0,
                                             "avg_generation_throughput_toks_per_s": 0.0,
                                             "running_reqs": 0.0, "waiting_reqs": 0.0}


def local(*args: int) -> float:
    return datetime(*args).timestamp()


def test_month_day_year() -> None:
    # The current year, unless that puts the line more than a day in the future.
    assert month_day_epoch("05-01 10:00:00", local(2026, 11, 27, 8, 0, 0)) == local(2026, 5, 1, 10, 0, 0)
    assert month_day_epoch("12-31 23:59:59", local(2025, 1, 2, 0, 0, 0)) == local(2024, 12, 31, 23, 59, 59)
    assert month_day_epoch("11-28 10:00:00", local(2026, 11, 27, 12, 0, 0)) == local(2026, 11, 28, 10, 0, 0)
    # A 01-01 line read on 31 December by a host a few seconds behind: next year.
    assert month_day_epoch("01-01 00:00:05.5", local(2024, 12, 31, 23, 59, 58)) == local(2025, 1, 1, 0, 0, 5) + 0.5
    assert month_day_epoch("02-29 10:00:00", local(2026, 3, 1, 0, 0, 0)) == local(2024, 2, 29, 10, 0, 0)
    assert month_day_epoch("13-01 10:00:00", local(2026, 3, 1, 0, 0, 0)) is None


def test_payload_lines_without_vllm_prefix_are_redacted() -> None:
    (record,) = parse_lines(["custom-prefix Received request r1: prompt: 'secret text', params: None, "
                             "prompt_token_ids: [5, 6], lora_request: None."])
    assert "secret" not in record.message
    assert record.fields["gen_ai"]["prompt"] == "secret text"
    assert record.fields["gen_ai"]["usage"] == {"input_tokens": 2}
    # A line cut by --max-line-bytes: the rest of the line is the prompt.
    (cut,) = parse_lines(["INFO 05-01 10:00:00 logger.py:36] Received request r2: prompt: 'never clos"])
    assert cut.message == "Received request r2: prompt: <prompt: 10 chars>"
    assert cut.fields["gen_ai"]["prompt"] == "never clos"


def test_prompt_reprs_round_trip() -> None:
    prompts = ["a\\", "it's", 'say "hi"', "both ' and \"", "tab\tnew\nline", "\\'", "", "ü\x00\u2028"]
    texts = [f"INFO 05-01 10:00:00 logger.py:36] Received request r{i}: prompt: {prompt!r}, params: None, "
             f"prompt_token_ids: [1], lora_request: None." for i, prompt in enumerate(prompts)]
    for prompt, record in zip(prompts, parse_lines(texts, check_payloads=False)):
        assert record.fields["gen_ai"]["prompt"] == prompt
        assert f"prompt: <prompt: {len(prompt)} chars>, params: None, prompt_token_ids: <1 token ids>" \
            in record.message


def test_forced_format_tags_other_lines() -> None:
    (record,) = parse_lines(["Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01]"])
    assert record.tags == (TAG_PARSE_FAILURE,)
    assert record.error == "not a vllm log line"


def test_detect() -> None:
    detect = vllm_module.VllmFormat.detect
    assert detect("INFO 05-01 10:00:00 metrics.py:341] Avg prompt throughput: 1.0 tokens/s")
    assert detect("(APIServer pid=1) INFO 05-01 10:00:00 [loggers.py:123] Engine 000: Avg prompt throughput: 0.0")
    assert not detect('INFO:     127.0.0.1:40000 - "POST /v1/chat/completions HTTP/1.1" 200 OK')
    assert not detect("INFO 2024-05-01 10:00:00,123 default_Model abc -- x")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["INFO 05-01 10:00:00 x.py:1] ", "(A pid=1) ", "Received request ", "r: prompt: ",
                     "'", "\"", "\\", "'a\\'b'",
                     ", params: SamplingParams(temperature=1e999, top_k=-1, max_tokens=1e30)",
                     "INFO 05-01 10:00:00 x.py:1] Received request r: params: SamplingParams(n=1, temperature=1e999)",
                     ", prompt_token_ids: [", "]", "Generated response x: output: ", "output_token_count: 99999999999",
                     "Engine 000: Avg prompt throughput: 1e5 tokens/s, Running: 99999999999999999999 reqs",
                     "Prefix cache hit rate: GPU: n/a, CPU: 1%", "02-30 10:00:00",
                     "lora_request: LoRARequest(lora_name='",
                     'INFO:     1.2.3.4:5 - "GET /v1/completions HTTP/1.1" 200 OK', ""]),
    st.text(max_size=30)), max_size=12), st.booleans())
def test_never_raises(texts: list[str], keep: bool) -> None:
    joined = ["".join(texts[i:i + 4]).replace("\n", " ") for i in range(0, len(texts), 4)]
    for text in joined:
        vllm_module.VllmFormat.detect(text)
    records = parse_lines(joined, check_payloads=False, keep_original=keep)
    for record in records:  # (a one-letter prompt may well occur in the message's other words)
        # Only a request line whose vLLM header starts the line carries a real prompt.
        if record.message.startswith("INFO ") and "Received request" in record.message \
                and "request" in record.fields.get("gen_ai", {}):
            assert "prompt: '" not in record.message and 'prompt: "' not in record.message


# -- tracebacks behind a repeated prefix (audit 9, formats #3) -----------------

V0_HEADER = "ERROR 05-01 10:01:20 async_llm_engine.py:58] "
V0_MESSAGE = ["Engine background task failed", "Traceback (most recent call last):",
              '  File "/usr/lib/python3.10/site-packages/vllm/engine/async_llm_engine.py", line 48, in _log_task',
              "    return_value = task.result()", "                   ^^^^^^^^^^^^^",
              "RuntimeError: CUDA error: out of memory"]


def test_newline_formatter_repeats_the_header_on_every_line() -> None:
    """vLLM's NewLineFormatter writes the record's header again before each
    line of a multi-line message (``logger.exception``): one record."""
    texts = [V0_HEADER + text for text in V0_MESSAGE] + ["INFO 05-01 10:01:21 launcher.py:9] next record"]
    failed, following = parse_lines(texts)
    assert failed.line_count == len(V0_MESSAGE)
    assert failed.message == "\n".join(V0_MESSAGE)
    assert failed.fields["log"] == {"level": "error", "origin": {"file": {"name": "async_llm_engine.py", "line": 58}}}
    assert failed.fields["error"]["type"] == "RuntimeError"
    assert failed.fields["error"]["message"] == "CUDA error: out of memory"
    assert failed.fields["error"]["stack_trace"] == "\n".join(V0_MESSAGE[1:])
    assert following.message == "next record"


def test_same_header_without_a_traceback_is_two_records() -> None:
    """Two log calls in the same second at the same line: two records."""
    line = "INFO 05-01 10:00:00 [logger.py:39] Received request chatcmpl-{}: params: SamplingParams(n=1)"
    assert len(parse_lines([line.format(1), line.format(2)])) == 2
    # After a traceback, a line with another header is the next record.
    texts = [V0_HEADER + text for text in V0_MESSAGE] + ["ERROR 05-01 10:01:20 [other.py:1]   indented text"]
    assert [record.line_count for record in parse_lines(texts)] == [len(V0_MESSAGE), 1]


@pytest.mark.parametrize("fmt", ["vllm", "auto"])
def test_process_tagged_traceback_is_one_record_per_process(fmt: str) -> None:
    """vLLM >= 0.10 tags every line of a process's output; two processes'
    tracebacks interleaved are joined per tag."""
    api, core = "(APIServer pid=1) ", "(EngineCore_DP0 pid=230) "
    texts = [core + "INFO 05-01 10:00:00 [core.py:75] Initializing a V1 LLM engine (v0.10.1)",
             core + "ERROR 05-01 10:00:01 [core.py:700] EngineCore failed to start.",
             api + "Traceback (most recent call last):",
             core + "Traceback (most recent call last):",
             api + '  File "/usr/local/bin/vllm", line 10, in <module>',
             core + '  File "/vllm/v1/engine/core.py", line 691, in run_engine_core',
             api + "    sys.exit(main())",
             core + "    engine_core = EngineCoreProc(*args, **kwargs)",
             core + "ValueError: not enough KV cache",
             api + "RuntimeError: Engine core initialization failed. See root cause above."]
    records = lanes_kit.parse_lines(texts, "vllm", SOURCE, format=fmt)
    assert len(records) == 3
    started, core_failed, api_failed = records
    assert started.line_count == 1
    assert core_failed.fields["error"]["type"] == "ValueError"
    assert core_failed.fields["log"]["level"] == "error"
    assert core_failed.fields["model"]["worker"] == "EngineCore_DP0"
    assert core_failed.fields["process"] == {"pid": 230}
    assert core_failed.message.splitlines()[:2] == ["EngineCore failed to start.", "Traceback (most recent call last):"]
    assert "(EngineCore" not in core_failed.message and "(APIServer" not in core_failed.message
    assert api_failed.line_count == 4
    assert api_failed.fields["error"]["type"] == "RuntimeError"
    assert api_failed.fields["model"] == {"server": "vllm", "worker": "APIServer"}
    assert api_failed.fields["process"] == {"pid": 1}
    assert not api_failed.tags  # the tag is vLLM's own layout: not a parse failure
    assert api_failed.message.startswith("Traceback (most recent call last):\n  File")
