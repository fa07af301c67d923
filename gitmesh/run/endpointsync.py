"""Live endpoints: watch the central Istio pods and report changes as they happen.

An informer in miniature: LIST the pods of the mesh namespace, then WATCH from that
resourceVersion, keeping a cache; resume from the last resourceVersion seen (bookmarks
included) when the stream ends; relist on 410 Gone; reconnect with backoff when the
connection breaks. Changes are debounced and handed to a callback with the current pods
and the label sets that changed, so the caller can update only the affected remotes.
Flushes start at most once per `window` (a flapping pod makes one write per remote per
window, not one per flap); the last flush always carries the final state.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gitmesh import errors, logs, render, resources
from gitmesh.cluster import Cluster
from gitmesh.resources import Resource

Labels = Mapping[str, str]
OnChange = Callable[[tuple[render.Pod, ...], list[Labels]], None]


def list_watch(
    central: Cluster,
    res: Resource,
    namespace: str,
    *,
    stop: threading.Event,
    relist: Callable[[], None],
    handle: Callable[[Mapping[str, Any]], None],
    resource_version: Callable[[], str],
    watch_timeout: int,
    max_backoff: float,
    what: str,
) -> None:
    """The informer loop, until `stop`: `relist()`, then WATCH from `resource_version()`
    handing each event to `handle`; resume when the stream ends, relist on 410 Gone,
    reconnect with jittered backoff when the connection breaks."""
    log = logs.get()
    backoff = 0.2
    need_list = True
    while not stop.is_set():
        try:
            if need_list:
                relist()
                need_list = False
            for event in central.watch(
                res,
                namespace=namespace,
                resource_version=resource_version(),
                timeout_seconds=watch_timeout,
            ):
                handle(event)
                backoff = 0.2
                if stop.is_set():
                    return
        except errors.ClusterError as e:
            if stop.is_set():
                return  # the stream broke because we are stopping: nothing to report
            if e.status == 410:
                log.info(f"{what} watch expired; relisting", extra={"error": str(e)})
                need_list = True
                continue
            log.warning(
                f"{what} watch broke; reconnecting",
                extra={"error": str(e), "backoff": round(backoff, 2)},
            )
            stop.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, max_backoff)


def to_pod(obj: Mapping[str, Any]) -> render.Pod:
    """A pod object as rendering needs it."""
    status = obj.get("status") or {}
    ready = (
        not obj["metadata"].get("deletionTimestamp")
        and status.get("phase") == "Running"
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )
    return render.Pod(
        obj["metadata"]["name"],
        status.get("podIP", ""),
        dict(obj["metadata"].get("labels") or {}),
        bool(ready),
    )


class EndpointSync:
    """Watches central pods in a thread; calls `on_change` after each debounced burst."""

    def __init__(
        self,
        central: Cluster,
        namespace: str,
        on_change: OnChange,
        *,
        debounce: float = 0.05,
        window: float = 0.2,
        watch_timeout: int = 300,
        max_backoff: float = 10.0,
    ) -> None:
        self.central = central
        self.namespace = namespace
        self.on_change = on_change
        self.debounce = debounce
        self.window = window
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.pods: dict[str, render.Pod] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self.relists = 0
        self._stop = threading.Event()
        self._pending: list[Labels] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the watch and the debouncer threads."""
        for target, name in (
            (self._watch_loop, "endpoints-watch"),
            (self._flush_loop, "endpoints-flush"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop (the watch ends at its next event or timeout)."""
        self._stop.set()
        self._wake.set()

    def snapshot(self) -> tuple[render.Pod, ...]:
        """The cached pods."""
        with self._lock:
            return tuple(self.pods[k] for k in sorted(self.pods))

    def _relist(self) -> None:
        items, rv = self.central.list(resources.POD, namespace=self.namespace)
        fresh = {o["metadata"]["name"]: to_pod(o) for o in items}
        with self._lock:
            changed = [p.labels for name, p in fresh.items() if self.pods.get(name) != p]
            changed += [p.labels for name, p in self.pods.items() if name not in fresh]
            self.pods = fresh
            self.resource_version = rv
        self.relists += 1
        if changed and self.synced.is_set():
            self._queue(changed)
        self.synced.set()

    def _watch_loop(self) -> None:
        list_watch(
            self.central,
            resources.POD,
            self.namespace,
            stop=self._stop,
            relist=self._relist,
            handle=self._handle,
            resource_version=lambda: self.resource_version,
            watch_timeout=self.watch_timeout,
            max_backoff=self.max_backoff,
            what="central pod",
        )

    def _handle(self, event: Mapping[str, Any]) -> None:
        obj = event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        typ = event.get("type")
        if typ == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        pod = to_pod(obj)
        with self._lock:
            before = self.pods.get(pod.name)
            if typ == "DELETED":
                self.pods.pop(pod.name, None)
            else:
                self.pods[pod.name] = pod
            if rv:
                self.resource_version = rv
        if before != pod or typ == "DELETED":
            log = logs.get()
            log.info(
                "pod event detected",
                extra={"podName": pod.name, "podIP": pod.ip, "event": typ, "ready": pod.ready},
            )
            self._queue([pod.labels] + ([before.labels] if before else []))

    def _queue(self, labels: list[Labels]) -> None:
        with self._lock:
            self._pending += labels
        self._wake.set()

    def _flush_loop(self) -> None:
        last = -self.window
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            time.sleep(max(self.debounce, last + self.window - time.monotonic()))
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, []
            if pending:
                last = time.monotonic()
                try:
                    self.on_change(self.snapshot(), pending)
                except Exception:  # the watch must outlive a failing callback
                    logs.get().exception("updating endpoints failed")


class PendingEndpoints:
    """Endpoint snapshots the hot path took that no status commit holds yet, by remote."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Mapping[str, tuple[str, ...]]] = {}

    def took(self, name: str, snapshot: Mapping[str, tuple[str, ...]]) -> None:
        """The hot path wrote `name`'s Endpoints."""
        with self._lock:
            self._pending[name] = snapshot

    def committed(self, names: Iterable[str]) -> None:
        """A pass's status commit holds these remotes' snapshots."""
        with self._lock:
            for name in names:
                self._pending.pop(name, None)

    def take(self) -> dict[str, Mapping[str, tuple[str, ...]]]:
        """Everything pending, now no longer pending."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore(self, pending: Mapping[str, Mapping[str, tuple[str, ...]]]) -> None:
        """A commit of `pending` failed: pending again, under newer snapshots."""
        with self._lock:
            self._pending = {**pending, **self._pending}
