"""Prune: everything gitmesh made for a remote whose spec left the repository, and the
namespaces it created when nothing foreign is left in them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitmesh import errors, logs, plan, resources
from gitmesh.cluster import Cluster
from gitmesh.credentials.remote import Connect, connected, credentials, failed, set_multicluster
from gitmesh.reconcile import primary
from gitmesh.reconcile.apply import Applier, records
from gitmesh.reconcile.observe import Observed, observe_remote
from gitmesh.settings import Settings
from gitmesh.status.reports import RemoteReport
from gitmesh.status.results import RemoteResult


def prune_remote(
    name: str,
    central: Cluster,
    connect: Connect,
    settings: Settings,
    namespace: str,
    *,
    mesh_namespace: str,
) -> RemoteResult:
    """Remove everything gitmesh made for a remote whose spec left the repository: first
    the primary's remote Secret (an IstiodRemote's; istiod stops using the remote), then
    what is on the remote, and the `istio/multiCluster` label from its kubeconfig Secret.
    A remote whose credentials are gone is reported once and dropped: nothing can be pruned
    there, and retrying forever would fail every pass."""
    log = logs.get()
    config: Mapping[str, Any] | None = None
    items: list[plan.Item] = []
    try:
        removed = primary.remove_remote_secret(
            name, central, mesh_namespace, plan_only=settings.plan_only, dry_run=settings.dry_run
        )
        if removed is not None:
            items.append(removed)
            if not settings.plan_only:
                log.info(
                    "pruned %s", removed.ref, extra={"remote": name, "component": removed.component}
                )
        try:
            config, secret = credentials(name, central, namespace, settings)
        except errors.MissingCredentials as e:
            message = (
                f"spec removed, but its credentials are gone ({e}); objects gitmesh made on "
                "the remote were left in place"
            )
            log.warning("cannot prune a removed remote", extra={"remote": name, "error": message})
            return RemoteResult(RemoteReport(name, "Removed", message=message))
        with connected(connect, name, config, settings, central) as remote:
            items += _prune_on(remote, name, settings, mesh_namespace)
        if secret is not None and not (settings.plan_only or settings.dry_run):
            set_multicluster(central, secret, False)
    except Exception as e:  # one remote's failure is that remote's alone
        message = failed(name, e, config)
        return RemoteResult(
            RemoteReport(
                name,
                "ReconcileFailed",
                message=(
                    f"spec removed; pruning is pending: {message} (retried every pass; "
                    f"`gitmesh reconcile --once --forget {name}` lets go without pruning)"
                ),
                error=message,
            )
        )
    return RemoteResult(
        RemoteReport(
            name,
            "Removed",
            message="spec removed from the repository; everything gitmesh made is pruned",
        ),
        tuple(items),
    )


def _prune_on(
    remote: Cluster, name: str, settings: Settings, mesh_namespace: str
) -> list[plan.Item]:
    """Plan the removals on the remote and (unless planning) apply them; the plan."""
    # The spec is gone: its namespace is the mesh's, or one gitmesh labelled for it.
    labelled = [
        ns["metadata"]["name"]
        for ns in remote.list(resources.NAMESPACE, label_selector=resources.owner_selector(name))[0]
    ]
    observed = observe_remote(remote, name, sorted({mesh_namespace, *labelled}))
    applier = Applier(remote, name, settings, observed.kinds)
    items = _removals(remote, name, observed)
    for item in [] if settings.plan_only else items:
        applier.apply(item, None)
        logs.get().info("pruned %s", item.ref, extra={"remote": name, "component": item.component})
    return items


def _removals(remote: Cluster, name: str, observed: Observed) -> list[plan.Item]:
    """Everything gitmesh made on the remote, in reverse apply order: each component's
    objects, strays, the injection labels, the labels it set on namespaces it does not
    own, and the namespaces it created when nothing foreign is left in them."""
    items: list[plan.Item] = []
    for comp_name in reversed(resources.COMPONENTS):
        if comp_name == "injection":
            items += plan.injection([], observed.namespaces)[0]
        else:
            items += plan.component(comp_name, [], observed.by_component.get(comp_name, []))
    stray = [
        o
        for c, objs in observed.by_component.items()
        if c not in resources.COMPONENTS
        for o in objs
    ]
    items += plan.component("stray", [], stray)
    items += [
        plan.namespace_labels("common", ns, {})
        for ns in observed.namespaces
        if records(ns) and not resources.owned_by(ns, name)
    ]
    return items + _prune_namespaces(remote, name, observed)


# What Kubernetes itself puts in every namespace, and records about objects (events).
_SYSTEM_OBJECTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
_RECORDS = {"Event"}


def _prune_namespaces(remote: Cluster, name: str, observed: Observed) -> list[plan.Item]:
    """Namespaces gitmesh created go too, only when nothing but gitmesh's objects is in
    them: every namespaced kind the server serves is listed (discovery-wide), and an
    object counts as gitmesh's when it carries gitmesh's labels, is what Kubernetes puts in
    every namespace, or is owned (ownerReferences, transitively) by one of gitmesh's
    objects — a Deployment's ReplicaSets and Pods, a Service's EndpointSlices."""
    out: list[plan.Item] = []
    owned_namespaces = [ns for ns in observed.namespaces if resources.owned_by(ns, name)]
    if not owned_namespaces:
        return out
    kinds = remote.namespaced_resources()
    for ns in owned_namespaces:
        ns_name = ns["metadata"]["name"]
        try:
            objects = [o for res in kinds for o in remote.list(res, namespace=ns_name)[0]]
        except errors.Forbidden as e:
            # A kind gitmesh may not list there (one added after `gitmesh join`): it
            # cannot tell the namespace empty, so it stays.
            logs.get().info(
                "keeping namespace %s: not every kind in it can be listed",
                ns_name,
                extra={"remote": name, "error": str(e)},
            )
            continue
        ours = {
            o["metadata"].get("uid")
            for o in objects
            if resources.owned_by(o, name)
            or (o["kind"], o["metadata"]["name"]) in _SYSTEM_OBJECTS
            or o["kind"] in _RECORDS
        }
        grew = True
        while grew:  # owned by something of ours counts as ours
            grew = False
            for o in objects:
                uid = o["metadata"].get("uid")
                refs = o["metadata"].get("ownerReferences") or []
                if uid not in ours and refs and all(r.get("uid") in ours for r in refs):
                    ours.add(uid)
                    grew = True
        foreign = [o for o in objects if o["metadata"].get("uid") not in ours]
        if foreign:
            logs.get().info(
                "keeping namespace %s: it holds objects gitmesh does not own",
                ns_name,
                extra={
                    "remote": name,
                    "foreign": [f"{o['kind']}/{o['metadata']['name']}" for o in foreign[:5]],
                },
            )
            continue
        out.append(
            plan.Item(
                "delete",
                "common",
                plan.Ref.of(ns),
                resource_version=ns["metadata"].get("resourceVersion"),
            )
        )
    return out
