"""Write kibana/modelscribe.ndjson, the Kibana saved objects, from one definition.

    python3 scripts/gen_kibana.py            # (re)write the file
    python3 scripts/gen_kibana.py --check    # exit 1 if the checked-in file is out of date

The definition is agent/kibana/dashboards.py; every field it names is looked
up in agent/schema/fields.yml, so a renamed field fails this script (and the
test that runs it) instead of a user's dashboard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agent.kibana.render import ndjson  # noqa: E402

TARGET = ROOT / "kibana" / "modelscribe.ndjson"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in file is stale")
    args = parser.parse_args(argv)
    text = ndjson()
    if args.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python3 scripts/gen_kibana.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({text.count(chr(10))} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
