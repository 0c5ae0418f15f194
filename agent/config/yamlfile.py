"""Reading the config file: YAML text to plain values, and the rule for
scalars YAML typed on its own.

YAML 1.1 (PyYAML) reads an unquoted ``0123`` as the octal number 83, ``1.10``
as 1.1, ``no``/``off``/``yes``/``on`` as booleans, ``~`` or an empty value as
null and ``2024-01-01`` as a date. A setting would then silently take a
value other than the one written. ``load`` keeps the text of each number it
reads (``Number.text``), dates stay text, and a mapping that repeats a key
is refused, naming both lines. ``scalar`` then decides, per setting:

- a text setting takes a YAML string, or a number whose text reads back
  exactly (``port: 8080``, ``version: 1.5``); a number whose text would
  change (``0123``, ``1.10``, ``1_000``) and any boolean are refused with
  the advice to quote the value;
- a number setting (durations, sizes, counts, rates) takes a YAML number,
  unless YAML read it in another base (``010`` is 8, ``0x10``, ``1:30`` is 90);
- a boolean setting takes a boolean; a setting whose documented value is
  ``off`` takes YAML's false as ``off``;
- null is never a value: a key with no value counts as absent (the resolver
  skips it), and a null list item is refused.

``plain`` turns the numbers back into plain ``int`` and ``float``.
"""

from __future__ import annotations

from typing import Any, Callable

import yaml

from agent.config import values as v


class Number:
    """Mixed into the int and float the loader builds: the text written."""

    text: str = ""


class _Int(int, Number):
    pass


class _Float(float, Number):
    pass


class DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"the key {key!r} is given twice, at line {first} and at line {again}; keep one")


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Before merging: a key given again next to a `<<: *anchor` merge is an override, not a duplicate.
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:
                continue
            if first != key_node.start_mark.line + 1:
                raise DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _number(kind: type) -> Callable[[yaml.SafeLoader, yaml.ScalarNode], Any]:
    base = yaml.SafeLoader.yaml_constructors["tag:yaml.org,2002:" + ("int" if kind is _Int else "float")]

    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        number = kind(base(loader, node))
        number.text = node.value
        return number
    return construct


_Loader.add_constructor("tag:yaml.org,2002:int", _number(_Int))
_Loader.add_constructor("tag:yaml.org,2002:float", _number(_Float))
_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def load(text: str) -> Any:
    """The document of ``text``; yaml.YAMLError or DuplicateKey."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def plain(data: Any) -> Any:
    """``data`` with plain int and float in place of the loader's numbers
    (shared and recursive structures stay shared: an alias bomb is not expanded)."""
    done: dict[int, Any] = {}

    def walk(item: Any) -> Any:
        if isinstance(item, Number):
            return int(item) if isinstance(item, int) else float(item)
        if not isinstance(item, (dict, list)):
            return item
        if id(item) in done:
            return done[id(item)]
        if isinstance(item, list):
            copy: Any = []
            done[id(item)] = copy
            copy.extend(walk(element) for element in item)
        else:
            copy = {}
            done[id(item)] = copy
            for key, value in item.items():
                copy[walk(key)] = walk(value)
        return copy
    return walk(data)


# Converters that take a boolean, and YAML's false as "off" (those that take a
# YAML number: values.NUMERIC).
_BOOLEAN = {v.boolean}
_OFF = {v.optional_duration, v.listen_address}
_QUOTE = "quote the value if it is meant as text, e.g. '{}'"




def scalar(convert: Callable[[Any], Any], raw: Any) -> Any:
    """The value the converter ``convert`` is given for the file's scalar
    ``raw`` (see the module docstring); ValueError says why it is refused.
    ``raw`` is not None, a list or a mapping (the caller handles those)."""
    if isinstance(raw, bool):
        if convert in _BOOLEAN:
            return raw
        if raw is False and (convert in _OFF or "off" in getattr(convert, "allowed", ())):
            return "off"
        return _refuse(f"YAML reads an unquoted {_bool_words(raw)} as the boolean {str(raw).lower()}", None)
    if isinstance(raw, Number):
        if convert in v.NUMERIC or convert in _BOOLEAN:
            if isinstance(raw, int) and _decimal(raw.text) != int(raw):
                return _refuse(f"YAML reads {raw.text} as the number {int(raw)} (octal, hexadecimal or base 60)",
                               "write it in decimal")
            if isinstance(raw, float) and ":" in raw.text:
                return _refuse(f"YAML reads {raw.text} as the number {float(raw)} (base 60)", "write it in decimal")
            return int(raw) if isinstance(raw, int) else float(raw)
        shown = str(int(raw)) if isinstance(raw, int) else repr(float(raw))
        if shown != raw.text:
            return _refuse(f"YAML reads {raw.text} as the number {shown}", _QUOTE.format(raw.text))
        return shown
    return raw


def _decimal(text: str) -> int | None:
    try:
        return int(text.replace("_", ""), 10)
    except ValueError:
        return None


def _bool_words(value: bool) -> str:
    return "true, yes or on" if value else "false, no or off"


def _refuse(reason: str, advice: str | None) -> Any:
    raise ValueError(f"{reason}; {advice or 'quote the value if it is meant as text'}")
