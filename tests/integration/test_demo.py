"""`gitmesh demo`, the README's first command, from a directory that is not the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_runs_the_seed_story_and_exits_zero(tmp_path: Path, backend: str) -> None:
    """The demo checks every step of the story and exits 0, on either backend."""
    proc = subprocess.run(
        [sys.executable, "-m", "gitmesh", "demo", "--backend", backend],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for expected in (
        "both remotes are Available",
        "remoteistio-sample follows the new pod",
        "default lost both labels",
        "git log gitmesh/status",
        "[remote-eu] secret/cacerts: CN=Intermediate CA for remote remote-eu,O=gitmesh",
        "each remote signs with its own intermediate CA",
        "warning [remoteistio-sample]: enabled service istio-statsd: no ready pod",
        "remote-eu is Available as an IstiodRemote",
        "[remote-eu] webhook path: /inject/cluster/remote-eu/net/network2",
        "create  [central] Secret istio-system/istio-remote-secret-remote-eu",
        "Done in",
    ):
        assert expected in out
    assert out.count("   ok: ") == 10
    assert "WARNING" not in out + proc.stderr  # each warning once, with its pass


@pytest.mark.kubectl
def test_demo_keep_leaves_clusters_for_kubectl(tmp_path: Path) -> None:
    """--keep prints a kubeconfig that kubectl can use, and SIGTERM ends it cleanly."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitmesh", "demo", "--keep", "--workdir", str(tmp_path / "work")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "export KUBECONFIG=" in line:
            break
    kubeconfig = lines[-1].split("=", 1)[1].strip()
    env = {**os.environ, "KUBECONFIG": kubeconfig, "KUBECACHEDIR": str(tmp_path / "cache")}
    got = subprocess.run(
        [
            kubectl,
            "--context",
            "remoteistio-sample",
            "get",
            "endpoints",
            "-n",
            "istio-system",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    proc.stdout.close()
    assert got.returncode == 0, got.stderr
    assert "endpoints/istio-pilot" in got.stdout.split()
    assert code == 0
