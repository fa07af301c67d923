"""gitmesh.health, pure: a Deployment is rolled out exactly when `kubectl rollout status`
says so. The rules and their order are kubectl's, at k8s.io/kubectl@v0.36.3 (the
Kubernetes release the real tier builds) pkg/polymorphichelpers/rollout_status.go lines
75-91 (DeploymentStatusViewer.Status): the generation observed, then the Progressing
condition's ProgressDeadlineExceeded reason (a failure), then updated < spec.replicas,
then replicas > updated (old pods pending termination), then available < updated."""

from __future__ import annotations

from typing import Any

import pytest

from gitmesh import health


def deploy(generation: int = 2, wanted: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "namespace": "istio-system",
            "name": "istio-citadel",
            "generation": generation,
        },
        "spec": {"replicas": wanted},
        "status": status,
    }


DONE = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}


@pytest.mark.parametrize(
    ("obj", "message", "failed"),
    [
        (deploy(), "waiting for the spec update to be observed", False),  # just created
        (deploy(**{**DONE, "observedGeneration": 1}), "waiting for the spec update", False),
        (
            deploy(
                **{
                    **DONE,
                    "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
                }
            ),
            "exceeded its progress deadline",
            True,
        ),
        (deploy(wanted=2, **DONE), "1 out of 2 new replicas have been updated", False),
        (deploy(**{**DONE, "replicas": 2}), "1 old replicas are pending termination", False),
        (
            deploy(**{**DONE, "availableReplicas": 0}),
            "0 of 1 updated replicas are available",
            False,
        ),
    ],
)
def test_a_deployment_not_rolled_out_says_what_it_waits_on(
    obj: dict[str, Any], message: str, failed: bool
) -> None:
    got = health.rollout(obj)
    assert got is not None
    assert got.name == "istio-system/istio-citadel"
    assert got.message.startswith(message)
    assert got.failed is failed


def test_a_rolled_out_deployment_and_other_kinds_wait_on_nothing() -> None:
    assert health.rollout(deploy(**DONE)) is None
    assert health.rollout(deploy(wanted=0, observedGeneration=2)) is None  # scaled to zero
    assert health.waiting([deploy(**DONE), {"kind": "Service", "metadata": {}}]) == []
    assert health.state([]) == ("Available", "")


def test_a_remote_waiting_on_deployments_is_progressing_and_degraded_when_one_failed() -> None:
    slow = health.Rollout("istio-system/a", "0 of 1 updated replicas are available")
    stuck = health.Rollout("istio-system/b", "exceeded its progress deadline", failed=True)
    assert health.state([slow]) == (
        "Progressing",
        "Deployment istio-system/a: 0 of 1 updated replicas are available",
    )
    state, message = health.state([slow, stuck])
    assert state == "Degraded"
    assert "Deployment istio-system/b: exceeded its progress deadline" in message
