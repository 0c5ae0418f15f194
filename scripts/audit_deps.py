#!/usr/bin/env python3
"""pip-audit on exactly what modelscribe runs with: the installed versions of
its dependency closure (``modelscribe[test]``), not every tool on the machine.

    python3 scripts/audit_deps.py        # .ci/run, after `pip install -e .[test] pip-audit`

Exit codes: 0 no known vulnerability; 1 a known vulnerability in a
dependency (each printed with its fixed versions), or pip-audit failed
(could not reach the vulnerability data at all: the error is printed).

The vulnerability data comes from the package index's per-release JSON. An
index that answers but does not serve it for a release (a mirror) makes
pip-audit skip that package: that is printed loudly as NOT AUDITED with each
package named, and does not fail the run, because such an index never serves
it and failing would block every change; set MODELSCRIBE_AUDIT_STRICT=1 to
make it fail (on a machine whose index does serve the data).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "modelscribe", extras: tuple[str, ...] = ("test",)) -> dict[str, str]:
    """{name: installed version} of every distribution ``root[extras]`` needs."""
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({"extra": extra}) for extra in ("", *wanted)):
                continue
            key = _key(requirement.name)
            if key in found:
                continue
            try:
                found[key] = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                raise SystemExit(f"audit: {requirement.name} (needed by {name}) is not installed") from None
            todo.append((requirement.name, tuple(requirement.extras)))
    found.pop(_key(root), None)  # the project itself is not on the index
    return found


def main() -> int:
    pins = closure()
    with tempfile.TemporaryDirectory() as work:
        requirements = Path(work, "requirements.txt")
        requirements.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        report = Path(work, "audit.json")
        done = subprocess.run([sys.executable, "-m", "pip_audit", "--no-deps", "--disable-pip",
                               "--progress-spinner", "off", "-r", str(requirements), "-f", "json",
                               "-o", str(report)], capture_output=True, text=True)
        if done.returncode not in (0, 1) or not report.exists():
            print(f"audit: FAILED: pip-audit could not get the vulnerability data (exit {done.returncode}):\n"
                  f"{done.stderr.strip()}", file=sys.stderr)
            return 1
        data = json.loads(report.read_text())
    vulnerable = [dep for dep in data["dependencies"] if dep.get("vulns")]
    skipped = [dep for dep in data["dependencies"] if dep.get("skip_reason")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            print(f"audit: VULNERABLE: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})",
                  file=sys.stderr)
    audited = len(pins) - len(skipped)
    print(f"audit: {len(pins)} dependencies, {audited} audited, {len(vulnerable)} with known vulnerabilities")
    if skipped:
        print(f"audit: WARNING: NOT AUDITED: the package index gave no vulnerability data for {len(skipped)} "
              f"of {len(pins)} dependencies, so nothing is known about them:", file=sys.stderr)
        for dep in skipped:
            print(f"audit:   {dep['name']}: {dep['skip_reason']}", file=sys.stderr)
    if vulnerable:
        return 1
    if skipped and os.environ.get("MODELSCRIBE_AUDIT_STRICT") == "1":
        print("audit: FAILED: MODELSCRIBE_AUDIT_STRICT=1 and some dependencies could not be audited",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
