"""Sharding remotes over `gitmesh run` replicas, on Kubernetes Leases.

Each replica holds a `coordination.k8s.io/v1` Lease of its own (`<group>-<identity>`,
labelled `gitmesh.io/shard-group: <group>`) and renews it every `retry_period`. A member is
live while its Lease's record keeps changing: a record seen unchanged for its
`leaseDurationSeconds`, on the observer's own clock (as client-go's leader election judges a
lease, so clock skew does not matter), is expired. A replica that cannot renew within
`renew_deadline` stops counting itself live, and so stops applying, before the others take
its remotes.

Remotes go to live members by rendezvous (highest random weight) hashing: every replica
computes the same owner from the same member set, and a member joining or leaving moves
only the remotes it gains or had. No two replicas apply to one remote at once:
- a member that joins next to live members owns nothing for `settle` (one lease duration):
  by then the others have seen it, and the pass in flight has checked ownership before its
  next component, and let go; one that finds itself alone lists twice more first (two
  replicas started together see each other);
- a member that expired had stopped itself at `renew_deadline`, before the others'
  `lease_duration`, so its remotes move at once.
A replica that shuts down deletes its Lease, and its remotes move at the others' next renew.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gitmesh import errors, logs, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.reconcile.rendezvous import owner
from gitmesh.resources import Obj
from gitmesh.run.leader import micro_time

GROUP_LABEL = "gitmesh.io/shard-group"
GC_AFTER = 20  # lease durations a member's Lease stays after it expired


class Membership:
    """This replica's Lease, renewed in a background thread, and the live members it sees."""

    def __init__(
        self,
        central: Cluster,
        *,
        namespace: str,
        group: str,
        identity: str,
        lease_duration: float = 15.0,
        retry_period: float = 2.0,
        on_change: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.central = central
        self.namespace = namespace
        self.group = group
        self.identity = identity
        try:
            self.lease_name = specs.dns_subdomain(f"{group}-{identity}")
        except ValueError:
            raise errors.GitmeshError(
                f"--lease-name {group!r} and --identity {identity!r} do not make a valid "
                "Lease name (lowercase letters, digits, '-' and '.', at most 253)"
            ) from None
        self.lease_duration = lease_duration
        self.retry_period = retry_period
        # client-go's renewDeadline is 2/3 of its leaseDuration by default.
        self.renew_deadline = lease_duration * 2 / 3
        self.settle = lease_duration
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, tuple[str, float]] = {}  # lease name -> (renewTime, first seen)
        self._renewed = 0.0  # monotonic start of the last successful renew
        self._settled_at: float | None = None  # when this replica may own remotes
        self._members: tuple[str, ...] = ()
        self._published: tuple[str, ...] | None = None
        self._lock = threading.Lock()

    # -- what the runner asks --------------------------------------------------------------

    def members(self) -> tuple[str, ...]:
        """The live members, this replica among them while it may apply."""
        with self._lock:
            return self._members if self.active() else ()

    def active(self) -> bool:
        """Whether this replica may apply at all: renewed recently and settled."""
        now = time.monotonic()
        return (
            self._settled_at is not None
            and now >= self._settled_at
            and now - self._renewed < self.renew_deadline
        )

    def owns(self, name: str) -> bool:
        """Whether this replica reconciles `name` now."""
        members = self.members()
        return bool(members) and owner(name, members) == self.identity

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Join, and keep renewing until stopped."""
        self._thread = threading.Thread(target=self._loop, name="membership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and leave: the Lease is deleted so the others take over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.retry_period + 5)
        with self._lock:
            self._members, self._settled_at = (), None
        try:
            lease = self.central.get(resources.LEASE, self.namespace, self.lease_name)
            self.central.delete(
                resources.LEASE,
                self.namespace,
                self.lease_name,
                resource_version=lease["metadata"].get("resourceVersion"),
            )
            logs.get().info("left the shard group", extra={"identity": self.identity})
        except errors.NotFound:
            pass
        except errors.ClusterError as e:
            logs.get().warning("could not delete the member lease", extra={"error": str(e)})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except errors.ClusterError as e:
                logs.get().warning(
                    "shard membership request failed",
                    extra={"error": str(e), "identity": self.identity},
                )
                self._publish()
            self._stop.wait(self.retry_period)

    def tick(self) -> None:
        """Renew this replica's Lease and recompute the live members."""
        started = time.monotonic()
        self._renew()
        self._renewed = started
        leases, _ = self.central.list(
            resources.LEASE, namespace=self.namespace, label_selector=f"{GROUP_LABEL}={self.group}"
        )
        now = time.monotonic()
        others: set[str] = set()
        names = set()
        for lease in leases:
            name = str((lease.get("metadata") or {}).get("name") or "")
            spec = lease.get("spec")
            holder = spec.get("holderIdentity") if isinstance(spec, dict) else None
            if not name or not isinstance(spec, dict) or not isinstance(holder, str | None):
                logs.get().warning("ignoring a malformed member Lease", extra={"lease": name})
                continue
            holder = holder or ""
            names.add(name)
            if not holder or name == self.lease_name:
                continue
            record = str(spec.get("renewTime", ""))
            seen = self._seen.get(name)
            if seen is None or seen[0] != record:
                seen = self._seen[name] = (record, now)
            # gitmesh's own lease duration, never the Lease's self-declared one: anyone who
            # can create Leases here could otherwise hold a share of the remotes forever.
            duration = self.lease_duration
            if now - seen[1] < duration:
                others.add(holder)
            elif now - seen[1] > GC_AFTER * duration:
                self._forget(lease)
        self._seen = {n: s for n, s in self._seen.items() if n in names}
        if self._settled_at is None:
            # Next to live members: give them time to see this replica and let go of what
            # moves to it. Alone: list again first, in case another replica started at the
            # same moment and created its Lease just after this list.
            self._settled_at = now + (self.settle if others else 2 * self.retry_period)
            logs.get().info(
                "joined the shard group",
                extra={"identity": self.identity, "members": len(others) + 1},
            )
        with self._lock:
            self._members = tuple(sorted({*others, self.identity}))
        self._publish()

    def _publish(self) -> None:
        members = self.members()
        if members != self._published:
            self._published = members
            logs.get().info(
                "shard members changed",
                extra={"identity": self.identity, "members": ",".join(members)},
            )
            if self.on_change is not None:
                self.on_change(members)

    def _forget(self, lease: Obj) -> None:
        """Delete a member's Lease long expired (a pod killed, never to return)."""
        name = lease["metadata"]["name"]
        try:
            self.central.delete(
                resources.LEASE,
                self.namespace,
                name,
                resource_version=lease["metadata"].get("resourceVersion"),
            )
            logs.get().info("deleted an expired member lease", extra={"lease": name})
        except (errors.NotFound, errors.Conflict):
            pass

    def _renew(self) -> None:
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(self.lease_duration)),
            "renewTime": micro_time(),
        }
        try:
            lease = self.central.get(resources.LEASE, self.namespace, self.lease_name)
        except errors.NotFound:
            self.central.create(
                resources.LEASE,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.lease_name,
                        "namespace": self.namespace,
                        "labels": {GROUP_LABEL: self.group, resources.MANAGED_BY: "gitmesh"},
                    },
                    "spec": {**spec, "acquireTime": spec["renewTime"]},
                },
            )
            return
        self.central.patch(
            resources.LEASE,
            self.namespace,
            self.lease_name,
            [{"op": "add", "path": "/spec", "value": {**(lease.get("spec") or {}), **spec}}],
            resource_version=lease["metadata"].get("resourceVersion"),
        )
