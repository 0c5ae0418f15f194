"""The two implementations of one specification, side by side.

``agent_documents`` parses a fixture as the agent does (``make_parser``) and
``raw_documents`` as ``--parse-at elasticsearch`` ships it
(``make_raw_parser``); both go through the same enrichment. ``through_pipelines``
runs raw documents through the installed entry and final pipelines of a
real node (``_simulate``), and ``differences`` lists, field by field, where
two documents differ.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from agent.enrich import Enricher
from agent.events import Line, Source
from agent.parsing import ParseSettings, make_parser, make_raw_parser, timestamps
from agent.setup.pipeline_defs import ENTRY, FINAL, load_pipelines
from agent.transforms import HostInfo, Transforms, TransformSettings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Now: Triton's default layout has no year, which the agent takes from its
# clock and the cluster from the read time; the two agree when read time is now.
READ_TIME = float(int(time.time()))

# Fields that may differ, with the reason (docs/pipelines.md lists them too).
IGNORED = frozenset({
    "event.ingested",  # set by the cluster only
})

Request = Callable[[str, str, Any], tuple[int, Any]]


def fixture_files() -> list[Path]:
    """Every fixture file of every format (parsing/ and servers/<server>/...)."""
    found = [path for path in (FIXTURES / "parsing").iterdir() if path.is_file()]
    found += [path for path in (FIXTURES / "servers").rglob("*") if path.is_file()]
    return sorted(found)


def lines_of(path: Path, source: Source) -> list[Line]:
    data = path.read_bytes()
    lines: list[Line] = []
    offset = 0
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    for number, raw in enumerate(pieces, start=1):
        end = offset + len(raw) + 1
        lines.append(Line(source, offset, end, raw.decode("utf-8", "replace"), READ_TIME + number / 1000.0))
        offset = end
    return lines


class UTC:
    """The host's zone set to UTC while parsing: the cluster reads a time
    without a zone as UTC (see docs/pipelines.md), the agent in the host's zone."""

    def __enter__(self) -> None:
        self._old = os.environ.get("TZ")
        os.environ["TZ"] = "UTC"
        time.tzset()
        timestamps._minute_base.cache_clear()

    def __exit__(self, *exc: object) -> None:
        if self._old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = self._old
        time.tzset()
        timestamps._minute_base.cache_clear()


HOST = HostInfo(name="host-1", ips=("10.0.0.5",), os_name="Debian", os_version="12", architecture="x86_64",
                os_kernel="6.1.0", os_type="linux")
# The agent's defaults, as a deployment sets them: they fill only where the
# line has no value, in both modes.
TRANSFORMS = TransformSettings(fields=(("model.name", "from-flag"), ("event.dataset", "app.log")),
                               labels=(("team", "ml"),), service_name="inference",
                               model_from_path=("/var/log/{model.version}/*",))


def _documents(path: Path, settings: ParseSettings, raw: bool,
               transforms: TransformSettings | None = None) -> list[dict[str, Any]]:
    source = Source("fixture-key", f"/var/log/{path.parent.name}/{path.name}")
    parser = (make_raw_parser if raw else make_parser)(settings, source)
    enricher = Enricher("host-1", "agent-1", settings.keep_original,
                        None if transforms is None else Transforms(transforms, HOST))
    records = []
    with UTC():
        for line in lines_of(path, source):
            records.extend(parser.feed(line))
        records.extend(parser.flush())
        events = [enricher.build(record) for record in records]
    return [orjson.loads(event.data) for event in events if event is not None]


def agent_documents(path: Path, settings: ParseSettings,
                    transforms: TransformSettings | None = None) -> list[dict[str, Any]]:
    return _documents(path, settings, False, transforms)


def raw_documents(path: Path, settings: ParseSettings,
                  transforms: TransformSettings | None = None) -> list[dict[str, Any]]:
    return _documents(path, settings, True, transforms)


def install(request: Request) -> None:
    for name, body in load_pipelines().items():
        status, resp = request("PUT", f"/_ingest/pipeline/{name}", body)
        if status >= 300:
            raise AssertionError(f"PUT pipeline {name} -> {status}: {_reason(resp)}")


def _simulate(request: Request, name: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    status, resp = request("POST", f"/_ingest/pipeline/{name}/_simulate",
                           {"docs": [{"_source": doc} for doc in docs]})
    if status >= 300:
        raise AssertionError(f"simulate {name} -> {status}: {resp}")
    out = []
    for entry in resp["docs"]:
        if "doc" not in entry:
            raise AssertionError(f"simulate {name}: the document failed: {entry}")
        out.append(entry["doc"]["_source"])
    return out


def through_pipelines(request: Request, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``docs`` through the entry pipeline (the default) then the final one."""
    if not docs:
        return []
    return _simulate(request, FINAL, _simulate(request, ENTRY, docs))


def _flat(doc: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], doc


# The cluster's reason for a line that is not a JSON object (orjson's error
# messages, "invalid JSON at column 5: ...", cannot be reproduced by the
# engine's own JSON parser); the parse_failure tag is the same.
CLUSTER_JSON_REASON = "not a JSON object"


def _accepted(key: str, a: Any, c: Any, agent: dict[str, Any]) -> bool:
    """An intentional difference (docs/pipelines.md, "Intentional differences")."""
    if key == "error.message" and "parse_failure" in agent.get("tags", ()):
        return isinstance(a, str) and a.startswith("invalid JSON") and c == CLUSTER_JSON_REASON
    return False


_NOT_A_SERVER_LINE = re.compile(r"not a [a-z]+ log line")
# rayserve and bentoml, forced: a line starting with { that is not a JSON object gets the JSON reason
_NOT_AN_OBJECT = re.compile(r"invalid JSON.*|JSON value is [a-z ]+, not an object")


def _unforced(agent: dict[str, Any], cluster: dict[str, Any], forced: bool) -> dict[str, Any]:
    """The agent's document as a detected (not forced) server format makes it:
    a raw document does not say whether --format NAME was forced, and the
    cluster reads a line of no shape of that server as auto detection does,
    without the parse_failure tag and "not a NAME log line" (or, for Ray Serve
    and BentoML, the reason a line starting with { is not a JSON object)
    (docs/pipelines.md). ``forced``: the agent read the source with --format
    NAME of a server; then an event whose head was no line of that server
    keeps the parse_failure tag even when a traceback in it gave error.message
    (which hides the reason), and the cluster has neither."""
    error = agent.get("error")
    theirs = cluster.get("error")
    if (forced and "parse_failure" in agent.get("tags", ()) and "parse_failure" not in cluster.get("tags", ())
            and isinstance(error, dict) and isinstance(theirs, dict) and error.get("message") == theirs.get("message")):
        out = dict(agent)
        tags = [tag for tag in agent["tags"] if tag != "parse_failure"]
        if tags:
            out["tags"] = tags
        else:
            del out["tags"]
        return out
    if not (isinstance(error, dict) and isinstance(error.get("message"), str)
            and (_NOT_A_SERVER_LINE.fullmatch(error["message"]) or _NOT_AN_OBJECT.fullmatch(error["message"]))
            and not (isinstance(cluster.get("error"), dict) and "message" in cluster["error"])):
        return agent
    out = dict(agent)
    rest = {key: value for key, value in error.items() if key != "message"}
    if rest:
        out["error"] = rest
    else:
        del out["error"]
    tags = [tag for tag in agent.get("tags", []) if tag != "parse_failure"]
    if tags:
        out["tags"] = tags
    else:
        out.pop("tags", None)
    return out


def differences(agent: dict[str, Any], cluster: dict[str, Any], fmt: str = "auto") -> list[str]:
    """One readable line per leaf that differs (ignored fields left out);
    ``fmt`` the --format the agent read the source with."""
    agent = _unforced(agent, cluster, fmt not in ("auto", "json", "plain"))
    mine = dict(_flat(agent))
    theirs = dict(_flat(cluster))
    out = []
    for key in sorted(set(mine) | set(theirs)):
        if key in IGNORED:
            continue
        a, c = mine.get(key, "<missing>"), theirs.get(key, "<missing>")
        if (a != c or type(a) is not type(c)) and not _accepted(key, a, c, agent):
            out.append(f"  {key}: agent {a!r} != cluster {c!r}")
    return out


def _reason(resp: Any) -> str:
    """The useful part of an error response (painless compile errors are long)."""
    try:
        cause = resp["error"]["root_cause"][0]
        detail = resp["error"].get("caused_by", {})
        return (f"{cause.get('type')} {cause.get('reason')} tag={cause.get('processor_tag')} "
                f"at {cause.get('script_stack')} caused by {detail.get('reason')}")
    except (KeyError, IndexError, TypeError):
        return str(resp)[:2000]
