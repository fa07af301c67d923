"""Prometheus metrics of `gitmesh run` (names start with `gitmesh_`), on a registry of
their own so that tests and several runners in one process do not collide."""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from gitmesh import plan
from gitmesh.status.results import PassResult

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
REMOTE_BUCKETS = (0.05, 0.25, 1, 5, 30, 120)


class Metrics:
    """Every metric gitmesh exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Per remote, a few buckets; per component, over all remotes: series grow with
        # the remotes, not with remotes x components x buckets.
        self.pass_duration = Histogram(
            "gitmesh_pass_duration_seconds",
            "Duration of reconciling one remote",
            ["remote"],
            registry=r,
            buckets=REMOTE_BUCKETS,
        )
        self.component_duration = Histogram(
            "gitmesh_component_duration_seconds",
            "Duration of reconciling one component of a remote (all remotes)",
            ["component"],
            registry=r,
            buckets=BUCKETS,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, fds
        PlatformCollector(registry=r)
        self.objects = Counter(
            "gitmesh_objects_total", "Objects written on remotes", ["remote", "action"], registry=r
        )
        self.drift = Counter(
            "gitmesh_drift_total",
            "Patches that undid an out-of-band edit (the desired object had not changed "
            "since the last pass)",
            ["remote"],
            registry=r,
        )
        self.changes = Counter(
            "gitmesh_desired_changes_total",
            "Patches that follow a change of the desired state (the spec, mesh.yaml or "
            "what central holds)",
            ["remote"],
            registry=r,
        )
        self._source_and_api(r)
        self.last_success = Gauge(
            "gitmesh_last_successful_pass_timestamp_seconds",
            "When a remote was last reconciled to Available",
            ["remote"],
            registry=r,
        )
        self.remote_available = Gauge(
            "gitmesh_remote_available", "1 when the remote is Available", ["remote"], registry=r
        )
        self.remote_progressing = Gauge(
            "gitmesh_remote_progressing", "1 while its Deployments roll out", ["remote"], registry=r
        )
        self.endpoint_latency = Histogram(
            "gitmesh_endpoint_sync_latency_seconds",
            "From a central pod change to the remotes' Endpoints updated",
            registry=r,
            buckets=BUCKETS,
        )
        self.leader = Gauge(
            "gitmesh_leader",
            "1 while this replica holds the lease (sharded: while it is an active member)",
            registry=r,
        )
        self.shard_members = Gauge(
            "gitmesh_shard_members", "live replicas of the shard group, as seen", registry=r
        )

    def _source_and_api(self, r: CollectorRegistry) -> None:
        """The metrics of the API requests and of fetching the mesh repository."""
        self.api_requests = Counter(
            "gitmesh_api_requests_total",
            "Kubernetes API requests",
            ["cluster", "verb", "code"],
            registry=r,
        )
        self.fetch_duration = Histogram(
            "gitmesh_source_fetch_duration_seconds",
            "Duration of fetching the mesh repository",
            registry=r,
            buckets=BUCKETS,
        )
        self.fetch_failures = Counter(
            "gitmesh_source_fetch_failures_total",
            "Failed fetches of the mesh repository",
            registry=r,
        )

    def record(self, result: PassResult, desired: dict[str, Mapping[plan.Ref, str]]) -> None:
        """Count what a pass did; `desired` holds each remote's desired-object digests at
        its last pass (a patch to an unchanged one undid drift), updated here."""
        m = self
        for name, res in result.remotes.items():
            report = res.report
            for comp in report.components:
                m.component_duration.labels(comp.name).observe(comp.seconds)
                for action in ("created", "patched", "deleted"):
                    n = getattr(comp, action)
                    if n:
                        m.objects.labels(name, action).inc(n)
            before = desired.get(name, {})
            for item in res.items:
                if item.action != "patch" or item.ref not in res.desired:
                    continue
                same = before.get(item.ref) == res.desired[item.ref]
                (m.drift if same else m.changes).labels(name).inc()
            if res.desired:
                desired[name] = res.desired
            m.pass_duration.labels(name).observe(sum(c.seconds for c in report.components))
            m.remote_available.labels(name).set(1 if report.state == "Available" else 0)
            rolling = report.state in ("Progressing", "Degraded")
            m.remote_progressing.labels(name).set(1 if rolling else 0)
            if report.state == "Available":
                m.last_success.labels(name).set(time.time())
