"""Write the generated alerting files from agent/alerting/rules.py.

    python3 scripts/gen_alerting.py            # (re)write the files below
    python3 scripts/gen_alerting.py --check    # exit 1 if any is missing, stale or extra

    kibana/watchers/<slug>.json     PUT _watcher/watch/modelscribe-<slug> bodies
    kibana/rules/<slug>.json        POST /api/alerting/rule/modelscribe-<slug> bodies
    kibana/rules/_connector.json    POST /api/actions/connector/modelscribe-alerts-index body
    kibana/elastalert/<slug>.yaml   ElastAlert2 rule files

The output depends on the rules and the schema only (no dates, no
environment); a rule naming a field that fields.yml lacks stops it with the
field named. Files in those folders that no rule produces are removed
(``--check`` reports them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agent.alerting import elastalert, kibana_rules, watcher  # noqa: E402
from agent.alerting.rules import RULES, require_fields  # noqa: E402

COMMAND = "python3 scripts/gen_alerting.py"
FOLDERS = ("watchers", "rules", "elastalert")


def _json(body: dict) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def render() -> dict[Path, str]:
    """Every generated file (relative to the repository root) and its text."""
    require_fields()
    files: dict[Path, str] = {Path("kibana/rules/_connector.json"): _json(kibana_rules.connector_body())}
    for rule in RULES:
        files[Path("kibana/watchers") / f"{rule.slug}.json"] = _json(watcher.watch(rule))
        files[Path("kibana/rules") / f"{rule.slug}.json"] = _json(kibana_rules.rule_body(rule))
        files[Path("kibana/elastalert") / f"{rule.slug}.yaml"] = elastalert.rule_yaml(rule)
    return files


def problems(root: Path = ROOT) -> list[str]:
    """What differs between the files on disk and render() (empty when up to date)."""
    files = render()
    found = []
    for path, text in files.items():
        target = root / path
        if not target.exists():
            found.append(f"{path}: missing")
        elif target.read_text(encoding="utf-8") != text:
            found.append(f"{path}: stale")
    for folder in FOLDERS:
        for path in sorted((root / "kibana" / folder).glob("*")):
            if path.relative_to(root) not in files:
                found.append(f"{path.relative_to(root)}: no rule generates it")
    return found


def write(root: Path = ROOT) -> None:
    files = render()
    for folder in FOLDERS:
        (root / "kibana" / folder).mkdir(parents=True, exist_ok=True)
        for path in (root / "kibana" / folder).glob("*"):
            if path.relative_to(root) not in files:
                path.unlink()
    for path, text in files.items():
        (root / path).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the files are out of date")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(f"run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
