"""A simulated kubelet for the real backend's `simulate_workloads`: one Node, and each pod
of the cluster bound to it, given an IP and marked Running and Ready through the status
subresource, as a kubelet reports a started pod; a pod being deleted is removed at once
(there are no containers to stop). With it, kube-controller-manager's deployment and
ReplicaSet controllers roll Deployments out, so readiness is what the real controllers
compute.

A Ready pod backs its Services, and a kube-apiserver calling a webhook by Service dials
its ClusterIP (or, with aggregator routing, the pods' addresses): addresses that route off
the machine. So it runs only inside a network namespace of the process's own
(`gitmesh.localkube.netns`, or `unshare -n`), where they fail at once as unreachable.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from gitmesh.errors import GitmeshError
from gitmesh.localkube import netns
from gitmesh.localkube.apistore import ApiStore
from gitmesh.localkube.store import ApiError
from gitmesh.localkube.workloads import pod_status

NODE = "localkube"
INTERVAL = 0.2  # seconds between looks at the cluster's pods


def start(
    store: ApiStore, next_ip: Callable[[], str], stop: threading.Event, *, delay: float = 0.05
) -> threading.Thread:
    """Run the kubelet of one cluster in a thread until `stop` is set."""
    if not (netns.isolated() or netns.confined()):
        raise GitmeshError(
            "the simulated kubelet runs only inside a network namespace of its own (a "
            "Ready pod's Service would route a webhook call off the machine): run under "
            f"`unshare -n` as root ({netns.why_not() or 'not isolated'})"
        )
    with contextlib.suppress(ApiError):  # 409: there already
        store.request("POST", "/api/v1/nodes", {"metadata": {"name": NODE}})
    thread = threading.Thread(
        target=_run, args=(store, next_ip, stop, max(delay, INTERVAL)),
        name=f"kubelet-{store.url}", daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def _run(store: ApiStore, next_ip: Callable[[], str], stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            pods = store.request("GET", "/api/v1/pods")["items"]
        except (ApiError, OSError):
            continue  # the server is stopping, or busy: the next look
        for pod in pods:
            with contextlib.suppress(ApiError, OSError):  # 404/409: it moved on; next look
                _tend(store, pod, next_ip)


def _tend(store: ApiStore, pod: dict[str, Any], next_ip: Callable[[], str]) -> None:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    if meta.get("deletionTimestamp"):
        store.request("DELETE", path, {"gracePeriodSeconds": 0})
    elif not spec.get("nodeName"):
        store.request(
            "POST",
            f"{path}/binding",
            {"metadata": {"name": meta["name"]}, "target": {"kind": "Node", "name": NODE}},
        )
    elif spec["nodeName"] == NODE and (pod.get("status") or {}).get("phase") != "Running":
        status = pod_status(next_ip(), ready=True)
        # The class the apiserver gave the pod cannot change; a status per container.
        status["qosClass"] = pod["status"].get("qosClass", status["qosClass"])
        first = status["containerStatuses"][0]
        status["containerStatuses"] = [
            {**first, "name": c["name"], "image": c.get("image", "")}
            for c in spec.get("containers") or ()
        ]
        pod["status"] = status
        store.request("PUT", f"{path}/status", pod)
