"""Watcher conditions evaluated in Python, with Watcher's documented semantics.

No Watcher runs on the test machines (it needs a paid licence and the
Watcher module, which the integ-test distribution lacks), so the tests run
each watch's search input on the real node and evaluate its condition here.
The semantics followed are those of the Watcher reference:

- ``compare``: https://www.elastic.co/guide/en/elasticsearch/reference/current/condition-compare.html
  One ``ctx.payload...`` path, one operator of eq, not_eq, gt, gte, lt, lte
  and a value. Numbers compare as numbers, strings as strings; a value of
  the form ``{{ctx.payload.x}}`` is read from the context. A missing path is
  null: eq/not_eq compare it with null, the ordering operators are false.
- ``array_compare``: https://www.elastic.co/guide/en/elasticsearch/reference/current/condition-array-compare.html
  A path to an array; ``path`` inside each element (empty: the element
  itself); an operator with ``value`` and ``quantifier`` (``some``, the
  default, is true when any element passes - false on an empty array;
  ``all`` when every element passes - true on an empty array).
- ``script``: Watcher runs Painless, which this machine cannot run (the
  integ-test node has no lang-painless module). The only script condition
  the rules generate is SPIKE's (agent.alerting.watcher.spike_script);
  ``spike`` below is its line-by-line Python twin, and a unit test keeps the
  two tied to the same parameters. That Painless source is therefore NOT
  executed by any test: docs/alerting.md says so.

Paths are resolved as Watcher does: dotted keys into maps, a numeric part
indexes a list, ``hits.total`` is an integer when the search ran with
``rest_total_hits_as_int=true``.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def resolve(context: Any, path: str) -> Any:
    """The value at dotted `path` in `context` (None when missing)."""
    value = context
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, list) and part == "size":  # mustache/painless ``.size``
            value = len(value)
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("eq", "not_eq"):
        if left is None or right is None:
            equal = left is right
        else:
            a, b = _number(left), _number(right)
            equal = a == b if a is not None and b is not None else left == right
        return equal if op == "eq" else not equal
    if left is None or right is None:
        return False
    a, b = _number(left), _number(right)
    if a is None or b is None:
        if not (isinstance(left, str) and isinstance(right, str)):
            return False
        a, b = left, right  # type: ignore[assignment]
    if op == "gt":
        return a > b
    if op == "gte":
        return a >= b
    if op == "lt":
        return a < b
    if op == "lte":
        return a <= b
    raise ValueError(f"unknown compare operator {op!r}")


def _value(ctx: dict[str, Any], value: Any) -> Any:
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        return resolve(ctx, value[2:-2].strip())
    return value


def condition_met(condition: dict[str, Any], ctx: dict[str, Any]) -> bool:
    """Whether a watch `condition` holds for `ctx` (``{"payload": search response}``)."""
    ctx = {"ctx": ctx}
    (kind, spec), = condition.items()
    if kind == "always":
        return True
    if kind == "never":
        return False
    if kind == "compare":
        (path, ops), = spec.items()
        (op, value), = ops.items()
        return _compare(op, resolve(ctx, path), _value(ctx, value))
    if kind == "array_compare":
        (path, spec), = spec.items()
        items = resolve(ctx, path) or []
        inner = spec.get("path", "")
        (op, how), = ((k, v) for k, v in spec.items() if k != "path")
        value = _value(ctx, how["value"])
        passed = [_compare(op, resolve(item, inner), value) for item in items]
        quantifier = how.get("quantifier", "some")
        if quantifier == "some":
            return any(passed)
        if quantifier == "all":
            return all(passed)
        raise ValueError(f"unknown quantifier {quantifier!r}")
    if kind == "script":
        return spike(ctx["ctx"]["payload"], **spec["params"])
    raise ValueError(f"condition {kind!r} is not evaluated here")


def spike(payload: dict[str, Any], factor: float, floor: float) -> bool:
    """Python twin of agent.alerting.watcher.spike_script (keep them in step)."""
    for bucket in resolve(payload, "aggregations.groups.buckets") or []:
        cur = resolve(bucket, "recent.value.value")
        ref = resolve(bucket, "baseline.value.value")
        if cur is not None and cur >= floor and (0.0 if ref is None else ref) * factor <= cur:
            return True
    return False
