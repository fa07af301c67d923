"""Far remotes: a remote's reads go out at once, so a round trip is paid once per pass
rather than once per kind. Checked from the emulator's access log (when each request
arrived and was answered), with a WAN round trip injected on one remote."""

from __future__ import annotations

import json

import pytest

from gitmesh import resources
from tests.integration.conftest import World

EU = "remote-eu"


@pytest.mark.localkube_only  # the latency fault
def test_a_remotes_reads_are_in_flight_together(world: World) -> None:
    assert world.reconcile() == 0
    log = world.tmp / "access.jsonl"
    world.server.set_access_log(log)
    world.server.inject(cluster=EU, latency=0.3, count=None)
    assert world.reconcile() == 0
    world.server.set_access_log(None)
    lists = [
        entry
        for entry in map(json.loads, log.read_text().splitlines())
        if entry["cluster"] == EU and entry["verb"] == "list"
    ]
    assert len(lists) == len(resources.MANAGED) + 1  # every managed kind, and namespaces
    spans = [(e["time"] - e["ms"] / 1000, e["time"]) for e in lists]
    # Every read was answered after the last one arrived: all were in flight at once.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
