"""Nothing leaves the machine, by construction: the session runs in a network namespace of
its own (gitmesh.localkube.netns), and so does everything it starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitmesh.localkube import netns
from gitmesh.localkube.apiserver import KubeAPIServer
from gitmesh.localkube.store import ApiError
from tests.integration.conftest import TOKEN


def test_a_cluster_ip_is_unreachable_from_the_session_and_its_children() -> None:
    """A connection to a ClusterIP fails at once, here and in a child process."""
    if not netns.isolated():
        pytest.skip(netns.why_not())
    started = time.monotonic()
    assert netns.unreachable()
    child = subprocess.run(
        [sys.executable, "-c", "from gitmesh.localkube import netns; print(netns.unreachable())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert child.stdout.strip() == "True"
    assert time.monotonic() - started < 10  # "at once": no connect timeout was waited out
    assert not netns.unreachable(("192.0.2.10", 9)), "TEST-NET-1 is local: refused, not unroutable"


@pytest.mark.kube_apiserver_only  # the emulator calls no webhooks
def test_a_real_kube_apiserver_calling_a_webhook_by_service_goes_nowhere(backend: str) -> None:
    """kube-apiserver calls a Service webhook at its ClusterIP: inside the namespace the call
    fails at once with "network is unreachable" and the object is refused."""
    with KubeAPIServer(clusters=["c"], token=TOKEN, controllers=False) as kube:
        store = kube.store("c")
        store.request(
            "POST",
            "/api/v1/namespaces/default/services",
            {"metadata": {"name": "hook"}, "spec": {"ports": [{"port": 443}]}},
        )
        store.request(
            "POST",
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            {
                "metadata": {"name": "hook"},
                "webhooks": [
                    {
                        "name": "hook.gitmesh.invalid",
                        "clientConfig": {"service": {"namespace": "default", "name": "hook"}},
                        "rules": [
                            {
                                "operations": ["CREATE"],
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "resources": ["configmaps"],
                            }
                        ],
                        "sideEffects": "None",
                        "failurePolicy": "Fail",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 10,
                    }
                ],
            },
        )
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            store.request(
                "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "x"}}
            )
        assert "network is unreachable" in str(refused.value)
        assert time.monotonic() - started < 5


def test_aggregator_routing_is_a_kube_apiserver_option_of_gitmesh_localkube(
    tmp_path: Path,
) -> None:
    """`gitmesh localkube --aggregator-routing` refuses the emulator (which calls no
    webhooks) with a clear message and exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "gitmesh", "localkube", "--aggregator-routing",
         "--kubeconfig", str(tmp_path / "kc")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--aggregator-routing needs --backend kube-apiserver" in done.stderr


@pytest.mark.kube_apiserver_only  # what kube-apiserver is started with
def test_gitmesh_localkube_starts_kube_apiserver_with_aggregator_routing(
    backend: str, tmp_path: Path
) -> None:
    """With the flag, the real backend's kube-apiserver runs with
    --enable-aggregator-routing=true (and without it, does not)."""
    for flag, wanted in ((["--aggregator-routing"], True), ([], False)):
        kc = tmp_path / f"kc{wanted}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "gitmesh", "localkube", "--backend", "kube-apiserver",
             "--clusters", "c", "--kubeconfig", str(kc), *flag],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "serving" in line, line
            apiservers = [c for c in _children(proc.pid) if c[0].endswith(b"kube-apiserver")]
            assert apiservers
            assert all((b"--enable-aggregator-routing=true" in c) == wanted for c in apiservers)
        finally:
            proc.terminate()
            proc.wait(30)
            assert proc.stdout is not None
            proc.stdout.close()


def _children(pid: int) -> list[list[bytes]]:
    """The command lines of the processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and cmdline and cmdline[0]:
            out.append(cmdline)
    return out
