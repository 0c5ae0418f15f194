"""``parse_json.map_object`` compiled for one set of keys.

The lines of one logger share their keys, in the same order (a *shape*), and
``KeyMap.shape`` already decides per shape what each key means. What is left
per line is the interpreter of those plans: a zip over the keys, a dispatch on
the plan's kind, tuple indexing, and the steps after the loop that this set
of keys can never need. Once a shape has been seen often enough
(``KeyMap.compile_after``), this module writes ``map_object`` out for it as
Python source, one block per key with the plan's kind, role and constants
resolved, then the steps after the loop that the shape can need, and
compiles it: the same operations in the same order, minus the interpretation
(about 30 % of ``map_object``'s time on a typical model-service line).

Guarantees:

- Equivalence: a compiled shape returns exactly what ``map_object``'s
  interpreted path (the reference) returns for the same object: a hypothesis
  test compares both on random objects and key maps, and one object per
  branch. Each block is the interpreted branch with its constants
  substituted; a step after the loop is left out only when no plan of the
  shape can set what it reads.
- No text of a log line reaches the generated source: keys and plan values
  are bound as globals ``k<i>`` and ``p<i>_<j>`` of the generated function;
  the source holds only identifiers made here.
- Bounded: only shapes the key map caches (at most ``_MAX_SHAPES``, each of
  at most ``_MAX_SHAPE_KEYS`` keys), and only once seen ``compile_after``
  times, so ever-changing keys cost no compiles.
"""

from __future__ import annotations

from typing import Any, Callable

def compile_shape(names: tuple[str, ...], plans: tuple[tuple[Any, ...], ...],
                  env: dict[str, Any]) -> Callable[[dict[str, Any], Any], tuple[Any, ...]]:
    """``shaped(obj, mapped) -> (message, timestamp, fields)``: ``map_object``
    for objects whose keys are ``names`` (in order) with the decided ``plans``
    (``mapped``: the values of nested user sources, or None). ``env``:
    parse_json's kinds, roles and helpers (passed in: this module cannot
    import parse_json)."""
    namespace: dict[str, Any] = dict(env)
    body: list[str] = []
    for index, (key, plan) in enumerate(zip(names, plans)):
        namespace[f"k{index}"] = key
        for slot, item in enumerate(plan):
            namespace[f"p{index}_{slot}"] = item
        body.extend(_block(index, key, plan, env))
    values = ", ".join(f"v{index}" for index in range(len(names)))
    source = "\n".join([
        "def shaped(obj, mapped):",
        "    fields = {}",
        "    extra = {}",
        "    message = ''",
        "    timestamp = stamps = level = logger = stack = status = None",
        "    late_rule = late_key = late_value = None",
        "    ecs_log = False",
        f"    ({values},) = obj.values()" if names else "    pass",
        *("    " + line for line in body),
        *("    " + line for line in _epilogue(names, plans, env)),
        "    return message, timestamp, fields",
    ])
    # The source is built here from identifiers of our own; keys and values of
    # log lines are bound in the namespace, never written into it.
    exec(compile(source, f"<json shape of {len(names)} keys>", "exec"), namespace)  # nosec B102
    return namespace["shaped"]


def _epilogue(names: tuple[str, ...], plans: tuple[tuple[Any, ...], ...], env: dict[str, Any]) -> list[str]:
    """map_object after its loop, without the steps this shape can never need."""
    roles = {plan[1] for plan in plans if plan[0] == env["_ROLE"]}
    lines: list[str] = []
    if any(plan[0] == env["_ROLE"] and plan[1] == env["_TIMESTAMP"] and plan[2] for plan in plans):
        lines += ["if stamps is not None:",
                  "    stamps.sort(key=_stamp_rank)",
                  "    for key, value in stamps:",
                  "        if timestamp is None:",
                  "            timestamp = parse_value(value)",
                  "            if timestamp is not None:",
                  "                continue",
                  "        extra[key] = value"]
    if roles & {env["_LEVEL"], env["_LOGGER"]}:
        lines += ["if level is not None or logger is not None:",
                  "    log = fields.get('log', _MISSING)",
                  "    created = log is _MISSING",
                  "    if created:",
                  "        log = fields['log'] = {}",
                  "    if type(log) is dict:",
                  "        if level is not None:",
                  "            if type(level[1]) is str and 'level' not in log:",
                  "                log['level'] = level[1].lower()",
                  "            else:",
                  "                _place_log(fields, extra, 'level', level)",
                  "        if logger is not None:",
                  "            if type(logger[1]) is str and 'logger' not in log:",
                  "                log['logger'] = logger[1]",
                  "            else:",
                  "                _place_log(fields, extra, 'logger', logger)",
                  "        if created and not log:",
                  "            del fields['log']",
                  "    else:",
                  "        if level is not None:",
                  "            _place_log(fields, extra, 'level', level)",
                  "        if logger is not None:",
                  "            _place_log(fields, extra, 'logger', logger)"]
    if env["_STACK"] in roles:
        lines += ["if stack is not None and not (isinstance(stack[1], str)"
                  " and _set_leaf(fields, 'error', 'stack_trace', stack[1])):",
                  "    extra[stack[0]] = stack[1]"]
    if any(plan[0] == env["_LATE"] for plan in plans):
        lines += ["if late_rule is not None:",
                  "    result = late_rule.put(fields, late_value)",
                  "    if result is NO:",
                  "        extra[late_key] = late_value",
                  "    elif late_rule.place == STATUS_PLACE:",
                  "        status = result"]
    lines += ["if mapped is not None:",
              "    message, timestamp, deferred_status = _apply(mapped, fields, extra, message, timestamp)",
              "    if deferred_status is not None:",
              "        status = deferred_status",
              "if status is not None and 100 <= status <= 599:",
              "    event = fields.get('event', _MISSING)",
              "    if event is _MISSING:",
              "        fields['event'] = {'outcome': OUTCOMES[status]}",
              "    elif type(event) is dict and 'outcome' not in event:",
              "        event['outcome'] = OUTCOMES[status]"]
    if any(_may_write_log(key, plan, env) for key, plan in zip(names, plans)):
        lines += ["if ecs_log:",
                  "    log = fields['log']",
                  "    value = log.get('level')",
                  "    if value is not None and not isinstance(value, (dict, list)):",
                  "        log['level'] = (value if isinstance(value, str) else _text(value)).lower()",
                  "    if 'file' in log:",
                  "        keep(extra, 'log.file', log.pop('file'))",
                  "    if 'offset' in log:",
                  "        keep(extra, 'log.offset', log.pop('offset'))"]
    lines += ["if 'error' in fields:",
              "    error = fields['error']",
              "    if type(error) is dict:",
              "        _describe_error(error)",
              "if extra:",
              "    for value in extra.values():",
              "        if type(value) is dict or type(value) is list:",
              "            cap_extra(extra)",
              "            break",
              "    fields['extra'] = extra"]
    return lines


def _may_write_log(key: str, plan: tuple[Any, ...], env: dict[str, Any]) -> bool:
    """Whether this key's block can set ``ecs_log`` (an ECS key under "log")."""
    kind = plan[0]
    if kind == env["_DOTTED2"]:
        return plan[1] == "log"
    if kind == env["_DOTTED"]:
        return plan[1][0] == "log"
    if kind in (env["_MAPPED"], env["_LATE"]):
        return bool(plan[2]) and key == "log"
    return kind == env["_ECS_OBJECT"] and key == "log"


def _block(i: int, key: str, plan: tuple[Any, ...], env: dict[str, Any]) -> list[str]:
    """The interpreted loop's branch for ``plan``, with its constants resolved."""
    kind = plan[0]
    k, v = f"k{i}", f"v{i}"
    if kind == env["_PUT2"]:
        coerce = f"{v} if type({v}) is str and {v} else p{i}_3({v})" if plan[4] else f"p{i}_3({v})"
        return [f"c = {coerce}",
                "if c is NO:",
                f"    extra[{k}] = {v}",
                "else:",
                f"    node = fields.get(p{i}_1, _MISSING)",
                "    if node is _MISSING:",
                f"        fields[p{i}_1] = {{p{i}_2: c}}",
                f"    elif type(node) is dict and p{i}_2 not in node:",
                f"        node[p{i}_2] = c",
                "    else:",
                f"        extra[{k}] = {v}"]
    if kind == env["_PUT"]:
        lines = [f"r = p{i}_1(fields, {v})",
                 "if r is NO:",
                 f"    extra[{k}] = {v}"]
        if plan[2]:
            lines += ["else:", "    status = r"]
        return lines
    if kind == env["_EXTRA"]:
        return [f"extra[{k}] = {v}"]
    if kind == env["_ROLE"]:
        return _role_block(i, key, plan, env)
    if kind == env["_DOTTED2"]:
        lines = [f"node = fields.get(p{i}_1)",
                 "if node is None:",
                 f"    fields[p{i}_1] = {{p{i}_2: {v}}}",
                 f"elif type(node) is dict and p{i}_2 not in node:",
                 f"    node[p{i}_2] = {v}",
                 "else:",
                 f"    _put(fields, [p{i}_1, p{i}_2], {v}, extra, {k})"]
        if plan[1] == "log":
            lines.append("ecs_log = True")
        return _fitted(i, plan[3], f"p{i}_3", lines, env)
    if kind == env["_DOTTED"]:
        lines = [f"_put(fields, p{i}_1, {v}, extra, {k})"]
        if plan[1][0] == "log":
            lines.append("ecs_log = True")
        return _fitted(i, plan[2], f"p{i}_2", lines, env)
    if kind == env["_MAPPED"]:
        return _guarded(i, key, plan, [
            f"fast = p{i}_4",
            "placed = False",
            "if fast is not None and (fast[0] is None or fast[0].isdisjoint(obj)):",
            "    for name in fast[1]:",
            "        if type(obj.get(name)) is dict:",
            "            break",
            "    else:",
            "        placed = True",
            f"        r = p{i}_1.put(fields, {v})",
            "        if r is NO:",
            f"            extra[{k}] = {v}",
            f"        elif p{i}_1.place == STATUS_PLACE:",
            "            status = r",
            "if not placed:",
            "    if mapped is None:",
            f"        mapped = [(p{i}_3, {k}, {v}, None, p{i}_1)]",
            "    else:",
            f"        mapped.append((p{i}_3, {k}, {v}, None, p{i}_1))"], env)
    if kind == env["_LATE"]:
        return _guarded(i, key, plan, [f"late_rule, late_key, late_value = p{i}_1, {k}, {v}"], env)
    return _ecs_object(i, key, env)  # _ECS_OBJECT


def _fitted(i: int, check: Any, slot: str, lines: list[str], env: dict[str, Any]) -> list[str]:
    """A dotted ECS key's block: its value checked against the mapping first
    (``check``: its json_fit entry, bound as ``slot``), as in the interpreted loop."""
    if check is None:
        return lines
    if check is env["LEAF_ENTRY"]:  # a string fits every leaf: no call for the usual value
        return [f"if (type(v{i}) is dict or type(v{i}) is list) and fit(v{i}, {slot}, k{i}, extra) is NO_FIT:",
                f"    keep(extra, k{i}, v{i})",
                "else:", *("    " + line for line in lines)]
    return [f"f = fit(v{i}, {slot}, k{i}, extra)",
            "if f is NO_FIT:",
            f"    keep(extra, k{i}, v{i})",
            "else:",
            f"    v{i} = f",
            *("    " + line for line in lines)]


def _guarded(i: int, key: str, plan: tuple[Any, ...], lines: list[str], env: dict[str, Any]) -> list[str]:
    """A rule's block; when the key is also an ECS field set (plan[2]), an
    object there is ECS's, as in the interpreted loop's last branches."""
    if not plan[2]:
        return lines
    return [f"if type(v{i}) is not dict:", *("    " + line for line in lines),
            "else:", *("    " + line for line in _ecs_object(i, key, env))]


def _ecs_object(i: int, key: str, env: dict[str, Any]) -> list[str]:
    entry = env["ROOTS"].get(key)
    if entry is None:
        fitted = []
    elif entry[0] == env["OBJECT"]:  # (the entry is fixed per key: resolved here, once)
        fitted = [f"    fit_object(v{i}, ROOTS[k{i}][1], k{i}, extra)"]
    else:
        fitted = [f"    v{i} = fit(v{i}, ROOTS[k{i}], k{i}, extra)"]
    lines = [f"if type(v{i}) is not dict:",
             f"    extra[k{i}] = v{i}",
             "else:",
             *fitted,
             f"    if k{i} in fields:",
             f"        _put(fields, [k{i}], v{i}, extra, k{i})",
             "    else:",
             f"        fields[k{i}] = v{i}"]
    if key == "log":
        lines += [f"if type(v{i}) is dict:", "    ecs_log = True"]
    return lines


def _role_block(i: int, key: str, plan: tuple[Any, ...], env: dict[str, Any]) -> list[str]:
    role, k, v = plan[1], f"k{i}", f"v{i}"
    branches: list[tuple[str, list[str]]] = []
    if key == "event":
        branches.append((f"type({v}) is dict", [f"fit_object({v}, _EVENT, {k}, extra)",
                                                f"_put(fields, ['event'], {v}, extra, {k})"]))
    if plan[2]:
        held = ([f"stamps = [({k}, {v})] if stamps is None else stamps + [({k}, {v})]"]
                if role == env["_TIMESTAMP"] else [f"extra[{k}] = {v}"])
        branches.append((f"_better_present(obj, p{i}_2)", held))
    if role == env["_MESSAGE"]:
        last = [f"if isinstance({v}, str):", f"    message = {v}",
                f"elif {v} is None:", f"    extra[{k}] = {v}",
                "else:", f"    message = _text({v})"]
    elif role == env["_TIMESTAMP"]:
        last = [f"timestamp = parse_value({v})", "if timestamp is None:", f"    extra[{k}] = {v}"]
    elif role == env["_LEVEL"]:
        last = [f"level = ({k}, {v})"]
    elif role == env["_LOGGER"]:
        last = [f"logger = ({k}, {v})"]
    else:
        last = [f"stack = ({k}, {v})"]
    lines: list[str] = []
    for number, (condition, block) in enumerate(branches):
        lines.append(("if " if number == 0 else "elif ") + condition + ":")
        lines.extend("    " + line for line in block)
    if not branches:
        return last
    lines.append("else:")
    lines.extend("    " + line for line in last)
    return lines
