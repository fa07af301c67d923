"""The audit trail a platform team reads: the status files, the status commits and
`gitmesh status`, through the CLI as a user types it."""

from __future__ import annotations

import json

import pytest
import yaml

from gitmesh import cli
from tests.gitutil import git
from tests.integration.conftest import World

SAMPLE = "remoteistio-sample"
EU = "remote-eu"
NS = "istio-system"


def status(world: World, *extra: str) -> int:
    return cli.main(
        ["status", "--repo", world.repo.url, "--cache-dir", str(world.tmp / "cache"), *extra]
    )


def test_applied_and_attempted_revisions_and_one_message(world: World) -> None:
    """Like Flux: lastAppliedRevision stays at the last revision a remote was Available at
    while lastAttemptedRevision moves on; the failure is said once; the components' history
    survives a pass that failed before reaching them."""
    assert world.reconcile() == 0
    first = world.repo.head
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)  # its credentials go
    world.repo.commit({"README.md": "x\n"}, "an unrelated commit")
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["lastAppliedRevision"] == first
    assert eu["lastAttemptedRevision"] == world.repo.head != first
    assert "lastError" not in eu and "sourceRevision" not in eu
    text = yaml.safe_dump(eu)
    assert text.count("no kubeconfig for remote") == 1
    assert eu["components"]["citadel"]["lastChange"]["created"] > 0  # history kept


def test_the_commit_counts_what_a_prune_deleted(world: World) -> None:
    assert world.reconcile() == 0
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves")
    assert world.reconcile() == 0
    message = git(world.repo.bare, "log", "-1", "--format=%B", "gitmesh/status")
    deleted = int(message.split(" deleted")[0].rsplit(", ", 1)[1])
    assert deleted >= 15, message
    assert f"- {EU}: removed ({deleted} deleted)" in message


def test_status_says_out_of_sync_and_exits_2_when_asked(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.reconcile() == 0
    capsys.readouterr()
    assert status(world, "--exit-code") == 0
    world.edit_remote_spec(
        EU, lambda d: d["spec"]["citadel"].update(replicaCount=2), "Two citadels"
    )
    assert status(world, "--exit-code") == 2  # main moved on; nothing applied it yet
    out = capsys.readouterr().out
    assert out.count("OutOfSync") == 2 and f"source revision {world.repo.head[:12]}" in out
    assert status(world, "-o", "yaml") == 0
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["revision"] == world.repo.head
    assert all(r["outOfSync"] for r in report["remotes"])
    assert world.reconcile() == 0
    assert status(world, "--exit-code", "-o", "json") == 0
    assert not any(r["outOfSync"] for r in json.loads(capsys.readouterr().out)["remotes"])


def test_status_shows_why_a_remote_failed(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    assert world.reconcile() == 1
    capsys.readouterr()
    assert status(world, "--exit-code") == 2
    out = capsys.readouterr().out
    assert f"{EU}: no kubeconfig for remote 'remote-eu'" in out


def test_an_unknown_status_branch_is_an_error(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(world) == 1  # no pass has committed yet
    err = capsys.readouterr().err
    assert "the status branch 'gitmesh/status' does not exist" in err
    assert world.reconcile() == 0
    assert status(world, "--status-branch", "typo/status") == 1
