"""`gitmesh localkube --latency`: the WAN between central and its remotes, in a flag."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gitmesh import resources
from gitmesh.cluster import Cluster


def test_latency_slows_every_cluster_but_the_first(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gitmesh",
            "localkube",
            "--kubeconfig",
            str(kubeconfig),
            "--clusters",
            "central,west,east",
            "--latency",
            "200ms",
            "--latency",
            "east=400ms",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()

        def took(context: str) -> float:
            with Cluster(context, kubeconfig, context=context) as cluster:
                cluster.list(resources.NAMESPACE)  # connect first
                start = time.monotonic()
                cluster.list(resources.NAMESPACE)
                return time.monotonic() - start

        assert took("central") < 0.15
        assert 0.2 <= took("west") < 0.35
        assert took("east") >= 0.4  # a named cluster's own delay wins
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if proc.stdout:
            proc.stdout.close()


def test_latency_for_an_unknown_cluster_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gitmesh",
            "localkube",
            "--kubeconfig",
            str(tmp_path / "k"),
            "--clusters",
            "a,b",
            "--latency",
            "c=1s",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--latency names no cluster ['c']" in done.stderr
