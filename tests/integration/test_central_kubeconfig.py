"""The central kubeconfig found as kubectl finds it: the flag, then $KUBECONFIG, then
~/.kube/config; a missing file is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitmesh import cli
from tests.integration.conftest import World


def _args(world: World) -> list[str]:
    return ["--repo", world.repo.url, "--cache-dir", str(world.tmp / "cache")]


def test_kubeconfig_from_the_environment_as_kubectl(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --central-kubeconfig, $KUBECONFIG (its first existing file) is used, then
    ~/.kube/config."""
    kubeconfig = world.server.write_kubeconfig(tmp_path / "kc", "central")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{kubeconfig}")
    assert cli.main(["plan", *_args(world)]) == 0
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    world.server.write_kubeconfig(tmp_path / ".kube" / "config", "central")
    assert cli.main(["plan", *_args(world)]) == 0


def test_no_kubeconfig_is_one_line_naming_what_to_do(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing --central-kubeconfig file, or none found anywhere: exit 1, one line."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    missing = tmp_path / "nope.kubeconfig"
    assert cli.main(["plan", *_args(world), "--central-kubeconfig", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"gitmesh plan: --central-kubeconfig {missing}: no such file"
    )
    assert cli.main(["plan", *_args(world)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gitmesh plan: no central kubeconfig: pass --central-kubeconfig")
    assert "\n" not in err
    # KUBECONFIG set, naming files that are not there: said so (before: "set KUBECONFIG").
    monkeypatch.setenv("KUBECONFIG", "nope.kc")
    assert cli.main(["plan", *_args(world)]) == 1
    assert capsys.readouterr().err.strip() == (
        "gitmesh plan: no central kubeconfig: KUBECONFIG names nope.kc, and no such file "
        "exists; fix KUBECONFIG or pass --central-kubeconfig"
    )


def test_a_context_the_kubeconfig_lacks_is_said_as_kubectl_says_it(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `ConfigException: Invalid kube-config file. Expected object with name nope in
    …/contexts list`. kubectl: `context "nope" does not exist`."""
    kubeconfig = world.server.write_kubeconfig(tmp_path / "kc", "central")
    args = [*_args(world), "--central-kubeconfig", str(kubeconfig), "--central-context", "nope"]
    assert cli.main(["plan", *args]) == 1
    assert capsys.readouterr().err.strip() == (
        f'gitmesh plan: context "nope" does not exist in the kubeconfig of central '
        f"({kubeconfig}); it has: central"
    )
