"""Write docs/fields.md, the field reference, from agent/schema/fields.yml.

    python3 scripts/gen_field_docs.py            # (re)write docs/fields.md
    python3 scripts/gen_field_docs.py --check    # exit 1 if docs/fields.md is out of date

The output depends on the schema only (no dates, no environment), so the
same schema always renders the same file and a test can compare them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agent import schema  # noqa: E402
from agent.setup import templates  # noqa: E402

DOC = ROOT / "docs" / "fields.md"
COMMAND = "python3 scripts/gen_field_docs.py"

_TITLES = {"": "Base fields", "gen_ai": "gen_ai (OpenTelemetry generative AI)",
           "model": "model (modelscribe)"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n")


def _example(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > 120:
        text = text[:117] + "..."
    return "`" + _cell(text).replace("`", "'") + "`"


def _type(field: schema.Field) -> str:
    text = f"`{field.type}`"
    if field.children:
        text += f" of `{field.children}`"
    if field.type in schema.FALLBACK_TYPES:
        text += f" (`{schema.FALLBACK_TYPES[field.type]}` where missing)"
    if not field.index:
        text += ", not indexed"
    return text


def _description(field: schema.Field) -> str:
    text = field.description
    if field.allowed:
        text += " One of: " + ", ".join(f"`{value}`" for value in field.allowed) + "."
    return _cell(text)


def render() -> str:
    groups: dict[str, list[schema.Field]] = {}
    for field in schema.FIELDS.values():
        groups.setdefault(field.namespace, []).append(field)
    lines = [
        "# Fields",
        "",
        f"<!-- Generated from agent/schema/fields.yml by `{COMMAND}`. Do not edit. -->",
        "",
        "Every field modelscribe writes. Documents are nested objects; the names",
        "below are their dotted paths. `ECS` marks fields defined by the Elastic",
        "Common Schema; `payload` marks request/response bodies, prompts and",
        "completions, which the agent strips unless `--keep-payloads` is given.",
        "",
        "Mapping rules (`modelscribe setup templates` installs them as the",
        f"`{templates.MAPPINGS_COMPONENT}` and `{templates.SETTINGS_COMPONENT}` component",
        "templates, used by the `logs-modelscribe-*` and `metrics-modelscribe-*`",
        "data streams):",
        "",
        "- The root is `dynamic: false`: a key not listed here stays in `_source`",
        "  (visible, retrievable) but is not indexed and never adds a mapped field.",
        "- `flattened` fields (`labels`, `extra`, `model.prediction`,",
        "  `model.input.features`, `model.target`, `model.metric.dimensions`) take",
        "  any keys as one mapped field; search them as `extra.<key>`. Their value",
        "  must be an object: a bare value or array is rejected by Elasticsearch,",
        "  so it goes under a key (`{\"value\": 0.93}`). Leaf values are indexed as",
        f"  keywords up to {schema.IGNORE_ABOVE} characters, objects up to"
        f" {schema.FLATTENED_DEPTH_LIMIT} levels deep.",
        "- `model.stats` maps every key below it as `double` (nested keys become",
        "  dotted leaves); non-numeric values are ignored, not rejected.",
        f"- Keywords longer than {schema.IGNORE_ABOVE} characters are kept but not indexed.",
        "- A value of the wrong type (an invalid IP, text in a number) is not",
        "  indexed and is listed in the document's `_ignored`; the document is kept.",
        "- `match_only_text` and `constant_keyword` come from optional",
        "  Elasticsearch modules; where missing they are mapped as `text` and",
        "  `keyword`, which search and aggregate the same way.",
        "",
    ]
    order = sorted(groups, key=lambda name: (name != "", name))
    for namespace in order:
        lines += [f"## {_TITLES.get(namespace, namespace)}", "",
                  "| Field | Type | Description | Example | ECS | Payload |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for field in groups[namespace]:
            lines.append(f"| `{field.name}` | {_type(field)} | {_description(field)} | "
                         f"{_example(field.example)} | {'yes' if field.ecs else ''} | "
                         f"{'yes' if field.payload else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/fields.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} ({len(schema.FIELDS)} fields)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
