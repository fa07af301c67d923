"""`reconcile --once --workers N`: one pass over processes, as users run it. The result is
the one a single process gives: every remote applied once, one status commit, a removed
remote pruned once."""

from __future__ import annotations

from tests.integration.conftest import REMOTES, World


def central_pod_lists(world: World) -> int:
    return world.server.count(cluster="central", verb="list", resource="pods")


def test_a_pass_over_two_worker_processes(world: World) -> None:
    assert world.reconcile("--workers", "2") == 0
    assert central_pod_lists(world) == 2  # each worker reads central once
    status = world.status()
    assert all(status[f"status/{r}.yaml"]["state"] == "Available" for r in REMOTES)
    assert world.status_commits() == 1
    inventory = world.get("central", "configmaps", "istio-system", "gitmesh-inventory")
    assert sorted(inventory["data"]["remotes"].split()) == sorted(REMOTES)
    # Each remote was created by one worker: a second process would have found the
    # objects there and patched nothing, but created none twice.
    creates = world.server.count(verb="create")
    world.server.reset_counts()
    assert world.reconcile("--workers", "2") == 0
    assert world.writes() == 0 and creates > 0
    world.server.reset_counts()
    assert world.reconcile("--workers", "1") == 0
    assert central_pod_lists(world) == 1
    assert world.status_commits() == 1  # nothing changed: nothing to commit

    gone, kept = REMOTES
    world.repo.commit({f"remotes/{gone}.yaml": None}, f"{gone} leaves")
    assert world.reconcile("--workers", "2") == 0
    status = world.status()
    assert f"status/{gone}.yaml" not in status
    assert status[f"status/{kept}.yaml"]["state"] == "Available"
    inventory = world.get("central", "configmaps", "istio-system", "gitmesh-inventory")
    assert inventory["data"]["remotes"].split() == [kept]
