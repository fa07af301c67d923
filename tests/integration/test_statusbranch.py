"""The status branch against real repositories: orphan, deterministic, race-safe."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gitmesh import cli
from gitmesh.errors import StatusWriteError
from gitmesh.source.gitrepo import Cache
from gitmesh.status import reports
from gitmesh.status.branch import StatusBranch
from gitmesh.status.reports import ComponentReport, PassReport, RemoteReport
from tests.gitutil import MeshRemote, git

BRANCH = "gitmesh/status"


def report(
    revision: str,
    state: str = "Available",
    created: int = 3,
    endpoints: tuple[str, ...] = ("10.24.0.2:15010", "10.24.0.10:15010"),
    removed: tuple[str, ...] = (),
) -> PassReport:
    remote = RemoteReport(
        name="remote-1",
        state=state,
        message="",
        components=(
            ComponentReport("common", "Ready", objects=2, created=created),
            ComponentReport("citadel", "Ready", objects=7),
        ),
        endpoints={"istio-pilot": endpoints},
    )
    return PassReport(revision=revision, remotes={"remote-1": remote}, removed=removed)


def write(branch: StatusBranch, rep: PassReport, now: str) -> str | None:
    return branch.write(
        lambda cur: reports.render(rep, cur, now),
        lambda changes: reports.message(rep, changes),
    )


@pytest.fixture
def remote(tmp_path: Path) -> MeshRemote:
    return MeshRemote(tmp_path)


@pytest.fixture
def branch(remote: MeshRemote, tmp_path: Path) -> StatusBranch:
    return StatusBranch(Cache(remote.url, cache_dir=tmp_path / "cache"), BRANCH)


def test_first_write_creates_an_orphan_branch(remote: MeshRemote, branch: StatusBranch) -> None:
    """The status branch shares no history with main and main is untouched."""
    main_before = git(remote.bare, "rev-parse", "main")
    sha = write(branch, report(remote.head), "2026-01-01T00:00:00Z")
    assert sha and git(remote.bare, "rev-parse", BRANCH) == sha
    assert git(remote.bare, "rev-list", "--count", BRANCH) == "1"
    assert git(remote.bare, "rev-parse", "main") == main_before
    proc = subprocess.run(
        ["git", "merge-base", "main", BRANCH], cwd=remote.bare, capture_output=True, check=False
    )
    assert proc.returncode == 1
    files = git(remote.bare, "ls-tree", "-r", "--name-only", BRANCH).split()
    assert files == ["endpoints/remote-1.yaml", "status/remote-1.yaml"]


def test_files_are_deterministic_and_sorted(remote: MeshRemote, branch: StatusBranch) -> None:
    """Status and endpoints files hold the report, keys and lists sorted."""
    write(branch, report(remote.head), "2026-01-01T00:00:00Z")
    files = branch.read()
    status = yaml.safe_load(files["status/remote-1.yaml"])
    assert status["state"] == "Available" and status["lastAppliedRevision"] == remote.head
    assert status["lastAttemptedRevision"] == remote.head
    assert status["since"] == "2026-01-01T00:00:00Z"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "SpecValid"]
    assert status["components"]["common"]["lastChange"]["created"] == 3
    eps = yaml.safe_load(files["endpoints/remote-1.yaml"])
    assert eps["services"]["istio-pilot"] == ["10.24.0.2:15010", "10.24.0.10:15010"]
    assert files["status/remote-1.yaml"] == reports.dump(status)


def test_no_commit_when_nothing_changed(remote: MeshRemote, branch: StatusBranch) -> None:
    """A pass that changes nothing (no writes, same states) commits nothing."""
    write(branch, report(remote.head), "2026-01-01T00:00:00Z")
    assert write(branch, report(remote.head, created=0), "2026-01-01T00:05:00Z") is None
    assert git(remote.bare, "rev-list", "--count", BRANCH) == "1"


def test_timestamps_move_only_when_state_changes(remote: MeshRemote, branch: StatusBranch) -> None:
    """`since` and lastTransitionTime change with the state, not with time."""
    write(branch, report(remote.head), "2026-01-01T00:00:00Z")
    write(branch, report(remote.head, state="ReconcileFailed", created=0), "2026-01-01T01:00:00Z")
    status = yaml.safe_load(branch.read()["status/remote-1.yaml"])
    assert status["since"] == "2026-01-01T01:00:00Z"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    assert ready["lastTransitionTime"] == "2026-01-01T01:00:00Z"
    assert valid["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert status["components"]["common"]["lastChange"]["time"] == "2026-01-01T00:00:00Z"


def test_removed_remote_files_are_deleted(remote: MeshRemote, branch: StatusBranch) -> None:
    """The files of a remote that no longer exists are removed in the next commit."""
    write(branch, report(remote.head), "2026-01-01T00:00:00Z")
    gone = PassReport(revision=remote.head, remotes={}, removed=("remote-1",))
    sha = write(branch, gone, "2026-01-01T00:01:00Z")
    assert sha and branch.read() == {}
    assert "- remote-1: removed" in git(remote.bare, "log", "-1", "--format=%B", BRANCH)


def test_commit_message_names_revision_and_applied(
    remote: MeshRemote, branch: StatusBranch
) -> None:
    """The commit message names the source revision and summarises what was applied."""
    write(branch, report(remote.head), "2026-01-01T00:00:00Z")
    message = git(remote.bare, "log", "-1", "--format=%B", BRANCH)
    assert message.startswith(f"gitmesh status at {remote.head[:12]}: 1 Available")
    assert f"Source revision: {remote.head}" in message
    assert "Applied: 3 created, 0 patched, 0 deleted" in message
    assert "- remote-1: Available (common +3 ~0 -0)" in message


def test_rejected_push_that_is_not_a_race_fails_loudly(remote: MeshRemote, tmp_path: Path) -> None:
    """A push refused by a hook (a protected branch) raises, it is not retried silently."""
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch: pushes denied' >&2\nexit 1\n")
    hook.chmod(0o755)
    branch = StatusBranch(Cache(remote.url, cache_dir=tmp_path / "c"), BRANCH)
    with pytest.raises(StatusWriteError, match="protected branch"):
        write(branch, report(remote.head), "2026-01-01T00:00:00Z")


WRITER = """
import sys
from pathlib import Path
from gitmesh.source.gitrepo import Cache
from gitmesh.status import reports
from gitmesh.status.branch import StatusBranch
from gitmesh.status.reports import PassReport, RemoteReport

url, cache, who = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
branch = StatusBranch(Cache(url, cache_dir=cache), "gitmesh/status", attempts=200)
for i in range(50):
    name = f"{who}-{i:02d}"
    rep = PassReport(revision=f"{who}{i:02d}", remotes={name: RemoteReport(name, "Available")})
    assert branch.write(lambda cur: reports.render(rep, cur, "2026-01-01T00:00:00Z"),
                        lambda ch: reports.message(rep, ch))
"""


def test_two_writers_racing_lose_nothing(remote: MeshRemote, tmp_path: Path) -> None:
    """Two processes pushing 50 status commits each end with all 100 on the branch."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, remote.url, str(tmp_path / f"cache-{who}"), who]
        )
        for who in ("a", "b")
    ]
    assert [p.wait(300) for p in procs] == [0, 0]
    assert git(remote.bare, "rev-list", "--count", BRANCH) == "100"
    files = git(remote.bare, "ls-tree", "-r", "--name-only", BRANCH).split()
    assert len(files) == 100
    assert {f"status/{w}-{i:02d}.yaml" for w in "ab" for i in range(50)} == set(files)


def test_status_command_table_and_json(
    remote: MeshRemote, branch: StatusBranch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gitmesh status --repo R` shows each remote's state, for how long (an age, as
    kubectl's AGE; before: the absolute time), the revision it was last applied at, whether
    that is the source revision, and its endpoints."""
    an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3 * 3600))
    write(branch, report(remote.head), an_hour_ago)
    args = ["status", "--repo", remote.url, "--cache-dir", str(tmp_path / "c2")]
    assert cli.main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["REMOTE", "STATE", "SINCE", "APPLIED", "SYNC", "ENDPOINTS"]
    assert table[1].split() == ["remote-1", "Available", "3h", remote.head[:12], "Synced", "2"]
    for flag in ("--format", "-o"):
        assert cli.main([*args, flag, "json"]) == 0
        rows = json.loads(capsys.readouterr().out)["remotes"]
        assert rows[0]["remote"] == "remote-1" and rows[0]["endpoints"] == 2
        assert rows[0]["since"] == an_hour_ago  # machines get the time itself


def test_status_of_named_remotes_and_wide(
    remote: MeshRemote, branch: StatusBranch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: no remote-name argument and no -o wide. As kubectl get NAME: the remotes
    asked for; one that is nowhere is an error line and exit 1, after the others."""
    rep = report(remote.head)
    two = RemoteReport("remote-2", "ReconcileFailed", message="cannot reach remote-2")
    write(
        branch, PassReport(rep.revision, {**rep.remotes, "remote-2": two}), "2026-01-01T00:00:00Z"
    )
    args = ["status", "--repo", remote.url, "--cache-dir", str(tmp_path / "c2")]
    assert cli.main([*args, "remote-2", "-o", "wide"]) == 0
    table = capsys.readouterr().out.splitlines()
    wide = ["REMOTE", "STATE", "SINCE", "APPLIED", "SYNC", "ENDPOINTS", "ATTEMPTED", "BY"]
    assert table[0].split() == [*wide, "MESSAGE"]
    assert table[1].split()[:2] == ["remote-2", "ReconcileFailed"]
    assert table[1].endswith("cannot reach remote-2")
    assert not any(line.startswith("remote-1") for line in table)
    assert cli.main([*args, "remote-1", "nope", "-o", "json"]) == 1
    out = capsys.readouterr()
    assert [r["remote"] for r in json.loads(out.out)["remotes"]] == ["remote-1"]
    assert "remote 'nope' is neither in the repository nor on the status branch" in out.err
