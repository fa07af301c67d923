"""One pass spread over processes (`reconcile --once --workers N`).

A pass is bound by one interpreter's lock once its remotes' round trips overlap: the HTTP
client, JSON and the owned-field diff are Python. Worker processes (spawned: the parent has
threads) each run `passes.run_pass` over the remotes rendezvous hashing gives them, the
way replicas of `gitmesh run --shard` share remotes (`rendezvous.owner`), with a
connection of their own to central; the parent merges their results into one PassResult
and commits the status once. Every worker sees the same repository, inventory and status,
so all of them refuse a mass prune alike, before anything is applied.

Each worker is a pool of its own: a worker that dies (the OOM killer, a crash in native
code) breaks only its pool, and its remotes are ReconcileFailed with the reason while the
others' results stand; the status is committed either way.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gitmesh import logs
from gitmesh.cluster import Cluster
from gitmesh.reconcile import passes, rendezvous
from gitmesh.settings import Settings
from gitmesh.specs import meshrepo
from gitmesh.status.reports import PassReport, RemoteReport
from gitmesh.status.results import PassResult, RemoteResult


@dataclass(frozen=True, slots=True)
class Central:
    """How a worker reaches the central cluster (a Cluster does not cross processes)."""

    kubeconfig: Path | None  # None: in-cluster
    context: str | None
    timeout: float
    user_agent: str | None = None


def run_pass(
    repo: meshrepo.Repo,
    revision: str,
    central: Central,
    *,
    workers: int,
    settings: Settings,
    log_format: str,
    log_level: str,
) -> PassResult:
    """`passes.run_pass` over `workers` processes, merged."""
    members = [f"worker-{i}" for i in range(workers)]
    context = multiprocessing.get_context("spawn")
    pools = [ProcessPoolExecutor(1, mp_context=context) for _ in members]
    try:
        futures = [
            pool.submit(
                _work,
                repo,
                revision,
                central,
                settings=settings,
                owns=partial(_owned, tuple(members), member),
                log=(log_format, log_level),
            )
            for pool, member in zip(pools, members, strict=True)
        ]
        results = []
        for member, future in zip(members, futures, strict=True):
            try:
                results.append(future.result())
            except BrokenProcessPool:
                results.append(_lost(repo, revision, tuple(members), member))
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)
    return merge(revision, results)


def _lost(repo: meshrepo.Repo, revision: str, members: tuple[str, ...], member: str) -> PassResult:
    """The result of a worker that died: each of its remotes ReconcileFailed."""
    message = (
        f"gitmesh's worker process {member} died before it reported (killed, or out of "
        "memory): what it applied to this remote is not known; the next pass reconciles it"
    )
    logs.get().error("worker process died", extra={"worker": member})
    names = [n for n in (*repo.remotes, *repo.invalid) if _owned(members, member, n)]
    reports = {n: RemoteReport(n, "ReconcileFailed", message=message, error=message) for n in names}
    return PassResult(
        PassReport(revision, reports), {n: RemoteResult(r) for n, r in reports.items()}
    )


def _owned(members: tuple[str, ...], member: str, name: str) -> bool:
    return rendezvous.owner(name, members) == member


def _work(
    repo: meshrepo.Repo,
    revision: str,
    central: Central,
    *,
    settings: Settings,
    owns: partial[bool],
    log: tuple[str, str],
) -> PassResult:
    logs.setup(fmt=log[0], level=log[1])
    with Cluster(
        "central",
        central.kubeconfig,
        context=central.context,
        timeout=central.timeout,
        user_agent=central.user_agent,
    ) as cluster:
        return passes.run_pass(
            repo,
            revision,
            cluster,
            connect=passes.default_connect,
            settings=settings,
            owns=owns,
        )


def merge(revision: str, results: list[PassResult]) -> PassResult:
    """The workers' results as one pass: each remote was in exactly one of them."""
    remotes = {n: r for result in results for n, r in result.remotes.items()}
    removed = tuple(sorted(n for result in results for n in result.report.removed))
    return PassResult(
        PassReport(
            revision,
            {n: r for result in results for n, r in result.report.remotes.items()},
            removed=removed,
            pruned={n: k for result in results for n, k in result.report.pruned.items()},
            health_timeout=max((r.report.health_timeout for r in results), default=300.0),
        ),
        remotes,
        central=next((r.central for r in results if r.central is not None), None),
    )
