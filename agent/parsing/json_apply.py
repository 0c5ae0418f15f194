"""The values of keys with a meaning (``json_keys`` rules, ``--map-field``),
placed after ``parse_json.map_object``'s loop over the keys when they cannot
be placed in it: best rule first, each only into a field still free (split
from parse_json, which with its compiled twin json_shapes calls these)."""

from __future__ import annotations

from typing import Any

from agent.parsing.json_coerce import NO
from agent.parsing.json_keys import STATUS as STATUS_PLACE
from agent.parsing.json_keys import TIMESTAMP, Rule


def _nested_values(obj: dict[str, Any], nested: tuple[tuple[tuple[str, ...], Rule], ...]
                   ) -> list[tuple[int, str, Any, dict[str, Any] | None, Rule]] | None:
    """The values that dotted user sources name inside nested objects."""
    found = None
    for parts, rule in nested:
        node = obj.get(parts[0])
        for part in parts[1:-1]:
            if type(node) is not dict:
                break
            node = node.get(part)
        if type(node) is dict and parts[-1] in node:
            item = (rule.rank, parts[-1], node[parts[-1]], node, rule)
            found = [item] if found is None else found + [item]
    return found


def _apply(mapped: list[tuple[int, str, Any, dict[str, Any] | None, Rule]], fields: dict[str, Any],
           extra: dict[str, Any], message: str, timestamp: float | None) -> tuple[str, float | None, Any]:
    """Place the values of keys with a meaning, best rule first (see ``json_keys``).

    A value lands in its field only if it coerces and the field is still
    free (an ECS key or a better rule did not fill it); otherwise the key
    stays in extra as it was (a nested one: where it was). Returns the
    message, the timestamp and the HTTP status a rule placed, if any.
    """
    if len(mapped) == 2:  # the common case of several: no sort call
        if mapped[0][0] > mapped[1][0]:
            mapped.reverse()
    elif len(mapped) > 2:
        mapped.sort()  # by rank; equal ranks (one rule, literal and nested key) differ by key
    status = None
    no = NO
    emptied: list[dict[str, Any]] | None = None
    for _, key, value, holder, rule in mapped:
        put = rule.put
        if put is not None:  # a field: coerced and placed in one call
            result = put(fields, value)
            ok = result is not no
            if ok and rule.place == STATUS_PLACE:
                status = result
        else:  # the record's timestamp or message
            result = rule.coerce(value)
            ok = result is not no
            if ok and rule.place == TIMESTAMP:
                ok = timestamp is None
                if ok:
                    timestamp = result
            elif ok:
                ok = not message
                if ok:
                    message = result
        if ok:
            if holder is not None:
                holder.pop(key, None)
                if not holder:
                    emptied = [holder] if emptied is None else emptied + [holder]
        elif holder is None:
            extra[key] = value
    if emptied is not None:  # ({"meta": {"took": 7}} with meta.took mapped: no "meta": {} left in extra)
        _drop_emptied(extra, emptied)
    return message, timestamp, status


def _drop_emptied(node: dict[str, Any], emptied: list[dict[str, Any]]) -> bool:
    """Remove from ``node`` the objects a mapping emptied, and those left empty
    by that (an object empty in the log stays); True when ``node`` is now empty."""
    dropped = False
    for key, value in list(node.items()):
        if type(value) is dict and (any(value is gone for gone in emptied)
                                    or (value and _drop_emptied(value, emptied))):
            del node[key]
            dropped = True
    return dropped and not node
