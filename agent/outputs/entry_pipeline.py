"""Will the target parse raw documents? The start-up check of ``--parse-at elasticsearch``.

With ``--parse-at elasticsearch`` the agent ships each event's raw text, and
only the cluster's entry ingest pipeline (``modelscribe-entry-<version>``)
parses it. No request of the agent names a pipeline: the target's index
settings do (``index.default_pipeline``, which the logs-modelscribe index
template sets once ``modelscribe setup`` installed the pipelines). A target
whose settings name none stores the raw documents as they come, and the
cluster says nothing: every field the pipelines would extract is lost and
``@timestamp`` is the read time. So before anything is read, ``require``
asks the cluster which default pipeline the target's documents get:

- a target that exists (an index, or a data stream: its write index, the
  backing index of the highest generation): its settings, ``GET
  /TARGET/_settings``. An index takes its template's settings when it is
  created: a template installed later reaches a data stream at its next
  rollover only;
- a target that does not exist yet: the index template it would be created
  from, ``POST /_index_template/_simulate_index/TARGET``.

Both answer the same on Elasticsearch 8.x/9.x and OpenSearch 2.x (checked on
the real nodes: a template with the pipelines, one without, no template, a
plain index with and without ``index.default_pipeline``, a data stream).

Verdicts:

- this version's entry pipeline: fine. (If that pipeline itself is missing,
  the cluster refuses every document with a 400 that the sender retries with
  a message naming ``modelscribe setup pipelines``: ``retry``.)
- no pipeline (absent or ``_none``): ``NoEntryPipeline``, exit code 3; the
  agent does not start. Nothing about it is worth retrying, and shipping
  would store unparsed documents.
- another version's entry pipeline, or a pipeline of another name (it may
  call ours): a warning, and shipping goes on.
- no answer the check can use (HTTP 403: the shipping role of
  docs/security.md has neither ``view_index_metadata`` on the target nor
  ``manage_index_templates``; an old cluster without the simulate API): a
  warning, and shipping goes on. A cluster the check cannot ask is never
  blocked. A transport error (no connection) is raised as it is: the caller
  treats it as any unreachable output, and the check runs again later.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from agent.errors import EXIT_OUTPUT, ModelscribeError
from agent.outputs.base import Response
from agent.selflog import get_logger

log = get_logger("output")

PREFIX = "modelscribe-entry-"
_GENERATION = re.compile(r"-(\d+)\Z")

Request = Callable[[str, str], Response]


class NoEntryPipeline(ModelscribeError):
    """The target would store raw documents unparsed: the agent does not start.

    Not an OutputError: nothing about it is retried or dead-lettered."""

    exit_code = EXIT_OUTPUT


def entry_pipeline() -> str:
    """This version's entry pipeline, ``modelscribe-entry-<version>``."""
    from agent.setup.pipeline_defs import ENTRY

    return ENTRY


def require(request: Request, target: str) -> None:
    """Raise NoEntryPipeline if ``target``'s documents would go through no
    ingest pipeline; log a warning when that cannot be told, or when they go
    through another one. ``request(method, path)``: the output's, with its
    timeout; its OutputError (no connection) is not caught."""
    entry = entry_pipeline()
    found = _default_pipeline(request, target)
    if isinstance(found, str):  # the reason the cluster could not say
        log.warning("cannot check that the target's documents go through the entry pipeline; if no index "
                    "template or index setting names it, the raw lines are stored unparsed (--parse-at "
                    "elasticsearch; view_index_metadata on the target lets the agent check, docs/security.md)",
                    target=target, pipeline=entry, error=found)
        return
    pipeline, index = found
    if pipeline == entry:
        return
    if pipeline is None:
        raise NoEntryPipeline(refusal(target, index, entry))
    if pipeline.startswith(PREFIX):
        log.warning("the target's documents go through another version's entry pipeline: run `modelscribe "
                    "setup pipelines` and `modelscribe setup templates` for this version's (--parse-at "
                    "elasticsearch)", target=target, pipeline=pipeline, expected=entry)
    else:
        log.warning("the target's documents go through an ingest pipeline that is not modelscribe's entry "
                    "pipeline; unless it calls that one, the raw lines are stored unparsed (--parse-at "
                    "elasticsearch)", target=target, pipeline=pipeline, expected=entry)


def refusal(target: str, index: str | None, entry: str) -> str:
    """The message of NoEntryPipeline. ``index``: the existing index whose
    settings were read (a data stream's write index), None for a target that
    does not exist yet."""
    head = f"--parse-at elasticsearch: the documents would be stored unparsed in {target}: "
    setup = "Run `modelscribe setup pipelines` and `modelscribe setup templates`"
    if index is None:
        why = (f"no index template gives it an ingest pipeline (index.default_pipeline), so nothing would "
               f"parse the raw lines. {setup} (the logs-modelscribe-* data streams then go through {entry}), "
               f"or give {target} the setting index.default_pipeline: {entry}")
    elif index != target:
        why = (f"its write index {index} has no ingest pipeline (index.default_pipeline), so nothing would "
               f"parse the raw lines. {setup}, then roll it over (POST /{target}/_rollover: an index takes its "
               f"template's settings when it is created), or set index.default_pipeline: {entry} on it")
    else:
        why = (f"the index has no ingest pipeline (index.default_pipeline), so nothing would parse the raw "
               f"lines. Set index.default_pipeline: {entry} on it (PUT /{target}/_settings, once "
               f"`modelscribe setup pipelines` installed the pipeline)")
    return head + why + "; or use --parse-at agent"


def _default_pipeline(request: Request, target: str) -> tuple[str | None, str | None] | str:
    """(the default pipeline or None, the index it was read from or None if
    the target does not exist yet), or the reason the cluster could not say."""
    answer = request("GET", f"/{target}/_settings/index.default_pipeline?flat_settings=true&include_defaults=true")
    if answer.status == 200 and isinstance(answer.body, dict) and answer.body:
        index = max(answer.body, key=_generation)
        entry = answer.body[index] if isinstance(answer.body[index], dict) else {}
        value = (entry.get("settings") or {}).get("index.default_pipeline",
                                                   (entry.get("defaults") or {}).get("index.default_pipeline"))
        return _pipeline(value), index
    if answer.status != 404:
        return _reason(answer, f"GET /{target}/_settings")
    simulated = request("POST", f"/_index_template/_simulate_index/{target}")
    if simulated.status != 200 or not isinstance(simulated.body, dict):
        return _reason(simulated, f"POST /_index_template/_simulate_index/{target}")
    settings = (simulated.body.get("template") or {}).get("settings") or {}
    value = settings.get("index.default_pipeline", (settings.get("index") or {}).get("default_pipeline"))
    return _pipeline(value), None


def _pipeline(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != "_none" else None


def _generation(index: str) -> tuple[int, str]:
    """A data stream's write index is its backing index of the highest generation
    (``.ds-NAME-[DATE-]000002``)."""
    found = _GENERATION.search(index)
    return (int(found.group(1)) if found else -1, index)


def _reason(answer: Response, what: str) -> str:
    detail = ""
    if isinstance(answer.body, dict):
        error = answer.body.get("error")
        detail = str(error.get("reason", "")) if isinstance(error, dict) else str(error or "")
    elif isinstance(answer.body, str):
        detail = answer.body.strip()
    detail = detail if len(detail) < 200 else detail[:200] + "..."
    return f"{what}: HTTP {answer.status}" + (f" ({detail})" if detail else "")
