"""`gitmesh run --shard`: replicas share the remotes through a Lease each.

Two real `gitmesh run` processes (distinct identities) against a mesh of many remotes.
Which replica wrote what comes from the clusters' own access log: gitmesh sends
`User-Agent: gitmesh/<version> (<identity>)`, and localkube records it as kube-apiserver's
audit log does.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitmesh.cluster import Cluster
from gitmesh.localkube import Server
from gitmesh.localkube.apiserver import KubeAPIServer
from gitmesh.run import shards
from gitmesh.testing import sandbox
from tests.gitutil import ROOT, MeshRemote
from tests.integration.conftest import TOKEN, World
from tests.integration.running import Proc, wait_for

NS = "istio-system"
LEASE_DURATION = 3.0  # running.Proc's --lease-duration
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
TEMPLATE = (ROOT / "example-repo/remotes/remoteistio-sample.yaml").read_text()


@pytest.fixture
def many(tmp_path: Path, backend: str) -> Iterator[World]:
    """Central and many remotes (20 on the emulator; 6 real kube-apiservers, which cost
    a few hundred MiB each), with an access log, and a repository naming them all."""
    names = [f"shard-{i:02d}" for i in range(20 if backend == "localkube" else 6)]
    log = tmp_path / "access.jsonl"
    clusters = ["central", *names]
    server = (
        Server(clusters=clusters, token=TOKEN, access_log=log)
        if backend == "localkube"
        else KubeAPIServer(clusters=clusters, token=TOKEN, access_log=log)
    )
    seed = tmp_path / "seed"
    shutil.copytree(ROOT / "example-repo", seed)
    for old in (seed / "remotes").iterdir():
        old.unlink()
    for name in names:
        text = TEMPLATE.replace("remoteistio-sample", name)
        (seed / "remotes" / f"{name}.yaml").write_text(text)
    with server:
        mesh = sandbox.start(server, remotes=names)
        (tmp_path / "git").mkdir()
        yield World(server, mesh, MeshRemote(tmp_path / "git", seed=seed), tmp_path)


def remotes(world: World) -> list[str]:
    return sorted(p.stem for p in (world.repo.work / "remotes").glob("*.yaml"))


def statuses(world: World) -> dict[str, dict[str, Any]]:
    try:
        files = world.status()
    except AssertionError:  # no status branch yet
        return {}
    return {
        p.removeprefix("status/").removesuffix(".yaml"): v
        for p, v in files.items()
        if p.startswith("status/")
    }


def settled(world: World, expect: dict[str, str], revision: str) -> bool:
    found = statuses(world)
    return all(
        (s := found.get(name)) is not None
        and s.get("state") == "Available"
        and s.get("reconciledBy") == by
        and s.get("lastAppliedRevision") == revision
        for name, by in expect.items()
    )


def member_leases(world: World, group: str = "gitmesh") -> list[str]:
    return sorted(
        world.names(
            "central",
            "leases",
            NS,
            selector=f"{shards.GROUP_LABEL}={group}",
            group="coordination.k8s.io",
        )
    )


def writers(world: World, names: list[str]) -> dict[str, list[tuple[float, str]]]:
    """Each remote's writes in time order: (time, replica identity)."""
    world.server.count()  # the real backend's access log follows its audit log: catch up
    out: dict[str, list[tuple[float, str]]] = {n: [] for n in names}
    log = world.tmp / "access.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["cluster"] in out and entry["method"] in WRITES:
                agent = str(entry.get("agent", ""))
                identity = agent.partition("(")[2].rstrip(")")
                out[entry["cluster"]].append((entry["time"], identity))
    for writes in out.values():
        writes.sort()
    return out


def test_two_replicas_share_the_remotes_and_the_survivor_takes_all(
    many: World, procs: list[Proc]
) -> None:
    """Every remote is reconciled by exactly one replica, the one rendezvous hashing
    names; kill -9 one, and within a lease duration and a pass every remote names the
    survivor; no remote is written by both in the same window; the endpoint watch follows
    the assignment."""
    world = many
    names = remotes(world)
    args = ("--shard", "--interval", "1", "--resync", "3600")
    a = Proc(world, "replica-a", *args)
    procs.append(a)
    b = Proc(world, "replica-b", *args)
    procs.append(b)
    expect = {n: shards.owner(n, ["replica-a", "replica-b"]) or "" for n in names}
    assert set(expect.values()) == {"replica-a", "replica-b"}  # both have a share
    wait_for(lambda: settled(world, expect, world.repo.head), timeout=90, what="shared pass")
    assert member_leases(world) == ["gitmesh-replica-a", "gitmesh-replica-b"]

    # The endpoint watch follows the assignment: a central pod goes, and each remote's
    # Endpoints are updated by the replica that owns it.
    since = time.time()
    pod = world.mesh.pod_names("istio-telemetry")[0]
    store = world.store("central")
    store.delete(store.kind("", "v1", "pods"), NS, pod)

    def endpoints_gone() -> bool:
        for name in names:
            ep = world.get(name, "endpoints", NS, "istio-telemetry")
            if any(s.get("addresses") for s in ep.get("subsets") or []):
                return False
        return True

    wait_for(endpoints_gone, timeout=20, what="endpoint updates")
    for name, writes in writers(world, names).items():
        recent = {who for t, who in writes if t >= since}
        assert recent == {expect[name]}, (name, recent)

    # kill -9 one; commit a change to every remote; the survivor applies all of it.
    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    for name in names:
        world.edit_remote_spec(
            name,
            lambda d: d["spec"].update(autoInjectionNamespaces=["payments"]),
            f"Inject payments on {name}",
        )
    everyone = dict.fromkeys(names, "replica-b")
    wait_for(
        lambda: settled(world, everyone, world.repo.head),
        timeout=LEASE_DURATION + 30,
        what="the survivor takes every remote",
    )
    took = time.monotonic() - killed
    for name in names:
        labels = world.get(name, "namespaces", "", "payments")["metadata"].get("labels", {})
        assert labels.get("istio-injection") == "enabled", name

    # No double writes: wherever a remote's writer changes (a handover, when a replica
    # joins or dies), the two replicas' writes are at least half a lease duration apart;
    # the survivor wrote last everywhere, and a's remotes changed hands after a's lease
    # expired.
    for name, writes in writers(world, names).items():
        assert writes and writes[-1][1] == "replica-b", name
        for (t0, w0), (t1, w1) in itertools.pairwise(writes):
            assert w0 in ("replica-a", "replica-b"), (name, w0)
            if w0 != w1:
                assert t1 - t0 >= LEASE_DURATION / 2, (name, w0, w1, t1 - t0)
        by_a = [t for t, w in writes if w == "replica-a"]
        if expect[name] == "replica-a" and by_a:
            after = [t for t, w in writes if w == "replica-b" and t > by_a[-1]]
            assert after[0] - by_a[-1] >= LEASE_DURATION, name
    assert b.stop() == 0
    # A replica that leaves deletes its Lease; the killed one's stays until it expires.
    assert member_leases(world) == ["gitmesh-replica-a"]
    print(f"failover: every remote named the survivor {took:.1f}s after kill -9")


def members(world: World, *names: str, duration: float) -> list[shards.Membership]:
    central = world.server.kubeconfig("central")
    return [
        shards.Membership(
            Cluster("central", central),
            namespace=NS,
            group="unit",
            identity=name,
            lease_duration=duration,
            retry_period=0.05,
        )
        for name in names
    ]


def test_membership_settles_expires_and_leaves(world: World) -> None:
    """Through the API as replicas use it: a lone member lists twice before it owns
    anything; one joining next to a live member waits a lease duration, while the other
    lets go of the joiner's share at once; a member that stops renewing expires; one that
    leaves deletes its Lease."""
    duration = 2.0
    a, b = members(world, "a", "b", duration=duration)
    a.tick()
    assert not a.active() and not a.owns("r1")  # alone: list again first
    time.sleep(0.11)
    a.tick()
    assert a.active() and a.members() == ("a",)
    assert all(a.owns(r) for r in ("r1", "r2", "r3"))
    b.tick()
    a.tick()
    assert a.members() == ("a", "b")  # a lets go of b's share now...
    assert not b.active()  # ...and b takes it a lease duration later
    shared = [f"remote-{i}" for i in range(20)]
    assert not any(b.owns(r) for r in shared)
    time.sleep(duration)
    b.tick()  # each renews, and sees the other's renewal
    a.tick()
    b.tick()
    assert a.members() == b.members() == ("a", "b")
    assert all(a.owns(r) != b.owns(r) for r in shared)
    # a stops renewing: it stops counting itself live within its renew deadline, and b
    # sees it expire after the lease duration.
    time.sleep(a.renew_deadline)
    assert not a.active() and not any(a.owns(r) for r in shared)
    b.tick()
    assert b.members() == ("a", "b")  # a's record changed less than a duration ago
    time.sleep(duration + 0.05 - a.renew_deadline)
    b.tick()
    assert b.members() == ("b",) and all(b.owns(r) for r in shared)
    b.stop()
    assert member_leases(world, "unit") == ["unit-a"]


def test_a_forged_member_lease_expires_on_gitmeshs_clock(world: World) -> None:
    """Before: a Lease in the group made by anyone who can create Leases there, with
    `leaseDurationSeconds: 2147483647`, kept its share of the remotes forever; one with
    `"abc"` (the emulator stores it) killed the membership thread. After: a member lives
    by gitmesh's own lease duration; a malformed one is ignored."""
    store = world.store("central")
    kind = store.kind("coordination.k8s.io", "v1", "leases")
    forged = {"holderIdentity": "evil", "leaseDurationSeconds": 2147483647}
    spec = {**forged, "renewTime": "2026-01-01T00:00:00.000000Z"}
    labels = {shards.GROUP_LABEL: "unit"}
    store.create(kind, NS, {"metadata": {"name": "unit-evil", "labels": labels}, "spec": spec})
    if not world.real:
        bad = {**spec, "holderIdentity": "bad", "leaseDurationSeconds": "abc"}
        store.create(kind, NS, {"metadata": {"name": "unit-bad", "labels": labels}, "spec": bad})
    duration = 1.0
    (a,) = members(world, "a", duration=duration)
    for _ in range(3):  # first seen, it is given one lease duration
        a.tick()
        time.sleep(duration / 2 + 0.05)
    a.tick()
    assert a.members() == ("a",)
    assert all(a.owns(f"remote-{i}") for i in range(20))
