"""pytest fixtures for testing against localkube, shipped so users can test their own mesh
repositories the way gitmesh's tests do (enable with `pytest_plugins = ["gitmesh.testing"]`);
beside them `sandbox`, a simulated Istio central on either backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitmesh.localkube import Server


@pytest.fixture
def localkube() -> Iterator[Server]:
    """A running localkube over HTTP with clusters `central`, `remote-1` and `remote-2`."""
    with Server(clusters=["central", "remote-1", "remote-2"]) as server:
        yield server


@pytest.fixture
def localkube_tls() -> Iterator[Server]:
    """A running localkube over HTTPS (generated CA, bearer token), one cluster `local`."""
    with Server(clusters=["local"], tls=True) as server:
        yield server


@pytest.fixture
def kubeconfig_dir(localkube: Server, tmp_path: Path) -> Path:
    """A directory with one kubeconfig file per localkube cluster, named after it."""
    out = tmp_path / "kubeconfigs"
    out.mkdir()
    for name in localkube.clusters:
        localkube.write_kubeconfig(out / name, name)
    return out
