"""Globs as text (``agent.sources.globs``): ``below`` and ``overlap`` agree
with what ``glob.glob`` really finds, and say no where no path can match."""

from __future__ import annotations

import glob

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sources.globs import below, overlap

NAMES = st.sampled_from(["a.log", "b.txt", ".h.log", "x", "a.log.1", "[a]", "sub", ".h"])
PATTERNS = st.sampled_from(["*.log", "**/*.log", "*/*.log", "a.log*", "**", "*/a.log.?", "[ab].*", "sub/**/a.log",
                            "[!a]*", "sub/*", ".h/*", "**/x", "*/.h.log", "a*", "*.t?t", "sub/[ax]*"])


def _tree(root, tree):
    for parts in tree:
        path = root.joinpath(*parts)
        if any(p.is_file() for p in path.parents if p != root and p.is_relative_to(root)):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() and not path.is_dir():
            path.write_text("x\n")


@settings(max_examples=150, deadline=None)
@given(tree=st.lists(st.lists(NAMES, min_size=1, max_size=3), min_size=1, max_size=8), first=PATTERNS,
       second=PATTERNS)
def test_globs_that_find_a_common_file_overlap(tmp_path_factory, tree, first, second):
    root = tmp_path_factory.mktemp("tree")
    _tree(root, tree)
    a, b = str(root / first), str(root / second)
    common = set(glob.glob(a, recursive=True)) & set(glob.glob(b, recursive=True))
    if common:
        assert overlap(a, b) and overlap(b, a), (first, second, common)


@settings(max_examples=150, deadline=None)
@given(tree=st.lists(st.lists(NAMES, min_size=1, max_size=3), min_size=1, max_size=8), pattern=PATTERNS,
       directory=st.sampled_from(["sub", ".h", "a.log", "sub/sub"]))
def test_a_glob_that_finds_a_file_inside_a_directory_reaches_below_it(tmp_path_factory, tree, pattern, directory):
    root = tmp_path_factory.mktemp("tree")
    _tree(root, tree)
    inside = str(root / directory) + "/"
    if any(path.startswith(inside) for path in glob.glob(str(root / pattern), recursive=True)):
        assert below(str(root / pattern), str(root / directory)), (pattern, directory)


@pytest.mark.parametrize("first, second", [
    ("/a/*.log", "/a/b/x.log"), ("/a/*.log", "/a/*.txt"), ("/a/[ab].log", "/a/c.log"),
    ("/a/*", "/a/.x"), ("/a/**/x", "/a/.h/x"), ("/var/log/torchserve/*.log", "/var/log/triton/*.log"),
])
def test_globs_no_path_can_match_both_do_not_overlap(first, second):
    assert not overlap(first, second) and not overlap(second, first)


@pytest.mark.parametrize("pattern, directory, expected", [
    ("/x/**", "/x/state", True), ("/x/*/*.log", "/x/state", True), ("/x/state/spool/*", "/x/state", True),
    ("/x/*.log", "/x/state", False), ("/x/state", "/x/state", False), ("/x/**/*.log", "/x/.state", False),
    ("/x/.*/*", "/x/.state", True), ("/x/state2/*", "/x/state", False), ("/y/**", "/x/state", False),
])
def test_below(pattern, directory, expected):
    assert below(pattern, directory) is expected
