"""The `gitmesh` command line: flags and environment become settings here, and only here.

Exit codes scripts can rely on: 0 success, 1 a failure the command found (invalid specs,
a remote not Available, an error), 2 a usage error (and, for `plan --exit-code`, changes
pending). Each sub-command lives in a small function that builds its collaborators and
calls into the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gitmesh import meshrepo, schema
from gitmesh.errors import GitmeshError, Problem
from gitmesh.localkube import cli as localkube_cli

Command = Callable[[argparse.Namespace], int]


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"GITMESH_{name}", default)


def _print_problems(problems: Sequence[Problem], fmt: str) -> None:
    if fmt == "json":
        rows = [
            {"file": p.file, "line": p.line, "col": p.col, "field": p.field, "message": p.message}
            for p in problems
        ]
        print(json.dumps({"valid": not problems, "problems": rows}, indent=2))
        return
    for p in problems:
        if fmt == "github":
            title = p.field or "gitmesh"
            message = p.message.replace("%", "%25").replace("\n", "%0A")
            print(f"::error file={p.file},line={p.line},col={p.col},title={title}::{message}")
        else:
            print(p)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a mesh repository directory."""
    root = Path(args.path)
    if not root.is_dir():
        print(f"gitmesh validate: {root}: not a directory", file=sys.stderr)
        return 2
    files, problems = meshrepo.read_dir(root)
    repo = meshrepo.parse(files)
    problems = [*problems, *repo.problems]
    _print_problems(problems, args.format)
    if args.format == "text":
        state = "invalid" if problems else "valid"
        print(
            f"{state}: {len(repo.remotes)} remote(s) valid, {len(repo.invalid)} invalid, "
            f"{len(problems)} problem(s)",
            file=sys.stderr,
        )
    return 1 if problems else 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the JSON Schemas."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in schema.generate().items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="gitmesh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a mesh repository (for pull requests)")
    p.add_argument("path", nargs="?", default=".", help="the mesh repository directory")
    p.add_argument("--format", choices=["text", "github", "json"], default="text")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="write the JSON Schemas of the spec files")
    p.add_argument("--out", default="schemas", help="directory to write into")
    p.set_defaults(func=cmd_schema)

    localkube_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gitmesh` console script."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except GitmeshError as e:
        print(f"gitmesh {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
