"""Whether what gitmesh applied is live: a Deployment rolled out, judged as `kubectl rollout
status` judges it (k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go), and what a
remote is while it waits. Pure.

A remote whose objects applied but whose Deployments have not rolled out is `Progressing`
(with kubectl's words for what it waits on); one whose rollout exceeded its progress
deadline, or stayed Progressing for longer than the health timeout, is `Degraded`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gitmesh.resources import Obj

PROGRESSING = "Progressing"
DEGRADED = "Degraded"


@dataclass(frozen=True, slots=True)
class Rollout:
    """A Deployment that has not rolled out: why, and whether it never will by itself."""

    name: str  # namespace/name
    message: str
    failed: bool = False


def rollout(deploy: Obj) -> Rollout | None:
    """None when the Deployment is rolled out, else what it waits on."""
    meta = deploy.get("metadata") or {}
    status = deploy.get("status") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return Rollout(name, "waiting for the spec update to be observed")
    reasons = {c.get("type"): c.get("reason") for c in status.get("conditions") or ()}
    if reasons.get("Progressing") == "ProgressDeadlineExceeded":
        return Rollout(name, "exceeded its progress deadline", failed=True)
    wanted = (deploy.get("spec") or {}).get("replicas", 1)
    replicas, updated, available = (
        int(status.get(k) or 0) for k in ("replicas", "updatedReplicas", "availableReplicas")
    )
    if updated < wanted:
        return Rollout(name, f"{updated} out of {wanted} new replicas have been updated")
    if replicas > updated:
        return Rollout(name, f"{replicas - updated} old replicas are pending termination")
    if available < updated:
        return Rollout(name, f"{available} of {updated} updated replicas are available")
    return None


def waiting(objs: Iterable[Obj]) -> list[Rollout]:
    """The Deployments among `objs` that have not rolled out, in order."""
    return [r for o in objs if o.get("kind") == "Deployment" and (r := rollout(o)) is not None]


def state(rollouts: Iterable[Rollout]) -> tuple[str, str]:
    """A remote's state and message for Deployments still rolling out (none: Available)."""
    waits = list(rollouts)
    if not waits:
        return "Available", ""
    message = "; ".join(f"Deployment {r.name}: {r.message}" for r in waits)
    return (DEGRADED if any(r.failed for r in waits) else PROGRESSING), message
