"""A whole mesh for integration tests: localkube (central + two remotes), the simulated
Istio central from gitmesh.sandbox, and a real git repository seeded from example-repo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import cli, sandbox
from gitmesh.localkube import Server
from gitmesh.localkube.store import Store
from tests.gitutil import MeshRemote, git

REMOTES = ("remote-eu", "remoteistio-sample")
TOKEN = "kubeTOKEN-do-not-leak-7f3a9c"


@dataclass
class World:
    server: Server
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

    def reconcile(self, *extra: str) -> int:
        return cli.main(["reconcile", "--once", *self.args, *extra])

    def plan(self, *extra: str) -> int:
        return cli.main(["plan", *self.args, *extra])

    def store(self, cluster: str) -> Store:
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
        return sum(
            self.server.count(cluster=cluster, verb=v)
            for v in ("create", "update", "patch", "delete", "deletecollection")
        )

    def edit_remote_spec(self, name: str, change: Any, message: str) -> None:
        path = self.repo.work / "remotes" / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text())
        change(doc)
        self.repo.commit({f"remotes/{name}.yaml": yaml.safe_dump(doc)}, message)

    def dump(self) -> str:
        return json.dumps({c: self.store(c).objects.__repr__() for c in self.server.clusters})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Server(clusters=["central", *REMOTES], token=TOKEN) as server:
        mesh = sandbox.start(server, remotes=REMOTES)
        (tmp_path / "git").mkdir()
        yield World(server, mesh, MeshRemote(tmp_path / "git"), tmp_path)
