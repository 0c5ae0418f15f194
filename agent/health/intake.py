"""What ``HealthEngine.observe`` does to a batch before its state changes.

Three steps, each working on its arguments alone (``cover`` updates the two
dictionaries it is given, the engine's; ``select``'s ``make_extractor``
caches what it makes):

- ``select``: the events that are health observations, with their
  ``Observation``: a cheap byte test first (``heads``: none of them in the
  document, no model and no label can be there), then the document decoded
  and read by its source's extractor;
- ``cover``: of those, the events not fed before, remembered by (file key,
  offset); one fed before is pinned instead (``HealthEngine.acknowledged``
  says when it may go);
- ``journal_body``: the journal's bytes for the fresh events, one line each,
  ``<source key>\\t<offset>\\t<document>\\n`` (``agent.health.checkpoint``
  replays them).

``agent/health/_native_intake.c`` does the same three in C when the module
was built (``agent.health.native``). The functions here are its
specification: the C ones hand back ``None`` for any input they do not handle
themselves (an object that is not an exact ``Event``, a key or document of
another type, an offset that is not a plain int) and these run instead. The
tests of the engine and ``tests/health/test_intake.py`` run under both.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import orjson

from agent.events import Event
from agent.health import native
from agent.health.extract import Observation

Extractor = Callable[[Any], "Observation | None"]
MakeExtractor = Callable[[str, Any], Extractor]


def _c_or_python(name: str, python_function: Callable[..., Any], *args: Any) -> Any:
    """The C function ``name`` of the module when it is on and takes ``args``, else ``python_function``."""
    module = native.NATIVE
    if module is not None:
        done = getattr(module, name)(*args)
        if done is not None:
            return done
    return python_function(*args)


def select(events: Sequence[Event], heads: tuple[bytes, ...], extractors: dict[str, Extractor],
           make_extractor: MakeExtractor) -> tuple[list[Event], list[Observation]]:
    """(events that are observations, their observations): parallel lists, no pair per event.
    ``extractors``: source key -> extractor, read first; ``make_extractor(key, doc)``
    otherwise (it caches the one it makes)."""
    return _c_or_python("select", select_python, events, heads, extractors, make_extractor)


def select_python(events: Sequence[Event], heads: tuple[bytes, ...], extractors: dict[str, Extractor],
                  make_extractor: MakeExtractor) -> tuple[list[Event], list[Observation]]:
    loads = orjson.loads
    found: list[Event] = []
    found_obs: list[Observation] = []
    for event in events:
        data = event.data
        for head in heads:
            if head in data:
                break
        else:
            continue
        try:
            doc = loads(data)
        except orjson.JSONDecodeError:
            continue
        obs = (extractors.get(event.source_key) or make_extractor(event.source_key, doc))(doc)
        if obs is not None:
            found.append(event)
            found_obs.append(obs)
    return found, found_obs


def cover(covered: dict[str, set[int]], pinned: dict[str, dict[int, int | None]], found: Sequence[Event],
          found_obs: Sequence[Observation]) -> tuple[list[Event], list[Observation]]:
    """The events of ``found`` (and their observations) not in ``covered``,
    now added to it; each one already there is pinned (``pinned[key][offset]
    = None``: in flight again)."""
    return _c_or_python("cover", cover_python, covered, pinned, found, found_obs)


def cover_python(covered: dict[str, set[int]], pinned: dict[str, dict[int, int | None]], found: Sequence[Event],
                 found_obs: Sequence[Observation]) -> tuple[list[Event], list[Observation]]:
    fresh: list[Event] = []
    fresh_obs: list[Observation] = []
    for e, o in zip(found, found_obs):
        offsets = covered.get(e.source_key)
        if offsets is None:
            offsets = covered[e.source_key] = set()
        elif e.offset in offsets:  # fed before: it may come back again until the spool has its ack
            pins = pinned.get(e.source_key)
            if pins is None:
                pins = pinned[e.source_key] = {}
            pins[e.offset] = None
            continue
        offsets.add(e.offset)
        fresh.append(e)
        fresh_obs.append(o)
    return fresh, fresh_obs


def journal_body(events: Sequence[Event]) -> bytes:
    """The journal's lines for ``events``, in order."""
    return _c_or_python("journal_body", journal_body_python, events)


def journal_body_python(events: Sequence[Event]) -> bytes:
    keys: dict[str, bytes] = {}
    parts: list[bytes] = []
    for e in events:
        key = keys.get(e.source_key)
        if key is None:
            key = keys[e.source_key] = e.source_key.encode() + b"\t"
        parts += (key, b"%d\t" % e.offset, e.data, b"\n")
    return b"".join(parts)


if native.NATIVE is not None:
    native.NATIVE.configure_intake(Event, orjson.loads, orjson.JSONDecodeError)
