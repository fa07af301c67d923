"""A whole mesh for integration tests: three clusters (central + two remotes), the simulated
Istio central from gitmesh.testing.sandbox, and a real git repository seeded from example-repo.

The clusters come from either backend, by one fixture parameter: the emulator
(`localkube`), or real kube-apiservers (`kube-apiserver`, binaries from
$KUBEBUILDER_ASSETS). The real backend is optional locally (skipped, with the reason, when
$KUBEBUILDER_ASSETS is unset) and required in CI (CI=true: a failure, not a skip). Tests
that need what only the emulator has (fault injection, outages, history compaction) are
marked `localkube_only`, and their kube-apiserver variant is not collected; tests of what
only a real apiserver does (RBAC) are marked `kube_apiserver_only`."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from gitmesh import cli
from gitmesh.localkube import Server, netns
from gitmesh.localkube.apiserver import ASSETS_ENV, BUILD_SCRIPT, KubeAPIServer
from gitmesh.testing import sandbox
from tests.gitutil import MeshRemote, git

if TYPE_CHECKING:
    from tests.integration.running import Proc

REMOTES = ("remote-eu", "remoteistio-sample")
TOKEN = "kubeTOKEN-do-not-leak-7f3a9c"


@dataclass
class World:
    server: Server | KubeAPIServer
    mesh: sandbox.Mesh
    repo: MeshRemote
    tmp: Path

    @property
    def args(self) -> list[str]:
        kubeconfig = self.tmp / "central.kubeconfig"
        if not kubeconfig.exists():
            self.server.write_kubeconfig(kubeconfig, "central")
        return [
            "--repo",
            self.repo.url,
            "--cache-dir",
            str(self.tmp / "cache"),
            "--central-kubeconfig",
            str(kubeconfig),
        ]

    def reconcile(self, *extra: str, wait: bool = True) -> int:
        """One pass; by default waiting for the rollouts (the sandbox simulates them), so
        that a pass that applied is Available, as the tests before readiness expected."""
        return cli.main(["reconcile", "--once", *(["--wait"] if wait else []), *self.args, *extra])

    def plan(self, *extra: str) -> int:
        return cli.main(["plan", *self.args, *extra])

    def store(self, cluster: str) -> Any:
        return self.server.store(cluster)

    def get(
        self,
        cluster: str,
        resource: str,
        namespace: str,
        name: str,
        *,
        group: str = "",
        version: str = "v1",
    ) -> dict[str, Any]:
        store = self.store(cluster)
        return store.get(store.kind(group, version, resource), namespace, name)

    def merge_patch(
        self,
        cluster: str,
        resource: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        group: str = "",
    ) -> dict[str, Any]:
        """Change an object behind gitmesh's back (another writer), with a merge patch."""
        store = self.store(cluster)
        kind = store.kind(group, "v1", resource)
        return store.patch(kind, namespace, name, "application/merge-patch+json", body)

    def names(
        self,
        cluster: str,
        resource: str,
        namespace: str = "",
        *,
        selector: str = "",
        group: str = "",
        version: str = "v1",
    ) -> list[str]:
        store = self.store(cluster)
        listed = store.list(
            store.kind(group, version, resource), namespace, label_selector=selector
        )
        return [i["metadata"]["name"] for i in listed["items"]]

    def status(self) -> dict[str, Any]:
        out = git(self.repo.bare, "ls-tree", "-r", "--name-only", "gitmesh/status").split()
        return {p: yaml.safe_load(git(self.repo.bare, "show", f"gitmesh/status:{p}")) for p in out}

    def status_commits(self) -> int:
        try:
            return int(git(self.repo.bare, "rev-list", "--count", "gitmesh/status"))
        except AssertionError:
            return 0

    def writes(self, cluster: str | None = None) -> int:
        """Write requests, bar the Lease every applying pass holds on central."""
        verbs = ("create", "update", "patch", "delete", "deletecollection")
        return sum(self.server.count(cluster=cluster, verb=v) for v in verbs) - sum(
            self.server.count(cluster=cluster, verb=v, resource="leases") for v in verbs
        )

    def edit_remote_spec(self, name: str, change: Any, message: str) -> None:
        path = self.repo.work / "remotes" / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text())
        change(doc)
        self.repo.commit({f"remotes/{name}.yaml": yaml.safe_dump(doc)}, message)

    def delete_namespace(self, cluster: str, name: str, timeout: float = 60.0) -> None:
        """Delete a namespace and wait until it is gone (on a real cluster the namespace
        controller empties it first)."""
        store = self.store(cluster)
        kind = store.kind("", "v1", "namespaces")
        store.delete(kind, "", name)
        deadline = time.monotonic() + timeout
        while name in self.names(cluster, "namespaces"):
            assert time.monotonic() < deadline, f"namespace {name} on {cluster} is still there"
            time.sleep(0.2)

    @property
    def real(self) -> bool:
        """Whether the clusters are real kube-apiservers."""
        return isinstance(self.server, KubeAPIServer)


BACKENDS = ("localkube", "kube-apiserver")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `localkube_only` test runs on the emulator alone, a `kube_apiserver_only` test on
    the real backend alone; the other variant is not collected."""
    keep, drop = [], []
    for item in items:
        real = "[kube-apiserver" in item.nodeid
        emulated = "[localkube" in item.nodeid
        off = (real and item.get_closest_marker("localkube_only") is not None) or (
            emulated and item.get_closest_marker("kube_apiserver_only") is not None
        )
        (drop if off else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which backend the clusters run on."""
    name = str(request.param)
    if name == "kube-apiserver":
        require_real_tier(
            f"${ASSETS_ENV} is unset: build with `bash {BUILD_SCRIPT}` to run this"
            if not os.environ.get(ASSETS_ENV)
            else None
        )
    return name


def require_real_tier(missing: str | None) -> None:
    """Skip (locally) or fail (in CI) a real-tier test whose binaries are `missing`, or
    that would run outside the session's own network namespace."""
    reason = missing
    if reason is None and not netns.isolated():
        reason = f"the real tiers run only in a network namespace of their own: {netns.why_not()}"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the real tiers are required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def world(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[World]:
    clusters = ["central", *REMOTES]
    server = (
        Server(clusters=clusters, token=TOKEN)
        if backend == "localkube"
        else KubeAPIServer(clusters=clusters, token=TOKEN)
    )
    with server:
        rollouts = request.node.get_closest_marker("no_rollouts") is None
        mesh = sandbox.start(server, remotes=REMOTES, rollouts=rollouts)
        server.reset_counts()  # the seeding went over HTTP on the real backend
        (tmp_path / "git").mkdir()
        yield World(server, mesh, MeshRemote(tmp_path / "git"), tmp_path)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """`gitmesh run` processes a test starts (tests.integration.running.Proc); any still
    running at the end is killed."""
    made: list[Proc] = []
    yield made
    for p in made:
        if p.proc.poll() is None:
            p.stop(signal.SIGKILL)
        p.handle.close()
