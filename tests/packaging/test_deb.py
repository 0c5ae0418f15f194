"""The .deb of packaging/build-deb: its contents, lintian, and its whole life on a
Debian root (install, upgrade, remove, purge) through dpkg and the maintainer
scripts, in a chroot of a copy of the cached debootstrap root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_package_name_fields_and_contents(tools, deb):
    arch = tools.run("dpkg", "--print-architecture").stdout.strip()
    assert deb.name == f"modelscribe_{tools.base_version()}_{arch}.deb"
    fields = tools.run("dpkg-deb", "-f", str(deb)).stdout
    depends = re.search(r"^Depends: (.*)$", fields, re.MULTILINE).group(1)
    # The venv links to Debian's python3 and holds modules compiled for its minor version.
    assert re.search(r"python3 \(>= 3\.(\d+)\), python3 \(<< 3\.(\d+)\)", depends), depends
    assert "adduser" in depends and "libc6" in depends
    listing = tools.run("dpkg-deb", "-c", str(deb)).stdout
    assert "./usr/bin/modelscribe -> /opt/modelscribe/bin/modelscribe" in listing
    for path in ("./lib/systemd/system/modelscribe.service", "./etc/modelscribe/modelscribe.yml",
                 "./opt/modelscribe/pyvenv.cfg", "./usr/share/doc/modelscribe/copyright",
                 "./usr/share/lintian/overrides/modelscribe"):
        assert f" {path}\n" in listing, path
    assert ".pyc" not in listing and "__pycache__" not in listing  # compiled by postinst
    # Health's C module, compiled for Debian's python3 (its source is not installed).
    assert re.search(r"/agent/health/_native\.cpython-3\d+-[\w-]+\.so\n", listing), "no agent/health/_native*.so"
    assert "_native.c\n" not in listing and "_native.h\n" not in listing
    assert tools.run("dpkg-deb", "-I", str(deb), "conffiles").stdout.split() == ["/etc/modelscribe/modelscribe.yml"]


def test_nothing_points_at_the_build_directory(tools, deb, tmp_path):
    tools.run("dpkg-deb", "-x", str(deb), str(tmp_path))
    venv = tmp_path / "opt" / "modelscribe"
    assert (venv / "bin" / "modelscribe").read_text().startswith("#!/opt/modelscribe/bin/python3\n")
    assert "modelscribe-deb-" not in (venv / "pyvenv.cfg").read_text()
    done = tools.run("grep", "-rl", "modelscribe-deb-", str(venv), check=False)
    assert done.stdout == "", done.stdout


def test_lintian_is_clean(tools, deb):
    lintian = tools.need("lintian")
    done = tools.run(lintian, "--pedantic", "--fail-on", "error,warning,pedantic", str(deb), check=False, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _state(root: Path, tools) -> str:
    return tools.chroot(root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}", "modelscribe",
                        check=False).stdout.strip()


def test_install_upgrade_remove_purge(tools, deb, deb_upgrade, root):
    version = tools.base_version()
    for package in (deb, deb_upgrade):
        (root / "tmp" / package.name).write_bytes(package.read_bytes())

    # -- install
    tools.chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
    assert _state(root, tools) == f"ii {version}"
    user = tools.chroot(root, "getent", "passwd", "modelscribe").stdout.split(":")
    assert user[5] == "/var/lib/modelscribe" and user[6].strip() == "/usr/sbin/nologin"
    assert int(user[2]) < 1000  # a system user
    assert tools.chroot(root, "getent", "group", "modelscribe").returncode == 0
    assert tools.chroot(root, "stat", "-c", "%a %U %G", "/var/lib/modelscribe").stdout.strip() == \
        "700 modelscribe modelscribe"
    assert (root / "etc/systemd/system/multi-user.target.wants/modelscribe.service").is_symlink()  # enabled
    assert tools.chroot(root, "modelscribe", "--version").stdout.strip() == f"modelscribe {version}"
    assert list((root / "opt/modelscribe/lib").rglob("*.pyc"))  # postinst compiled the byte code
    # The shipped file names no file to tail: check config fails as run would, saying what is missing.
    checked = tools.chroot(root, "modelscribe", "check", "config", "--config", "/etc/modelscribe/modelscribe.yml",
                           check=False)
    assert checked.returncode == 2 and "--path: at least one glob" in checked.stderr, checked.stderr
    # The ingest pipelines ship with the package (pyproject.toml data files): setup finds them.
    planned = tools.chroot(root, "modelscribe", "setup", "pipelines", "--dry-run", "--es-url", "http://127.0.0.1:9")
    assert planned.returncode == 0 and f"modelscribe-entry-{version}" in planned.stdout, planned.stdout
    # The agent works from the package, as the service user, on a file in /var/log.
    (root / "var/log/models").mkdir()
    (root / "var/log/models/model.log").write_text('{"message": "packaged"}\n')
    config = root / "etc/modelscribe/modelscribe.yml"
    config.write_text(config.read_text().replace("\n#paths: []\n", "\npaths: [/var/log/models/*.log]\n")
                      .replace("\n#output: elasticsearch\n", "\noutput: 'file:/var/lib/modelscribe/out.ndjson'\n"))
    checked = tools.chroot(root, "modelscribe", "check", "config", "--config", "/etc/modelscribe/modelscribe.yml")
    assert "config ok" in checked.stdout, checked.stderr
    tools.chroot(root, "runuser", "-u", "modelscribe", "--", "modelscribe", "run", "--once", "--metrics-addr", "off",
                 "--config", "/etc/modelscribe/modelscribe.yml")
    assert '"message":"packaged"' in (root / "var/lib/modelscribe/out.ndjson").read_text()
    (root / "etc/modelscribe/es-api-key").write_text("a-key\n")

    # -- upgrade: the admin's config, the state and the user stay
    tools.chroot(root, "dpkg", "-i", f"/tmp/{deb_upgrade.name}")
    assert _state(root, tools) == f"ii {version}+upgrade1"
    assert "paths: [/var/log/models/*.log]" in config.read_text()
    assert (root / "var/lib/modelscribe/out.ndjson").exists() and (root / "var/lib/modelscribe/registry.json").exists()
    assert tools.chroot(root, "getent", "passwd", "modelscribe").stdout.split(":")[2] == user[2]
    assert tools.chroot(root, "modelscribe", "--version").returncode == 0

    # -- remove: the program goes, config and state stay
    tools.chroot(root, "dpkg", "-r", "modelscribe")
    assert _state(root, tools).startswith("rc ")
    assert not (root / "opt/modelscribe").exists()  # prerm took the byte code, so no directory is left
    assert not (root / "usr/bin/modelscribe").exists() and not (root / "lib/systemd/system/modelscribe.service").exists()
    assert config.exists() and (root / "var/lib/modelscribe/registry.json").exists()

    # -- purge: state, config and credentials go; the user stays (Debian's rule)
    tools.chroot(root, "dpkg", "-P", "modelscribe")
    assert _state(root, tools) == ""
    assert not (root / "var/lib/modelscribe").exists()
    assert not (root / "etc/modelscribe").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/modelscribe.service").exists()
    assert tools.chroot(root, "getent", "passwd", "modelscribe").returncode == 0
