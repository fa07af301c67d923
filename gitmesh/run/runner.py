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
replicas share the remotes instead (gitmesh.run.shards): each applies to the remotes it owns,
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
import datetime
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import generate_latest

from gitmesh import errors, logs, plan, render
from gitmesh.cluster import USER_AGENT, Cluster
from gitmesh.reconcile import cycle, observe
from gitmesh.reconcile.endpoints import affected_remotes, endpoints_only
from gitmesh.reconcile.observe import observe_central
from gitmesh.reconcile.passes import run_pass
from gitmesh.run import http
from gitmesh.run.busy import Busy
from gitmesh.run.connections import Connections
from gitmesh.run.endpointsync import EndpointSync, PendingEndpoints
from gitmesh.run.gatewaywatch import GatewayWatch
from gitmesh.run.leader import Elector
from gitmesh.run.metrics import Metrics
from gitmesh.run.rechecks import RECHECK, Rechecks
from gitmesh.run.shards import Membership
from gitmesh.settings import RunSettings, Settings
from gitmesh.source import Snapshot, Source
from gitmesh.specs import meshrepo
from gitmesh.status.branch import StatusBranch


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
        self.pending_endpoints = PendingEndpoints()
        self.ready = threading.Event()
        self._locks: dict[str, threading.Lock] = {}
        # Each remote's desired objects at the last pass (digests): drift vs. change.
        self._desired: dict[str, Mapping[plan.Ref, str]] = {}
        self._locks_guard = threading.Lock()
        # Passes run side by side on disjoint remotes (gitmesh.run.busy).
        self.busy = Busy(self._catch_up)
        self._status_lock = threading.Lock()
        self.rechecks = Rechecks(settings.health_timeout)
        self.central.observer = self._observe_request
        # Audit logs name the replica behind every write.
        self.user_agent = f"{USER_AGENT} ({run.identity})"
        central.user_agent = self.user_agent
        self.connections = Connections(observer=self._observe_request, user_agent=self.user_agent)
        self.connect = self.connections.connect
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.elector: Elector | None = None
        self.membership: Membership | None = None
        self.sync: EndpointSync | None = None
        self.gateway: GatewayWatch | None = None
        self.http: http.BoundedHTTPServer | None = None
        self.probes: http.BoundedHTTPServer | None = None
        self.pass_started: float | None = None  # time.monotonic() of the pass in flight
        self.started = False

    # -- plumbing ------------------------------------------------------------------------

    def _observe_request(self, cluster: str, method: str, code: int) -> None:
        self.metrics.api_requests.labels(cluster, method, str(code)).inc()

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
        with self.lock(name), self.busy.holding(name):
            yield

    def _catch_up(self) -> None:
        if not self.stop_event.is_set() and self.scheduler.running:
            self.scheduler.add_job(self._caught_up, id="catch-up", replace_existing=True)

    def _caught_up(self) -> None:
        """The pass that busy remotes missed, at the newest revision."""
        due, names = self.busy.catch_up()
        if not due or not self.leader() or self.stop_event.is_set():
            return
        snapshot = self._fetch()
        if snapshot is not None:
            self._pass(snapshot, snapshot.parse(), only=names)

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
        return observe.digest(state) != self.central_digest

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
        wanted = set(repo.remotes) | set(repo.invalid) if only is None else set(only)
        begun = self.busy.begin(wanted, full=only is None)
        if begun is None:
            return
        number, taken = begun
        self.pass_started = self.busy.started()
        try:
            # Busy remotes left out: this pass takes the others, as a partial pass.
            only = taken if taken != wanted else only
            self._pass_locked(snapshot, repo, only=only, number=number)
        finally:
            self.busy.end(number)
            self.pass_started = self.busy.started()

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
        if self.busy.newest(number):
            self.snapshot = snapshot
            self.repo = repo
        self._watch_gateway(repo)
        if result.central is not None:
            self.services = result.central.services
            self.central_digest = observe.digest(result.central)
        self.metrics.record(result, self._desired)
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
        self.pending_endpoints.committed(
            name for name, remote in report.remotes.items() if remote.endpoints is not None
        )
        try:
            with self._status_lock:
                cycle.commit(self.branch, report)
        except errors.StatusWriteError as e:
            log.error("writing the status branch failed", extra={"error": str(e)})
        self.ready.set()
        if self.rechecks.after(report) and self.scheduler.running:
            when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=RECHECK)
            self.scheduler.add_job(
                self._recheck, "date", run_date=when, id="rollouts", replace_existing=True
            )

    def _recheck(self) -> None:
        """A pass over the remotes still rolling out, at the revision last reconciled."""
        snapshot, repo, names = self.snapshot, self.repo, self.rechecks.take()
        if snapshot is None or repo is None or not self.leader() or self.stop_event.is_set():
            return
        if names := names & set(repo.remotes):
            self._pass(snapshot, repo, only=names)

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
            configs=self.connections.configs(),
        )
        for name, res in results.items():
            if res.report.endpoints is not None:
                self.pending_endpoints.took(name, res.report.endpoints)
        if names:
            self.metrics.endpoint_latency.observe(
                time.monotonic() - started + (self.sync.debounce if self.sync else 0)
            )

    def _watch_gateway(self, repo: meshrepo.Repo) -> None:
        """Start the east-west gateway watch once the repository has an IstiodRemote (a
        RemoteIstio mesh needs no watch on central Services, nor the permission)."""
        if self.gateway is not None or repo.mesh is None:
            return
        if not any(render.needs(s).primary for s in repo.remotes.values()):
            return
        gateway = repo.mesh.primary.east_west_gateway
        self.gateway = GatewayWatch(self.central, repo.mesh.namespace, gateway, self.on_gateway)
        self.gateway.start()

    def on_gateway(self, address: str | None) -> None:
        """The east-west gateway moved: reconcile the IstiodRemotes now (their istiod
        Endpoints hold its address), off the watch thread."""
        if not self.leader() or self.repo is None or self.snapshot is None:
            return
        names = {n for n, s in self.repo.remotes.items() if render.needs(s).primary}
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
        pending = self.pending_endpoints.take()
        if not pending or self.branch is None:
            return
        revision = self.snapshot.commit if self.snapshot else "unknown"
        try:
            with self._status_lock:
                cycle.commit_endpoints(self.branch, pending, revision)
        except errors.StatusWriteError as e:
            logs.get().error("writing endpoint snapshots failed", extra={"error": str(e)})
            self.pending_endpoints.restore(pending)

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
        self.http = http.serve(self, rs.listen, workers=rs.http_workers, timeout=rs.http_timeout)
        if rs.probe_listen is not None:
            self.probes = http.serve(
                self, rs.probe_listen, workers=2, timeout=rs.http_timeout, probes_only=True
            )
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

    def is_ready(self) -> bool:
        """/readyz: the pod watch has synced, and a leader has committed a first status."""
        synced = self.sync is not None and self.sync.synced.is_set()
        return synced and (self.ready.is_set() or not self.leader())

    def metrics_text(self) -> bytes:
        """/metrics, in Prometheus' text format."""
        return generate_latest(self.metrics.registry)

    @property
    def hook_secret(self) -> bytes | None:
        """The git webhook's HMAC secret (None: no /hooks/git)."""
        return self.run_settings.hook_secret

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
        finished = self.busy.wait_idle(self.run_settings.grace)
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
            self.connections.close()
            self.central.close()
        return finished
