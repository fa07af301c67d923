"""Shell completion scripts for `gitmesh completion bash|zsh|fish`, written from the
argument parser itself, so that they list exactly the sub-commands and flags it has, and
the values a flag or argument takes (its choices; remote names from `remotes/*.yaml` in
the current directory); fish shows each flag's help as its description. Pure."""

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


def _values(action: argparse.Action) -> list[str] | None:
    """What an argument takes, when that is a fixed set (argparse choices, or the set a
    `one_of` type checks: gitmesh.cli.flags)."""
    choices = action.choices or getattr(action.type, "choices", None)
    return [str(c) for c in choices] if choices else None


_REMOTES = "$(ls remotes 2>/dev/null | sed -n 's/\\.yaml$//p')"


def _positional(sub: argparse.ArgumentParser) -> str | None:
    """The words the command's first positional argument takes, as a compgen word list."""
    for action in sub._actions:
        if action.option_strings or action.dest == "help":
            continue
        if values := _values(action):
            return " ".join(values)
        return _REMOTES if action.dest in ("name", "remotes") else None
    return None


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash completion function (also loaded by zsh through bashcompinit)."""
    commands = _commands(parser)
    cases = "\n".join(
        f'    {name}) opts="{" ".join(_flags(sub))}" ;;' for name, sub in sorted(commands.items())
    )
    values = "\n".join(
        f"    {name}:{'|'.join(f'{name}:{o}' for o in a.option_strings)[len(name) + 1 :]}) "
        f'COMPREPLY=( $(compgen -W "{" ".join(v)}" -- "$cur") ); return ;;'
        for name, sub in sorted(commands.items())
        for a in sub._actions
        if a.option_strings and (v := _values(a))
    )
    positional = "\n".join(
        f'    {name}) COMPREPLY=( $(compgen -W "{words}" -- "$cur") ) ;;'
        for name, sub in sorted(commands.items())
        if (words := _positional(sub))
    )
    return f"""# gitmesh completion for bash: source <(gitmesh completion bash)
_gitmesh() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" opts
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=( $(compgen -W "{" ".join(sorted(commands))} --help --version" -- "$cur") )
    return
  fi
  case "${{COMP_WORDS[1]}}:$prev" in
{values}
  esac
  case "${{COMP_WORDS[1]}}" in
{cases}
    *) opts="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  elif [[ "$prev" != -* || $COMP_CWORD -eq 2 ]]; then
    case "${{COMP_WORDS[1]}}" in
{positional}
    esac
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
            + (f" -d {_fish_quote(helptext)}" if helptext else "")
        )
        seen = f"complete -c gitmesh -n '__fish_seen_subcommand_from {name}'"
        for a in sub._actions:
            longs = [o[2:] for o in a.option_strings if o.startswith("--")]
            if not longs:
                continue
            shorts = "".join(f" -s {o[1:]}" for o in a.option_strings if len(o) == 2)
            values = _values(a)
            takes = f" -xa {_fish_quote(' '.join(values))}" if values else ""
            about = " ".join((a.help or "").split()).replace("%%", "%")[:80]
            described = f" -d {_fish_quote(about)}" if about and about != "==SUPPRESS==" else ""
            lines += [f"{seen} -l {long}{shorts}{takes}{described}" for long in longs[:1]]
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    """`text` as one fish word: single-quoted (fish expands nothing inside but \\ and \')."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell`."""
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser)
