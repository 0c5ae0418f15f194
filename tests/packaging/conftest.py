"""Fixtures of the packaging tests: the .deb built by packaging/build-deb, and a
minimal Debian root made by debootstrap, cached outside the repository.

The Debian root (``DEBIAN_ROOT``, default /var/cache/modelscribe-test/debian-root)
is made once, of the release and mirror the machine's own apt sources name,
and reused by every run; each test works on a copy of it. A missing tool
(debootstrap, dpkg-deb, lintian, systemd-analyze, systemd-nspawn) fails the
test that needs it: .ci/run installs them, so CI must not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "packaging" / "build-deb"
DEBIAN_ROOT = Path(os.environ.get("MODELSCRIBE_TEST_DEBIAN_ROOT", "/var/cache/modelscribe-test/debian-root"))
# What the root needs beyond debootstrap's minbase: systemd as PID 1 in a
# container, and what the package depends on.
ROOT_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "adduser", "procps")


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)),
                                      None)
    if path is None:
        pytest.fail(f"{tool} is not installed (.ci/run installs it)")
    return path


def run(*args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
    return done


def base_version() -> str:
    text = (REPO / "agent" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def build(output_dir: Path, version: str | None = None) -> Path:
    need("dpkg-deb")
    need("dpkg-shlibdeps")
    args = [sys.executable, str(BUILD_DEB), "--output-dir", str(output_dir)]
    if version:
        args += ["--version", version]
    done = run(*args, timeout=900)
    deb = Path(done.stdout.strip().splitlines()[-1])
    assert deb.exists(), done.stdout
    return deb


@pytest.fixture(scope="session")
def deb(tmp_path_factory) -> Path:
    """The package of the work tree's version."""
    return build(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def deb_upgrade(tmp_path_factory) -> Path:
    """The same package under a higher version, for the upgrade test."""
    return build(tmp_path_factory.mktemp("deb-upgrade"), base_version() + "+upgrade1")


def _apt_source() -> tuple[str, str]:
    """(suite, mirror URL) of the machine's first Debian apt source: the root
    is made of what this machine is allowed to reach."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        uri = suite = None
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and uri is None:
                uri = line.split()[1]
            elif line.startswith("Suites:") and suite is None:
                suite = line.split()[1]
        if uri and suite and "security" not in suite:
            return suite, uri
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[2]:
                return parts[2], parts[1]
    pytest.fail("no Debian apt source on this machine to debootstrap from")


@pytest.fixture(scope="session")
def debian_root() -> Path:
    """The cached minimal Debian root (made on first use: a few minutes)."""
    if (DEBIAN_ROOT / "usr" / "bin" / "python3").exists() and (DEBIAN_ROOT / "lib/systemd/systemd").exists():
        return DEBIAN_ROOT
    debootstrap = need("debootstrap")
    suite, mirror = _apt_source()
    partial = DEBIAN_ROOT.with_name(DEBIAN_ROOT.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run(debootstrap, "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}", suite, str(partial), mirror,
        timeout=1800)
    shutil.rmtree(DEBIAN_ROOT, ignore_errors=True)
    partial.rename(DEBIAN_ROOT)
    return DEBIAN_ROOT


@pytest.fixture
def root(debian_root, tmp_path) -> Path:
    """A throw-away copy of the Debian root."""
    copy = tmp_path / "root"
    run("cp", "-a", str(debian_root), str(copy))
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def chroot(root: Path, *command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
    return run("chroot", str(root), *command, check=check, timeout=timeout, env=env)


class Tools:
    """The helpers above, for the tests (a conftest is not importable under importlib mode)."""

    need = staticmethod(need)
    run = staticmethod(run)
    chroot = staticmethod(chroot)
    build = staticmethod(build)
    base_version = staticmethod(base_version)
    repo = REPO


@pytest.fixture(scope="session")
def tools() -> type[Tools]:
    return Tools
