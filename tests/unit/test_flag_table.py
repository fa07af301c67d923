"""The README's configuration table is the parser's: every flag a GITMESH_* variable can
set is in it, every flag in it exists and reads its variable, as the README says."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from gitmesh import cli

ROOT = Path(__file__).resolve().parents[2]
ENV_GROUP = "each flag also from GITMESH_<FLAG>"


def table() -> dict[str, set[str]]:
    """flag -> the commands its README row names ({"*"}: every command that has it)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        command = re.match(r"\s*`(\w+) --", cell)
        commands = {command.group(1)} if command else {"*"}
        for flag in re.findall(r"--[a-z][a-z-]*", cell):
            out.setdefault(flag, set()).update(commands)
    return out


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def env_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    # A flag by its first long name (`--central-kubeconfig`, not its alias `--kubeconfig`):
    # the one its GITMESH_* variable is named after.
    return {
        next(o for o in a.option_strings if o.startswith("--")): a
        for group in parser._action_groups
        if ENV_GROUP in (group.title or "")
        for a in group._group_actions
    }


def test_the_table_lists_exactly_the_flags_variables_can_set() -> None:
    rows = table()
    everywhere = {flag for flag, cmds in rows.items() if "*" in cmds}
    seen: set[str] = set()
    for name, parser in commands().items():
        actual = set(env_flags(parser))
        if name == "localkube":
            actual = {"--backend"}  # its one GITMESH_* flag
        listed = {f for f, cmds in rows.items() if name in cmds} | (everywhere & actual)
        assert listed == actual, (name, listed ^ actual)
        seen |= actual
    assert everywhere <= seen, everywhere - seen


def sample(action: argparse.Action) -> tuple[str, Any]:
    """A valid value for the flag's variable, and what it parses to."""
    kind = getattr(action.type, "__qualname__", "")
    if isinstance(action, argparse._StoreTrueAction):
        return "true", True
    if "duration_arg" in kind:
        return "7m", 420.0
    if "positive_int" in kind:
        return "3", 3
    if "size_arg" in kind:
        return "2Mi", 2 * 1024 * 1024
    if "listen_arg" in kind:
        return "127.0.0.1:1", ("127.0.0.1", 1)
    if "one_of" in kind:
        word = {"--log-format": "text", "--log-level": "debug"}[action.option_strings[0]]
        return word, word
    if action.type is Path:
        return "/srv/sample", Path("/srv/sample")
    if action.choices:
        word = sorted(action.choices)[-1]
        return word, word
    return "sample-value", "sample-value"


@pytest.mark.parametrize("command", ["plan", "reconcile", "run", "status", "localkube"])
def test_every_listed_flag_reads_its_variable(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = commands()[command]
    flags = (
        env_flags(parser)
        if command != "localkube"
        else {"--backend": next(a for a in parser._actions if "--backend" in a.option_strings)}
    )
    for flag, action in flags.items():
        raw, _ = sample(action)
        monkeypatch.setenv("GITMESH_" + flag[2:].upper().replace("-", "_"), raw)
    required = ["--kubeconfig", "/srv/k"] if command == "localkube" else []
    if command in ("plan", "reconcile", "run", "status"):
        monkeypatch.setenv("GITMESH_REPO", "sample-value")
    args = cli.build_parser().parse_args([command, *required])
    for flag, action in flags.items():
        assert getattr(args, action.dest) == sample(action)[1], flag
