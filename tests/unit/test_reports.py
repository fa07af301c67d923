"""gitmesh.status.reports, pure: the status files a pass writes are the same bytes for the
same outcome, their times move only when what they time changes, and nothing is
written for a pass that changed nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from gitmesh.status import reports
from gitmesh.status.reports import ComponentReport, PassReport, RemoteReport

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
READY = ComponentReport("common", "Ready", objects=2)
CREATED = ComponentReport("common", "Ready", objects=2, created=2)


def one(state: str, *comps: ComponentReport, revision: str = "a" * 40, **kw: str) -> PassReport:
    return PassReport(revision, {"r": RemoteReport("r", state, components=comps, **kw)})


def apply(current: Mapping[str, bytes], changes: Mapping[str, bytes | None]) -> dict[str, bytes]:
    out = dict(current)
    for path, data in changes.items():
        if data is None:
            out.pop(path, None)
        else:
            out[path] = data
    return out


def status(files: Mapping[str, bytes]) -> Any:
    return yaml.safe_load(files["status/r.yaml"])


def test_the_same_outcome_is_the_same_bytes() -> None:
    first = reports.render(one("Available", CREATED), {}, T0)
    assert first == reports.render(one("Available", CREATED), {}, T0)
    # A later pass that finds everything in place writes nothing at all.
    files = apply({}, first)
    assert reports.render(one("Available", READY), files, T1) == {}


def test_times_move_only_when_what_they_time_changes() -> None:
    files = apply({}, reports.render(one("Available", CREATED), {}, T0))
    assert status(files)["since"] == T0
    # Failing: the state's `since` and the Ready condition move; the last change stays.
    files = apply(files, reports.render(one("ReconcileFailed", READY, message="x"), files, T1))
    got = status(files)
    assert got["since"] == T1
    conditions = {c["type"]: c for c in got["conditions"]}
    assert conditions["Ready"]["lastTransitionTime"] == T1
    assert conditions["SpecValid"]["lastTransitionTime"] == T0  # still valid since T0
    assert got["components"]["common"]["lastChange"]["time"] == T0
    # Failing again with the same message: not a byte changes.
    assert reports.render(one("ReconcileFailed", READY, message="x"), files, T2) == {}


def test_last_applied_is_the_last_available_revision() -> None:
    files = apply({}, reports.render(one("Available", CREATED, revision="a" * 40), {}, T0))
    failed = one("ReconcileFailed", READY, revision="b" * 40, message="no")
    files = apply(files, reports.render(failed, files, T1))
    got = status(files)
    assert (got["lastAppliedRevision"], got["lastAttemptedRevision"]) == ("a" * 40, "b" * 40)


def test_a_removed_remote_loses_its_files() -> None:
    with_eps = PassReport(
        "a" * 40,
        {
            "r": RemoteReport(
                "r", "Available", components=(CREATED,), endpoints={"s": ("1.2.3.4:80",)}
            )
        },
    )
    files = apply({}, reports.render(with_eps, {}, T0))
    assert set(files) == {"status/r.yaml", "endpoints/r.yaml"}
    gone = reports.render(PassReport("b" * 40, {}, removed=("r",), pruned={"r": 2}), files, T1)
    assert gone == {"status/r.yaml": None, "endpoints/r.yaml": None}
    message = reports.message(PassReport("b" * 40, {}, removed=("r",), pruned={"r": 2}), gone)
    assert "- r: removed (2 deleted)" in message and "2 deleted" in message


@pytest.mark.parametrize(
    ("report", "first_line", "detail"),
    [
        (
            one("Available", CREATED),
            "gitmesh status at aaaaaaaaaaaa: 1 Available",
            "common +2 ~0 -0",
        ),
        (
            one("ReconcileFailed", READY, message="boom"),
            "gitmesh status at aaaaaaaaaaaa: 1 ReconcileFailed",
            "- r: ReconcileFailed",
        ),
    ],
)
def test_the_commit_message_says_what_happened(
    report: PassReport, first_line: str, detail: str
) -> None:
    text = reports.message(report, reports.render(report, {}, T0))
    assert text.splitlines()[0] == first_line
    assert detail in text


def test_endpoints_are_sorted_by_address_and_deduplicated() -> None:
    eps = {"s": ("10.0.0.10:80", "10.0.0.9:80", "10.0.0.9:80")}
    (data,) = reports.render_endpoints({"r": eps}, {}).values()
    assert data is not None
    assert yaml.safe_load(data)["services"]["s"] == ["10.0.0.9:80", "10.0.0.10:80"]


def test_a_forged_status_path_is_no_remote() -> None:
    files = apply({}, reports.render(one("Available", CREATED), {}, T0))
    files["status/../x.yaml"] = files["status/r.yaml"]
    files["status/Bad_Name.yaml"] = files["status/r.yaml"]
    assert [row["remote"] for row in reports.read_status(files)] == ["r"]


def test_a_remote_progressing_past_the_health_timeout_is_degraded_until_it_rolls_out() -> None:
    waiting = "Deployment istio-system/istio-citadel: 0 of 1 updated replicas are available"
    day = 24 * 3600.0

    def progressing(timeout: float, comp: ComponentReport = READY) -> PassReport:
        report = one("Progressing", comp, message=waiting)
        return PassReport(report.revision, report.remotes, health_timeout=timeout)

    files = apply({}, reports.render(progressing(2 * day, CREATED), {}, T0))
    assert status(files)["state"] == "Progressing"
    # Still rolling out a day later, within the timeout: not a byte changes.
    assert reports.render(progressing(2 * day), files, T1) == {}
    # Past it: Degraded, saying why and since when; then it stays Degraded, unchanged.
    files = apply(files, reports.render(progressing(day), files, T1))
    got = status(files)
    assert (got["state"], got["since"]) == ("Degraded", T1)
    assert got["message"].startswith("Progressing for longer than the health timeout")
    assert waiting in got["message"]
    ready = {c["type"]: c for c in got["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Degraded")
    assert reports.render(progressing(day), files, T2) == {}
    # Rolled out: Available, whatever came before.
    files = apply(files, reports.render(one("Available", READY), files, T2))
    assert (status(files)["state"], status(files)["since"]) == ("Available", T2)


def test_who_made_the_pass_alone_is_not_a_change() -> None:
    """Before: every `gitmesh run` restart (a new replica identity) committed a change that
    only touched `reconciledBy`. It is written with a change, never as one."""
    by_a = PassReport("a" * 40, one("Available", CREATED).remotes, reconciled_by="gitmesh-a")
    files = apply({}, reports.render(by_a, {}, T0))
    assert status(files)["reconciledBy"] == "gitmesh-a"
    by_b = PassReport("a" * 40, one("Available", READY).remotes, reconciled_by="gitmesh-b")
    assert reports.render(by_b, files, T1) == {}
    failed = PassReport(
        "a" * 40, one("ReconcileFailed", READY, message="x").remotes, reconciled_by="gitmesh-b"
    )
    assert status(apply(files, reports.render(failed, files, T2)))["reconciledBy"] == "gitmesh-b"


def test_an_invalid_spec_does_not_list_its_last_good_passs_warnings() -> None:
    """Before: an InvalidSpec remote still listed the warnings of its last good pass, as
    if they were about the file that does not parse. Its components' history stays."""
    warned = ComponentReport("services", "Ready", objects=1, created=1, warnings=("unbacked",))
    files = apply({}, reports.render(one("Available", warned), {}, T0))
    assert status(files)["warnings"] == ["unbacked"]
    files = apply(files, reports.render(one("InvalidSpec", message="bad file"), files, T1))
    got = status(files)
    assert "warnings" not in got
    assert got["components"]["services"]["lastChange"]["created"] == 1
