"""Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection.

Only the holder applies. The holder renews every `retry_period`; another candidate takes
the lease over once it has seen the same record unchanged for `lease_duration` (measured
on its own clock, so clock skew between replicas does not matter). Every write is guarded
by the Lease's resourceVersion, so two candidates never both win. On shutdown the holder
releases the lease so a follower can take over at once.

What the Lease declares is anyone's to write who may update Leases there, so it is read
as a claim, not a fact: a `leaseDurationSeconds` that is not a positive integer counts as
gitmesh's own duration, and one past `MAX_DECLARED` (a forged 2147483647 kept the lease
forever) counts as `MAX_DECLARED`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gitmesh import errors, logs, resources
from gitmesh.cluster import Cluster
from gitmesh.resources import Obj

MAX_DECLARED = 3600.0  # the longest lease another holder is believed to have


def declared_duration(spec: Obj, own: float) -> float:
    """How long a holder's lease is taken to last: its declared duration, within reason."""
    value = spec.get("leaseDurationSeconds")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return own
    return min(float(value), MAX_DECLARED)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def micro_time() -> str:
    """Now, as a Lease's MicroTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Campaigns for a Lease in a background thread."""

    def __init__(
        self,
        central: Cluster,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        retry_period: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.central = central
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.retry_period = retry_period
        self.on_change = on_change
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._thread: threading.Thread | None = None
        self.forbidden: errors.Forbidden | None = None  # the last answer, when it was 401/403

    def is_leader(self) -> bool:
        """Whether this process holds the lease (and renewed it recently enough)."""
        if not self._leader.is_set():
            return False
        return time.monotonic() - self._last_renew < self.lease_duration

    def wait_for_leadership(self, timeout: float) -> bool:
        """Block until leader (True) or timeout (False); a Lease gitmesh may not read or
        write is `errors.Forbidden`, at once (not "someone else holds it")."""
        deadline = time.monotonic() + timeout
        while not self._leader.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self.forbidden is not None:
                raise self.forbidden
            if time.monotonic() >= deadline:
                return False
        return True

    def start(self) -> None:
        """Start campaigning."""
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop campaigning and, when holding the lease, release it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.retry_period + 5)
        if release and self._leader.is_set():
            self._release()
        self._set(False, say=False)  # given up, not lost: "lease released" said it

    def _set(self, leader: bool, *, say: bool = True) -> None:
        if leader == self._leader.is_set():
            return
        if leader:
            self._leader.set()
        else:
            self._leader.clear()
        if say:
            logs.get().info(
                "leadership " + ("acquired" if leader else "lost"),
                extra={"identity": self.identity, "lease": self.name},
            )
        if self.on_change is not None:
            self.on_change(leader)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._set(self._try())
                self.forbidden = None
            except errors.ClusterError as e:
                if isinstance(e, errors.Forbidden):
                    self.forbidden = e
                logs.get().warning(
                    "leader election request failed",
                    extra={"error": str(e), "identity": self.identity},
                )
                if time.monotonic() - self._last_renew >= self.lease_duration:
                    self._set(False)
            self._stop.wait(self.retry_period)

    def _spec(self, *, transitions: int, acquired: str | None = None) -> Obj:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(self.lease_duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _try(self) -> bool:
        try:
            lease = self.central.get(resources.LEASE, self.namespace, self.name)
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(transitions=0),
            }
            try:
                self.central.create(resources.LEASE, body)
            except errors.Conflict:
                return False
            self._last_renew = time.monotonic()
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        rv = lease["metadata"].get("resourceVersion")
        if holder == self.identity:
            new = self._spec(
                transitions=_count(spec.get("leaseTransitions")), acquired=spec.get("acquireTime")
            )
        elif holder and now - self._observed_at < declared_duration(spec, self.lease_duration):
            return False
        else:
            new = self._spec(transitions=_count(spec.get("leaseTransitions")) + 1)
        try:
            self.central.patch(
                resources.LEASE,
                self.namespace,
                self.name,
                [{"op": "replace" if "spec" in lease else "add", "path": "/spec", "value": new}],
                resource_version=rv,
            )
        except errors.Conflict:
            return False
        self._last_renew = time.monotonic()
        return True

    def _release(self) -> None:
        try:
            lease = self.central.get(resources.LEASE, self.namespace, self.name)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time())
            self.central.patch(
                resources.LEASE,
                self.namespace,
                self.name,
                [{"op": "replace", "path": "/spec", "value": spec}],
                resource_version=lease["metadata"].get("resourceVersion"),
            )
            logs.get().info("lease released", extra={"identity": self.identity})
        except errors.ClusterError as e:
            logs.get().warning("could not release the lease", extra={"error": str(e)})
