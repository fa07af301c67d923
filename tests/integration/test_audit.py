"""The audit trail a platform team reads: the status files, the status commits and
`gitmesh status`, through the CLI as a user types it."""

from __future__ import annotations

import datetime
import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitmesh import cli
from gitmesh.run.runner import Runner
from tests.gitutil import git
from tests.integration.conftest import World
from tests.integration.running import started_runner

SAMPLE = "remoteistio-sample"
EU = "remote-eu"
NS = "istio-system"


def status(world: World, *extra: str) -> int:
    return cli.main(
        ["status", "--repo", world.repo.url, "--cache-dir", str(world.tmp / "cache"), *extra]
    )


def test_applied_and_attempted_revisions_and_one_message(world: World) -> None:
    """Like Flux: lastAppliedRevision stays at the last revision a remote was Available at
    while lastAttemptedRevision moves on; the failure is said once; the components' history
    survives a pass that failed before reaching them."""
    assert world.reconcile() == 0
    first = world.repo.head
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)  # its credentials go
    world.repo.commit({"README.md": "x\n"}, "an unrelated commit")
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["lastAppliedRevision"] == first
    assert eu["lastAttemptedRevision"] == world.repo.head != first
    assert "lastError" not in eu and "sourceRevision" not in eu
    text = yaml.safe_dump(eu)
    assert text.count("no kubeconfig for remote") == 1
    assert eu["components"]["citadel"]["lastChange"]["created"] > 0  # history kept


def test_the_commit_counts_what_a_prune_deleted(world: World) -> None:
    assert world.reconcile() == 0
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves")
    assert world.reconcile() == 0
    message = git(world.repo.bare, "log", "-1", "--format=%B", "gitmesh/status")
    deleted = int(message.split(" deleted")[0].rsplit(", ", 1)[1])
    assert deleted >= 15, message
    assert f"- {EU}: removed ({deleted} deleted)" in message


def test_status_says_out_of_sync_and_exits_2_when_asked(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.reconcile() == 0
    capsys.readouterr()
    assert status(world, "--exit-code") == 0
    world.edit_remote_spec(
        EU, lambda d: d["spec"]["citadel"].update(replicaCount=2), "Two citadels"
    )
    assert status(world, "--exit-code") == 2  # main moved on; nothing applied it yet
    out = capsys.readouterr().out
    assert out.count("OutOfSync") == 2 and f"source revision {world.repo.head[:12]}" in out
    assert status(world, "-o", "yaml") == 0
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["revision"] == world.repo.head
    assert all(r["outOfSync"] for r in report["remotes"])
    assert world.reconcile() == 0
    capsys.readouterr()
    assert status(world, "--exit-code", "-o", "json") == 0
    assert not any(r["outOfSync"] for r in json.loads(capsys.readouterr().out)["remotes"])


def test_status_shows_why_a_remote_failed(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    assert world.reconcile() == 1
    capsys.readouterr()
    assert status(world, "--exit-code") == 2
    out = capsys.readouterr().out
    assert f"{EU}: no kubeconfig for remote 'remote-eu'" in out


def test_an_unknown_status_branch_is_an_error(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(world) == 1  # no pass has committed yet
    err = capsys.readouterr().err
    assert "the status branch 'gitmesh/status' does not exist" in err
    assert world.reconcile() == 0
    assert status(world, "--status-branch", "typo/status") == 1


def test_removing_every_remote_is_refused_unless_allowed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`git rm -r remotes` validates (with a warning) but a pass refuses to prune every
    remote, applying nothing; --allow-mass-prune prunes them."""
    assert world.reconcile() == 0
    world.repo.commit(
        {f"remotes/{SAMPLE}.yaml": None, f"remotes/{EU}.yaml": None}, "git rm -r remotes"
    )
    capsys.readouterr()
    assert cli.main(["validate", str(world.repo.work)]) == 0
    assert "warning: no remote files" in capsys.readouterr().out
    before = world.writes()
    assert world.reconcile() == 1
    err = capsys.readouterr().err
    assert (
        "removes 2 remotes (remote-eu, remoteistio-sample): all 2 remotes gitmesh" in err
        and "--allow-mass-prune" in err
    )
    assert world.writes() == before
    assert "istio-citadel" in world.names(EU, "deployments", NS, group="apps")
    assert world.plan() == 1  # plan says so too
    assert world.reconcile("--allow-mass-prune") == 0
    assert world.names(EU, "deployments", NS, group="apps") == []


def test_more_than_the_threshold_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.reconcile() == 0
    mesh = yaml.safe_load((world.repo.work / "mesh.yaml").read_text())
    mesh["massPruneThreshold"] = 0
    world.repo.commit(
        {"mesh.yaml": yaml.safe_dump(mesh), f"remotes/{EU}.yaml": None}, "remote-eu leaves"
    )
    assert world.reconcile() == 1
    assert "more than massPruneThreshold (0)" in capsys.readouterr().err


def test_dry_run_on_a_fresh_remote_treats_the_namespace_as_created(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run into a namespace that does not exist yet: its objects count as created
    (the server would answer NotFound for each), and nothing is written."""
    world.delete_namespace(EU, NS)
    assert world.reconcile("--dry-run") == 0
    out = capsys.readouterr().out
    assert "remote remote-eu:" in out and "to create" in out
    assert NS not in world.names(EU, "namespaces")


def test_reconcile_prints_a_summary(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    assert world.reconcile() == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 remote(s): 1 Available, 1 ReconcileFailed"
    sample = next(line for line in out if line.startswith(SAMPLE))
    assert sample.split()[1] == "Available" and "created" in sample
    assert "no kubeconfig for remote" in next(line for line in out if line.startswith(EU))


def test_a_busy_port_is_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["run", *world.args, "--listen", f"127.0.0.1:{port}"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"gitmesh run: --listen 127.0.0.1:{port}: Address already in use"


def test_reconcile_once_skips_while_another_gitmesh_holds_the_lease(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CronJob's `reconcile --once` and `gitmesh run` take the same Lease: while a live
    holder renews it, the pass is skipped (exit 0, a message) and nothing is applied."""
    store = world.store("central")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.create(
        store.kind("coordination.k8s.io", "v1", "leases"),
        NS,
        {
            "metadata": {"name": "gitmesh"},
            "spec": {
                "holderIdentity": "gitmesh-run-0",
                "leaseDurationSeconds": 3600,
                "renewTime": now,
            },
        },
    )
    assert world.reconcile("--lease-duration", "1s", "--retry-period", "0.2s") == 0
    assert "another gitmesh holds the Lease istio-system/gitmesh" in capsys.readouterr().err
    assert world.writes() == 0 and world.status_commits() == 0


def test_metrics_grow_with_the_remotes_not_with_components_and_buckets(
    world: World, tmp_path: Path
) -> None:
    """Before: about 17 histogram series per remote and component, a `component="all"`
    that was no component, and no process metrics. Now a remote's pass duration has a few
    buckets, components are timed over all remotes, and the process is measured."""
    with started_runner(world, tmp_path / "c") as runner:
        text = runner.metrics_text().decode()
    per_remote = [x for x in text.splitlines() if f'remote="{EU}"' in x and "_bucket" in x]
    assert 0 < len(per_remote) <= 8
    assert 'component="all"' not in text
    assert 'gitmesh_component_duration_seconds_count{component="citadel"}' in text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text


def test_drift_counts_only_undone_out_of_band_edits(world: World, tmp_path: Path) -> None:
    """gitmesh_drift_total counts patches that undo someone else's edit; a merged pull
    request's patches count in gitmesh_desired_changes_total instead."""

    def value(runner: Runner, metric: str) -> float:
        got = runner.metrics.registry.get_sample_value(metric, {"remote": EU})
        return got or 0.0

    with started_runner(world, tmp_path / "c") as runner:
        world.edit_remote_spec(
            EU, lambda d: d["spec"]["citadel"].update(replicaCount=2), "Two citadels"
        )
        runner.poll()
        assert value(runner, "gitmesh_desired_changes_total") == 1
        assert value(runner, "gitmesh_drift_total") == 0
        world.merge_patch(EU, "configmaps", NS, "istio", {"data": {"mesh": "edited by hand"}})
        runner.resync()
        assert value(runner, "gitmesh_drift_total") == 1
        assert value(runner, "gitmesh_desired_changes_total") == 1


def on_terminal(world: World, *args: str, **env: str) -> str:
    """What `gitmesh reconcile --once ARGS` writes to stderr when stderr is a terminal."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gitmesh", "reconcile", "--once", *world.args, *args],
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("GITMESH_")},
                **env,
            },
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) in (0, 1)
    finally:
        os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")  # the terminal's newlines


STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_a_pass_on_a_terminal_shows_progress(world: World) -> None:
    """stderr on a terminal: `n/total remotes` as remotes finish, and text log lines, each
    with its time to the millisecond and its level coloured. Before: the progress line was
    not cleared (`1/3 remotesWARNING …`), no times, no colour, and `leadership lost` at
    every normal exit."""
    out = on_terminal(world)
    assert "\r\x1b[K  2/2 remotes\n" in out
    assert re.search(f"{STAMP} INFO    status committed", out)
    assert re.search(f"{STAMP} \x1b\\[33mWARNING\x1b\\[0m enabled service istio-statsd", out)
    assert not re.search(r"remotes\d{4}-|remotes(INFO|WARNING)", out)  # cleared first
    lines = [x for x in out.replace("\r\x1b[K", "\n").splitlines() if x and "remotes" not in x]
    assert lines and all(re.match(STAMP, x) for x in lines), lines
    assert "lease released" in out and "leadership lost" not in out


def test_no_color_and_a_dry_run_say_so(world: World) -> None:
    """NO_COLOR (https://no-color.org) turns colour off; a dry run's lines say it was one
    (before: `created …` exactly as a real pass), as kubectl's `(server dry run)`."""
    out = on_terminal(world, "--dry-run", NO_COLOR="1")
    assert "\x1b[33m" not in out
    created = r"INFO    created Deployment istio-system/istio-citadel \(server dry run\)"
    assert re.search(f"{STAMP} {created}", out)


def test_json_log_times_are_to_the_millisecond(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.reconcile("--log-format", "json") == 0
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert lines and all(re.fullmatch(STAMP, x["time"]) for x in lines)
