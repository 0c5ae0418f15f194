"""Discovery: globs, excludes, and the event-path matcher agreeing with glob."""

from __future__ import annotations

import os
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sources.discovery import Discovery, Watcher, base_dir, translate


def test_scan_dedupes_sorts_and_excludes(tmp_path):
    for name in ("b.log", "a.log", "a.log.1", "skip.log", ".hidden.log"):
        (tmp_path / name).write_text("x\n")
    discovery = Discovery((str(tmp_path / "*.log"), str(tmp_path / "a.log*")),
                          excludes=("*/skip.*",))
    # The first glob's paths first (the inputs' order of precedence), each glob's sorted.
    assert discovery.scan() == [str(tmp_path / n) for n in ("a.log", "b.log", "a.log.1")]
    assert Discovery((str(tmp_path / "a.log*"), str(tmp_path / "*.log"))).scan() == [
        str(tmp_path / n) for n in ("a.log", "a.log.1", "b.log", "skip.log")]


def test_base_dirs():
    assert base_dir("/var/log/*.log") == ("/var/log", False)
    assert base_dir("/var/log/**/*.log") == ("/var/log", True)
    assert base_dir("/srv/*/logs/app.log") == ("/srv", True)
    assert Discovery(("/a/*.log", "/a/**/x.log")).watch_dirs() == {"/a": True}


def _make_tree(root, tree) -> None:
    """Files at the given paths below ``root`` (a path under a file is left out)."""
    for parts in tree:
        path = root.joinpath(*parts)
        if any(p.is_file() for p in path.parents if p != root and p.is_relative_to(root)):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("x\n")


NAMES = st.sampled_from(["a.log", "b.txt", ".h.log", "x", "a.log.1", "[a]", "sub"])


@settings(max_examples=60, deadline=None)
@given(tree=st.lists(st.lists(NAMES, min_size=1, max_size=3), min_size=1, max_size=6),
       pattern=st.sampled_from(["*.log", "**/*.log", "*/*.log", "a.log*", "**", "*/a.log.?",
                                "[ab].*", "sub/**/a.log", "[!a]*"]))
def test_event_matcher_agrees_with_glob(tmp_path_factory, tree, pattern):
    root = tmp_path_factory.mktemp("tree")
    _make_tree(root, tree)
    discovery = Discovery((str(root / pattern),))
    found = set(discovery.scan())
    for path in root.rglob("*"):
        if path.is_file():
            assert discovery.matches(str(path)) == (str(path) in found), (pattern, path)


def test_translate_never_crosses_a_slash_with_a_star():
    assert translate("/a/*.log").match("/a/x.log")
    assert not translate("/a/*.log").match("/a/b/x.log")


def test_watcher_turns_events_into_merged_hints(tmp_path):
    wake = threading.Event()
    watcher = Watcher(Discovery((str(tmp_path / "*.log"),)), wake)
    watcher.start()
    try:
        log = tmp_path / "a.log"
        log.write_text("x\n")
        for _ in range(5):
            with open(log, "a") as handle:
                handle.write("y\n")
        assert wake.wait(5)
        hints = []
        for _ in range(50):
            hints += watcher.drain()
            if any(h.appeared and h.path == str(log) for h in hints):
                break
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert any(h.appeared and h.path == str(log) for h in hints)


def test_watcher_rewatches_a_recreated_directory(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    wake = threading.Event()
    watcher = Watcher(Discovery((str(logs / "*.log"),)), wake)
    watcher.start()
    try:
        logs.rmdir()
        watcher.ensure_watches()  # missing: nothing watched, no error
        logs.mkdir()
        watcher.ensure_watches()
        watcher.drain()
        wake.clear()
        (logs / "a.log").write_text("x\n")
        assert wake.wait(5)
        hints = []
        for _ in range(50):
            hints += watcher.drain()
            if any(h.path == str(logs / "a.log") for h in hints):
                break
            time.sleep(0.02)
        assert any(h.path == str(logs / "a.log") and h.appeared for h in hints)
    finally:
        watcher.stop()


def test_own_patterns_leave_out_the_agents_files_and_nothing_beside_them(tmp_path):
    """An OwnPattern is an exclude: a scan and the hint matcher leave out the
    state directory (as written; ``own`` also through a symlink), never a
    sibling whose name merely starts the same, nor a directory with glob
    characters in its name misread as a pattern."""
    from agent.sources.discovery import OwnPattern

    state = tmp_path / "st[a]te"
    for path in (state / "registry.json", state / "spool" / "1.seg", tmp_path / "st[a]te2" / "app.log",
                 tmp_path / "sta" / "x.log", tmp_path / "logs" / "a.log"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    (tmp_path / "logs" / "link").symlink_to(state)
    own = OwnPattern(str(state), "the state directory", True)
    discovery = Discovery((str(tmp_path / "**"),), excludes=("*.seg", own))
    found = [path for path in discovery.scan() if os.path.isfile(path)]
    assert str(state / "registry.json") not in found and not discovery.matches(str(state / "registry.json"))
    assert {str(tmp_path / "st[a]te2" / "app.log"), str(tmp_path / "sta" / "x.log"),
            str(tmp_path / "logs" / "a.log")} <= set(found)
    through_link = str(tmp_path / "logs" / "link" / "registry.json")
    assert through_link in found  # glob follows the symlink, the excludes compare text...
    assert discovery.own(through_link) is own  # ...and the tailer refuses it at open
    assert discovery.own(str(tmp_path / "st[a]te2" / "app.log")) is None
    assert Discovery((str(tmp_path / "**"),)).own(through_link) is None  # no own files given: no I/O either


# -- expand: glob's answer, proof against symlink loops (audit 4) ---------------------

@settings(max_examples=80, deadline=None)
@given(tree=st.lists(st.lists(NAMES, min_size=1, max_size=4), min_size=1, max_size=8),
       link=st.booleans(),
       pattern=st.sampled_from(["**/*.log", "**", "*/**/*.log", "sub/**/a.log", "**/.h.log", "**/*",
                                "**/sub/**/*.log", "[as]*/**/a.log*", "**/?.log"]))
def test_expand_lists_what_glob_lists(tmp_path_factory, tree, link, pattern):
    import glob

    from agent.sources.discovery import expand
    root = tmp_path_factory.mktemp("tree")
    _make_tree(root, tree)
    if link and (root / "sub").is_dir():
        (root / "elsewhere").symlink_to(root / "sub")  # (a link to a directory that is no ancestor: followed)
    full = str(root / pattern)
    assert set(expand(full)) == set(glob.glob(full, recursive=True))


def test_expand_does_not_follow_a_directory_into_itself(tmp_path):
    # Two links to "." under one ``**``: glob.glob explored 2^40 paths; the
    # agent never started (or, the links made while it ran, stopped reading).
    from agent.sources.discovery import expand
    app = tmp_path / "logs" / "app"
    app.mkdir(parents=True)
    (app / "b.log").write_text("x\n")
    (app / "current").symlink_to(".")
    (app / "latest").symlink_to(".")
    (tmp_path / "logs" / "up").symlink_to("..")
    assert expand(str(tmp_path / "logs" / "**" / "*.log")) == [str(app / "b.log")]
    assert Discovery((str(tmp_path / "logs" / "**" / "*.log"),)).unmatched() == []


def _as_nobody(code: str) -> str:
    import subprocess
    import sys
    done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                           code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr
    return done.stdout


ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[2])


def test_a_directory_that_cannot_be_listed_is_named():
    # Audit 4: "no file matches --path .../locked/b.log", --once exit 0, for a
    # file in a directory of mode 000; with ``**``, not a word.
    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to run a check as another user")
    import shutil
    import tempfile
    from pathlib import Path
    tmp_path = Path(tempfile.mkdtemp(prefix="modelscribe-locked-"))  # (pytest's own is 0700: nobody cannot enter)
    tmp_path.chmod(0o755)
    locked = tmp_path / "logs" / "locked"
    locked.mkdir(parents=True)
    (locked / "b.log").write_text("x\n")
    (tmp_path / "logs").chmod(0o755)
    locked.chmod(0o000)
    try:
        said = _as_nobody(
            "import logging, sys; from agent.selflog import configure; configure('info', sys.stdout);"
            "from agent.sources.discovery import Discovery, why_unmatched;"
            f"print(why_unmatched({str(locked / 'b.log')!r}));"
            f"print(why_unmatched({str(tmp_path / 'logs' / '**' / '*.log')!r}));"
            f"print(Discovery(({str(tmp_path / 'logs' / '**' / '*.log')!r},)).scan())")
    finally:
        locked.chmod(0o755)
        shutil.rmtree(tmp_path)
    assert said.count(f"cannot list {locked}: Permission denied") == 2  # (the fixed part, and below a **)
    assert "cannot list a directory the globs reach" in said and f"directory={locked}" in said
