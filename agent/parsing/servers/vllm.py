"""vLLM engine and OpenAI-server logs (format ``vllm``).

vLLM's logger (``%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s``,
date ``%m-%d %H:%M:%S``: no year; older releases without the ``[``), with
the ``(APIServer pid=1)`` / ``(EngineCore_0 pid=2)`` tag of newer releases::

    INFO 05-01 10:00:00 metrics.py:341] Avg prompt throughput: 12.3 tokens/s, ...
    (APIServer pid=1) INFO 05-01 10:00:00 [loggers.py:123] Engine 000: Avg prompt throughput: ...
    INFO 05-01 10:00:00 [logger.py:39] Received request chatcmpl-1: prompt: '...', params: SamplingParams(...), ...
    INFO:     127.0.0.1:40000 - "POST /v1/chat/completions HTTP/1.1" 200 OK    (uvicorn; read as in ``access``)

What is read:

- ``log.level``, ``log.origin.file.*``, ``process.pid``, ``model.worker`` (the
  process tag's name), ``gen_ai.system`` = vllm on every line of vLLM's; the
  message is what follows the ``] `` (or uvicorn's level prefix).
- The year: ``month_day_epoch`` takes the latest year that does not put the
  line more than a day after now (December lines read in January belong to
  last year; a 01-01 line read on 31 December by a slightly slow clock to
  next year).
- Engine statistics (``metrics.py`` / ``loggers.py``, spec-decoding lines):
  ``event.kind`` = metric, each known statistic under ``model.stats.<key>``
  (``STATS`` below is the closed list), ``Engine 000`` as ``labels.engine``;
  an unknown statistic goes to ``extra.stats``; ``n/a`` is left out.
- Requests: ``gen_ai.request.id``; from ``SamplingParams(...)``
  ``gen_ai.request.temperature`` / ``top_p`` / ``top_k`` (left out when <= 0,
  vLLM's "disabled") / ``max_tokens``; a LoRA adapter's name as
  ``gen_ai.request.model``; ``gen_ai.usage.input_tokens`` (the count of
  ``prompt_token_ids``, or ``prompt_token_ids_len``) and
  ``gen_ai.usage.output_tokens`` (``output_token_ids`` / ``output_token_count``).
- Payloads: the prompt (``prompt: %r``) goes to ``gen_ai.prompt``, the
  generated text (``output: %r``) to ``gen_ai.completion``. The message never
  carries them: they are replaced by ``<prompt: N chars>`` /
  ``<completion: N chars>``, and token id lists (which decode back to the
  text) by ``<N token ids>``. Such a line is returned by ``structured`` so
  the record's ``original`` (``--keep-original``) is the redacted text too.

Tracebacks: vLLM's NewLineFormatter writes a record's header again before
every line of a multi-line message (``logger.exception``), and newer
releases the process tag before every line a process prints (an uncaught
traceback too). Lines are joined on the text after tag and header
(``multiline.PrefixJoiner``, one lane per process tag, so two processes'
tracebacks interleaved are two records); a line with a header continues a
record only if it repeats the record's header. The record has the first
line's fields and a message without the repeated prefixes; a traceback
printed with the tag alone has the tag's ``model.worker`` / ``process.pid``
and is not a parse failure.

Guarantee: never raises; other lines are plain text (tagged ``parse_failure``
when the format was forced).
"""

from __future__ import annotations

import ast
import math
import re
import time
from typing import Any, ClassVar

from agent.events import Line, Record
from agent.parsing import timestamps, tracebacks
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.parse_text import PlainFormat, parse_plain
from agent.parsing.multiline import Joiner, PrefixJoiner
from agent.parsing.servers.access import LEVELS, fallback, parse_uvicorn, strip_ansi

_TAG = re.compile(r"\(([^()]*?) ?pid=(\d+)(?:, ip=[^)]*)?\) ")
_LINE = re.compile(r"(" + LEVELS + r") (\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?) \[?([^\s:\[\]]+):(\d+)\] ")
_SKEW = 86400.0
_LEVEL_INITIALS = frozenset(level[0] for level in LEVELS.split("|"))

# The closed list of model.stats keys, by the name vLLM prints.
STATS = {
    "Avg prompt throughput": "avg_prompt_throughput_toks_per_s",
    "Avg generation throughput": "avg_generation_throughput_toks_per_s",
    "Running": "running_reqs",
    "Swapped": "swapped_reqs",
    "Pending": "waiting_reqs",  # v0's name for the waiting queue
    "Waiting": "waiting_reqs",
    "GPU KV cache usage": "gpu_kv_cache_usage_perc",
    "CPU KV cache usage": "cpu_kv_cache_usage_perc",
    "Prefix cache hit rate": "prefix_cache_hit_rate_perc",
    "External prefix cache hit rate": "external_prefix_cache_hit_rate_perc",
    "Draft acceptance rate": "draft_acceptance_rate_perc",  # v1 prints %; v0 a fraction (below)
    "Mean acceptance length": "mean_acceptance_length",
    "Accepted": "accepted_tokens",
    "Drafted": "drafted_tokens",
    "System efficiency": "system_efficiency",
    "Number of speculative tokens": "num_spec_tokens",
    "Number of accepted tokens": "accepted_tokens",
    "Number of draft tokens": "drafted_tokens",
    "Number of emitted tokens": "emitted_tokens",
}
_FRACTION_STATS = {"draft_acceptance_rate_perc": "draft_acceptance_rate"}
# v0: "Prefix cache hit rate: GPU: 12.00%, CPU: 0.00%"
_PREFIX_CACHE_SIDES = {"GPU": "gpu_prefix_cache_hit_rate_perc", "CPU": "cpu_prefix_cache_hit_rate_perc"}
# An item's value: a number, then maybe a unit (v0 ends the line with a period); "n/a" is not read.
_STAT_VALUE = re.compile(r"(-?\d+(?:\.\d+)?) ?(%|tokens/s|reqs|tokens)?\.?$")
_ENGINE = re.compile(r"Engine (\d+): ")
_METRIC_STARTS = ("Engine ", "SpecDecoding metrics", "Speculative metrics", "Prefix cache hit rate")

_REQUEST = re.compile(r"(Received request|Request|Generated response|Added request|Finished request|"
                      r"Aborted request) ([^\s:,]+?)(?: details| \(streaming (?:delta|complete)\))?[:.,]")
_REQUEST_STARTS = ("Received request ", "Request ", "Generated response ", "Added request ",
                   "Finished request ", "Aborted request ")
_PARAM = re.compile(r"[(,] ?(temperature|top_p|top_k|max_tokens)=(-?[\d.]+(?:[eE][-+]?\d+)?|None)")
_LORA = re.compile(r"lora_request: LoRARequest\(lora_name='([^']*)'")
_COUNT = re.compile(r"(prompt_token_ids_len|output_token_count|prompt_len|output_len): (\d+)")


# -- the year ----------------------------------------------------------------

_year_cache = (-1, 0)  # (hour bucket of now, local year then), replaced as one object


def _year_of(now: float) -> int:
    global _year_cache
    bucket = int(now // 3600)
    cached = _year_cache
    if bucket != cached[0]:
        cached = _year_cache = (bucket, time.localtime(now).tm_year)
    return cached[1]


def month_day_epoch(month_day_time: str, now: float) -> float | None:
    """Epoch of ``MM-DD HH:MM:SS[.f]`` (host local time) in the year it was written.

    A log line is read after it was written: the year is the latest that does
    not put the line more than a day (clock skew) after ``now``. So December
    lines read in January fall in last year, and a line stamped 01-01 read on
    31 December by a host whose clock is a little behind falls in next year.
    (A 02-29 line takes the latest leap year before that.)
    """
    try:
        year = _year_of(now)
    except (OverflowError, OSError, ValueError):
        return None
    for candidate in (year + 1, year, year - 1, year - 2, year - 3, year - 4):
        epoch = timestamps.parse_string(f"{candidate:04d}-{month_day_time}")
        if epoch is not None and epoch <= now + _SKEW:
            return epoch
    return None


# Lines share their minute: its epoch is worked out once per hour of "now"
# (the year rule can only change as now moves on).
_minutes: dict[str, float | None] = {}
_minutes_hour = -1


def _line_epoch(stamp: str, now: float) -> float | None:
    """``month_day_epoch`` of ``MM-DD HH:MM:SS[.f]``, through the minute cache."""
    global _minutes, _minutes_hour
    hour = int(now // 3600) if now == now else 0
    if hour != _minutes_hour or len(_minutes) > 1024:
        _minutes, _minutes_hour = {}, hour
    minute = stamp[:11]
    base = _minutes.get(minute, _MISSING)
    if base is _MISSING:
        base = _minutes[minute] = month_day_epoch(minute + ":00", now)
    if base is None:
        return None
    try:
        seconds = float(stamp[12:])
    except ValueError:
        return None
    return base + seconds if seconds < 61 else None


_MISSING: Any = object()


# -- pieces of a message ------------------------------------------------------

def put_stats(fields: dict[str, Any], message: str) -> None:
    """Engine statistics of a metrics line into ``model.stats`` (2 or more known).

    The line is ``[Engine 000: ][Kind: ]Name: value[unit], Name: value[unit], ...``;
    each item's name is its last label before the value.
    """
    stats: dict[str, float] = {}
    unknown: dict[str, float] = {}
    sides = message.startswith("Prefix cache hit rate: GPU")
    for item in message.split(", "):
        label, sep, raw = item.rpartition(": ")
        if not sep:
            continue
        value = _STAT_VALUE.match(raw)
        if value is None:
            continue
        name = label.rpartition(": ")[2]
        key = _PREFIX_CACHE_SIDES.get(name) if sides else STATS.get(name)
        if key in _FRACTION_STATS and value.group(2) != "%":
            key = _FRACTION_STATS[key]
        number = float(value.group(1))
        if key is not None:
            stats[key] = number
        elif name:
            unknown[name] = number
    if len(stats) < 2:
        return
    fields["model"]["stats"] = stats
    fields["event"] = {"kind": "metric"}
    engine = _ENGINE.match(message)
    if engine is not None:
        fields["labels"] = {"engine": engine.group(1)}
    if unknown:
        fields["extra"] = {"stats": unknown}


def _literal(text: str) -> str:
    """The str a repr() wrote (the raw text if it cannot be decoded)."""
    if "\\" not in text:  # no escape: the text between the quotes is the string
        return text[1:-1]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


def _repr_end(body: str, start: int) -> int:
    """Where the repr() string starting at ``start`` ends (after its quote), or -1.

    (str.find instead of a regex: prompts are long, and a regex steps through
    them one character at a time.)
    """
    quote = body[start:start + 1]
    if quote not in ("'", '"'):
        return -1
    at = start + 1
    while True:
        close = body.find(quote, at)
        if close < 0:
            return -1
        before = close - 1
        while before > start and body[before] == "\\":
            before -= 1
        if (close - 1 - before) % 2 == 0:  # an even run of backslashes: not escaped
            return close + 1
        at = close + 1


def _payload(body: str, key: str, label: str, gen_ai: dict[str, Any], field: str) -> str:
    """Move the ``key: %r`` text of ``body`` into ``gen_ai[field]``; the redacted body."""
    start = body.find(key)
    if start < 0:
        return body
    start += len(key)
    if body.startswith("None", start):
        return body
    end = _repr_end(body, start)
    if end < 0:  # cut by --max-line-bytes: the rest of the line is the text
        text, end = body[start + 1:] if body[start:start + 1] in "'\"" else body[start:], len(body)
    else:
        text = _literal(body[start:end])
    gen_ai[field] = text
    return f"{body[:start]}<{label}: {len(text)} chars>{body[end:]}"


def _token_ids(body: str, key: str, usage: dict[str, Any], field: str) -> str:
    """Count the ``key: [ids]`` list into ``usage[field]``; the body with it replaced."""
    start = body.find(key)
    if start < 0:
        return body
    start += len(key)
    if body[start:start + 1] != "[":
        return body
    end = body.find("]", start)
    end = len(body) if end < 0 else end + 1
    inner = body[start + 1:end - 1].strip()
    count = inner.count(",") + 1 if inner else 0
    usage[field] = count
    return f"{body[:start]}<{count} token ids>{body[end:]}"


def put_request(fields: dict[str, Any], body: str) -> str:
    """Read a request line's ``body`` (from "Received request" on); the redacted body."""
    match = _REQUEST.match(body)
    if match is None:
        return body
    gen_ai = fields["gen_ai"]
    request: dict[str, Any] = {"id": match.group(2).rstrip(".")}
    gen_ai["request"] = request
    kind = match.group(1)
    if kind in ("Added request", "Finished request", "Aborted request"):
        return body
    usage: dict[str, Any] = {}
    if kind != "Generated response":
        body = _payload(body, "prompt: ", "prompt", gen_ai, "prompt")
        body = _token_ids(body, "prompt_token_ids: ", usage, "input_tokens")
        params = body.find("params: ")
        if params >= 0:
            for name, raw in _PARAM.findall(body, params):
                if raw == "None":
                    continue
                try:
                    value = float(raw)
                except ValueError:
                    continue
                if not math.isfinite(value):
                    continue
                if name in ("temperature", "top_p"):
                    request[name] = value
                elif value.is_integer() and 0 < value < 1 << 53 and name not in request:
                    request[name] = int(value)  # top_k <= 0 is vLLM's "disabled": left out
        lora = _LORA.search(body)
        if lora is not None and lora.group(1):
            request["model"] = lora.group(1)
    else:
        body = _payload(body, "output: ", "completion", gen_ai, "completion")
        body = _token_ids(body, "output_token_ids: ", usage, "output_tokens")
    for name, raw in _COUNT.findall(body) if "_len: " in body or "_count: " in body else ():
        if len(raw) < 16:
            if name == "prompt_token_ids_len":
                usage.setdefault("input_tokens", int(raw))
            elif name == "output_token_count":
                usage.setdefault("output_tokens", int(raw))
    if usage:
        gen_ai["usage"] = usage
    return body


# -- lines ---------------------------------------------------------------------

def vllm_line(text: str, now: float) -> tuple[float | None, dict[str, Any], str] | None:
    """``(timestamp, fields, message)`` of a vLLM or uvicorn line, else None."""
    fields: dict[str, Any] = {}
    model: dict[str, Any] = {"server": "vllm"}
    pos = 0
    if text[:1] == "(":
        tag = _TAG.match(text)
        if tag is not None:
            model["worker"] = tag.group(1)
            if len(tag.group(2)) < 10:
                fields["process"] = {"pid": int(tag.group(2))}
            pos = tag.end()
    match = _LINE.match(text, pos)
    if match is None:
        clean = strip_ansi(text)
        parsed = parse_uvicorn(clean, pos, "vllm", fields)
        if parsed is None:
            return None
        parsed[0]["model"].update(model)
        parsed[0]["gen_ai"] = {"system": "vllm"}
        return None, parsed[0], clean[parsed[1]:]
    level, stamp, file_name, line = match.groups()
    fields["model"] = model
    fields["gen_ai"] = {"system": "vllm"}
    origin: dict[str, Any] = {"name": file_name}
    if len(line) < 10:
        origin["line"] = int(line)
    fields["log"] = {"level": level.lower(), "origin": {"file": origin}}
    message = text[match.end():]
    if message.startswith(_REQUEST_STARTS):
        message = put_request(fields, message)
    elif "throughput: " in message or message.startswith(_METRIC_STARTS):
        put_stats(fields, message)
    return _line_epoch(stamp, now), fields, message


def split_prefix(text: str) -> tuple[str | None, str, str]:
    """``(process tag, header, rest)`` of a line (``multiline.PrefixJoiner``):
    the ``(APIServer pid=1) `` tag (None without one) and the log header
    (``ERROR 05-01 10:01:20 [engine.py:58] ``; "" without one) that vLLM
    writes before every line of a record, then the text after them."""
    lane = None
    pos = 0
    if text[:1] == "(":
        tag = _TAG.match(text)
        if tag is not None:
            lane = tag.group(0)
            pos = tag.end()
    match = _LINE.match(text, pos)
    if match is None:
        return lane, "", text[pos:] if pos else text
    return lane, text[pos:match.end()], text[match.end():]


def _carries_payload(text: str) -> bool:
    return "prompt: " in text or "output: " in text or "token_ids: [" in text


@register_format
class VllmFormat(PlainFormat):
    """``--format vllm``: vLLM's engine, request and API-server lines."""

    name = "vllm"
    detect_priority: ClassVar[int] = 10

    @classmethod
    def detect(cls, text: str) -> bool:
        pos = 0
        if text[:1] == "(":
            tag = _TAG.match(text)
            if tag is None:
                return False
            pos = tag.end()
        return _LINE.match(text, pos) is not None

    def structured(self, line: Line) -> Record | None:
        """A line with a prompt or output in it: a record of its own, redacted."""
        text = line.text
        if not _carries_payload(text):
            return None
        parsed = vllm_line(text, line.read_time)
        if parsed is None:
            # Not vLLM's layout (a custom VLLM_LOGGING_PREFIX, another logger):
            # still never let the payload into the message.
            start = _REQUEST.search(text)
            if start is None:
                return None
            timestamp, fields = parse_plain(text)
            fields["model"] = {"server": "vllm"}
            fields["gen_ai"] = {"system": "vllm"}
            message = text[:start.start()] + put_request(fields, text[start.start():])
        else:
            timestamp, fields, message = parsed
        if "gen_ai" not in fields or len(fields["gen_ai"]) == 1:
            return None  # nothing was moved out: an ordinary line
        tags = line.tags
        if len(tags) > 1:
            tags = tuple(dict.fromkeys(tags))
        return Record(line.source, line.offset, line.end, message, line.read_time, timestamp, fields,
                      tags, message if self.keep_original else None, None, 1)

    def head(self, text: str) -> TextInfo:
        parsed = vllm_line(text, time.time())
        if parsed is None:
            if text[:1] == "(":
                tag = _TAG.match(text)
                if tag is not None and tracebacks.starts_traceback(text[tag.end():]):
                    # A process's uncaught traceback, every line tagged: the tag's fields, the traceback.
                    fields: dict[str, Any] = {"model": {"server": "vllm", "worker": tag.group(1)}}
                    if len(tag.group(2)) < 10:
                        fields["process"] = {"pid": int(tag.group(2))}
                    return TextInfo(None, fields, (), None, text[tag.end():])
            return fallback(text, "vllm", getattr(self, "strict", True))
        timestamp, fields, message = parsed
        return TextInfo(timestamp, fields, (), None, message)

    def body(self, text: str) -> str:
        """A later line of a record without the tag and the header vLLM repeats."""
        return split_prefix(text)[2] if text[:1] == "(" or text[:1] in _LEVEL_INITIALS else text

    def joiner(self) -> Joiner:
        if self.settings.multiline_start is not None:
            return super().joiner()
        return PrefixJoiner(split_prefix)
