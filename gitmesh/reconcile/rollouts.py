"""Whether a remote's Deployments rolled out (gitmesh.health judges each): on the freshest
answer a pass has, and with `--wait` re-read until they are or the health timeout passes."""

from __future__ import annotations

import time
from collections.abc import Callable

from gitmesh import health, plan, render, resources
from gitmesh.cluster import Cluster
from gitmesh.reconcile.apply import Applier
from gitmesh.reconcile.observe import Observed
from gitmesh.resources import Obj


def check(
    rendered: render.Rendered,
    observed: Observed,
    applier: Applier,
    started: float,
    interrupted: Callable[[], str | None] | None,
) -> list[health.Rollout]:
    """The remote's Deployments not rolled out once its pass applied (begun at `started`);
    with --wait, waiting within the health timeout and the pass's limit on the remote."""
    settings = applier.settings
    until = started + min(settings.health_timeout, 0.9 * settings.remote_timeout)
    return waiting(
        deployments(rendered, observed, applier),
        applier.remote,
        applier.kinds["Deployment"],
        until=until if settings.wait else None,
        interrupted=interrupted,
    )


WAIT_POLL = 0.2  # seconds between reads of the Deployments --wait waits on


def deployments(rendered: render.Rendered, observed: Observed, applier: Applier) -> list[Obj]:
    """Each rendered Deployment as the freshest answer has it: the server's answer to this
    pass's write, else what the pass observed."""
    seen = {plan.Ref.of(o): o for objs in observed.by_component.values() for o in objs}
    out = []
    for comp in rendered.components:
        for obj in comp.objects:
            ref = plan.Ref.of(obj)
            if obj["kind"] == "Deployment" and (live := applier.written.get(ref, seen.get(ref))):
                out.append(live)
    return out


def waiting(
    deployments: list[Obj],
    remote: Cluster,
    res: resources.Resource,
    *,
    until: float | None,
    interrupted: Callable[[], str | None] | None,
) -> list[health.Rollout]:
    """The Deployments not rolled out; with a deadline (`--wait`), re-read until they are,
    one fails, the pass is stopped or the deadline passes (then they count as failed)."""
    waits = health.waiting(deployments)
    if until is None:
        return waits
    live = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in deployments}
    while waits and not any(w.failed for w in waits):
        left = until - time.monotonic()
        if interrupted is not None and interrupted():
            return waits
        if left <= 0:
            return [
                health.Rollout(w.name, f"{w.message}, at the health timeout", True) for w in waits
            ]
        time.sleep(min(WAIT_POLL, left))
        for w in waits:
            namespace, name = w.name.split("/", 1)
            live[w.name] = remote.get(res, namespace, name)
        waits = health.waiting(live.values())
    return waits
