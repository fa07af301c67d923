"""Readiness, on both backends: a remote is Available only when its Deployments rolled out
(as `kubectl rollout status` judges them: tests/unit/test_health.py), Progressing while
they roll out, Degraded past the health timeout. The rollouts are the emulator's simulated
status, or, on kube-apiserver, the real deployment and ReplicaSet controllers with the
simulated kubelet (gitmesh.localkube.kubelet); `no_rollouts` worlds start with neither."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gitmesh import cli
from tests.integration.conftest import World

SAMPLE = "remoteistio-sample"
EU = "remote-eu"


def status(world: World, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    capsys.readouterr()
    args = ["status", "--repo", world.repo.url, "--cache-dir", str(world.tmp / "c")]
    code = cli.main([*args, "--format", "json", *extra])
    rows = {r["remote"]: r for r in json.loads(capsys.readouterr().out)["remotes"]}
    return code, rows


@pytest.mark.no_rollouts
def test_a_remote_whose_deployments_have_not_rolled_out_is_not_available(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a remote whose citadel and injector Deployments showed 0/1 was Available.
    After: Progressing with kubectl's words for what it waits on, Degraded past the health
    timeout, Available once they roll out; `status --exit-code` follows."""
    # Applied, not rolled out: exit 0 (it applied), the remote Progressing.
    assert world.reconcile(wait=False) == 0
    got = world.status()[f"status/{SAMPLE}.yaml"]
    assert got["state"] == "Progressing"
    assert "Deployment istio-system/istio-citadel: " in got["message"]
    assert {c["type"]: c["reason"] for c in got["conditions"]}["Ready"] == "Progressing"
    code, rows = status(world, capsys, "--exit-code")
    assert (code, rows[SAMPLE]["state"]) == (2, "Progressing")
    assert "istio-citadel" in rows[SAMPLE]["message"]
    ready = next(c for c in rows[SAMPLE]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Progressing")
    # Passes within the timeout write nothing, and commit only when what the remote waits
    # on changes (a real controller moves from "the spec update to be observed" to
    # "0 of 1 updated replicas are available"): once it stays, nothing at all.
    writes = world.writes()
    assert world.reconcile(wait=False) == 0
    commits = world.status_commits()
    assert world.reconcile(wait=False) == 0
    assert (world.writes(), world.status_commits()) == (writes, commits)
    # --wait gives up at the health timeout: Degraded, exit 1.
    assert world.reconcile("--health-timeout", "1s") == 1
    got = world.status()[f"status/{SAMPLE}.yaml"]
    assert got["state"] == "Degraded"
    assert "at the health timeout" in got["message"]
    # The workloads start: --wait sees them roll out; Available, and status says so.
    for remote in world.mesh.remotes:
        world.server.simulate_workloads(remote)
    assert world.reconcile() == 0
    code, rows = status(world, capsys, "--exit-code")
    assert (code, rows[SAMPLE]["state"]) == (0, "Available")


@pytest.mark.no_rollouts
def test_progressing_past_the_health_timeout_is_degraded_on_the_branch(world: World) -> None:
    """Without --wait a pass does not wait; the branch says Degraded once the remote has
    been Progressing for longer than --health-timeout."""
    assert world.reconcile(wait=False) == 0
    assert world.status()[f"status/{SAMPLE}.yaml"]["state"] == "Progressing"
    assert world.reconcile("--health-timeout", "0s", wait=False) == 0
    got = world.status()[f"status/{SAMPLE}.yaml"]
    assert got["state"] == "Degraded"
    assert got["message"].startswith("Progressing for longer than the health timeout (0s)")
