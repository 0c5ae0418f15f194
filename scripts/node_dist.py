"""What elasticsearch_dist.py and opensearch_dist.py share: Maven, unzip, the cache, the JDK.

Both harnesses obtain a distribution from Maven Central with ``mvn``, unpack
it into a per-user cache and run it on a JDK found under /usr/lib/jvm; only
what they fetch and how they complete the tree differs.  No node is started
here.

What it guarantees:

* ``HarnessError`` is the one error both harnesses (and their dist modules)
  raise: the node could not be fetched, configured, started or stopped.
* ``mvn(args, what, product)`` runs ``mvn -q -B``; no ``mvn`` on PATH or a
  failing run raises HarnessError with the tail of Maven's output.
* ``build_tree(cache, target, is_complete, build)`` returns `target` once
  ``is_complete(target)``; otherwise, under an exclusive ``flock`` on
  ``<cache>/.lock`` (one fetcher per cache: parallel CI jobs, CLI plus
  pytest), it removes leftovers (`target`, ``<cache>/.unpack-*``), lets
  `build` fill ``<cache>/.unpack-*/<target name>`` and renames that into
  place, so the tree exists only complete.  The cache is created with its
  parents when missing.
* ``unzip`` restores the Unix modes zipfile drops (``bin/*`` executable) and
  makes everything readable, so the unprivileged node user can run the
  shared tree, which is never written to after the rename.
* ``newest_jdk(product, version, env_var, fits, need)`` returns ``$env_var``
  if set (it must have ``bin/java``), else the newest JDK under /usr/lib/jvm
  whose ``release`` file gives a Java major for which ``fits`` is true;
  otherwise HarnessError lists the JDKs seen.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

JVM_ROOT = Path("/usr/lib/jvm")


class HarnessError(RuntimeError):
    """The node could not be fetched, configured, started or stopped."""


def major(version: str) -> int:
    return int(version.split(".", 1)[0])


def mvn(args: list[str], what: str, product: str, cwd: Path | None = None) -> None:
    if shutil.which("mvn") is None:
        raise HarnessError(f"`mvn` not found on PATH: it is needed to fetch {product}")
    proc = subprocess.run(["mvn", "-q", "-B", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"mvn could not fetch {what}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def build_tree(cache: Path, target: Path, is_complete: Callable[[Path], bool],
               build: Callable[[Path], None]) -> bool:
    """Make `target` (in `cache`) complete; True if it was built now, False if it was there."""
    cache.mkdir(parents=True, exist_ok=True)
    if is_complete(target):
        return False
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(target):
            return False
        # Leftovers of an interrupted build or of an older layout.
        for stale in [target, *cache.glob(".unpack-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
        try:
            build(tmp / target.name)
            # rename is atomic: a crash leaves only a .unpack-* dir to clean up.
            (tmp / target.name).rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def unzip(archive: Path, dest: Path) -> None:
    # zipfile drops Unix modes; restore them (bin/* executable, all readable
    # by the unprivileged node user).
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if info.is_dir():
                mode = 0o755
            elif not mode:
                mode = 0o755 if path.suffix == ".sh" else 0o644
            path.chmod(mode | 0o444)


def java_major(java_home: Path) -> int | None:
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="([0-9._]+)', text, re.M)
    if not match:
        return None
    parts = match.group(1).split(".")
    return int(parts[1]) if parts[0] == "1" else int(parts[0])  # "1.8.0" -> 8


def newest_jdk(product: str, version: str, env_var: str, fits: Callable[[int], bool],
               need: str) -> Path:
    """`env_var`'s JDK if set, else the newest one under JVM_ROOT whose major `fits`.

    `need` says which majors fit, for the error message ("Java >= 21").
    """
    env = os.environ.get(env_var)
    if env:
        if not (Path(env) / "bin" / "java").exists():
            raise HarnessError(f"{env_var}={env} has no bin/java")
        return Path(env)
    found: dict[Path, int] = {}
    for home in sorted(JVM_ROOT.glob("*")) if JVM_ROOT.is_dir() else []:
        home = home.resolve()
        java = java_major(home)
        if java is not None and (home / "bin" / "java").exists():
            found[home] = java
    fit = [h for h, m in found.items() if fits(m)]
    if not fit:
        seen = ", ".join(f"{h} (Java {m})" for h, m in found.items()) or "none"
        raise HarnessError(
            f"{product} {version} needs {need}: looked under {JVM_ROOT}/* for a JDK whose "
            f"`release` file fits; found: {seen}. Set {env_var}.")
    return max(fit, key=lambda h: found[h])
