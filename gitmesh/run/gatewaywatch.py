"""The istiod primary's east-west gateway, watched: IstiodRemotes reach istiod through its
load-balancer address, so when the address changes, their istiod Endpoints must follow.

LIST the Services of the mesh namespace and WATCH from there (`endpointsync.list_watch`:
resuming from the last resourceVersion, relisting on 410 Gone, reconnecting with backoff),
and call `on_change` with the new address whenever the gateway's address differs from the
last one reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from gitmesh import logs, resources
from gitmesh.cluster import Cluster
from gitmesh.reconcile.primary import address_of
from gitmesh.run.endpointsync import list_watch


class GatewayWatch:
    """Watches one Service in a thread; calls `on_change(address)` when its address moves."""

    def __init__(
        self,
        central: Cluster,
        namespace: str,
        name: str,
        on_change: Callable[[str | None], None],
        *,
        watch_timeout: int = 300,
        max_backoff: float = 10.0,
    ) -> None:
        self.central = central
        self.namespace = namespace
        self.name = name
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.address: str | None = None
        self.synced = threading.Event()
        self._rv = ""
        self._stop = threading.Event()

    def start(self) -> None:
        """Start watching."""
        threading.Thread(target=self._loop, name="gateway-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop (the watch ends at its next event or timeout)."""
        self._stop.set()

    def _seen(self, address: str | None) -> None:
        if address == self.address:
            return
        before, self.address = self.address, address
        if self.synced.is_set():
            logs.get().info(
                "east-west gateway address changed", extra={"from": before, "to": address}
            )
            try:
                self.on_change(address)
            except Exception:  # the watch must outlive a failing callback
                logs.get().exception("following the gateway address failed")

    def _relist(self) -> None:
        items, self._rv = self.central.list(resources.SERVICE, namespace=self.namespace)
        found = next((o for o in items if o["metadata"]["name"] == self.name), None)
        self._seen(address_of(found))
        self.synced.set()

    def _handle(self, event: Mapping[str, Any]) -> None:
        obj = event.get("object") or {}
        self._rv = (obj.get("metadata") or {}).get("resourceVersion") or self._rv
        if event.get("type") == "BOOKMARK" or obj["metadata"]["name"] != self.name:
            return
        self._seen(None if event.get("type") == "DELETED" else address_of(obj))

    def _loop(self) -> None:
        list_watch(
            self.central,
            resources.SERVICE,
            self.namespace,
            stop=self._stop,
            relist=self._relist,
            handle=self._handle,
            resource_version=lambda: self._rv,
            watch_timeout=self.watch_timeout,
            max_backoff=self.max_backoff,
            what="gateway",
        )
