"""What the commands print for people: problems (text, GitHub annotations, JSON), the
progress line, the pass summary and the status table."""

from __future__ import annotations

import calendar
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gitmesh.errors import Problem
from gitmesh.status.results import PassResult


def _escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (`escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value, escaped as GitHub's toolkit does
    (`escapeProperty`): a file name can hold none of these unescaped."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def repo_prefix(root: Path) -> str:
    """Where `root` is inside the git work tree that holds it ('' at the top, or outside
    one), so that annotations name files as the diff does in a monorepo."""
    here = root.resolve()
    for top in (here, *here.parents):
        if (top / ".git").exists():
            rel = here.relative_to(top).as_posix()
            return "" if rel == "." else rel + "/"
    return ""


def validation(
    problems: Sequence[Problem],
    warnings: Sequence[str],
    remotes: tuple[int, int],
    fmt: str,
    *,
    prefix: str = "",
) -> None:
    """What `gitmesh validate` found, on stdout: problems (errors) and warnings, then a
    summary; as JSON or YAML, the same with counts and each entry's severity."""
    valid, invalid = remotes
    if fmt in ("json", "yaml"):
        rows = [
            {
                "severity": "error",
                "file": p.file,
                "line": p.line,
                "col": p.col,
                "field": p.field,
                "message": p.message,
            }
            for p in problems
        ] + [{"severity": "warning", "message": w} for w in warnings]
        doc = {
            "valid": not problems,
            "remotes": {"valid": valid, "invalid": invalid},
            "errors": len(problems),
            "warnings": len(warnings),
            "problems": rows,
        }
        if fmt == "json":
            print(json.dumps(doc, indent=2))
        else:
            import yaml

            print(yaml.safe_dump(doc, sort_keys=False), end="")
        return
    for p in problems:
        if fmt == "github":
            file, title = _escape_property(prefix + p.file), _escape_property(p.field or "gitmesh")
            message = _escape_data(p.message)
            print(f"::error file={file},line={p.line},col={p.col},title={title}::{message}")
        else:
            print(p)
    for w in warnings:
        print(f"::warning title=gitmesh::{_escape_data(w)}" if fmt == "github" else w)
    if fmt == "text":
        state = "invalid" if problems else "valid"
        print(
            f"{state}: {valid} remote(s) valid, {invalid} invalid, {len(problems)} problem(s)"
            + (f", {len(warnings)} warning(s)" if warnings else "")
        )


def progress_line() -> Callable[[int, int], None]:
    """`  12/1000 remotes` rewritten in place on a terminal, ended by a newline."""

    from gitmesh import logs

    def show(done: int, total: int) -> None:
        logs.status_line(f"  {done}/{total} remotes", done=done == total)

    return show


def color() -> bool:
    """Colour on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def summary(result: PassResult) -> None:
    """A short account of the pass on stdout: one line per remote, then the totals."""
    rows = []
    for name, res in sorted(result.remotes.items()):
        report = res.report
        counts = [
            sum(getattr(c, f) for c in report.components) for f in ("created", "patched", "deleted")
        ]
        done = ", ".join(
            f"{n} {w}" for n, w in zip(counts, ("created", "patched", "deleted"), strict=True) if n
        )
        if report.state in ("Removed",):
            done = f"{result.report.pruned.get(name, 0)} deleted"
        applied = report.state in ("Available", "Removed", "Progressing")
        detail = "; ".join(
            d
            for d in (done if applied else "", report.message if report.state != "Removed" else "")
            if d
        )
        rows.append((name, report.state, detail or "no changes"))
    width = max((len(r[0]) for r in rows), default=0)
    for name, state, detail in rows:
        print(f"{name:<{width}}  {state:<16} {detail}")
    states: dict[str, int] = {}
    for _, state, _ in rows:
        states[state] = states.get(state, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no remotes"
    print(f"{len(rows)} remote(s): {tally}")


def status_table(rows: list[dict[str, Any]], head: str, *, wide: bool = False) -> None:
    """The remotes as kubectl get prints objects: SINCE is the age of the state (kubectl's
    AGE); -o wide adds the revision last attempted, the replica and the message."""
    from gitmesh.cli import durations

    header: tuple[str, ...] = ("REMOTE", "STATE", "SINCE", "APPLIED", "SYNC", "ENDPOINTS")
    if wide:
        header += ("ATTEMPTED", "BY", "MESSAGE")
    now = time.time()
    table = [header]
    for r in rows:
        since = _epoch(r.get("since", ""))
        row: tuple[str, ...] = (
            r["remote"],
            r["state"],
            durations.age(now - since) if since is not None else "-",
            r["lastAppliedRevision"][:12] or "-",
            "OutOfSync" if r["outOfSync"] else "Synced",
            str(r.get("endpoints", "-")),
        )
        if wide:
            message = " ".join(str(r.get("message") or "").split())
            row += (
                str(r.get("lastAttemptedRevision") or "-")[:12],
                str(r.get("reconciledBy") or "-"),
                (message[:77] + "...") if len(message) > 80 else message or "-",
            )
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"\nsource revision {head[:12]}")
    for r in rows:
        if r.get("message") and r["state"] != "Available":
            print(f"{r['remote']}: {r['message']}")
        for warning in r.get("warnings") or ():
            print(f"{r['remote']}: warning: {warning}")


def _epoch(text: str) -> float | None:
    """A status time (2026-01-01T00:00:00Z) as seconds since the epoch; None if it is not one."""
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None
