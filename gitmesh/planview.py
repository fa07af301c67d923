"""A pass's plan for people and machines: text (coloured on a terminal), JSON, Markdown
for a pull-request comment. Pure; Secret values are masked by `plan`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gitmesh import plan
from gitmesh.reconcile import PassResult

SYMBOL = {"create": "+", "patch": "~", "delete": "-"}
COLOR = {"create": "\033[32m", "patch": "\033[33m", "delete": "\033[31m"}
RESET = "\033[0m"


def as_json(result: PassResult) -> dict[str, Any]:
    """The plan as a JSON-ready dict."""
    remotes = []
    for name, res in sorted(result.remotes.items()):
        remotes.append(
            {
                "name": name,
                "state": res.report.state,
                "message": res.report.message,
                "changes": [plan.as_dict(i) for i in res.items if i.changes],
                "unchanged": sum(1 for i in res.items if not i.changes),
            }
        )
    return {"revision": result.report.revision, "changes": result.changes, "remotes": remotes}


def _counts(items: Mapping[str, int]) -> str:
    return ", ".join(f"{n} to {a}" for a, n in items.items() if n) or "no changes"


def text(result: PassResult, *, color: bool = False) -> str:
    """The plan for a terminal."""
    lines = [f"Plan at {result.report.revision[:12]}:"]
    for name, res in sorted(result.remotes.items()):
        counts = {
            a: sum(1 for i in res.items if i.action == a) for a in ("create", "patch", "delete")
        }
        state = res.report.state
        lines.append(f"\nremote {name} ({state}): {_counts(counts)}")
        if res.report.message and state != "Available":
            lines.append(f"  ! {res.report.message}")
        for item in res.items:
            if not item.changes:
                continue
            head = f"  {SYMBOL[item.action]} [{item.component}] {item.ref}"
            lines.append(f"{COLOR[item.action]}{head}{RESET}" if color else head)
            if item.action == "patch":
                for op in plan.masked_ops(item):
                    value = f" {json.dumps(op['value'])}" if "value" in op else ""
                    if len(value) > 120:
                        value = value[:117] + "..."
                    lines.append(f"      {op['op']} {op['path']}{value}")
    lines.append(f"\n{result.changes} change(s).")
    return "\n".join(lines) + "\n"


def markdown(result: PassResult) -> str:
    """The plan as a pull-request comment."""
    out = [
        f"### gitmesh plan at `{result.report.revision[:12]}`",
        "",
        f"**{result.changes} change(s)** across {len(result.remotes)} remote(s).",
        "",
        "| remote | state | create | patch | delete |",
        "|---|---|---:|---:|---:|",
    ]
    for name, res in sorted(result.remotes.items()):
        counts = [sum(1 for i in res.items if i.action == a) for a in ("create", "patch", "delete")]
        out.append(f"| `{name}` | {res.report.state} | {counts[0]} | {counts[1]} | {counts[2]} |")
    for name, res in sorted(result.remotes.items()):
        changed = [i for i in res.items if i.changes]
        if res.report.state not in ("Available", "Removed"):
            out += ["", f"**{name}**: {res.report.message}"]
        if not changed:
            continue
        out += [
            "",
            f"<details><summary><code>{name}</code>: {len(changed)} change(s)</summary>",
            "",
            "```diff",
        ]
        for item in changed:
            out.append(f"{SYMBOL[item.action]} [{item.component}] {item.ref}")
            if item.action == "patch":
                for op in plan.masked_ops(item):
                    value = f" {json.dumps(op['value'])}" if "value" in op else ""
                    out.append(f"    {op['op']} {op['path']}{value[:200]}")
        out += ["```", "", "</details>"]
    return "\n".join(out) + "\n"
