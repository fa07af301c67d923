"""`gitmesh run` as users run it: real processes against localkube and a real repository."""

from __future__ import annotations

import hashlib
import hmac
import signal
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from gitmesh import render
from gitmesh.cluster import Cluster
from gitmesh.run.endpointsync import EndpointSync
from gitmesh.testing import sandbox
from tests.integration.conftest import World
from tests.integration.running import Proc, wait_for

SAMPLE = "remoteistio-sample"
EU = "remote-eu"
NS = "istio-system"


def endpoint_ips(world: World, remote: str, service: str) -> list[str]:
    ep = world.get(remote, "endpoints", NS, service)
    return sorted(a["ip"] for s in ep.get("subsets", []) for a in s["addresses"])


def lease(world: World) -> dict[str, Any]:
    return world.get("central", "leases", NS, "gitmesh", group="coordination.k8s.io")


def inject_payments(world: World) -> None:
    """Commit a change to the sample remote: inject sidecars in `payments`."""
    world.edit_remote_spec(
        SAMPLE, lambda d: d["spec"].update(autoInjectionNamespaces=["payments"]), "Inject payments"
    )


def payments_injected(world: World) -> bool:
    """Whether that change reached the remote."""
    labels = world.get(SAMPLE, "namespaces", "", "payments")["metadata"].get("labels", {})
    return bool(labels.get("istio-injection") == "enabled")


def available(world: World) -> bool:
    try:
        status = world.status()
    except AssertionError:
        return False
    return all(status.get(f"status/{r}.yaml", {}).get("state") == "Available" for r in (SAMPLE, EU))


def test_commit_is_applied_by_the_next_poll(world: World, procs: list[Proc]) -> None:
    """A merged change reaches the remote at the next poll; metrics and health are served."""
    procs.append(Proc(world, "solo", "--interval", "1", "--resync", "3600"))
    wait_for(lambda: available(world), what="first pass")
    inject_payments(world)
    wait_for(
        lambda: payments_injected(world),
        what="labels",
    )
    code, body = procs[0].get("/metrics")
    assert code == 200
    for metric in (
        "gitmesh_pass_duration_seconds",
        "gitmesh_objects_total",
        "gitmesh_api_requests_total",
        "gitmesh_source_fetch_duration_seconds",
        "gitmesh_last_successful_pass_timestamp_seconds",
        "gitmesh_leader 1.0",
    ):
        assert metric in body
    assert procs[0].get("/healthz")[0] == 200
    assert wait_for(lambda: procs[0].get("/readyz")[0] == 200, what="readyz")
    assert procs[0].stop() == 0


def test_central_pod_changes_reach_every_remote_without_a_poll(
    world: World, procs: list[Proc]
) -> None:
    """Deleting a central pod, or moving its IP, updates all remotes' Endpoints at once."""
    procs.append(Proc(world, "solo", "--interval", "3600", "--resync", "3600"))
    wait_for(lambda: available(world), what="first pass")
    pod = world.mesh.pod_names("istio-telemetry")[0]
    store = world.store("central")
    store.delete(store.kind("", "v1", "pods"), NS, pod)
    started = time.monotonic()
    wait_for(
        lambda: (
            endpoint_ips(world, SAMPLE, "istio-telemetry") == []
            and endpoint_ips(world, EU, "istio-telemetry") == ["10.24.9.9"]
        ),
        timeout=5,
        what="endpoints after delete",
    )
    assert time.monotonic() - started < 5
    new = sandbox.add_istio_pod(world.server, "central", "istio-telemetry", 7)
    world.server.set_pod("central", NS, new, ip="10.24.200.200")
    wait_for(
        lambda: (
            endpoint_ips(world, SAMPLE, "istio-telemetry") == ["10.24.200.200"]
            and endpoint_ips(world, EU, "istio-telemetry") == ["10.24.200.200", "10.24.9.9"]
        ),
        timeout=5,
        what="endpoints after IP change",
    )
    assert procs[0].said("pod event detected")
    assert procs[0].stop() == 0


def test_two_replicas_one_leader_failover_and_clean_exit(world: World, procs: list[Proc]) -> None:
    """Only the Lease holder applies; kill -9 it and the other takes over; SIGTERM exits 0
    and releases the lease."""
    a = Proc(world, "replica-a", "--interval", "1", "--resync", "3600")
    procs.append(a)
    wait_for(lambda: available(world), what="first pass by a")
    b = Proc(world, "replica-b", "--interval", "1", "--resync", "3600")
    procs.append(b)
    wait_for(lambda: b.get("/healthz")[0] == 200, what="b up")
    time.sleep(2)
    assert lease(world)["spec"]["holderIdentity"] == "replica-a"
    assert not b.said("status committed") and not b.said("created")
    a.stop(signal.SIGKILL)
    inject_payments(world)
    wait_for(
        lambda: lease(world)["spec"]["holderIdentity"] == "replica-b",
        timeout=10,
        what="b takes the lease",
    )
    wait_for(
        lambda: payments_injected(world),
        what="b applies",
    )
    assert b.stop() == 0
    assert lease(world)["spec"]["holderIdentity"] == ""
    assert b.said("lease released")


def test_git_webhook_triggers_a_poll(world: World, procs: list[Proc]) -> None:
    """POST /hooks/git with a valid HMAC polls now; a bad signature is refused."""
    p = Proc(world, "hooked", "--interval", "3600", "--resync", "3600")
    procs.append(p)
    wait_for(lambda: available(world), what="first pass")
    inject_payments(world)
    body = b'{"ref": "refs/heads/main"}'

    def post(signature: str) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{p.port}/hooks/git",
            data=body,
            headers={"X-Hub-Signature-256": signature},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    assert post("sha256=" + "0" * 64) == 401
    good = "sha256=" + hmac.new(b"s3cret-hook", body, hashlib.sha256).hexdigest()
    assert post(good) == 202
    wait_for(
        lambda: payments_injected(world),
        timeout=10,
        what="webhook poll",
    )
    assert p.stop() == 0


@pytest.mark.localkube_only
class TestWatchRecovery:
    """EndpointSync against localkube faults: no update is lost."""

    @staticmethod
    def start(world: World) -> tuple[EndpointSync, list[tuple[render.Pod, ...]]]:
        seen: list[tuple[render.Pod, ...]] = []
        central = Cluster("central", world.server.kubeconfig("central"), backoff=0.01)
        sync = EndpointSync(
            central,
            NS,
            lambda pods, changed: seen.append(pods),
            debounce=0.01,
            watch_timeout=30,
            max_backoff=0.2,
        )
        sync.start()
        wait_for(sync.synced.is_set, what="synced")
        return sync, seen

    @staticmethod
    def ips(pods: tuple[render.Pod, ...]) -> set[str]:
        return {p.ip for p in pods if p.ready}

    def test_dropped_watch_connection(self, world: World) -> None:
        """A watch the server drops reconnects from its resourceVersion; changes arrive."""
        sync, seen = self.start(world)
        fault = world.server.inject(
            cluster="central", verb="watch", resource="pods", drop=True, count=3
        )
        # An outage breaks the open watch; while it reconnects (its first three attempts
        # dropped), a pod changes.
        world.server.down("central")
        time.sleep(0.2)
        world.server.up("central")
        new = sandbox.add_istio_pod(world.server, "central", "istio-pilot", 5)
        ip = world.get("central", "pods", NS, new)["status"]["podIP"]
        wait_for(lambda: seen and ip in self.ips(seen[-1]), what="update after reconnect")
        assert fault.hits == 3 and sync.relists == 1  # resumed, not relisted
        sync.stop()

    def test_410_gone_relists(self, world: World) -> None:
        """When history is compacted past the watch, it relists and loses nothing."""
        sync, seen = self.start(world)
        relists = sync.relists
        world.server.down("central")  # break the stream, so the next watch resumes
        store = world.server.store("central")
        new = sandbox.add_istio_pod(world.server, "central", "istio-pilot", 6)
        store.compact()  # the resumed watch's resourceVersion is now too old: 410
        world.server.up("central")
        ip = world.get("central", "pods", NS, new)["status"]["podIP"]
        wait_for(lambda: seen and ip in self.ips(seen[-1]), what="update after relist")
        assert sync.relists > relists
        sync.stop()


def test_endpoint_updates_race_nothing(world: World) -> None:
    """Thread-safety smoke: many pod changes in a burst end in the right Endpoints."""
    got: list[int] = []
    lock = threading.Lock()

    def count(pods: tuple[render.Pod, ...], changed: list[Any]) -> None:
        with lock:
            got.append(len(changed))

    central = Cluster("central", world.server.kubeconfig("central"))
    sync = EndpointSync(central, NS, count, debounce=0.05)
    sync.start()
    wait_for(sync.synced.is_set)
    for i in range(20):
        sandbox.add_istio_pod(world.server, "central", "istio-policy", 100 + i)
    wait_for(lambda: sum(got) >= 20, what="all changes reported")
    assert len(got) < 20  # debounced into bursts
    sync.stop()
    central.close()


def test_central_service_change_is_applied_by_the_next_poll(
    world: World, procs: list[Proc]
) -> None:
    """A change on the central cluster (a Service's ports) reaches the remotes at the next
    poll, with no commit."""
    procs.append(Proc(world, "solo", "--interval", "1", "--resync", "3600"))
    wait_for(lambda: available(world), what="first pass")
    ports = [{"name": "http", "port": 9411}, {"name": "grpc", "port": 9412}]
    world.merge_patch("central", "services", NS, "zipkin", {"spec": {"ports": ports}})
    wait_for(
        lambda: (
            [p["port"] for p in world.get(SAMPLE, "services", NS, "zipkin")["spec"]["ports"]]
            == [9411, 9412]
        ),
        timeout=15,
        what="ports follow",
    )
    assert procs[0].stop() == 0
