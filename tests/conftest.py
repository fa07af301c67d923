"""Shared fixtures: localkube from the package, and real `kubernetes` clients against it.

The session first enters a network namespace of its own (gitmesh.localkube.netns): only
loopback and TEST-NET-1, so nothing a test starts, a real kube-apiserver calling a webhook
at a ClusterIP or istiod dialling a remote, can reach off the machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kubernetes
import pytest

from gitmesh.localkube import Server, netns

pytest_plugins = ["gitmesh.testing"]

ClientFor = Callable[[Server, str], kubernetes.client.ApiClient]


def pytest_configure(config: pytest.Config) -> None:
    """Isolate the session before any thread or server exists (the real tiers require
    it: tests.integration.conftest)."""
    netns.isolate()


@pytest.fixture
def client_for() -> Iterator[ClientFor]:
    """Make real `kubernetes` ApiClients for localkube clusters; closed afterwards."""
    made: list[kubernetes.client.ApiClient] = []

    def make(server: Server, cluster: str) -> kubernetes.client.ApiClient:
        client = kubernetes.config.new_client_from_config_dict(server.kubeconfig(cluster))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
