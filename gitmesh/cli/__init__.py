"""The `gitmesh` command line: flags and environment become settings here, and only here.

Exit codes scripts can rely on: 0 success, 1 a failure the command found (invalid specs,
a remote not Available, an error), 2 a usage error (and, for `plan --exit-code`, changes
pending). Each sub-command lives in a small function that builds its collaborators and
calls into the library.

The rooms: `parser` (one function per sub-command adds its flags), `flags` (the shared
flag groups, value types, and the settings they describe), `commands` (the sub-commands),
`views` and `planview` (what is printed), `completion`, `durations`, and `demo`.
Sub-commands import what they need when they run, so that `gitmesh validate` (a
pull-request check) does not pay for loading the Kubernetes client.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitmesh.cli.flags import Command
from gitmesh.cli.parser import DISTRIBUTION, build_parser
from gitmesh.cli.views import color
from gitmesh.errors import GitmeshError

__all__ = ["DISTRIBUTION", "build_parser", "color", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gitmesh` console script."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except GitmeshError as e:
        print(f"gitmesh {args.command}: {e}", file=sys.stderr)
        # `plan --exit-code` answers as kubectl diff and argocd app diff: 1 is "changes".
        return 2 if args.command == "plan" and getattr(args, "exit_code", False) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
