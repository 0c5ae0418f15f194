"""The intake of a batch (``agent.health.intake``): selecting the events that are
observations, covering them, the journal's bytes; the C versions
(``_native_intake.c``) held equal to the Python ones, which are the specification,
on generated batches, odd types included (where C hands the batch back)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from agent.events import Event
from agent.health import intake
from native_switch import IMPLEMENTATIONS, health_implementation

HEADS = (b'"model"', b'"extra"')


def _doc(model: Any) -> bytes:
    return orjson.dumps({"model": {"name": model}, "message": "m"})


def _extract(doc: Any) -> Any:
    """A stand-in extractor: an observation for a document whose model is a str."""
    model = doc.get("model") if isinstance(doc, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    if name == "boom":
        raise RuntimeError("extractor failed")
    return ("obs", name) if isinstance(name, str) else None


class _Maker:
    """``make_extractor``: records its calls and caches what it makes, as the engine's does."""

    def __init__(self, extractors: dict[str, Any]) -> None:
        self.extractors = extractors
        self.calls: list[str] = []

    def __call__(self, key: str, doc: Any) -> Any:
        self.calls.append(key)
        self.extractors[key] = _extract
        return _extract


def _outcome(function: Any, *args: Any) -> Any:
    try:
        return ("ok", function(*args))
    except Exception as error:  # the same exception type under both
        return ("raised", type(error))


# -- the specification, on explicit examples --------------------------------------

def test_select_keeps_the_observations_and_skips_what_cannot_be_one():
    events = [Event("a", 0, 1, "i0", _doc("m")), Event("a", 1, 2, "i1", b'{"message": "no model here"}'),
              Event("a", 2, 3, "i2", b'{"model": not json'), Event("b", 3, 4, "i3", _doc(7)),
              Event("b", 4, 5, "i4", _doc("n"))]
    for name in IMPLEMENTATIONS:
        with health_implementation(name):
            extractors: dict[str, Any] = {}
            maker = _Maker(extractors)
            found, found_obs = intake.select(events, HEADS, extractors, maker)
            assert found == [events[0], events[4]], name
            assert found_obs == [("obs", "m"), ("obs", "n")], name
            assert maker.calls == ["a", "b"], name  # once per source: then from the cache


def test_cover_skips_and_pins_what_was_fed_before():
    first = [Event("a", 0, 1, "i0", b"{}"), Event("a", 5, 6, "i5", b"{}")]
    again = [Event("a", 5, 6, "i5", b"{}"), Event("a", 9, 10, "i9", b"{}"), Event("b", 0, 1, "j0", b"{}")]
    for name in IMPLEMENTATIONS:
        with health_implementation(name):
            covered: dict[str, set[int]] = {}
            pinned: dict[str, dict[int, int | None]] = {}
            assert intake.cover(covered, pinned, first, ["o0", "o5"]) == (first, ["o0", "o5"])
            fresh, fresh_obs = intake.cover(covered, pinned, again, ["p5", "p9", "q0"])
            assert (fresh, fresh_obs) == ([again[1], again[2]], ["p9", "q0"]), name
            assert covered == {"a": {0, 5, 9}, "b": {0}}, name
            assert pinned == {"a": {5: None}}, name


def test_the_journal_body_is_one_line_per_event_as_the_engine_replays_it():
    events = [Event("file-1", 0, 10, "i0", b'{"a":1}'), Event("fil\u00e9-2", 12, 20, "i1", b'{"b":"\\t"}'),
              Event("file-1", 10, 12, "i2", b"{}")]
    for name in IMPLEMENTATIONS:
        with health_implementation(name):
            body = intake.journal_body(events)
            assert body == (b'file-1\t0\t{"a":1}\n' + "fil\u00e9-2".encode() + b'\t12\t{"b":"\\t"}\n'
                            b"file-1\t10\t{}\n"), name
            rows = [line.split(b"\t", 2) for line in body.splitlines()]
            assert [(key.decode(), int(offset), data) for key, offset, data in rows] == \
                [(e.source_key, e.offset, e.data) for e in events]


# -- C against Python, on generated batches ----------------------------------------

_keys = st.sampled_from(["a", "b", "caf\u00e9", "\udcff"])  # the last one cannot be encoded as UTF-8
_offsets = st.one_of(st.integers(0, 50), st.integers(-2**70, 2**70))
_data = st.one_of(
    st.sampled_from(["m", "n", "boom", 3, None]).map(_doc),
    st.just(b'{"extra": {"label": 1}}'),
    st.just(b'{"model": broken'),
    st.binary(max_size=20),
)


@st.composite
def _events(draw: Any) -> list[Any]:
    events: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        event = Event(draw(_keys), draw(_offsets), 0, "id", draw(_data))
        odd = draw(st.integers(0, 30))
        if odd == 0:  # not an exact Event: C hands the batch back
            event = tuple(event)
        elif odd == 1:
            event = event._replace(data=bytearray(event.data))
        elif odd == 2:
            event = event._replace(offset=True)
        events.append(event)
    return events


def _under(name: str, function: Any, *args: Any) -> Any:
    with health_implementation(name):
        return _outcome(function, *copy.deepcopy(args))


@settings(max_examples=300, deadline=None)
@given(events=_events(), heads=st.sampled_from([HEADS, (), (b"",), (b'"model"', bytearray(b"x"))]),
       cached=st.sampled_from([{}, {"a": _extract}, {"a": None}, {"a": 0}]), as_tuple=st.booleans())
def test_select_in_c_is_select_in_python(events, heads, cached, as_tuple):
    batch = tuple(events) if as_tuple else events
    results = []
    for name in IMPLEMENTATIONS:
        extractors = dict(cached)
        maker = _Maker(extractors)
        with health_implementation(name):
            outcome = _outcome(intake.select, batch, heads, extractors, maker)
        results.append((outcome, maker.calls, sorted(extractors)))
    assert results[0] == results[1]


@settings(max_examples=300, deadline=None)
@given(events=_events(), seen=st.lists(st.tuples(_keys, st.integers(0, 50)), max_size=10),
       pins=st.lists(st.tuples(_keys, st.integers(0, 50)), max_size=4), odd_entry=st.integers(0, 10),
       short=st.booleans())
def test_cover_in_c_is_cover_in_python(events, seen, pins, odd_entry, short):
    covered: dict[str, Any] = {}
    for key, offset in seen:
        covered.setdefault(key, set()).add(offset)
    pinned: dict[str, Any] = {}
    for key, offset in pins:
        pinned.setdefault(key, {})[offset] = 3
    if odd_entry == 0:
        covered["a"] = frozenset({1})  # not what the engine stores: C hands it back, Python raises
    elif odd_entry == 1:
        covered["b"] = None
    observations = [f"obs{n}" for n in range(len(events) - (1 if short and events else 0))]
    results = []
    for name in IMPLEMENTATIONS:
        state = (copy.deepcopy(covered), copy.deepcopy(pinned))
        with health_implementation(name):
            outcome = _outcome(intake.cover, state[0], state[1], list(events), observations)
        results.append((outcome, state))
    assert results[0] == results[1]


@settings(max_examples=300, deadline=None)
@given(events=_events())
def test_the_journal_body_in_c_is_the_journal_body_in_python(events):
    assert _under("c", intake.journal_body, events) == _under("python", intake.journal_body, events)


def test_c_hands_back_what_it_does_not_handle():
    from agent.health import native

    if native.NATIVE is None:
        pytest.skip("agent/health/_native.c was not built here, or MODELSCRIBE_HEALTH_NATIVE=0")
    event = Event("a", 2**64, 0, "id", b"{}")
    assert native.NATIVE.journal_body([event]) is None  # an offset beyond 64 bits
    assert native.NATIVE.journal_body((Event("a", 1, 0, "id", b"{}"),)) is None  # not a list
    assert native.NATIVE.select([tuple(event)], HEADS, {}, _Maker({})) is None
    assert native.NATIVE.cover({"a": frozenset()}, {}, [Event("a", 1, 0, "id", b"{}")], ["o"]) is None
    assert native.NATIVE.journal_body([Event("a", -3, 0, "id", b"x")]) == b"a\t-3\tx\n"
