"""How a pass behaves: the settings the CLI builds from flags and environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Remotes in flight at once. A far remote's pass is mostly waiting (a round trip for its
# reads, one per write), so more remotes than cores; the thread count is bounded by it
# (x12 for the reads).
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class Settings:
    """How a pass behaves (built by the CLI from flags and environment)."""

    concurrency: int = DEFAULT_CONCURRENCY
    plan_only: bool = False  # plan, write nothing (gitmesh plan)
    dry_run: bool = False  # send every write with the server's dryRun
    allow_exec: bool = False
    kubeconfig_dir: Path | None = None
    namespace: str | None = None  # where the remotes' kubeconfig Secrets live (default: mesh)
    conflict_retries: int = 3
    allow_mass_prune: bool = False  # prune however many remotes a revision removes
    forget: frozenset[str] = frozenset()  # removed remotes to let go of without pruning
    desired_digests: bool = False  # report digests of the desired objects (gitmesh run)
    request_timeout: float = 30.0  # every Kubernetes request (connect and read)
    remote_timeout: float = 300.0  # all of one remote's work in a pass
    max_response: int = 16 * 1024 * 1024  # the largest answer read (cluster.MAX_RESPONSE)
    health_timeout: float = 300.0  # how long a remote may be Progressing before Degraded
    wait: bool = False  # wait (up to health_timeout) for the remote's rollouts


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How `gitmesh run` behaves."""

    interval: float = 60.0
    resync: float = 600.0
    jitter: float = 0.1  # fraction of the interval
    listen: tuple[str, int] = ("0.0.0.0", 8080)  # noqa: S104 - a pod serves its metrics port
    identity: str = "gitmesh"
    lease_name: str = "gitmesh"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    retry_period: float = 2.0
    status_branch: str | None = None
    hook_secret: bytes | None = None
    debounce: float = 0.05
    grace: float = 20.0  # how long shutdown waits for the pass in flight
    http_workers: int = 8
    http_timeout: float = 10.0  # all of one HTTP request, reading it and answering
    # /healthz and /readyz alone, on a listener of their own (None: none): slow clients of
    # the metrics port cannot starve the kubelet's probes.
    probe_listen: tuple[str, int] | None = None
    shard: bool = False  # share the remotes with the other replicas instead of electing one
