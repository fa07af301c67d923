"""A pass's plan for people and machines: text (coloured on a terminal), JSON, Markdown
for a pull-request comment. Pure; Secret values are masked by `plan`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gitmesh import plan
from gitmesh.status.results import PassResult

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
    return {
        "revision": result.report.revision,
        "summary": summary(result),
        "changes": result.changes,
        "remotes": remotes,
    }


# GitHub refuses comments over 65,536 characters; stay well under.
COMMENT_LIMIT = 60_000
# The first line of the comment, for a CI job to find and update its one sticky comment.
MARKER = "<!-- gitmesh-plan -->"
FAILED = ("ReconcileFailed", "InvalidSpec")


def _counts(items: Mapping[str, int]) -> str:
    return ", ".join(f"{n} to {a}" for a, n in items.items() if n) or "no changes"


def _changed(result: PassResult) -> dict[str, list[plan.Item]]:
    return {
        name: [i for i in res.items if i.changes]
        for name, res in sorted(result.remotes.items())
        if any(i.changes for i in res.items)
    }


def summary(result: PassResult) -> str:
    """One line: how many changes to how many of the remotes, and how many could not be
    planned."""
    changed = _changed(result)
    total = sum(len(v) for v in changed.values())
    failed = sum(1 for r in result.remotes.values() if r.report.state in FAILED)
    line = f"{total} change(s) to {len(changed)} of {len(result.remotes)} remote(s)"
    return line + (f"; {failed} could not be planned" if failed else "")


def _op_line(op: Mapping[str, Any], limit: int) -> str:
    def shown(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    if "old" in op and "value" in op:
        return f"{op['op']} {op['path']}: {shown(op['old'])} -> {shown(op['value'])}"
    if "old" in op:
        return f"{op['op']} {op['path']} (was {shown(op['old'])})"
    value = f" {shown(op['value'])}" if "value" in op else ""
    return f"{op['op']} {op['path']}{value}"


def text(result: PassResult, *, color: bool = False, note: str = "") -> str:
    """The plan for a terminal: the remotes with changes, and why others could not be
    planned; unchanged remotes are counted, not listed."""
    lines = [f"Plan at {result.report.revision[:12]}: {summary(result)}."]
    if note:
        lines.append(note)
    changed = _changed(result)
    for name, res in sorted(result.remotes.items()):
        if res.report.state in FAILED:
            lines.append(f"\nremote {name}: cannot plan: {res.report.message}")
        if name not in changed:
            continue
        counts = {
            a: sum(1 for i in changed[name] if i.action == a) for a in ("create", "patch", "delete")
        }
        lines.append(f"\nremote {name}: {_counts(counts)}")
        if res.report.message:
            lines.append(f"  note: {res.report.message}")
        for item in changed[name]:
            head = f"  {SYMBOL[item.action]} [{item.component}] {item.ref}"
            lines.append(f"{COLOR[item.action]}{head}{RESET}" if color else head)
            if item.action == "patch":
                lines += [f"      {_op_line(op, 120)}" for op in plan.masked_ops(item)]
    unchanged = sum(
        1 for n, r in result.remotes.items() if n not in changed and r.report.state not in FAILED
    )
    if unchanged:
        lines.append(f"\n{unchanged} remote(s) unchanged.")
    return "\n".join(lines) + "\n"


def markdown(result: PassResult, *, limit: int = COMMENT_LIMIT, note: str = "") -> str:
    """The plan as a pull-request comment: a marker line, a summary, a table of the
    remotes with changes or failures, and their changes in collapsed sections; over
    `limit` characters, the sections give way to a note."""
    changed = _changed(result)
    failed = {n: r for n, r in result.remotes.items() if r.report.state in FAILED}
    head = [
        MARKER,
        f"### gitmesh plan at `{result.report.revision[:12]}`",
        "",
        f"**{summary(result)}.**",
        *(["", f"_{note}_"] if note else []),
    ]
    if changed or failed:
        head += ["", "| remote | create | patch | delete | note |", "|---|---:|---:|---:|---|"]
    for name in sorted(set(changed) | set(failed)):
        items = changed.get(name, [])
        counts = [sum(1 for i in items if i.action == a) for a in ("create", "patch", "delete")]
        message = result.remotes[name].report.message
        note = f"cannot plan: {_cell(message)}" if name in failed else _cell(message)
        head.append(f"| `{name}` | {counts[0]} | {counts[1]} | {counts[2]} | {note} |")
    details: list[str] = []
    for name, items in changed.items():
        details += [
            "",
            f"<details><summary><code>{name}</code>: {len(items)} change(s)</summary>",
            "",
            "```diff",
        ]
        for item in items:
            details.append(f"{SYMBOL[item.action]} [{item.component}] {item.ref}")
            if item.action == "patch":
                details += [f"    {_op_line(op, 200)}" for op in plan.masked_ops(item)]
        details += ["```", "", "</details>"]
    full = "\n".join(head + details) + "\n"
    if len(full) <= limit:
        return full
    note = (
        f"The changes of each remote ({len(full):,} characters) are left out: a comment "
        f"holds at most {limit:,}. Run `gitmesh plan` to see them."
    )
    budget = limit - len(note) - 200
    kept: list[str] = []
    size = 0
    for line in head:
        size += len(line) + 1
        if size > budget:
            kept.append(f"| … {len(head) - len(kept)} more row(s) | | | | |")
            break
        kept.append(line)
    return "\n".join([*kept, "", note]) + "\n"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no pipes, bounded."""
    one = " ".join(text.split()).replace("|", "\\|")
    return one if len(one) <= 200 else one[:197] + "..."
