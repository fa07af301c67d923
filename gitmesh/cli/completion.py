"""Shell completion scripts for `gitmesh completion bash|zsh|fish`, written from the
argument parser itself, so that they list exactly the sub-commands and flags it has. Pure."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({o for a in parser._actions for o in a.option_strings if o.startswith("--")})


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash completion function (also loaded by zsh through bashcompinit)."""
    commands = _commands(parser)
    cases = "\n".join(
        f'    {name}) opts="{" ".join(_flags(sub))}" ;;' for name, sub in sorted(commands.items())
    )
    return f"""# gitmesh completion for bash: source <(gitmesh completion bash)
_gitmesh() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" opts
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=( $(compgen -W "{" ".join(sorted(commands))} --help --version" -- "$cur") )
    return
  fi
  case "${{COMP_WORDS[1]}}" in
{cases}
    *) opts="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  fi
}}
complete -o default -F _gitmesh gitmesh
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    """zsh: the bash function through bashcompinit."""
    return (
        "# gitmesh completion for zsh: source <(gitmesh completion zsh)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser)
    )


def fish(parser: argparse.ArgumentParser) -> str:
    """fish: one `complete` line per sub-command and per flag."""
    commands = _commands(parser)
    lines = [
        "# gitmesh completion for fish: gitmesh completion fish | source",
        "complete -c gitmesh -f",
    ]
    for name, sub in sorted(commands.items()):
        helptext = (sub.description or "").splitlines()[0] if sub.description else ""
        lines.append(
            f"complete -c gitmesh -n __fish_use_subcommand -a {name}"
            + (f" -d {helptext!r}" if helptext else "")
        )
        for flag in _flags(sub):
            lines.append(
                f"complete -c gitmesh -n '__fish_seen_subcommand_from {name}' -l {flag[2:]}"
            )
    return "\n".join(lines) + "\n"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell`."""
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser)
