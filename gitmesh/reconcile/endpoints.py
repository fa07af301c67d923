"""The hot path of `gitmesh run`: only the Endpoints of the remotes whose central pods
changed, from the watch cache."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from gitmesh import logs, plan, render, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials.remote import Connect, connected, credentials, failed
from gitmesh.reconcile.apply import Applier
from gitmesh.reconcile.passes import Guard, each_remote, no_guard
from gitmesh.settings import Settings
from gitmesh.specs import meshrepo
from gitmesh.status.reports import ComponentReport, RemoteReport
from gitmesh.status.results import RemoteResult


def affected_remotes(
    repo: meshrepo.Repo, state: render.Central, changed: Iterable[Mapping[str, str]]
) -> list[str]:
    """The remotes with an enabled service whose pods are among the changed label sets."""
    label_sets = list(changed)
    return [
        name
        for name, spec in sorted(repo.remotes.items())
        if render.follows(spec, state, label_sets)
    ]


def endpoints_only(
    repo: meshrepo.Repo,
    central: Cluster,
    *,
    connect: Connect,
    settings: Settings,
    names: Iterable[str],
    state: render.Central,
    guard: Guard = no_guard,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, RemoteResult]:
    """Update just the Endpoints of some remotes from `state` (the hot path of
    `gitmesh run`: the central pods come from its watch cache). `configs` are the remotes'
    kubeconfigs as the last full pass read them; without one, the Secret is read."""
    mesh = repo.mesh
    if mesh is None:
        return {}
    jobs: dict[str, Callable[[], RemoteResult]] = {
        name: partial(
            _endpoints,
            name,
            repo.remotes[name],
            mesh=mesh,
            state=state,
            central=central,
            connect=connect,
            settings=settings,
            config=(configs or {}).get(name),
        )
        for name in names
        if name in repo.remotes and render.needs(repo.remotes[name]).central_pods
    }
    return each_remote(jobs, settings=settings, guard=guard, prefix="endpoints")


def _endpoints(
    name: str,
    spec: specs.Remote,
    *,
    mesh: specs.Mesh,
    state: render.Central,
    central: Cluster,
    connect: Connect,
    settings: Settings,
    config: Mapping[str, Any] | None = None,
) -> RemoteResult:
    found = render.endpoints(spec, mesh, state)
    if found is None:  # a model whose Endpoints follow no central pods
        return RemoteResult(RemoteReport(name, "Available"))
    comp, snapshot = found
    if comp.error:
        return RemoteResult(
            RemoteReport(name, "ReconcileFailed", message=comp.error, error=comp.error)
        )
    desired = [o for o in comp.objects if o["kind"] == "Endpoints"]
    namespace = settings.namespace or mesh.namespace
    try:
        config = config or credentials(name, central, namespace, settings)[0]
        with connected(connect, name, config, settings, central) as remote:
            res = resources.BY_KIND["Endpoints"]
            current, _ = remote.list(
                res,
                namespace=specs.remote_namespace(spec, mesh),
                label_selector=resources.owner_selector(name),
            )
            current = [
                o
                for o in current
                if (o["metadata"].get("labels") or {}).get(resources.COMPONENT) == "services"
            ]
            items = [
                i for i in plan.component("services", desired, current) if i.action != "delete"
            ]
            applier = Applier(remote, name, settings, resources.BY_KIND)
            by_ref = {plan.Ref.of(o): o for o in desired}
            patched = sum(
                1 for i in items if i.changes and applier.apply(i, by_ref.get(i.ref)) != "unchanged"
            )
    except Exception as e:  # one remote's failure is that remote's alone
        message = failed(name, e, config)
        return RemoteResult(RemoteReport(name, "ReconcileFailed", message=message, error=message))
    if patched:
        logs.get().info("updating endpoints", extra={"remote": name, "patched": patched})
    return RemoteResult(
        RemoteReport(
            name,
            "Available",
            endpoints=snapshot,
            components=(
                ComponentReport("services", "Ready", objects=len(desired), patched=patched),
            ),
        ),
        tuple(items),
    )
