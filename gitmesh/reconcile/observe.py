"""Observe: what the central cluster offers the remotes (Istio pods and services, the CA
secret, the istiod primary) and what gitmesh manages on a remote (one LIST per managed
kind, all at once)."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass

from gitmesh import errors, render, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials import ca
from gitmesh.reconcile import primary
from gitmesh.resources import Obj, Resource


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def observe_central(
    central: Cluster, mesh: specs.Mesh, remotes: Iterable[specs.Remote]
) -> render.Central:
    """The central Istio pods and services, the CA secret when a RemoteIstio needs it, and
    the istiod primary's gateway address and root certificate when an IstiodRemote does."""
    remotes = list(remotes)
    ns = mesh.namespace
    pods: tuple[render.Pod, ...] = ()
    pods_error = None
    try:
        listed, _ = central.list(resources.POD, namespace=ns)
        pods = tuple(
            render.Pod(
                p["metadata"]["name"],
                (p.get("status") or {}).get("podIP", ""),
                p["metadata"].get("labels") or {},
                _ready(p),
            )
            for p in listed
        )
    except errors.ClusterError as e:
        pods_error = str(e)
    services: dict[str, render.CentralService] = {}
    try:
        for svc in central.list(resources.SERVICE, namespace=ns)[0]:
            spec = svc.get("spec") or {}
            services[svc["metadata"]["name"]] = render.CentralService(
                svc["metadata"]["name"], spec.get("selector") or {}, tuple(spec.get("ports") or ())
            )
    except errors.ClusterError as e:
        pods_error = pods_error or f"cannot read the central services: {e}"
    ca_data, ca_error = None, None
    if any(render.needs(r).central_ca for r in remotes):
        ca_data, ca_error = _central_ca(central, mesh)
    seen = primary.Observed()
    if any(render.needs(r).primary for r in remotes):
        seen = primary.observe(central, mesh)
    return render.Central(
        pods=pods,
        services=services,
        ca_data=ca_data,
        pods_error=pods_error,
        ca_error=ca_error,
        gateway_address=seen.address,
        root_cert=seen.root,
        primary_error=seen.error,
        primary_warnings=seen.warnings,
    )


def _central_ca(central: Cluster, mesh: specs.Mesh) -> tuple[dict[str, str] | None, str | None]:
    """The central CA Secret's data (None when there is none), or why it cannot be used."""
    ns = mesh.namespace
    where = f"the central CA secret {ns}/{mesh.central.ca_secret_name}"
    try:
        secret = central.get(resources.SECRET, ns, mesh.central.ca_secret_name)
        ca_data = dict(secret.get("data") or {})
        ca.Signer.from_secret(ca_data).check_time(datetime.datetime.now(datetime.UTC))
    except errors.NotFound:
        return None, None
    except errors.ClusterError as e:
        return None, f"cannot read {where}: {e}"
    except ca.CAError as e:
        return ca_data, f"{where} {e}"
    return ca_data, None


@dataclass(slots=True)
class Observed:
    """What gitmesh manages on one remote, by component, with its namespaces."""

    by_component: dict[str, list[Obj]]
    namespaces: list[Obj]
    kinds: Mapping[str, Resource]  # where each kind lives on this remote


def _served_webhook(remote: Cluster) -> Resource:
    """The MutatingWebhookConfiguration resource of a remote that does not serve v1 (older
    than Kubernetes 1.16), from its discovery."""
    group = resources.WEBHOOK.api_version.split("/")[0]
    served = remote.served_versions(group)
    if "v1beta1" in served:
        return resources.WEBHOOK_V1BETA1
    raise errors.ClusterError(
        f"{remote.name} serves {group} at {', '.join(served) or 'no version'}; gitmesh "
        "writes the sidecar injector's webhook at v1 or v1beta1"
    )


def served(remote: Cluster, observed: Observed) -> render.Served:
    """Whether the remote still serves the v1beta1 webhooks the 1.0/1.1 injector patches
    (a discovery request, kept by the connection for a while)."""
    if observed.kinds[resources.WEBHOOK.kind] == resources.WEBHOOK_V1BETA1:
        return render.Served()
    if "v1beta1" in remote.served_versions(resources.WEBHOOK.api_version.split("/")[0]):
        return render.Served()
    return render.Served(v1beta1_webhooks=False)


def observe_remote(
    remote: Cluster, name: str, where: Sequence[str], reads: Executor | None = None
) -> Observed:
    """Everything gitmesh manages on the remote: one LIST per kind (the namespaced kinds
    in the namespaces `where` only: gitmesh's rights there are a Role's, credentials.join),
    plus namespaces; all at once when given an executor (a far remote costs one round
    trip, not twelve)."""
    by_component: dict[str, list[Obj]] = {}
    selector = resources.owner_selector(name)
    kinds = dict(resources.BY_KIND)

    def managed(res: Resource) -> list[Obj]:
        if res.namespaced:
            return [
                o
                for ns in where
                for o in remote.list(res, namespace=ns, label_selector=selector)[0]
            ]
        try:
            return remote.list(res, label_selector=selector)[0]
        except errors.NotFound:
            if res != resources.WEBHOOK:
                raise
            older = kinds[res.kind] = _served_webhook(remote)
            return remote.list(older, label_selector=selector)[0]

    def every_namespace() -> list[Obj]:
        return remote.list(resources.NAMESPACE)[0]

    if reads is None:
        listed = [managed(res) for res in resources.MANAGED]
        namespaces = every_namespace()
    else:
        futures = [reads.submit(managed, res) for res in resources.MANAGED]
        pending = reads.submit(every_namespace)
        # Every read ends (each has the remote's deadline) before the first error is raised.
        left = None if remote.deadline is None else remote.deadline - time.monotonic() + 30.0
        if wait([*futures, pending], timeout=left).not_done:
            raise errors.Unavailable(f"timed out: {name}'s reads did not end with its deadline")
        listed = [f.result() for f in futures]
        namespaces = pending.result()
    for res, objs in zip(resources.MANAGED, listed, strict=True):
        for obj in objs:
            labels = obj["metadata"].get("labels") or {}
            if res.kind == "EndpointSlice" and labels.get(resources.SLICE_MANAGED_BY) != "gitmesh":
                continue  # a controller's mirror of gitmesh's Endpoints, carrying its labels
            by_component.setdefault(labels.get(resources.COMPONENT, ""), []).append(obj)
    return Observed(by_component, namespaces, kinds)


def digest(state: render.Central) -> str:
    """A digest of the central inputs a pass reads (Services, the CA, the primary): when
    it moves, every remote is reconciled."""
    data = json.dumps(
        {
            "services": {
                n: [dict(s.selector), list(s.ports)] for n, s in sorted(state.services.items())
            },
            "ca": dict(state.ca_data or {}),
            "primary": [state.gateway_address, state.root_cert],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(data.encode()).hexdigest()
