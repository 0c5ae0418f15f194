"""Fields read from a file's path: model identity templates and Kubernetes log paths.

    --model-from-path '/var/log/models/{model.name}/{model.version}/*.log'

A template is a glob (``*`` within a directory, ``**`` across directories,
``?``, ``[abc]``, ``[!abc]``) whose ``{field}`` placeholders capture one path
segment (or part of one) into a schema string field. A placeholder takes as
much of its segment as it can: ``{model.name}-{model.version}.log`` reads
``llama-3-8b-2.log`` as ``llama-3-8b`` and ``2``. Templates are tried in order and the
first that matches the whole path wins; a template that does not start with
``/`` may match at any directory boundary.

Kubernetes writes container logs to two layouts, recognised without
configuration (``kubernetes_paths``)::

    /var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart>.log[.<rotation>]
    /var/log/containers/<pod>_<namespace>_<container>-<container id>.log

giving ``kubernetes.namespace``, ``kubernetes.pod.name``, ``kubernetes.pod.uid``,
``kubernetes.container.name`` and ``container.id``. Namespace and pod names
are DNS names, which cannot hold ``_``, so splitting on it is exact. Any
directory may precede ``pods/`` or ``containers/`` (hosts mount /var/log
elsewhere, e.g. ``/host/var/log/pods``).

Precedence: the log line's own fields > a template > the Kubernetes layout >
static configuration. Results are cached per path: paths repeat for millions
of lines, so matching costs one dict look-up per line.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from agent.transforms import schema
from agent.transforms.static import overlay, put

_CACHE_LIMIT = 4096

_POD_LOG = re.compile(r"(?:\A|/)pods/(?P<namespace>[^/_]+)_(?P<pod>[^/_]+)_(?P<uid>[^/_]+)/"
                      r"(?P<container>[^/]+)/\d+\.log(?:\.[^/]*)?\Z")
_CONTAINER_LOG = re.compile(r"(?:\A|/)containers/(?P<pod>[^/_]+)_(?P<namespace>[^/_]+)_"
                            r"(?P<container>[^/]+)-(?P<id>[0-9a-f]{64})\.log\Z")


def kubernetes_fields(path: str) -> dict[str, Any] | None:
    """The ``kubernetes.*`` / ``container.*`` tree of a kubelet log path, or None."""
    match = _POD_LOG.search(path)
    if match:
        return {"kubernetes": {"namespace": match["namespace"],
                               "pod": {"name": match["pod"], "uid": match["uid"]},
                               "container": {"name": match["container"]}}}
    match = _CONTAINER_LOG.search(path)
    if match:
        return {"kubernetes": {"namespace": match["namespace"], "pod": {"name": match["pod"]},
                               "container": {"name": match["container"]}},
                "container": {"id": match["id"]}}
    return None


class Template:
    """One --model-from-path template, compiled to an anchored regex."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.names: list[str] = []
        self.regex = re.compile(self._translate(text))

    def _translate(self, text: str) -> str:
        out = [] if text.startswith("/") else [r"(?:.*/)?"]
        groups: dict[str, str] = {}
        i = 0
        while i < len(text):
            char = text[i]
            if char == "{":
                end = text.find("}", i)
                if end < 0:
                    raise ValueError(f"unclosed '{{' at position {i}")
                name = text[i + 1:end]
                _check_placeholder(name)
                if name in groups:  # the same field twice must capture the same text
                    out.append(f"(?P={groups[name]})")
                else:
                    groups[name] = f"f{len(groups)}"
                    self.names.append(name)
                    out.append(f"(?P<{groups[name]}>[^/]+)")
                i = end + 1
            elif char == "}":
                raise ValueError(f"'}}' without '{{' at position {i}")
            elif text.startswith("**", i):
                if text.startswith("**/", i):
                    out.append(r"(?:[^/]*/)*")
                    i += 3
                else:
                    out.append(r".*")
                    i += 2
            elif char == "*":
                out.append(r"[^/]*")
                i += 1
            elif char == "?":
                out.append(r"[^/]")
                i += 1
            elif char == "[":
                end = text.find("]", i + 2)
                if end < 0:
                    raise ValueError(f"unclosed '[' at position {i}")
                body = text[i + 1:end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("[", "\\[")
                if body.startswith("^"):
                    body = "\\" + body
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end + 1
            else:
                out.append(re.escape(char))
                i += 1
        if not self.names:
            raise ValueError("names no field: add a placeholder such as {model.name}")
        return "".join(out) + r"\Z"

    def match(self, path: str) -> list[tuple[str, str]] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return [(name, found[f"f{index}"]) for index, name in enumerate(self.names)]


def _check_placeholder(name: str) -> None:
    if not schema.valid_name(name):
        raise ValueError(f"placeholder {{{name}}} is not a field name")
    kind = schema.field_type(name)
    if kind is None:
        raise ValueError(f"placeholder {{{name}}} names no known field (model.name, model.version, "
                         "service.name, labels.<key>, ...)")
    if kind not in schema.STRING_TYPES or name in schema.PAYLOAD_FIELDS or schema.is_protected(name) \
            or name.startswith("extra."):
        raise ValueError(f"placeholder {{{name}}} is a {kind} field; a path can only fill "
                         "string fields such as model.name")


def compile_templates(texts: tuple[str, ...]) -> tuple[Template, ...]:
    """Compile every template; ValueError names the template and the reason."""
    compiled = []
    for text in texts:
        try:
            compiled.append(Template(text))
        except (ValueError, re.error) as error:
            raise ValueError(f"--model-from-path {text!r}: {error}") from None
    return tuple(compiled)


class PathFields:
    """Per-path defaults tree: template fields over Kubernetes fields over ``static``.

    ``scrub`` is applied once to every value taken from a path (the redaction
    patterns), so a secret in a directory name is redacted like any other
    text. The trees returned are shared: read-only by contract.
    """

    def __init__(self, templates: tuple[Template, ...], kubernetes: bool, static: dict[str, Any],
                 scrub: Callable[[str], str] | None = None) -> None:
        self._templates = templates
        self._kubernetes = kubernetes
        self._static = static
        self._scrub = scrub
        self._cache: dict[str, dict[str, Any]] = {}
        self.active = bool(templates) or kubernetes

    def tree(self, path: str) -> dict[str, Any]:
        found = self._cache.get(path)
        if found is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[path] = self._build(path)
        return found

    def _build(self, path: str) -> dict[str, Any]:
        tree = self._static
        if self._kubernetes:
            pod = kubernetes_fields(path)
            if pod is not None:
                tree = overlay(tree, self._scrubbed(pod))
        for template in self._templates:
            captured = template.match(path)
            if captured is not None:
                own: dict[str, Any] = {}
                for name, value in captured:
                    put(own, name, self._scrub(value) if self._scrub else value)
                tree = overlay(tree, own)
                break
        return tree

    def _scrubbed(self, tree: dict[str, Any]) -> dict[str, Any]:
        if self._scrub is None:
            return tree
        return {key: self._scrubbed(value) if isinstance(value, dict) else self._scrub(value)
                for key, value in tree.items()}
