"""Plans as people read them: a pull-request comment that fits, names exactly the remotes
that change, and shows before -> after (Secrets masked)."""

from __future__ import annotations

import re

from gitmesh import plan
from gitmesh.cli import planview
from gitmesh.status.reports import PassReport, RemoteReport
from gitmesh.status.results import PassResult, RemoteResult

REVISION = "0123456789abcdef" * 2 + "01234567"


def deployment_patch() -> plan.Item:
    current = {
        "kind": "Deployment",
        "metadata": {"name": "istio-citadel", "namespace": "istio-system"},
        "spec": {
            "template": {"spec": {"containers": [{"resources": {"limits": {"memory": "256Mi"}}}]}}
        },
    }
    desired = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istio-citadel", "namespace": "istio-system"},
        "spec": {
            "template": {"spec": {"containers": [{"resources": {"limits": {"memory": "512Mi"}}}]}}
        },
    }
    (item,) = plan.component("citadel", [desired], [current])
    return item


def secret_patch() -> plan.Item:
    current = {
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {"ca-key.pem": "b2xk"},
    }
    desired = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {"ca-key.pem": "bmV3"},
    }
    (item,) = plan.component("citadel", [desired], [current])
    return item


def result(
    remotes: int, changed: dict[str, list[plan.Item]], failed: tuple[str, ...] = ()
) -> PassResult:
    names = [f"remote-{i:04d}" for i in range(remotes)]
    results = {}
    for name in names:
        state = "ReconcileFailed" if name in failed else "Planned"
        report = RemoteReport(
            name, state, message="cannot reach it | really" if name in failed else ""
        )
        unchanged = [
            plan.Item("unchanged", "common", plan.Ref("ConfigMap", "istio-system", "istio"))
        ] * 11
        results[name] = RemoteResult(report, tuple(changed.get(name, []) + unchanged))
    return PassResult(PassReport(REVISION, {n: r.report for n, r in results.items()}), results)


def test_a_thousand_remote_plan_with_three_changes_fits_and_names_exactly_the_three() -> None:
    changed = {
        "remote-0007": [deployment_patch()],
        "remote-0500": [deployment_patch()],
        "remote-0999": [secret_patch()],
    }
    comment = planview.markdown(result(1000, changed))
    assert len(comment) < 60_000
    assert comment.splitlines()[0] == planview.MARKER
    named = set(re.findall(r"remote-\d{4}", comment))
    assert named == set(changed)
    assert "3 change(s) to 3 of 1000 remote(s)" in comment


def test_replaced_values_show_before_and_after_and_secrets_stay_masked() -> None:
    changed = {"remote-0001": [deployment_patch(), secret_patch()]}
    for out in (planview.markdown(result(3, changed)), planview.text(result(3, changed))):
        assert '"256Mi" -> "512Mi"' in out
        assert '"***" -> "***"' in out
        assert "b2xk" not in out and "bmV3" not in out


def test_an_oversized_comment_degrades_to_the_table_with_a_note() -> None:
    big = [deployment_patch()] * 400
    changed = {f"remote-{i:04d}": big for i in range(5)}
    comment = planview.markdown(result(10, changed))
    assert len(comment) < 60_000
    assert "<details>" not in comment and "Run `gitmesh plan` to see them." in comment
    assert set(re.findall(r"remote-\d{4}", comment)) == set(changed)


def test_a_failed_remote_is_named_with_its_reason_in_one_cell() -> None:
    comment = planview.markdown(result(4, {}, failed=("remote-0002",)))
    row = next(line for line in comment.splitlines() if "remote-0002" in line)
    assert "cannot plan: cannot reach it \\| really" in row
    assert "0 change(s) to 0 of 4 remote(s); 1 could not be planned" in comment
    text = planview.text(result(4, {}, failed=("remote-0002",)))
    assert "remote remote-0002: cannot plan: cannot reach it" in text
    assert "3 remote(s) unchanged." in text
