"""Workload simulation, off by default (for the demo and benchmarks): Deployments report
their replicas ready after a delay, and pods can be started with IPs and readiness."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gitmesh.localkube.store import ApiError, Event, Obj

if TYPE_CHECKING:
    from gitmesh.localkube.server import Server


def simulate(server: Server, name: str, *, delay: float = 0.05) -> None:
    """Make Deployments on cluster `name`, those there and those to come, report their
    replicas ready after `delay`."""
    cluster = server.clusters[name]
    cluster.workload_delay = delay
    store = cluster.store
    deploy = store.kind("apps", "v1", "deployments")

    def on_commit(event: Event) -> None:
        if event.key != deploy.key or event.type == "DELETED":
            return
        meta = event.obj["metadata"]
        spec = event.obj.get("spec", {})
        if event.obj.get("status", {}).get("observedGeneration") == meta.get(
            "generation"
        ) and event.obj.get("status", {}).get("readyReplicas", 0) == spec.get("replicas", 1):
            return

        def ready() -> None:
            with contextlib.suppress(ApiError):
                current = store.get(deploy, meta["namespace"], meta["name"])
                n = current.get("spec", {}).get("replicas", 1)
                current["status"] = {
                    "observedGeneration": current["metadata"].get("generation", 1),
                    "replicas": n,
                    "readyReplicas": n,
                    "availableReplicas": n,
                    "updatedReplicas": n,
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True",
                            "reason": "MinimumReplicasAvailable",
                        }
                    ],
                }
                store.update(deploy, meta["namespace"], meta["name"], current, subresource="status")

        timer = threading.Timer(delay, ready)
        timer.daemon = True
        cluster.timers.append(timer)
        timer.start()

    store.on_commit.append(on_commit)
    for obj in store.list(deploy, "").get("items") or ():  # those made before simulation
        on_commit(Event(0, "MODIFIED", deploy.key, obj, None))


class Hosting(Protocol):
    """What pod functions need of a server: its clusters, each with a store and pod IPs
    (the emulator's Server and the real backend's KubeAPIServer both)."""

    @property
    def clusters(self) -> Mapping[str, Any]: ...


def add_pod(
    server: Hosting,
    name: str,
    namespace: str,
    pod: str,
    *,
    labels: dict[str, str],
    ready: bool = True,
    ip: str | None = None,
    ports: list[int] | None = None,
) -> Obj:
    """Create a running pod with an IP (and ready, unless `ready=False`)."""
    cluster = server.clusters[name]
    store = cluster.store
    kind = store.kind("", "v1", "pods")
    containers = [
        {
            "name": "main",
            "image": "localkube/pause:1",
            "ports": [{"containerPort": p} for p in ports or []],
        }
    ]
    store.create(
        kind,
        namespace,
        {
            "metadata": {"name": pod, "labels": labels},
            "spec": {"containers": containers, "nodeName": "localkube"},
        },
    )
    obj = store.get(kind, namespace, pod)
    obj["status"] = pod_status(ip or str(next(cluster.pod_ips)), ready)
    updated: Obj = store.update(kind, namespace, pod, obj, subresource="status")
    return updated


def set_pod(
    server: Hosting,
    name: str,
    namespace: str,
    pod: str,
    *,
    ready: bool | None = None,
    ip: str | None = None,
) -> Obj:
    """Change a pod's readiness or IP (through its status subresource)."""
    store = server.clusters[name].store
    kind = store.kind("", "v1", "pods")
    obj = store.get(kind, namespace, pod)
    status = obj.get("status", {})
    obj["status"] = pod_status(
        ip or status.get("podIP", ""), ready if ready is not None else _is_ready(obj)
    )
    updated: Obj = store.update(kind, namespace, pod, obj, subresource="status")
    return updated


def pod_status(ip: str, ready: bool) -> Obj:
    """A started pod's status, as a kubelet reports it."""
    flag = "True" if ready else "False"
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "10.0.0.1",
        "qosClass": "BestEffort",
        "conditions": [
            {"type": "Ready", "status": flag},
            {"type": "ContainersReady", "status": flag},
        ],
        "containerStatuses": [
            {
                "name": "main",
                "ready": ready,
                "restartCount": 0,
                "image": "localkube/pause:1",
                "imageID": "",
                "state": {"running": {}},
                "started": True,
            }
        ],
    }


def _is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )
