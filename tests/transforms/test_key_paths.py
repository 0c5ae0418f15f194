"""Key paths below flattened fields cut to what the index takes
(agent/transforms/truncate.py ``cut_key_paths``): under the limit, values
kept, deterministic, no two keys merged into one value."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.transforms.truncate import FLATTENED, KEY_PATH_MAX, cut_key_paths


def _paths(value, prefix=""):
    """Every key path below ``value`` (lists are not levels, as in the index)."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _paths(item, path)
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item, prefix)


def _leaves(value):
    """The scalar values below ``value`` (a list kept after a meeting flattens)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _longest(doc) -> int:
    longest = 0
    for path in FLATTENED:
        node = doc
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        longest = max([longest, *map(_size, _paths(node))])
    return longest


def _hash(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:8]


def test_a_2000_byte_key_in_extra_keeps_its_head_and_value():
    key = "feature:https://example.com/" + "p" * 1972
    doc = {"message": "m", "extra": {"a": 1, key: 0.25, "z": 2}}
    out, cut = cut_key_paths(doc)
    new = key[:KEY_PATH_MAX - 9] + "~" + _hash(key)
    assert cut == 1 and list(out["extra"]) == ["a", new, "z"]  # in place, order kept
    assert out["extra"][new] == 0.25 and _size(new) == KEY_PATH_MAX
    assert doc["extra"][key] == 0.25  # the input is not changed


def test_an_object_under_a_long_key_keeps_its_own_keys():
    key = "k" * 900
    out, cut = cut_key_paths({"model": {"prediction": {"scores": {key: {"p": 0.9, "rank": {"n": 1}}}}}})
    scores = out["model"]["prediction"]["scores"]
    ((new, value),) = scores.items()
    assert cut == 1 and value == {"p": 0.9, "rank": {"n": 1}}
    # room left for ".rank.n": the longest path below stays within the limit
    assert _size("scores." + new + ".rank.n") == KEY_PATH_MAX
    assert new.endswith("~" + _hash("scores." + key))


def test_keys_whose_parents_fill_the_budget_move_up_where_their_head_ends():
    deep = leaf = {}
    for _ in range(30):  # 30 levels of 20-byte keys: 629 bytes
        leaf["b" * 20] = {}
        leaf = leaf["b" * 20]
    leaf["x"] = "v"
    out, cut = cut_key_paths({"labels": deep})
    assert cut >= 1 and _longest(out) <= KEY_PATH_MAX
    assert list(_leaves(out["labels"])) == ["v"]


def test_the_same_key_is_cut_the_same_way_in_every_document_and_distinct_keys_stay_apart():
    one, two = "q" * 700 + "one", "q" * 700 + "two"
    first, _ = cut_key_paths({"extra": {one: 1, two: 2}})
    again, _ = cut_key_paths({"extra": {"other": 0, one: 3}})
    assert len(first["extra"]) == 2
    (key_one, key_two) = first["extra"]
    assert key_one != key_two and key_one[:503] == key_two[:503]
    assert again["extra"][key_one] == 3


def test_a_key_meeting_a_cut_one_keeps_both_values():
    long = "w" * 600
    taken = long[:KEY_PATH_MAX - 9] + "~" + _hash(long)  # (a line that already holds the cut name)
    out, cut = cut_key_paths({"extra": {long: 1, taken: 2}})
    assert cut == 1 and out["extra"] == {taken: [1, 2]}


def test_short_keys_and_documents_without_flattened_fields_are_the_same_object():
    doc = {"message": "m" * 5000, "extra": {"a": {"b": [1, {"c": 2}]}}, "http": {"k" * 900: 1}}
    out, cut = cut_key_paths(doc)
    assert out is doc and cut == 0  # (http is not flattened: not the index's term, not looked at)


def test_multi_byte_keys_are_counted_in_bytes_and_cut_on_a_character_boundary():
    key = "é" * 300  # 600 bytes, 300 characters
    out, cut = cut_key_paths({"extra": {key: "v"}})
    (new,) = out["extra"]
    assert cut == 1 and _size(new) <= KEY_PATH_MAX and new.startswith("é" * 251) and new[251] == "~"


_KEY = st.text(max_size=8) | st.text(min_size=200, max_size=700) | st.sampled_from(["a", "b", "a.b"])
_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
_VALUE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY, inner, max_size=4),
                      max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FLATTENED), st.dictionaries(_KEY, _VALUE, max_size=5),
       st.integers(min_value=64, max_value=KEY_PATH_MAX))
def test_every_path_fits_no_value_is_lost_and_the_cut_is_deterministic(path, value, limit):
    doc: dict = {"message": "m"}
    node = doc
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    out, cut = cut_key_paths(doc, limit)
    again, _ = cut_key_paths(doc, limit)
    assert out == again
    assert _longest(out) <= limit
    assert sorted(map(repr, _leaves(out))) == sorted(map(repr, _leaves(doc)))
    assert (cut == 0) == (out is doc) == (_longest(doc) <= limit)
