"""The ingest pipelines of ``pipelines/*.yml``, loaded into the bodies ``setup`` installs.

One YAML file per pipeline (``pipelines/<name>.yml``: ``description``,
``processors``, optional ``on_failure``). A file becomes the pipeline
``modelscribe-<name>-<agent version>``: the version is in the name, so an
upgrade installs new pipelines next to the old ones and never changes a
pipeline that agents of the older version still send to.

In the YAML, a ``pipeline`` processor names another of ours as
``modelscribe-<name>``; the loader rewrites that to the versioned name
(``modelscribe@custom``, the user's hook, is not ours and stays as it is).

Guarantees:

- ``load_pipelines()`` is deterministic: the same files give the same dict
  (sorted by name) of installed name -> JSON body, every time.
- A definition that would install something broken is refused before
  anything reaches a cluster, with ``PipelineDefinitionError`` naming the
  file and the processor (by tag or position): a processor without a
  ``tag``, a tag used twice in one file, a processor that is not a
  one-key mapping, a ``pipeline`` reference to a file that does not exist.
- ``processors_used()`` lists every (processor type, option) the
  definitions use, nested ``on_failure`` and ``foreach`` processors
  included, so a test can hold them to what every supported engine accepts.
"""

from __future__ import annotations

import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

from agent import __version__
from agent.errors import ConfigError



def _pipelines_dir() -> Path:
    """pipelines/ of a checkout (or an editable install); else where the wheel's
    data files put it (pyproject.toml: share/modelscribe/pipelines under the prefix)."""
    checkout = Path(__file__).resolve().parents[2] / "pipelines"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "modelscribe" / "pipelines"


PIPELINES_DIR = _pipelines_dir()
PREFIX = "modelscribe-"
CUSTOM_HOOK = "modelscribe@custom"
_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_TOP_KEYS = frozenset({"description", "processors", "on_failure"})


class PipelineDefinitionError(ConfigError):
    """A file of pipelines/ cannot be installed as it is (a packaging bug)."""


def installed_name(name: str, version: str = __version__) -> str:
    """``modelscribe-<name>-<version>``: the name a file's pipeline is installed under."""
    return f"{PREFIX}{name}-{version}"


ENTRY = installed_name("entry")
FINAL = installed_name("final")


def _processors(items: Any, where: str, path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, where, options) of every processor in ``items``, nested ones included."""
    if not isinstance(items, list):
        raise PipelineDefinitionError(f"{path}: {where} must be a list of processors")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise PipelineDefinitionError(f"{path}: {where}[{index}] must be a mapping of one processor type")
        (kind, options), = item.items()
        if not isinstance(options, dict):
            raise PipelineDefinitionError(f"{path}: {where}[{index}] ({kind}): options must be a mapping")
        tag = options.get("tag")
        label = f"{where}[{index}] ({kind}, tag {tag!r})" if tag else f"{where}[{index}] ({kind})"
        yield kind, label, options
        if "on_failure" in options:
            yield from _processors(options["on_failure"], f"{label}.on_failure", path)
        if kind == "foreach" and "processor" in options:
            yield from _processors([options["processor"]], f"{label}.processor", path)


def _check(name: str, body: dict[str, Any], path: Path, names: set[str]) -> None:
    unknown = set(body) - _TOP_KEYS
    if unknown:
        raise PipelineDefinitionError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    if not isinstance(body.get("description"), str):
        raise PipelineDefinitionError(f"{path}: a description (text) is required")
    tags: set[str] = set()
    groups = [("processors", body.get("processors"))]
    if "on_failure" in body:
        groups.append(("on_failure", body["on_failure"]))
    for where, items in groups:
        for kind, label, options in _processors(items, where, path):
            tag = options.get("tag")
            if not isinstance(tag, str) or not tag:
                raise PipelineDefinitionError(f"{path}: {label} has no tag (every processor needs one)")
            if tag in tags:
                raise PipelineDefinitionError(f"{path}: {label}: tag {tag!r} is used twice in this file")
            tags.add(tag)
            if kind == "pipeline":
                target = options.get("name")
                if target != CUSTOM_HOOK and (not isinstance(target, str) or not target.startswith(PREFIX)
                                              or target[len(PREFIX):] not in names):
                    raise PipelineDefinitionError(
                        f"{path}: {label} calls {target!r}, which is neither {CUSTOM_HOOK} nor "
                        f"modelscribe-<name> of a file in {path.parent}")


def _versioned(node: Any, version: str) -> Any:
    """``node`` with every ``pipeline`` processor's name made versioned."""
    if isinstance(node, list):
        return [_versioned(item, version) for item in node]
    if isinstance(node, dict):
        out = {key: _versioned(value, version) for key, value in node.items()}
        options = out.get("pipeline")
        if len(out) == 1 and isinstance(options, dict) and isinstance(options.get("name"), str):
            target = options["name"]
            if target.startswith(PREFIX) and target != CUSTOM_HOOK:
                out["pipeline"] = {**options, "name": installed_name(target[len(PREFIX):], version)}
        return out
    return node


def read_definitions(directory: Path = PIPELINES_DIR) -> dict[str, dict[str, Any]]:
    """``name -> body`` as written in the files (names unversioned), checked."""
    files = sorted(directory.glob("*.yml"))
    if not files:
        raise PipelineDefinitionError(f"{directory}: no pipeline definitions (*.yml) found")
    names = {path.stem for path in files}
    bodies: dict[str, dict[str, Any]] = {}
    for path in files:
        if not _NAME.match(path.stem):
            raise PipelineDefinitionError(f"{path}: file names must be lower-case words and dashes")
        try:
            body = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise PipelineDefinitionError(f"{path}: cannot be read as YAML: {error}") from error
        if not isinstance(body, dict):
            raise PipelineDefinitionError(f"{path}: must be a mapping with description and processors")
        _check(path.stem, body, path, names)
        bodies[path.stem] = body
    return bodies


@lru_cache(maxsize=4)
def _load(directory: Path, version: str) -> tuple[tuple[str, str], ...]:
    # Read and checked once per process (the files ship with the package);
    # kept as JSON text so every caller gets its own copy.
    bodies = read_definitions(directory)
    return tuple((installed_name(name, version), json.dumps(_versioned(body, version), sort_keys=True))
                 for name, body in sorted(bodies.items()))


def load_pipelines(directory: Path = PIPELINES_DIR, version: str = __version__) -> dict[str, dict[str, Any]]:
    """Installed name -> JSON body of every pipeline (a new dict each call)."""
    return {name: json.loads(body) for name, body in _load(directory, version)}


def processors_used(directory: Path = PIPELINES_DIR) -> set[tuple[str, str]]:
    """Every ``(processor type, option)`` the definitions use (nested ones too)."""
    used: set[tuple[str, str]] = set()
    for path_name, body in read_definitions(directory).items():
        path = directory / f"{path_name}.yml"
        groups = [("processors", body["processors"])] + ([("on_failure", body["on_failure"])]
                                                         if "on_failure" in body else [])
        for where, items in groups:
            for kind, _, options in _processors(items, where, path):
                used.update((kind, option) for option in options)
    return used
