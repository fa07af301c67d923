"""The pass: every remote of a revision reconciled (or pruned) side by side in a bounded
pool, each under its guard and deadline; mass prunes refused before anything is applied."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any

from gitmesh import errors, logs, render, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials.remote import Connect, failed
from gitmesh.reconcile import inventory
from gitmesh.reconcile.observe import observe_central
from gitmesh.reconcile.prune import prune_remote
from gitmesh.reconcile.remote import reconcile_remote
from gitmesh.settings import Settings
from gitmesh.specs import meshrepo
from gitmesh.status.reports import PassReport, RemoteReport
from gitmesh.status.results import PassResult, RemoteResult


def default_connect(name: str, kubeconfig: Mapping[str, Any]) -> Cluster:
    """Connect to a remote with its kubeconfig."""
    return Cluster(name, kubeconfig)


Guard = Callable[[str], AbstractContextManager[Any]]


def no_guard(name: str) -> AbstractContextManager[Any]:
    return nullcontext()


def _guarded(guard: Guard, name: str, work: Callable[[], RemoteResult]) -> RemoteResult:
    try:
        with guard(name):
            return work()
    except Exception as e:  # the stages catch their own; this keeps a pass whole regardless
        message = failed(name, e)
        logs.get().error("remote failed", extra={"remote": name, "error": message})
        return RemoteResult(RemoteReport(name, "ReconcileFailed", message=message, error=message))


Progress = Callable[[int, int], None]


def each_remote(
    jobs: Mapping[str, Callable[[], RemoteResult]],
    *,
    settings: Settings,
    guard: Guard,
    prefix: str,
    progress: Progress | None = None,
) -> dict[str, RemoteResult]:
    """Run one job per remote in a bounded thread pool, each under its remote's guard;
    `progress(done, total)` after each. Every remote's requests end by its deadline, so the
    pool is waited on for its rounds of `remote_timeout` and a minute; a remote still
    running then (stuck outside a request) is ReconcileFailed and left behind."""
    pool = ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix=prefix)
    rounds = -(-max(len(jobs), 1) // max(settings.concurrency, 1))
    limit = settings.remote_timeout * rounds + 60.0
    try:
        futures = {name: pool.submit(_guarded, guard, name, job) for name, job in jobs.items()}
        done = 0
        try:
            for _ in as_completed(futures.values(), timeout=limit):
                done += 1
                if progress is not None:
                    progress(done, len(futures))
        except TimeoutError:
            logs.get().error("remotes still running at the pass's limit", extra={"limit": limit})
        out = {}
        for name, fut in futures.items():
            if fut.done():
                out[name] = fut.result()
            else:
                message = f"{name}'s work did not end within the pass's limit ({limit:g}s)"
                out[name] = RemoteResult(
                    RemoteReport(name, "ReconcileFailed", message=message, error=message)
                )
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_pass(
    repo: meshrepo.Repo,
    revision: str,
    central: Cluster,
    *,
    connect: Connect,
    settings: Settings,
    only: Collection[str] | None = None,
    guard: Guard = no_guard,
    stop: threading.Event | None = None,
    owns: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
) -> PassResult:
    """Reconcile every remote of `repo` (or those in `only`); prune the remotes the
    inventory holds that left it (`settings.forget`: let go of those without pruning).
    `guard(name)` is held around each remote's work (so no two passes overlap on one
    remote); once `stop` is set, remotes end after the component in flight. With
    `owns` (a replica of a shard group), only the remotes it owns are touched, and a remote
    it stops owning ends after the component in flight.

    An invalid mesh.yaml aborts the pass before anything is touched; an invalid remote is
    reported InvalidSpec and left alone (never pruned).
    """
    if repo.mesh is None:
        raise errors.SpecError([p for p in repo.problems if p.file == meshrepo.MESH_FILE])
    mesh = repo.mesh
    namespace = settings.namespace or mesh.namespace
    central_state = observe_central(central, mesh, repo.remotes.values())
    mine = owns or (lambda name: True)
    chosen = {n: s for n, s in repo.remotes.items() if (only is None or n in only) and mine(n)}
    results = _invalid(repo, mine)
    gone, forgotten = _departures(
        repo, chosen, mesh=mesh, central=central, settings=settings, mine=mine
    )
    # A remote's reads go out at once: threads enough for every remote in flight.
    reads = ThreadPoolExecutor(
        max_workers=max(1, settings.concurrency) * (len(resources.MANAGED) + 1),
        thread_name_prefix="read",
    )
    jobs: dict[str, Callable[[], RemoteResult]] = {
        name: partial(
            reconcile_remote,
            name,
            spec,
            mesh=mesh,
            central_state=central_state,
            central=central,
            connect=connect,
            settings=settings,
            revision=revision,
            interrupted=partial(_interruption, name, stop, owns),
            reads=reads,
        )
        for name, spec in sorted(chosen.items())
    }
    for name in gone:
        jobs[name] = partial(
            prune_remote, name, central, connect, settings, namespace, mesh_namespace=mesh.namespace
        )
    with reads:
        results.update(
            each_remote(jobs, settings=settings, guard=guard, prefix="remote", progress=progress)
        )
    return _finish(
        revision,
        results,
        central_state,
        gone=gone,
        forgotten=forgotten,
        central=central,
        namespace=namespace,
        settings=settings,
    )


def _finish(
    revision: str,
    results: dict[str, RemoteResult],
    central_state: render.Central,
    *,
    gone: Sequence[str],
    forgotten: Sequence[str],
    central: Cluster,
    namespace: str,
    settings: Settings,
) -> PassResult:
    """The pass's report; the pruned remotes dropped from the inventory (a failure there
    only means the next pass prunes them again, finding nothing)."""
    removed = [name for name in gone if results[name].report.state == "Removed"] + [*forgotten]
    if not (settings.plan_only or settings.dry_run) and removed:
        try:
            inventory.update(central, namespace, remove=removed)
        except errors.ClusterError as e:
            logs.get().warning("cannot update the inventory", extra={"error": str(e)})
    reports = {n: r.report for n, r in results.items() if r.report.state != "Removed"}
    pruned = {
        name: sum(1 for i in results[name].items if i.action == "delete")
        for name in removed
        if name in results
    }
    report = PassReport(
        revision,
        reports,
        removed=tuple(removed),
        pruned=pruned,
        health_timeout=settings.health_timeout,
    )
    return PassResult(report, results, central=central_state)


def _invalid(repo: meshrepo.Repo, mine: Callable[[str], bool]) -> dict[str, RemoteResult]:
    """An InvalidSpec result for each remote whose file does not parse (left alone)."""
    results = {}
    for name, problems in repo.invalid.items():
        if not mine(name):
            continue
        message = "; ".join(str(p) for p in problems)
        logs.get().error("invalid spec", extra={"remote": name, "error": message})
        results[name] = RemoteResult(RemoteReport(name, "InvalidSpec", message=message))
    return results


def _departures(
    repo: meshrepo.Repo,
    chosen: Mapping[str, specs.Remote],
    *,
    mesh: specs.Mesh,
    central: Cluster,
    settings: Settings,
    mine: Callable[[str], bool],
) -> tuple[list[str], list[str]]:
    """The remotes gitmesh applied to whose spec left the repository, to prune, and those
    `--forget` lets go of; the inventory on central updated first (a pass that dies still
    knows them), a mass prune refused before anything is applied."""
    namespace = settings.namespace or mesh.namespace
    log = logs.get()
    writes = not (settings.plan_only or settings.dry_run)
    known, _ = inventory.read(central, namespace)
    if writes:
        inventory.update(central, namespace, add=chosen)
    for name in sorted(set(chosen) - known.applied):
        log.info("new remote", extra={"remote": name})
    gone = sorted(known.applied - set(repo.remotes) - set(repo.invalid))
    forgotten = _forgotten(gone, settings.forget)
    _check_mass_prune([n for n in gone if n not in forgotten], known, mesh, settings)
    if writes and gone:
        inventory.update(central, namespace, remove=forgotten, pruning=gone)
    forgotten = [name for name in forgotten if mine(name)]
    for name in forgotten:
        log.warning("forgotten: nothing was pruned", extra={"remote": name})
    return [name for name in gone if mine(name) and name not in forgotten], forgotten


def _interruption(
    name: str, stop: threading.Event | None, owns: Callable[[str], bool] | None
) -> str | None:
    if stop is not None and stop.is_set():
        return "interrupted: gitmesh is shutting down, or lost its lease"
    if owns is not None and not owns(name):
        return "interrupted: another replica of the shard group owns this remote now"
    return None


def _forgotten(gone: Sequence[str], forget: Collection[str]) -> list[str]:
    """The `--forget` names, each a remote whose spec left the repository (else refused:
    forgetting a live remote would leave its objects unowned)."""
    wrong = sorted(set(forget) - set(gone))
    if wrong:
        raise errors.GitmeshError(
            f"--forget {', '.join(wrong)}: not a remote gitmesh applied to whose spec left the "
            "repository; only those can be forgotten"
        )
    return sorted(forget)


def _check_mass_prune(
    gone: Sequence[str], known: inventory.Inventory, mesh: specs.Mesh, settings: Settings
) -> None:
    """Refuse, before anything is applied, a revision that removes more remotes than the
    mesh's threshold, or all of them (`git rm -r remotes` validates fine). Remotes an
    earlier revision removed, whose prune is pending, are not counted again."""
    limit = mesh.mass_prune_threshold
    new = [name for name in gone if name not in known.pruning]
    live = len(known.applied - known.pruning)
    everything = live >= 2 and len(new) == live
    if settings.allow_mass_prune or not new or (len(new) <= limit and not everything):
        return
    shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
    why = (
        f"all {live} remotes gitmesh applied to"
        if everything
        else f"more than massPruneThreshold ({limit}) of the {live} remotes gitmesh applied to"
    )
    pending = len(known.pruning)
    raise errors.MassPruneRefused(
        f"this revision removes {len(new)} remotes ({shown}): {why}"
        + (f" (and {pending} removed earlier are still being pruned)" if pending else "")
        + ". Nothing was applied. Restore the files, or run with --allow-mass-prune to "
        "prune them"
    )
