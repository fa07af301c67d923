"""Shared fixtures: localkube from the package, and real `kubernetes` clients against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kubernetes
import pytest

from gitmesh.localkube import Server

pytest_plugins = ["gitmesh.testing"]

ClientFor = Callable[[Server, str], kubernetes.client.ApiClient]


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
