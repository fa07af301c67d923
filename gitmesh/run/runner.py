"""`gitmesh run`: the poller, live endpoint sync, leader election, metrics and health.

Jobs (APScheduler 3, `coalesce=True`, jittered):
- poll every `interval`: fetch the source; reconcile the remotes whose spec changed (all of
  them when mesh.yaml or the central inputs changed); commit pending endpoint snapshots.
  Up to three polls run at once: one whose pass waits on a slow remote does not hold the
  next, which reconciles the remotes that are free;
- resync every `resync`: a full pass, correcting drift on every remote.
Passes run side by side on disjoint remotes: a remote in a pass is busy, a pass leaves
busy remotes out, and when the work on one ends a catch-up pass takes it to the newest
revision (a full pass that left some out is run again then).
A watch on the central Istio pods (`EndpointSync`) updates only the Endpoints of the
affected remotes within a debounce interval of a pod change. A per-remote lock keeps passes
and endpoint updates from overlapping on one remote. Only the Lease holder applies; a
follower keeps its watch warm and takes over within the lease duration. With `shard`, the
replicas share the remotes instead (gitmesh.shards): each applies to the remotes it owns,
in passes, endpoint updates and status commits alike.

It stays responsive with a hung remote: every remote's work in a pass has a deadline,
`/readyz` reports a pass that has run past the longest a pass can take (a wedged worker),
and shutdown waits at most `grace` seconds for the pass in flight. The HTTP server for
metrics, health and the git webhook serves a bounded number of connections at once, each
with a socket timeout and a total time (gitmesh.deadlines shuts a request's socket when it
is up), and refuses malformed or oversize requests with one log line each; `/healthz` and
`/readyz` also have a listener of their own (`probe_listen`), which slow clients of the
metrics port cannot starve.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gitmesh import deadlines, errors, logs, plan, render, specs
from gitmesh.cluster import USER_AGENT, Cluster
from gitmesh.reconcile import cycle
from gitmesh.reconcile.endpoints import affected_remotes, endpoints_only
from gitmesh.reconcile.observe import observe_central
from gitmesh.reconcile.passes import run_pass
from gitmesh.run.endpointsync import EndpointSync
from gitmesh.run.gatewaywatch import GatewayWatch
from gitmesh.run.leader import Elector
from gitmesh.run.metrics import Metrics
from gitmesh.run.shards import Membership
from gitmesh.settings import Settings
from gitmesh.source import Snapshot, Source
from gitmesh.specs import meshrepo
from gitmesh.status import reports
from gitmesh.status.branch import StatusBranch
from gitmesh.status.results import PassResult


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


class Runner:
    """Everything `gitmesh run` runs, wired together."""

    def __init__(
        self,
        source: Source,
        central: Cluster,
        *,
        settings: Settings,
        run: RunSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.source = source
        self.central = central
        # The runner tells drift from desired changes by the objects' digests.
        self.settings = dataclasses.replace(settings, desired_digests=True)
        self.run_settings = run
        self.metrics = metrics or Metrics()
        self.stop_event = threading.Event()
        # Set on shutdown and while not leading: a pass in flight ends after its component.
        self.halt = threading.Event()
        self.repo: meshrepo.Repo | None = None
        self.snapshot: Snapshot | None = None
        self.services: Mapping[str, render.CentralService] = {}
        self.central_digest = ""
        self.branch: StatusBranch | None = None
        self.pending_endpoints: dict[str, Mapping[str, tuple[str, ...]]] = {}
        self.ready = threading.Event()
        self._locks: dict[str, threading.Lock] = {}
        self._clusters: dict[str, tuple[str, Cluster]] = {}
        self._configs: dict[str, Mapping[str, Any]] = {}
        # Each remote's desired objects at the last pass (digests): drift vs. change.
        self._desired: dict[str, Mapping[plan.Ref, str]] = {}
        self._locks_guard = threading.Lock()
        # Passes run side by side on disjoint remotes: a remote in a pass is busy; a pass
        # leaves busy remotes out and marks them behind, and the end of their work
        # schedules a catch-up pass for them at the newest revision.
        self._state = threading.Condition()
        self._busy: set[str] = set()
        self._behind: set[str] = set()
        self._behind_all = False  # a full pass left some out: one more when they are free
        self._catching_up: set[str] = set()
        self._inflight: dict[int, float] = {}  # pass -> time.monotonic() it started
        self._passes = 0
        self._handled = 0  # the newest pass whose snapshot is self.snapshot
        self._status_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self.central.observer = self._observe_request
        # Audit logs name the replica behind every write.
        self.user_agent = f"{USER_AGENT} ({run.identity})"
        central.user_agent = self.user_agent
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.elector: Elector | None = None
        self.membership: Membership | None = None
        self.sync: EndpointSync | None = None
        self.gateway: GatewayWatch | None = None
        self.http: _BoundedHTTPServer | None = None
        self.probes: _BoundedHTTPServer | None = None
        self.pass_started: float | None = None  # time.monotonic() of the pass in flight
        self.started = False

    # -- plumbing ------------------------------------------------------------------------

    def _observe_request(self, cluster: str, method: str, code: int) -> None:
        self.metrics.api_requests.labels(cluster, method, str(code)).inc()

    def connect(self, name: str, config: Mapping[str, Any]) -> Cluster:
        """A connection to a remote, counting its requests in the metrics; kept while the
        remote's kubeconfig stays the same, so endpoint updates reuse it."""
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        with self._locks_guard:
            cached = self._clusters.get(name)
            if cached is not None and cached[0] == digest:
                return cached[1]
            cluster = Cluster(
                name, config, observer=self._observe_request, user_agent=self.user_agent
            )
            cluster.shared = True
            self._clusters[name] = (digest, cluster)
            self._configs[name] = config
        if cached is not None:
            cached[1].close()
        return cluster

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock of one remote (an endpoint update: short, and not busy)."""
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            yield

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Hold the lock of one remote for a pass, busy meanwhile; a pass that wanted it
        then gets a catch-up pass once it is free."""
        with self.lock(name):
            with self._state:
                self._busy.add(name)
            try:
                yield
            finally:
                with self._state:
                    self._busy.discard(name)
                    again = name in self._behind
                    self._behind.discard(name)
                    full = self._behind_all and not self._busy
                    if full:
                        self._behind_all = False
                if again or full:
                    self._catch_up(name, full=full)

    def _catch_up(self, name: str, *, full: bool) -> None:
        with self._state:
            self._catching_up.add("" if full else name)
        if not self.stop_event.is_set() and self.scheduler.running:
            self.scheduler.add_job(self._caught_up, id="catch-up", replace_existing=True)

    def _caught_up(self) -> None:
        """The pass that busy remotes missed, at the newest revision."""
        with self._state:
            names, self._catching_up = self._catching_up, set()
        if not names or not self.leader() or self.stop_event.is_set():
            return
        snapshot = self._fetch()
        if snapshot is not None:
            self._pass(snapshot, snapshot.parse(), only=None if "" in names else names)

    def leader(self) -> bool:
        """Whether this replica may apply (to the remotes it owns, when sharded)."""
        if self.membership is not None:
            return self.membership.active()
        return self.elector is None or self.elector.is_leader()

    def owns(self, name: str) -> bool:
        """Whether this replica reconciles `name`: always, unless sharded."""
        return self.membership is None or self.membership.owns(name)

    # -- the jobs ------------------------------------------------------------------------

    def _fetch(self) -> Snapshot | None:
        started = time.monotonic()
        try:
            snapshot = self.source.fetch()
        except errors.SourceError as e:
            self.metrics.fetch_failures.inc()
            logs.get().error("fetching the mesh repository failed", extra={"error": str(e)})
            return None
        finally:
            self.metrics.fetch_duration.observe(time.monotonic() - started)
        return snapshot

    def poll(self) -> None:
        """Fetch; reconcile what changed; commit pending endpoint snapshots."""
        if not self.leader() or self.stop_event.is_set():
            return
        before = self.snapshot
        snapshot = self._fetch()
        if snapshot is None:
            return
        if before is None:
            self.full_pass(snapshot)
            return
        repo = snapshot.parse()
        # Changed since the last commit a pass handled (not merely the last fetch), so a
        # change fetched while a pass failed is not forgotten.
        changed = self.source.changed_between(before.commit, snapshot)
        changed_remotes = {
            p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in changed if p.startswith("remotes/")
        }
        # Central inputs (Services, the CA) can change without a commit.
        everything = meshrepo.MESH_FILE in changed or self._central_changed(repo)
        if everything or changed_remotes:
            self._pass(snapshot, repo, only=None if everything else changed_remotes)
        self.flush_endpoints()

    def resync(self) -> None:
        """A full pass over every remote."""
        if not self.leader() or self.stop_event.is_set():
            return
        snapshot = self._fetch()
        if snapshot is not None:
            self.full_pass(snapshot)

    def full_pass(self, snapshot: Snapshot) -> None:
        """Reconcile every remote at `snapshot`."""
        self._pass(snapshot, snapshot.parse(), only=None)

    def _central_changed(self, repo: meshrepo.Repo) -> bool:
        if repo.mesh is None:
            return False
        state = observe_central(self.central, repo.mesh, repo.remotes.values())
        return self._digest(state) != self.central_digest

    @staticmethod
    def _digest(state: render.Central) -> str:
        data = json.dumps(
            {
                "services": {
                    n: [dict(s.selector), list(s.ports)] for n, s in sorted(state.services.items())
                },
                "ca": dict(state.ca_data or {}),
                "primary": [state.gateway_address, state.root_cert],
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(data.encode()).hexdigest()

    def unhealthy(self) -> str | None:
        """Why the process should be restarted (the liveness probe): a wedged worker, or a
        scheduler that stopped while the process is not shutting down."""
        if self.stop_event.is_set():
            return None
        if self.started and not self.scheduler.running:
            return "the scheduler is not running"
        wedged = self.wedged()
        return f"wedged: {wedged}" if wedged else None

    def wedged(self) -> str | None:
        """Why the worker looks stuck: a pass running longer than any pass can (every
        remote's deadline, twice over, in rounds of `concurrency`, plus a minute)."""
        started = self.pass_started
        if started is None:
            return None
        remotes = len(self.repo.remotes) if self.repo else 1
        rounds = -(-max(remotes, 1) // max(self.settings.concurrency, 1))
        limit = 2 * self.settings.remote_timeout * rounds + 60.0
        took = time.monotonic() - started
        return f"a pass has run for {took:.0f}s (limit {limit:.0f}s)" if took > limit else None

    def _pass(self, snapshot: Snapshot, repo: meshrepo.Repo, *, only: set[str] | None) -> None:
        """A pass over `only` (None: all, with pruning), leaving out the remotes busy in
        another: they are behind, and caught up when free. Passes run side by side."""
        with self._state:
            wanted = set(repo.remotes) | set(repo.invalid) if only is None else set(only)
            busy = wanted & self._busy
            if busy:
                self._behind |= busy
                self._behind_all |= only is None
                if not wanted - busy:
                    return
                only = wanted - busy
            self._passes += 1
            number = self._passes
            self._inflight[number] = time.monotonic()
            self.pass_started = min(self._inflight.values())
        try:
            self._pass_locked(snapshot, repo, only=only, number=number)
        finally:
            with self._state:
                del self._inflight[number]
                self.pass_started = min(self._inflight.values(), default=None)
                self._state.notify_all()

    def _pass_locked(
        self, snapshot: Snapshot, repo: meshrepo.Repo, *, only: set[str] | None, number: int
    ) -> None:
        log = logs.get()
        with self._status_lock:
            if self.branch is None:
                self.branch = cycle.status_branch(
                    self.source, repo, self.run_settings.status_branch
                )
        try:
            result = run_pass(
                repo,
                snapshot.commit,
                self.central,
                connect=self.connect,
                settings=self.settings,
                only=only,
                guard=self.guard,
                stop=self.halt,
                owns=self.owns if self.membership is not None else None,
            )
        except errors.GitmeshError as e:
            log.error(
                "reconcile pass failed",
                extra={"error": str(e), "revision": snapshot.commit[:12]},
            )
            return
        with self._state:  # a pass that ends after a newer one does not take it back
            if number > self._handled:
                self._handled = number
                self.snapshot = snapshot
                self.repo = repo
        self._watch_gateway(repo)
        if result.central is not None:
            self.services = result.central.services
            self.central_digest = self._digest(result.central)
        self._record(result)
        if self.halt.is_set():
            log.info("pass interrupted (shutdown or leadership lost); status not written")
            return
        report = dataclasses.replace(
            result.report,
            # A remote that moved to another replica during the pass is that replica's to
            # report on.
            remotes={n: r for n, r in result.report.remotes.items() if self.owns(n)},
            reconciled_by=self.run_settings.identity,
        )
        with self._pending_lock:
            for name, remote in report.remotes.items():
                if remote.endpoints is not None:
                    self.pending_endpoints.pop(name, None)
        try:
            with self._status_lock:
                cycle.commit(self.branch, report)
        except errors.StatusWriteError as e:
            log.error("writing the status branch failed", extra={"error": str(e)})
        self.ready.set()

    def _record(self, result: PassResult) -> None:
        m = self.metrics
        for name, res in result.remotes.items():
            report = res.report
            for comp in report.components:
                m.pass_duration.labels(name, comp.name).observe(comp.seconds)
                for action in ("created", "patched", "deleted"):
                    n = getattr(comp, action)
                    if n:
                        m.objects.labels(name, action).inc(n)
            before = self._desired.get(name, {})
            for item in res.items:
                if item.action != "patch" or item.ref not in res.desired:
                    continue
                same = before.get(item.ref) == res.desired[item.ref]
                (m.drift if same else m.changes).labels(name).inc()
            if res.desired:
                self._desired[name] = res.desired
            m.pass_duration.labels(name, "all").observe(sum(c.seconds for c in report.components))
            m.remote_available.labels(name).set(1 if report.state == "Available" else 0)
            if report.state == "Available":
                m.last_success.labels(name).set(time.time())

    # -- live endpoints ------------------------------------------------------------------

    def on_pods(self, pods: tuple[render.Pod, ...], changed: list[Mapping[str, str]]) -> None:
        """A burst of central pod changes: update the affected remotes' Endpoints."""
        if not self.leader() or self.repo is None:
            return
        started = time.monotonic()
        state = render.Central(pods=pods, services=self.services)
        names = [n for n in affected_remotes(self.repo, state, changed) if self.owns(n)]
        results = endpoints_only(
            self.repo,
            self.central,
            connect=self.connect,
            settings=self.settings,
            names=names,
            state=state,
            guard=self.lock,
            configs=dict(self._configs),
        )
        with self._pending_lock:
            for name, res in results.items():
                if res.report.endpoints is not None:
                    self.pending_endpoints[name] = res.report.endpoints
        if names:
            self.metrics.endpoint_latency.observe(
                time.monotonic() - started + (self.sync.debounce if self.sync else 0)
            )

    def _watch_gateway(self, repo: meshrepo.Repo) -> None:
        """Start the east-west gateway watch once the repository has an IstiodRemote (a
        RemoteIstio mesh needs no watch on central Services, nor the permission)."""
        if self.gateway is not None or repo.mesh is None:
            return
        if not any(isinstance(s, specs.IstiodRemote) for s in repo.remotes.values()):
            return
        gateway = repo.mesh.primary.east_west_gateway
        self.gateway = GatewayWatch(self.central, repo.mesh.namespace, gateway, self.on_gateway)
        self.gateway.start()

    def on_gateway(self, address: str | None) -> None:
        """The east-west gateway moved: reconcile the IstiodRemotes now (their istiod
        Endpoints hold its address), off the watch thread."""
        if not self.leader() or self.repo is None or self.snapshot is None:
            return
        names = {n for n, s in self.repo.remotes.items() if isinstance(s, specs.IstiodRemote)}
        if names:
            snapshot, repo = self.snapshot, self.repo
            self.scheduler.add_job(
                self._pass,
                args=(snapshot, repo),
                kwargs={"only": names},
                id="gateway",
                replace_existing=True,
            )

    def flush_endpoints(self) -> None:
        """Commit endpoint snapshots taken since the last commit."""
        with self._pending_lock:
            pending, self.pending_endpoints = self.pending_endpoints, {}
        if not pending or self.branch is None:
            return
        revision = self.snapshot.commit[:12] if self.snapshot else "unknown"
        try:
            with self._status_lock:
                self.branch.write(
                    lambda cur: reports.render_endpoints(pending, cur),
                    lambda changes: (
                        f"gitmesh endpoints at {revision}: "
                        + ", ".join(sorted({p.split("/", 1)[1].rsplit(".", 1)[0] for p in changes}))
                        + "\n"
                    ),
                )
        except errors.StatusWriteError as e:
            logs.get().error("writing endpoint snapshots failed", extra={"error": str(e)})
            with self._pending_lock:
                self.pending_endpoints = {**pending, **self.pending_endpoints}

    # -- lifecycle -----------------------------------------------------------------------

    def _on_leadership(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        if not leader:
            self.halt.set()
        elif not self.stop_event.is_set():
            self.halt.clear()
            self.scheduler.add_job(self.resync, id="first-pass", replace_existing=True)

    def _on_members(self, members: tuple[str, ...]) -> None:
        """The shard group changed: a pass takes up the remotes this replica now owns."""
        self.metrics.leader.set(1 if members else 0)
        self.metrics.shard_members.set(len(members))
        if members and not self.stop_event.is_set():
            self.scheduler.add_job(self.resync, id="members", replace_existing=True)

    def start(self) -> None:
        """Start serving, campaigning, watching and polling."""
        rs = self.run_settings
        self.http = _serve(self, rs.listen, workers=rs.http_workers)
        if rs.probe_listen is not None:
            self.probes = _serve(self, rs.probe_listen, workers=2, probes_only=True)
        snapshot = self._fetch()
        repo = snapshot.parse() if snapshot else None
        namespace = self.settings.namespace or (
            repo.mesh.namespace if repo and repo.mesh else "istio-system"
        )
        self.sync = EndpointSync(self.central, namespace, self.on_pods, debounce=rs.debounce)
        self.sync.start()
        self.scheduler.add_job(
            self.poll,
            "interval",
            id="poll",
            # A poll whose pass waits on a slow remote does not hold the next: it reconciles
            # the remotes that are free (those still busy are caught up when done).
            max_instances=3,
            seconds=rs.interval,
            jitter=max(0.0, rs.interval * rs.jitter),
        )
        self.scheduler.add_job(
            self.resync,
            "interval",
            id="resync",
            seconds=rs.resync,
            jitter=max(0.0, rs.resync * rs.jitter),
        )
        self.scheduler.start()
        self.started = True
        lease_namespace = rs.lease_namespace or namespace
        if rs.shard:
            self.membership = Membership(
                self.central,
                namespace=lease_namespace,
                group=rs.lease_name,
                identity=rs.identity,
                lease_duration=rs.lease_duration,
                retry_period=rs.retry_period,
                on_change=self._on_members,
            )
            self.membership.start()
            return
        self.elector = Elector(
            self.central,
            namespace=lease_namespace,
            name=rs.lease_name,
            identity=rs.identity,
            lease_duration=rs.lease_duration,
            retry_period=rs.retry_period,
            on_change=self._on_leadership,
        )
        self.elector.start()

    def trigger_poll(self) -> None:
        """Poll now (the git webhook)."""
        self.scheduler.add_job(self.poll, id="poll-now", replace_existing=True, max_instances=3)

    def shutdown(self) -> bool:
        """Finish the component in flight, release the lease, stop serving. Waits at most
        `grace` seconds for the pass in flight; returns False when it is still running (a
        hung remote), for the caller to exit regardless."""
        self.stop_event.set()
        self.halt.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with self._state:
            finished = self._state.wait_for(
                lambda: not self._inflight, timeout=self.run_settings.grace
            )
        if not finished:
            logs.get().warning(
                "a pass is still running after the grace period; leaving it",
                extra={"grace": self.run_settings.grace},
            )
        if self.sync is not None:
            self.sync.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.elector is not None:
            self.elector.stop(release=True)
        if self.membership is not None and finished:
            self.membership.stop()
        for server in (self.http, self.probes):
            if server is not None:
                server.shutdown()
                server.server_close()
        if finished:
            for _, cluster in self._clusters.values():
                cluster.close()
            self.central.close()
        return finished


MAX_HOOK_BODY = 1 << 20


class _Request:
    """One connection to the listener, shut when its time is up (the handler's socket
    timeout bounds each read; a client sending a byte a second would hold a worker)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock: socket.socket | None = sock
        self.deadline = deadline
        self._lock = threading.Lock()

    def expire(self) -> None:
        with self._lock:
            deadlines.shut(self.sock)

    def finish(self) -> None:
        with self._lock:
            self.sock = None


class _BoundedHTTPServer(HTTPServer):
    """At most `workers` connections served at once, each for at most `limit` seconds in
    all; more wait in the listen backlog."""

    def __init__(
        self,
        addr: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        workers: int,
        limit: float,
    ) -> None:
        # Before binding: a failed bind calls server_close().
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http")
        self._slots = threading.BoundedSemaphore(workers)
        self._limit = limit
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        bound = _Request(request, time.monotonic() + self._limit)
        deadlines.WATCHDOG.watch(bound)
        try:
            self.finish_request(request, client_address)
        except Exception as e:  # a client's bad request must not reach stderr as a traceback
            logs.get().warning("bad request", extra={"error": errors.cut(repr(e), 200)})
        finally:
            bound.finish()
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _serve(
    runner: Runner, listen: tuple[str, int], *, workers: int, probes_only: bool = False
) -> _BoundedHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # see gitmesh.localkube.server._Handler
        timeout = runner.run_settings.http_timeout  # a socket timeout: slow clients go

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            logs.get().warning(
                "bad request",
                extra={"status": code, "error": errors.cut(str(message or ""), 200)},
            )
            super().send_error(code, message, explain)

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if probes_only and self.path not in ("/healthz", "/readyz"):
                self._reply(404, b"not found\n")
            elif self.path == "/metrics":
                self._reply(200, generate_latest(runner.metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                sick = runner.unhealthy()
                self._reply(503 if sick else 200, f"{sick}\n".encode() if sick else b"ok\n")
            elif self.path == "/readyz":
                synced = runner.sync is not None and runner.sync.synced.is_set()
                ok = synced and (runner.ready.is_set() or not runner.leader())
                wedged = runner.wedged()
                if wedged:
                    self._reply(503, f"wedged: {wedged}\n".encode())
                else:
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
            else:
                self._reply(404, b"not found\n")

        def do_POST(self) -> None:
            if probes_only or self.path != "/hooks/git" or runner.run_settings.hook_secret is None:
                self._reply(404, b"not found\n")
                return
            raw = self.headers.get("Content-Length") or "0"
            if not raw.isdigit():
                self.close_connection = True
                self.send_error(400, f"invalid Content-Length {raw[:20]!r}")
                return
            if int(raw) > MAX_HOOK_BODY:
                self.close_connection = True
                self.send_error(413, f"body over {MAX_HOOK_BODY} bytes")
                return
            body = self.rfile.read(int(raw))
            sent = self.headers.get("X-Hub-Signature-256", "")
            want = (
                "sha256="
                + hmac.new(runner.run_settings.hook_secret, body, hashlib.sha256).hexdigest()
            )
            if not hmac.compare_digest(sent, want):
                self._reply(401, b"bad signature\n")
                return
            runner.trigger_poll()
            self._reply(202, b"poll scheduled\n")

    server = _BoundedHTTPServer(
        listen, Handler, workers=workers, limit=runner.run_settings.http_timeout
    )
    name = "http-probes" if probes_only else "http"
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
