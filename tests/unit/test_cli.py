"""Command-line conventions: --version, durations, usage errors exit 2 in one line (flags
and GITMESH_* variables alike)."""

from __future__ import annotations

import argparse
import io
import os
import pty
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitmesh import cli
from gitmesh.settings import DEFAULT_CONCURRENCY, Settings

RUN = ["run", "--repo", "/nowhere"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`gitmesh --version` prints the installed version and exits 0."""
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("gitmesh ")


@pytest.mark.parametrize(
    ("flags", "field", "seconds"),
    [
        (["--interval", "5s"], "interval", 5.0),
        (["--interval", "2m"], "interval", 120.0),
        (["--interval", "90"], "interval", 90.0),
        (["--resync", "1h"], "resync", 3600.0),
        (["--lease-duration", "15s"], "lease_duration", 15.0),
        (["--request-timeout", "500ms"], "request_timeout", 0.5),
    ],
)
def test_durations_as_kubectl_writes_them(flags: list[str], field: str, seconds: float) -> None:
    """Times take 30s/5m/1h30m or seconds."""
    args = cli.build_parser().parse_args([*RUN, *flags])
    assert getattr(args, field) == seconds


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        (["--interval", "0"], {}, "argument --interval: '0' is too short: at least 1s"),
        (["--interval", "abc"], {}, "argument --interval: 'abc' is not a duration"),
        (["--resync", "1s"], {}, "argument --resync: '1s' is too short: at least 10s"),
        (["--concurrency", "0"], {}, "argument --concurrency: '0': must be at least 1"),
        # A bad value from a variable is named by the variable too (before: the flag alone,
        # which the user never typed).
        (
            [],
            {"GITMESH_CONCURRENCY": "abc"},
            "argument --concurrency: from $GITMESH_CONCURRENCY: 'abc' is not a whole",
        ),
        (
            [],
            {"GITMESH_INTERVAL": "soon"},
            "argument --interval: from $GITMESH_INTERVAL: 'soon' is not a duration",
        ),
        ([], {"GITMESH_LISTEN": "bad"}, "--listen: from $GITMESH_LISTEN: 'bad' is not HOST:PORT"),
        ([], {"GITMESH_LOG_FORMAT": "yaml"}, "from $GITMESH_LOG_FORMAT: 'yaml' is not one of"),
        ([], {"GITMESH_LOG_LEVEL": "loud"}, "from $GITMESH_LOG_LEVEL: 'loud' is not one of"),
        ([], {"GITMESH_REQUEST_TIMEOUT": "abc"}, "from $GITMESH_REQUEST_TIMEOUT: 'abc' is not"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    flags: list[str],
    env: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad flag or GITMESH_* value is a usage error: exit 2, a line naming the flag."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as e:
        cli.main([*RUN, *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("gitmesh run: error: ")


def test_schema_needs_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gitmesh schema` writes nowhere unasked; a file as --out is a one-line error."""
    with pytest.raises(SystemExit) as e:
        cli.main(["schema"])
    assert e.value.code == 2
    capsys.readouterr()
    target = tmp_path / "README.md"
    target.write_text("x")
    assert cli.main(["schema", "--out", str(target)]) == 1
    assert capsys.readouterr().err == f"gitmesh schema: --out {target}: File exists\n"
    assert cli.main(["schema", "--out", str(tmp_path / "schemas")]) == 0
    assert (tmp_path / "schemas" / "istiodremote.schema.json").is_file()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_knows_the_commands_and_their_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    probe = (
        "COMP_WORDS=(gitmesh rec); COMP_CWORD=1; _gitmesh; echo ${COMPREPLY[@]};"
        "COMP_WORDS=(gitmesh status --exit); COMP_CWORD=2; _gitmesh; echo ${COMPREPLY[@]}"
    )
    out = subprocess.run(
        ["bash", "-c", script + probe], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["reconcile", "--exit-code"]
    for shell in ("zsh", "fish"):
        assert cli.main(["completion", shell]) == 0
        assert "reconcile" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("gitmesh status -o ", "text wide json yaml"),
        ("gitmesh plan --format m", "markdown"),
        ("gitmesh run --log-level w", "warning"),
        ("gitmesh completion ", "bash zsh fish"),
        ("gitmesh status ", "remote-eu remoteistio-sample"),  # remotes/*.yaml here
        ("gitmesh join remote-e", "remote-eu"),
    ],
)
def test_completion_offers_values_not_only_flags(
    words: str, offered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: completion offered flags only (`plan -o <TAB>`: nothing). Now the values a
    flag or argument takes, and remote names from remotes/ in the current directory."""
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    typed = shlex.split(words) + ([""] if words.endswith(" ") else [])
    probe = f"COMP_WORDS=({' '.join(shlex.quote(w) for w in typed)}); "
    probe += f"COMP_CWORD={len(typed) - 1}; _gitmesh; echo ${{COMPREPLY[@]}}"
    example = Path(__file__).resolve().parents[2] / "example-repo"
    out = subprocess.run(
        ["bash", "-c", script + probe], capture_output=True, text=True, check=True, cwd=example
    ).stdout
    assert out.split() == offered.split()


def test_fish_completion_describes_flags_and_their_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["completion", "fish"]) == 0
    lines = capsys.readouterr().out.splitlines()
    output = next(x for x in lines if "from status'" in x and " -l output" in x)
    assert " -s o -xa 'text wide json yaml' -d 'output format (default: text)'" in output


def test_no_color_turns_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    assert cli.color()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli.color()


def test_the_distribution_name_is_the_one_the_readme_installs() -> None:
    """ "gitmesh" on the package index is an unrelated project, and gitmesh-istio is on no
    index: pyproject, --version and the README's CI snippet use gitmesh-istio, which the
    snippet installs from gitmesh's source (before: `pip install gitmesh-istio`)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert f'name = "{cli.DISTRIBUTION}"' in pyproject
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"pip install ./gitmesh-src   # the distribution {cli.DISTRIBUTION}" in readme
    assert f"pip install {cli.DISTRIBUTION}" not in readme
    assert "pip install gitmesh\n" not in readme


def test_logs_are_text_on_a_terminal_and_json_otherwise() -> None:
    """The default --log-format follows stderr: a terminal gets text."""
    code = (
        "from gitmesh import cli; "
        "print(cli.build_parser().parse_args(['plan', '--repo', 'x']).log_format)"
    )
    env = {k: v for k, v in os.environ.items() if k != "GITMESH_LOG_FORMAT"}
    piped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert piped.stdout.strip() == "json"
    leader, follower = pty.openpty()
    try:
        on_tty = subprocess.run(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            env=env,
            check=True,
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert on_tty.stdout.strip() == "text"


def test_the_flag_default_concurrency_is_the_library_default() -> None:
    """The flag's default is the pass's (gitmesh.settings, which the parser imports
    without the Kubernetes client)."""

    args = cli.build_parser().parse_args(["reconcile", "--once", "--repo", "x"])
    assert args.concurrency == DEFAULT_CONCURRENCY == Settings().concurrency


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--repo", "/nowhere", "--kubeconf", "central.kubeconfig"],
        ["reconcile", "--repo", "/nowhere", "--kubeconf", "central.kubeconfig"],
        ["status", "--repo", "/nowhere", "--out", "json"],
        ["plan", "--repo", "/nowhere", "--central-kube", "central.kubeconfig"],
    ],
)
def test_a_flag_is_never_guessed_from_a_prefix(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: argparse took `--kubeconfig` for `--kubeconfig-dir` (so `reconcile
    --kubeconfig FILE` applied to whatever $KUBECONFIG named), `--out` for `--output`.
    After: an unknown flag is a usage error naming it, as kubectl's `unknown flag`."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert f"unrecognized arguments: {argv[3]}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plan", "reconcile", "run", "join"])
def test_kubeconfig_and_context_mean_the_central_cluster_everywhere(command: str) -> None:
    """Before: `--context` was unknown on plan, reconcile and run but meant the remote's
    context on join (and `--kubeconfig` the remote's admin kubeconfig). Now both mean what
    kubectl means, the cluster gitmesh talks to: central; join names the remote's
    `--remote-kubeconfig` and `--remote-context`."""
    extra = ["x", "--remote-kubeconfig", "admin.kc"] if command == "join" else ["--repo", "r"]
    args = cli.build_parser().parse_args(
        [command, *extra, "--kubeconfig", "central.kc", "--context", "hub"]
    )
    assert (args.central_kubeconfig, args.central_context) == (Path("central.kc"), "hub")


def test_join_without_the_remote_kubeconfig_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["join", "remote-eu", "--kubeconfig", "admin.kc"])
    assert e.value.code == 2
    assert "the following arguments are required: --remote-kubeconfig" in capsys.readouterr().err


def test_every_command_has_examples_that_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: no Examples in any --help. Now each command's help ends with examples, as
    kubectl's does, and every one of them is a command line the parser takes."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        help_text = command.format_help()
        assert "\nexamples:\n  gitmesh " in help_text or "\n  source <(gitmesh" in help_text
        for line in help_text.split("\nexamples:\n", 1)[1].splitlines():
            text = line.split("  #", 1)[0].strip()
            text = text.removeprefix("source <(").removesuffix(")").split(" > ", 1)[0]
            words = shlex.split(text)
            while "=" in words[0]:  # VAR=value gitmesh ...
                variable, _, value = words.pop(0).partition("=")
                monkeypatch.setenv(variable, value)
            assert words[:2] == ["gitmesh", name], line
            cli.build_parser().parse_args(words[1:])  # SystemExit(2) on a bad example
