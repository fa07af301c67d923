"""One reconcile pass: the one place that puts the stages in order.

    specs ──► observe central (pods, services, CA) ──► per remote, in parallel (bounded):
        credentials ─► observe (one LIST per managed kind) ─► render ─► plan ─► apply,
        component by component; a failing component stops that remote's later ones
    ──► a PassReport for the status branch

It takes its collaborators (the central `Cluster`, a `connect` factory for remotes, a
clock) and returns plain values; it holds no state between passes, so a pass that dies
half-way leaves nothing that blocks the next one.

One remote never stops the others: each remote's work has a deadline (`remote_timeout`,
every request inside it also bounded by `request_timeout`), and whatever it raises becomes
that remote's ReconcileFailed with a scrubbed one-line message; the traceback goes to the
debug log, scrubbed too. A remote whose kubeconfig names the central cluster's server is
refused before anything is sent to it.

Which remotes gitmesh has applied to is kept on central too (`gitmesh.inventory`), so a
removed remote is pruned even when the status branch was deleted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

from gitmesh import errors, kubeconfigs, logs, plan, render, resources, selectors, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials import ca, join
from gitmesh.reconcile import inventory, primary
from gitmesh.resources import Resource
from gitmesh.specs import meshrepo
from gitmesh.status.reports import ComponentReport, PassReport, RemoteReport

Obj = dict[str, Any]
Connect = Callable[[str, Mapping[str, Any]], Cluster]
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


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """A remote's report and the items planned (and, unless dry run, applied) for it."""

    report: RemoteReport
    items: tuple[plan.Item, ...] = ()
    # A digest of each desired object (by plan.Ref): a patch to an object whose desired
    # state did not change since the last pass undid an out-of-band edit (drift).
    desired: Mapping[plan.Ref, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What a pass did."""

    report: PassReport
    remotes: Mapping[str, RemoteResult] = field(default_factory=dict)
    central: render.Central | None = None  # what the pass saw on the central cluster

    @property
    def changes(self) -> int:
        """How many planned items write something."""
        return sum(1 for r in self.remotes.values() for i in r.items if i.changes)

    @property
    def all_available(self) -> bool:
        """Whether every remote is Available."""
        return all(r.state == "Available" for r in self.report.remotes.values())


def default_connect(name: str, kubeconfig: Mapping[str, Any]) -> Cluster:
    """Connect to a remote with its kubeconfig."""
    return Cluster(name, kubeconfig)


# -- central ------------------------------------------------------------------------------


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def observe_central(
    central: Cluster, mesh: specs.Mesh, remotes: Iterable[specs.Remote]
) -> render.Central:
    """The central Istio pods and services, the CA secret when a RemoteIstio needs it, and
    the istiod primary's gateway address and root certificate when an IstiodRemote does."""
    remotes = list(remotes)
    ns = mesh.namespace
    pods: tuple[render.Pod, ...] = ()
    pods_error = None
    try:
        listed, _ = central.list(resources.POD, namespace=ns)
        pods = tuple(
            render.Pod(
                p["metadata"]["name"],
                (p.get("status") or {}).get("podIP", ""),
                p["metadata"].get("labels") or {},
                _ready(p),
            )
            for p in listed
        )
    except errors.ClusterError as e:
        pods_error = str(e)
    services: dict[str, render.CentralService] = {}
    try:
        for svc in central.list(resources.SERVICE, namespace=ns)[0]:
            spec = svc.get("spec") or {}
            services[svc["metadata"]["name"]] = render.CentralService(
                svc["metadata"]["name"], spec.get("selector") or {}, tuple(spec.get("ports") or ())
            )
    except errors.ClusterError as e:
        pods_error = pods_error or f"cannot read the central services: {e}"
    ca_data = None
    ca_error = None
    if any(
        isinstance(r, specs.RemoteIstio) and r.spec.citadel.ca_secret_name is None for r in remotes
    ):
        where = f"the central CA secret {ns}/{mesh.central.ca_secret_name}"
        try:
            secret = central.get(resources.SECRET, ns, mesh.central.ca_secret_name)
            ca_data = dict(secret.get("data") or {})
            ca.Signer.from_secret(ca_data)
        except errors.NotFound:
            pass
        except errors.ClusterError as e:
            ca_error = f"cannot read {where}: {e}"
        except ca.CAError as e:
            ca_error = f"{where} {e}"
    seen = primary.Observed()
    if any(isinstance(r, specs.IstiodRemote) for r in remotes):
        seen = primary.observe(central, mesh)
    return render.Central(
        pods=pods,
        services=services,
        ca_data=ca_data,
        pods_error=pods_error,
        ca_error=ca_error,
        gateway_address=seen.address,
        root_cert=seen.root,
        primary_error=seen.error,
        primary_warnings=seen.warnings,
    )


def credentials(
    name: str, central: Cluster, namespace: str, settings: Settings
) -> tuple[dict[str, Any], Obj | None]:
    """The remote's kubeconfig (re-read every pass) and the Secret it came from."""
    _check_name(name)
    if settings.kubeconfig_dir is not None:
        path = settings.kubeconfig_dir / name
        if path.is_symlink():
            raise errors.CredentialsError(f"{path} is a symlink; gitmesh refuses symlinks")
        if path.is_file():
            config = kubeconfigs.parse(path.read_text(encoding="utf-8"), where=str(path))
            kubeconfigs.check_exec(config, where=str(path), allow_exec=settings.allow_exec)
            return config, None
    try:
        secret = central.get(resources.SECRET, namespace, name)
    except errors.NotFound:
        where = f"{settings.kubeconfig_dir}/{name} or " if settings.kubeconfig_dir else ""
        raise errors.MissingCredentials(
            f"no kubeconfig for remote {name!r}: create {where}the Secret {namespace}/{name} "
            f"(kubectl create secret generic {name} -n {namespace} --from-file=<kubeconfig>)"
        ) from None
    config = kubeconfigs.from_secret(secret, name)
    kubeconfigs.check_exec(
        config, where=f"Secret {namespace}/{name}", allow_exec=settings.allow_exec
    )
    return config, secret


def _check_name(name: str) -> None:
    """Names reach API paths, file paths and git trees: only valid object names do."""
    try:
        specs.dns_subdomain(name)
    except ValueError as e:
        raise errors.CredentialsError(f"refusing remote {name!r}: {e}") from None


def refuse_central(name: str, config: Mapping[str, Any], central: Cluster) -> None:
    """A remote kubeconfig that names the central cluster's server would make gitmesh
    install a remote's objects on central: refused before any request is sent."""
    server, _ = kubeconfigs.endpoint(config)
    if server == central.server:
        raise errors.CredentialsError(
            f"the kubeconfig of remote {name!r} points at the central cluster ({server}); "
            "refusing to install a remote's objects on central"
        )


def _failed(name: str, e: BaseException, config: Mapping[str, Any] | None = None) -> str:
    """A one-line, scrubbed message for a remote's failure; the traceback goes to the
    debug log, scrubbed as well."""
    secrets = kubeconfigs.secrets(config) if config else []
    if isinstance(e, errors.GitmeshError):
        message = errors.one_line(str(e), secrets)
    else:
        message = errors.one_line(f"unexpected {type(e).__name__}: {e}", secrets)
        logs.get().debug(
            "traceback",
            extra={
                "remote": name,
                "error": errors.scrub("".join(traceback.format_exception(e)), secrets),
            },
        )
    return message


# -- one remote ---------------------------------------------------------------------------


# A remote server's identity, by address, for a while: a no-op pass sends no extra read,
# and an address that comes to reach central is caught within IDENTITY_TTL.
IDENTITY_TTL = 300.0
_identities: dict[str, tuple[float, str | None]] = {}
_identities_lock = threading.Lock()


def _identity(remote: Cluster) -> str | None:
    now = time.monotonic()
    with _identities_lock:
        found = _identities.get(remote.server)
    if found is not None and now - found[0] < IDENTITY_TTL:
        return found[1]
    uid = remote.identity()
    with _identities_lock:
        _identities[remote.server] = (now, uid)
    return uid


@cache
def _unknown_central() -> None:
    """Said once a process: without central's identity, the check by address is all."""
    logs.get().warning(
        "cannot read the central cluster's kube-system namespace (get on that namespace is "
        "needed): a remote whose kubeconfig reaches central under another address is not "
        "detected"
    )


@contextmanager
def _connected(
    connect: Connect, name: str, config: Mapping[str, Any], settings: Settings, central: Cluster
) -> Iterator[Cluster]:
    """A connection to the remote whose requests end by the remote's deadline; refused
    when it is central, by the server's address (before any request) or by identity (the
    same server spelled differently: `localhost`, `127.1`, a DNS name for the IP)."""
    refuse_central(name, config, central)
    with connect(name, config) as remote:
        remote.timeout = settings.request_timeout
        remote.max_response = settings.max_response
        remote.deadline = time.monotonic() + settings.remote_timeout
        mine = central.identity()
        if mine is None:
            _unknown_central()
        elif _identity(remote) == mine:
            raise errors.CredentialsError(
                f"the kubeconfig of remote {name!r} reaches the central cluster (its "
                f"kube-system namespace is central's, at {remote.server}); refusing to "
                "install a remote's objects on central"
            )
        try:
            yield remote
        finally:
            remote.deadline = None


@dataclass(slots=True)
class _Observed:
    by_component: dict[str, list[Obj]]
    namespaces: list[Obj]
    kinds: Mapping[str, Resource]  # where each kind lives on this remote


def _served_webhook(remote: Cluster) -> Resource:
    """The MutatingWebhookConfiguration resource of a remote that does not serve v1 (older
    than Kubernetes 1.16), from its discovery."""
    group = resources.WEBHOOK.api_version.split("/")[0]
    served = remote.served_versions(group)
    if "v1beta1" in served:
        return resources.WEBHOOK_V1BETA1
    raise errors.ClusterError(
        f"{remote.name} serves {group} at {', '.join(served) or 'no version'}; gitmesh "
        "writes the sidecar injector's webhook at v1 or v1beta1"
    )


def observe_remote(
    remote: Cluster, name: str, where: Sequence[str], reads: Executor | None = None
) -> _Observed:
    """Everything gitmesh manages on the remote: one LIST per kind (the namespaced kinds
    in the namespaces `where` only: gitmesh's rights there are a Role's, gitmesh.access), plus
    namespaces; all at once when given an executor (a far remote costs one round trip,
    not twelve)."""
    by_component: dict[str, list[Obj]] = {}
    selector = resources.owner_selector(name)
    kinds = dict(resources.BY_KIND)

    def managed(res: Resource) -> list[Obj]:
        if res.namespaced:
            return [
                o
                for ns in where
                for o in remote.list(res, namespace=ns, label_selector=selector)[0]
            ]
        try:
            return remote.list(res, label_selector=selector)[0]
        except errors.NotFound:
            if res != resources.WEBHOOK:
                raise
            older = kinds[res.kind] = _served_webhook(remote)
            return remote.list(older, label_selector=selector)[0]

    def every_namespace() -> list[Obj]:
        return remote.list(resources.NAMESPACE)[0]

    if reads is None:
        listed = [managed(res) for res in resources.MANAGED]
        namespaces = every_namespace()
    else:
        futures = [reads.submit(managed, res) for res in resources.MANAGED]
        pending = reads.submit(every_namespace)
        # Every read ends (each has the remote's deadline) before the first error is raised.
        left = None if remote.deadline is None else remote.deadline - time.monotonic() + 30.0
        if wait([*futures, pending], timeout=left).not_done:
            raise errors.Unavailable(f"timed out: {name}'s reads did not end with its deadline")
        listed = [f.result() for f in futures]
        namespaces = pending.result()
    for res, objs in zip(resources.MANAGED, listed, strict=True):
        for obj in objs:
            labels = obj["metadata"].get("labels") or {}
            if res.kind == "EndpointSlice" and labels.get(resources.SLICE_MANAGED_BY) != "gitmesh":
                continue  # a controller's mirror of gitmesh's Endpoints, carrying its labels
            by_component.setdefault(labels.get(resources.COMPONENT, ""), []).append(obj)
    return _Observed(by_component, namespaces, kinds)


class _Applier:
    """Applies planned items to one remote, re-planning an object after a conflict."""

    def __init__(
        self, remote: Cluster, name: str, settings: Settings, kinds: Mapping[str, Resource]
    ) -> None:
        self.remote = remote
        self.name = name
        self.settings = settings
        self.kinds = kinds
        # Namespaces a dry run created only in pretence: what goes into them is not sent
        # (the server would answer NotFound), it is counted as created.
        self.pretended: set[str] = set()

    def apply(self, item: plan.Item, desired: Obj | None) -> str:
        """Apply one item; returns what was done: created, patched, deleted or unchanged."""
        for _ in range(self.settings.conflict_retries + 1):
            try:
                return self._once(item)
            except errors.Conflict:
                item = self._replan(item, desired)
            except errors.NotFound:
                if item.action == "delete":
                    return "unchanged"
                item = self._replan(item, desired)
        raise errors.Conflict(
            f"{item.ref} on {self.name} kept changing under gitmesh; gave up "
            f"after {self.settings.conflict_retries} re-plans"
        )

    def _create_role(self, res: Resource, body: Obj, *, dry: bool) -> None:
        """A ClusterRole is created empty, then given its rules: RBAC lets gitmesh grant
        what it does not hold only through `escalate` on roles it names, and a create
        names none (gitmesh.access)."""
        self.remote.create(res, {**body, "rules": []}, dry_run=dry)
        if not dry:
            self.remote.patch(
                res,
                None,
                body["metadata"]["name"],
                [{"op": "add", "path": "/rules", "value": body["rules"]}],
                resource_version=None,
            )

    def _once(self, item: plan.Item) -> str:
        res = self.kinds[item.ref.kind]
        ns = item.ref.namespace or None
        dry = self.settings.dry_run
        if item.action == "create" and item.body is not None:
            if dry and item.ref.namespace in self.pretended:
                return "created"
            if item.ref.kind == "ClusterRole" and item.body.get("rules"):
                self._create_role(res, item.body, dry=dry)
            else:
                self.remote.create(res, item.body, dry_run=dry)
            if dry and item.ref.kind == "Namespace":
                self.pretended.add(item.ref.name)
            return "created"
        if item.action == "patch":
            self.remote.patch(
                res,
                ns,
                item.ref.name,
                list(item.ops),
                resource_version=item.resource_version,
                dry_run=dry,
            )
            return "patched"
        if item.action == "delete":
            self.remote.delete(
                res, ns, item.ref.name, resource_version=item.resource_version, dry_run=dry
            )
            return "deleted"
        return "unchanged"

    def _replan(self, item: plan.Item, desired: Obj | None) -> plan.Item:
        res = self.kinds[item.ref.kind]
        try:
            current = self.remote.get(res, item.ref.namespace or None, item.ref.name)
        except errors.NotFound:
            if desired is None:
                return plan.Item("unchanged", item.component, item.ref)
            return plan.component(item.component, [desired], [])[0]
        if item.component == "injection":
            wanted = [item.ref.name] if any(op.get("op") == "add" for op in item.ops) else []
            found = plan.injection(wanted, [current])[0]
            return found[0] if found else plan.Item("unchanged", item.component, item.ref)
        if not resources.owned_by(current, self.name):
            if item.action == "delete":
                return plan.Item("unchanged", item.component, item.ref)
            raise errors.Conflict(
                f"{item.ref} exists on {self.name} and is not managed by "
                "gitmesh; refusing to take it over"
            )
        return plan.component(item.component, [desired] if desired else [], [current])[0]


def _cacerts(
    spec: specs.Remote, central: render.Central, observed: _Observed
) -> Mapping[str, str] | None:
    """A RemoteIstio's intermediate CA: the one it has while that is still good, else a new
    one signed by the central CA. None when the spec brings its own or central has none."""
    if (
        not isinstance(spec, specs.RemoteIstio)
        or spec.spec.citadel.ca_secret_name is not None
        or central.ca_data is None
        or central.ca_error
    ):
        return None
    name = spec.metadata.name
    signer = ca.Signer.from_secret(central.ca_data)
    current = next(
        (
            o.get("data")
            for o in observed.by_component.get("citadel", ())
            if o["kind"] == "Secret" and o["metadata"]["name"] == render.CACERTS
        ),
        None,
    )
    now = datetime.datetime.now(datetime.UTC)
    if ca.keep(current, signer, name, now):
        return current
    return ca.mint(signer, name, now)


def _component_items(
    comp: render.Component, observed: _Observed, namespace: str
) -> list[plan.Item]:
    if comp.name == "injection":
        return plan.injection(comp.namespaces, observed.namespaces)[0]
    current = observed.by_component.get(comp.name, [])
    desired = [o for o in comp.objects if o["kind"] != "Namespace"]
    items = plan.component(comp.name, desired, current)
    if comp.name == "common":
        existing = next(
            (n for n in observed.namespaces if n["metadata"]["name"] == namespace), None
        )
        if existing is None:
            ns = next(o for o in comp.objects if o["kind"] == "Namespace")
            items.insert(0, plan.component("common", [ns], [])[0])
        elif comp.namespace_labels or comp.namespace_annotations or _records(existing):
            items.append(
                plan.namespace_labels(
                    "common", existing, comp.namespace_labels, comp.namespace_annotations
                )
            )
    return items


def _records(ns: Obj) -> bool:
    """Whether gitmesh recorded labels or annotations it set on a namespace."""
    annotations = ns["metadata"].get("annotations") or {}
    return plan.LABELS_ANNOTATION in annotations or plan.ANNOTATIONS_ANNOTATION in annotations


def _apply_component(
    applier: _Applier, comp: render.Component, items: Sequence[plan.Item]
) -> ComponentReport:
    started = time.monotonic()
    desired = {plan.Ref.of(o): o for o in comp.objects}
    counts = {"created": 0, "patched": 0, "deleted": 0}
    log = logs.get()
    for item in items:
        if not item.changes or applier.settings.plan_only:
            continue
        done = applier.apply(item, desired.get(item.ref))
        if done in counts:
            counts[done] += 1
            log.info(
                "%s %s", done, item.ref, extra={"remote": applier.name, "component": comp.name}
            )
    objects = len(comp.namespaces) if comp.name == "injection" else len(comp.objects)
    for warning in comp.warnings:
        log.warning(warning, extra={"remote": applier.name, "component": comp.name})
    return ComponentReport(
        comp.name,
        "Ready",
        warnings=comp.warnings,
        objects=objects,
        created=counts["created"],
        patched=counts["patched"],
        deleted=counts["deleted"],
        seconds=time.monotonic() - started,
    )


def reconcile_remote(
    name: str,
    spec: specs.Remote,
    *,
    mesh: specs.Mesh,
    central_state: render.Central,
    central: Cluster,
    connect: Connect,
    settings: Settings,
    revision: str,
    interrupted: Callable[[], str | None] | None = None,
    reads: Executor | None = None,
) -> RemoteResult:
    """Make one remote match its spec; never raises (failures become the report).
    `interrupted()`, asked before each component, says why to stop there (or None)."""
    log = logs.get()
    ctx = {"remote": name, "revision": revision[:12]}
    planning = settings.plan_only
    log.debug("planning remote" if planning else "reconciling remote", extra=ctx)
    namespace = settings.namespace or mesh.namespace
    config: Mapping[str, Any] | None = None
    try:
        config, secret = credentials(name, central, namespace, settings)
        with _connected(connect, name, config, settings, central) as remote:
            if secret is not None and not (settings.plan_only or settings.dry_run):
                secret = _renewed(name, remote, config, central, secret)
            observed = observe_remote(remote, name, [specs.remote_namespace(spec, mesh)], reads)
            rendered = render.remote(
                spec,
                mesh,
                central_state,
                cacerts=_cacerts(spec, central_state, observed),
                webhook_api=observed.kinds[resources.WEBHOOK.kind].api_version,
            )
            applier = _Applier(remote, name, settings, observed.kinds)
            reports: list[ComponentReport] = []
            unsafe = tuple(kubeconfigs.warnings(config, name))
            if unsafe:
                for warning in unsafe:
                    log.warning(warning, extra={**ctx, "component": "credentials"})
                reports.append(ComponentReport("credentials", "Ready", warnings=unsafe))
            all_items: list[plan.Item] = []
            failure: str | None = None
            for comp in rendered.components:
                if failure is None and interrupted is not None:
                    failure = interrupted()
                if failure is not None:
                    reports.append(ComponentReport(comp.name, "Skipped"))
                    continue
                log.debug("reconciling", extra={**ctx, "component": comp.name})
                if comp.error:
                    failure = comp.error
                    reports.append(ComponentReport(comp.name, "Failed", error=comp.error))
                    log.error(
                        "component failed",
                        extra={**ctx, "component": comp.name, "error": comp.error},
                    )
                    continue
                items = _component_items(comp, observed, rendered.namespace)
                all_items += items
                try:
                    reports.append(_apply_component(applier, comp, items))
                    log.debug("reconciled", extra={**ctx, "component": comp.name})
                except errors.ClusterError as e:
                    failure = str(e)
                    reports.append(ComponentReport(comp.name, "Failed", error=failure))
                    log.error(
                        "component failed", extra={**ctx, "component": comp.name, "error": failure}
                    )
            # Objects labelled with a component this remote's model does not render.
            rendered_names = {c.name for c in rendered.components}
            stray = plan.component(
                "stray",
                [],
                [
                    o
                    for comp_name, objs in observed.by_component.items()
                    if comp_name not in rendered_names
                    for o in objs
                ],
            )
            all_items += stray
            if failure is None and not settings.plan_only and stray:
                try:
                    for item in stray:
                        applier.apply(item, None)
                    # Another model's objects, or a component gitmesh no longer has.
                    reports.append(ComponentReport("stray", "Ready", deleted=len(stray)))
                except errors.ClusterError as e:
                    failure = str(e)
            if failure is None and isinstance(spec, specs.IstiodRemote):
                try:
                    item = primary.remote_secret(
                        name,
                        remote=remote,
                        remote_config=config,
                        remote_namespace=rendered.namespace,
                        server=spec.spec.server,
                        central=central,
                        namespace=mesh.namespace,
                        plan_only=settings.plan_only,
                        dry_run=settings.dry_run,
                        now=datetime.datetime.now(datetime.UTC),
                    )
                    all_items.append(item)
                    done = "" if settings.plan_only else item.action
                    server = spec.spec.server or kubeconfigs.endpoint(config)[0]
                    warnings = tuple(primary.server_warnings(server, name))
                    for warning in warnings:
                        log.warning(warning, extra={**ctx, "component": primary.COMPONENT})
                    reports.append(
                        ComponentReport(
                            primary.COMPONENT,
                            "Ready",
                            warnings=warnings,
                            objects=1,
                            created=int(done == "create"),
                            patched=int(done == "patch"),
                        )
                    )
                except errors.ClusterError as e:
                    failure = f"the primary's remote Secret: {e}"
                    reports.append(ComponentReport(primary.COMPONENT, "Failed", error=failure))
    except Exception as e:  # one remote's failure, whatever it is, is that remote's alone
        message = _failed(name, e, config)
        log.error(
            "cannot plan remote" if planning else "remote failed",
            extra={**ctx, "status": "ReconcileFailed", "error": message},
        )
        return RemoteResult(RemoteReport(name, "ReconcileFailed", message=message, error=message))
    if failure is not None:
        failure = errors.one_line(failure, kubeconfigs.secrets(config) if config else ())
        log.error(
            "cannot plan remote" if planning else "remote failed",
            extra={**ctx, "status": "ReconcileFailed", "error": failure},
        )
        # The snapshot says what the remote has: only when its Endpoints were applied.
        applied = any(r.name == "services" and r.state == "Ready" for r in reports)
        return RemoteResult(
            RemoteReport(
                name,
                "ReconcileFailed",
                message=failure,
                components=tuple(reports),
                error=failure,
                endpoints=rendered.endpoints if applied else None,
            ),
            tuple(all_items),
        )
    if settings.plan_only:
        log.debug("planned remote", extra=ctx)
        return RemoteResult(
            RemoteReport(name, "Planned", components=tuple(reports), endpoints=rendered.endpoints),
            tuple(all_items),
        )
    if secret is not None and not settings.dry_run:
        # Only central's pilot (1.0/1.1) reads gitmesh's own Secret: an istiod primary
        # reads istio-remote-secret-<name>, and given both it may pick gitmesh's token.
        _set_multicluster(central, secret, isinstance(spec, specs.RemoteIstio))
    counts = {
        f"objects{f.title()}": sum(getattr(r, f) for r in reports)
        for f in ("created", "patched", "deleted")
    }
    log.info("remote reconciled", extra={**ctx, "status": "Available", **counts})
    return RemoteResult(
        RemoteReport(name, "Available", components=tuple(reports), endpoints=rendered.endpoints),
        tuple(all_items),
        desired=_digests(rendered) if settings.desired_digests else {},
    )


def _digests(rendered: render.Rendered) -> dict[plan.Ref, str]:
    out = {}
    for comp in rendered.components:
        for obj in comp.objects:
            text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
            out[plan.Ref.of(obj)] = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return out


def _renewed(
    name: str, remote: Cluster, config: Mapping[str, Any], central: Cluster, secret: Obj
) -> Obj:
    """The kubeconfig Secret, its token renewed when `gitmesh join` wrote it and it is due
    (gitmesh.access). Best effort: the old token still works until it expires."""
    try:
        now = datetime.datetime.now(datetime.UTC)
        renewed = join.renew(
            name, remote=remote, config=config, central=central, current=secret, now=now
        )
    except errors.ClusterError as e:
        logs.get().warning("cannot renew gitmesh's token", extra={"remote": name, "error": str(e)})
        return secret
    return renewed or secret


def _set_multicluster(central: Cluster, secret: Obj, on: bool) -> None:
    """Label the kubeconfig Secret so the central pilot discovers the remote registry
    (on), or remove the label when the remote leaves the mesh (off). Best effort: a
    failure is a warning, the remote's own state is what the pass reports."""
    meta = secret["metadata"]
    labels = meta.get("labels") or {}
    if (labels.get(resources.MULTICLUSTER) == "true") == on:
        return
    key = resources.MULTICLUSTER.replace("/", "~1")
    if on and labels:
        ops: list[Obj] = [{"op": "add", "path": f"/metadata/labels/{key}", "value": "true"}]
    elif on:
        ops = [{"op": "add", "path": "/metadata/labels", "value": {resources.MULTICLUSTER: "true"}}]
    else:
        ops = [{"op": "remove", "path": f"/metadata/labels/{key}"}]
    try:
        central.patch(
            resources.SECRET,
            meta["namespace"],
            meta["name"],
            ops,
            resource_version=meta.get("resourceVersion"),
        )
    except errors.ClusterError as e:
        logs.get().warning(
            "cannot label the kubeconfig secret",
            extra={"remote": meta["name"], "error": str(e)},
        )


def prune_remote(
    name: str,
    central: Cluster,
    connect: Connect,
    settings: Settings,
    namespace: str,
    *,
    mesh_namespace: str,
) -> RemoteResult:
    """Remove everything gitmesh made for a remote whose spec left the repository: first
    the primary's remote Secret (an IstiodRemote's; istiod stops using the remote), then
    what is on the remote, and the `istio/multiCluster` label from its kubeconfig Secret.
    A remote whose credentials are gone is reported once and dropped: nothing can be pruned
    there, and retrying forever would fail every pass."""
    log = logs.get()
    config: Mapping[str, Any] | None = None
    items: list[plan.Item] = []
    try:
        removed = primary.remove_remote_secret(
            name, central, mesh_namespace, plan_only=settings.plan_only, dry_run=settings.dry_run
        )
        items += [removed] if removed else []
        try:
            config, secret = credentials(name, central, namespace, settings)
        except errors.MissingCredentials as e:
            message = (
                f"spec removed, but its credentials are gone ({e}); objects gitmesh made on "
                "the remote were left in place"
            )
            log.warning("cannot prune a removed remote", extra={"remote": name, "error": message})
            return RemoteResult(RemoteReport(name, "Removed", message=message))
        with _connected(connect, name, config, settings, central) as remote:
            # The spec is gone: its namespace is the mesh's, or one gitmesh labelled for it.
            labelled = [
                ns["metadata"]["name"]
                for ns in remote.list(
                    resources.NAMESPACE, label_selector=resources.owner_selector(name)
                )[0]
            ]
            observed = observe_remote(remote, name, sorted({mesh_namespace, *labelled}))
            applier = _Applier(remote, name, settings, observed.kinds)
            for comp_name in reversed(resources.COMPONENTS):
                if comp_name == "injection":
                    items += plan.injection([], observed.namespaces)[0]
                else:
                    items += plan.component(comp_name, [], observed.by_component.get(comp_name, []))
            stray = [
                o
                for c, objs in observed.by_component.items()
                if c not in resources.COMPONENTS
                for o in objs
            ]
            items += plan.component("stray", [], stray)
            items += [
                plan.namespace_labels("common", ns, {})
                for ns in observed.namespaces
                if _records(ns) and not resources.owned_by(ns, name)
            ]
            items += _prune_namespaces(remote, name, observed)
            for item in [] if settings.plan_only else items:
                if item.component != primary.COMPONENT:
                    applier.apply(item, None)
                log.info("pruned %s", item.ref, extra={"remote": name, "component": item.component})
        if secret is not None and not (settings.plan_only or settings.dry_run):
            _set_multicluster(central, secret, False)
    except Exception as e:  # one remote's failure is that remote's alone
        message = _failed(name, e, config)
        return RemoteResult(
            RemoteReport(
                name,
                "ReconcileFailed",
                message=(
                    f"spec removed; pruning is pending: {message} (retried every pass; "
                    f"`gitmesh reconcile --once --forget {name}` lets go without pruning)"
                ),
                error=message,
            )
        )
    return RemoteResult(
        RemoteReport(
            name,
            "Removed",
            message="spec removed from the repository; everything gitmesh made is pruned",
        ),
        tuple(items),
    )


# What Kubernetes itself puts in every namespace, and records about objects (events).
_SYSTEM_OBJECTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
_RECORDS = {"Event"}


def _prune_namespaces(remote: Cluster, name: str, observed: _Observed) -> list[plan.Item]:
    """Namespaces gitmesh created go too, only when nothing but gitmesh's objects is in
    them: every namespaced kind the server serves is listed (discovery-wide), and an
    object counts as gitmesh's when it carries gitmesh's labels, is what Kubernetes puts in
    every namespace, or is owned (ownerReferences, transitively) by one of gitmesh's
    objects — a Deployment's ReplicaSets and Pods, a Service's EndpointSlices."""
    out: list[plan.Item] = []
    owned_namespaces = [ns for ns in observed.namespaces if resources.owned_by(ns, name)]
    if not owned_namespaces:
        return out
    kinds = remote.namespaced_resources()
    for ns in owned_namespaces:
        ns_name = ns["metadata"]["name"]
        try:
            objects = [o for res in kinds for o in remote.list(res, namespace=ns_name)[0]]
        except errors.Forbidden as e:
            # A kind gitmesh may not list there (one added after `gitmesh join`): it
            # cannot tell the namespace empty, so it stays.
            logs.get().info(
                "keeping namespace %s: not every kind in it can be listed",
                ns_name,
                extra={"remote": name, "error": str(e)},
            )
            continue
        ours = {
            o["metadata"].get("uid")
            for o in objects
            if resources.owned_by(o, name)
            or (o["kind"], o["metadata"]["name"]) in _SYSTEM_OBJECTS
            or o["kind"] in _RECORDS
        }
        grew = True
        while grew:  # owned by something of ours counts as ours
            grew = False
            for o in objects:
                uid = o["metadata"].get("uid")
                refs = o["metadata"].get("ownerReferences") or []
                if uid not in ours and refs and all(r.get("uid") in ours for r in refs):
                    ours.add(uid)
                    grew = True
        foreign = [o for o in objects if o["metadata"].get("uid") not in ours]
        if foreign:
            logs.get().info(
                "keeping namespace %s: it holds objects gitmesh does not own",
                ns_name,
                extra={
                    "remote": name,
                    "foreign": [f"{o['kind']}/{o['metadata']['name']}" for o in foreign[:5]],
                },
            )
            continue
        out.append(
            plan.Item(
                "delete",
                "common",
                plan.Ref.of(ns),
                resource_version=ns["metadata"].get("resourceVersion"),
            )
        )
    return out


# -- the pass -----------------------------------------------------------------------------


Guard = Callable[[str], AbstractContextManager[Any]]


def _no_guard(name: str) -> AbstractContextManager[Any]:
    return nullcontext()


def _guarded(guard: Guard, name: str, work: Callable[[], RemoteResult]) -> RemoteResult:
    try:
        with guard(name):
            return work()
    except Exception as e:  # the stages catch their own; this keeps a pass whole regardless
        message = _failed(name, e)
        logs.get().error("remote failed", extra={"remote": name, "error": message})
        return RemoteResult(RemoteReport(name, "ReconcileFailed", message=message, error=message))


Progress = Callable[[int, int], None]


def _each_remote(
    jobs: Mapping[str, Callable[[], RemoteResult]],
    *,
    settings: Settings,
    guard: Guard,
    prefix: str,
    progress: Progress | None = None,
) -> dict[str, RemoteResult]:
    """Run one job per remote in a bounded thread pool, each under its remote's guard;
    `progress(done, total)` after each. Every remote's requests end by its deadline, so the
    pool is waited on for its rounds of `remote_timeout` and a minute; a remote still
    running then (stuck outside a request) is ReconcileFailed and left behind."""
    pool = ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix=prefix)
    rounds = -(-max(len(jobs), 1) // max(settings.concurrency, 1))
    limit = settings.remote_timeout * rounds + 60.0
    try:
        futures = {name: pool.submit(_guarded, guard, name, job) for name, job in jobs.items()}
        done = 0
        try:
            for _ in as_completed(futures.values(), timeout=limit):
                done += 1
                if progress is not None:
                    progress(done, len(futures))
        except TimeoutError:
            logs.get().error("remotes still running at the pass's limit", extra={"limit": limit})
        out = {}
        for name, fut in futures.items():
            if fut.done():
                out[name] = fut.result()
            else:
                message = f"{name}'s work did not end within the pass's limit ({limit:g}s)"
                out[name] = RemoteResult(
                    RemoteReport(name, "ReconcileFailed", message=message, error=message)
                )
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_pass(
    repo: meshrepo.Repo,
    revision: str,
    central: Cluster,
    *,
    connect: Connect,
    settings: Settings,
    only: Collection[str] | None = None,
    guard: Guard = _no_guard,
    stop: threading.Event | None = None,
    owns: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
) -> PassResult:
    """Reconcile every remote of `repo` (or those in `only`); prune the remotes the
    inventory holds that left it (`settings.forget`: let go of those without pruning).
    `guard(name)` is held around each remote's work (so no two passes overlap on one
    remote); once `stop` is set, remotes end after the component in flight. With
    `owns` (a replica of a shard group), only the remotes it owns are touched, and a remote
    it stops owning ends after the component in flight.

    An invalid mesh.yaml aborts the pass before anything is touched; an invalid remote is
    reported InvalidSpec and left alone (never pruned).
    """
    if repo.mesh is None:
        raise errors.SpecError([p for p in repo.problems if p.file == meshrepo.MESH_FILE])
    mesh = repo.mesh
    namespace = settings.namespace or mesh.namespace
    log = logs.get()
    central_state = observe_central(central, mesh, repo.remotes.values())
    results: dict[str, RemoteResult] = {}
    mine = owns or (lambda name: True)
    chosen = {n: s for n, s in repo.remotes.items() if (only is None or n in only) and mine(n)}
    for name, problems in repo.invalid.items():
        if not mine(name):
            continue
        message = "; ".join(str(p) for p in problems)
        log.error("invalid spec", extra={"remote": name, "error": message})
        results[name] = RemoteResult(RemoteReport(name, "InvalidSpec", message=message))
    writes = not (settings.plan_only or settings.dry_run)
    known, _ = inventory.read(central, namespace)
    if writes:  # before anything is applied, so that a pass that dies still knows them
        inventory.update(central, namespace, add=chosen)
    for name in sorted(set(chosen) - known.applied):
        log.info("new remote", extra={"remote": name})
    gone = sorted(known.applied - set(repo.remotes) - set(repo.invalid))
    forgotten = _forgotten(gone, settings.forget)
    _check_mass_prune([n for n in gone if n not in forgotten], known, mesh, settings)
    if writes and gone:
        inventory.update(central, namespace, remove=forgotten, pruning=gone)
    forgotten = [name for name in forgotten if mine(name)]
    for name in forgotten:
        log.warning("forgotten: nothing was pruned", extra={"remote": name})
    gone = [name for name in gone if mine(name) and name not in forgotten]
    # A remote's reads go out at once: threads enough for every remote in flight.
    reads = ThreadPoolExecutor(
        max_workers=max(1, settings.concurrency) * (len(resources.MANAGED) + 1),
        thread_name_prefix="read",
    )
    jobs: dict[str, Callable[[], RemoteResult]] = {
        name: partial(
            reconcile_remote,
            name,
            spec,
            mesh=mesh,
            central_state=central_state,
            central=central,
            connect=connect,
            settings=settings,
            revision=revision,
            interrupted=partial(_interruption, name, stop, owns),
            reads=reads,
        )
        for name, spec in sorted(chosen.items())
    }
    for name in gone:
        jobs[name] = partial(
            prune_remote, name, central, connect, settings, namespace, mesh_namespace=mesh.namespace
        )
    with reads:
        results.update(
            _each_remote(jobs, settings=settings, guard=guard, prefix="remote", progress=progress)
        )
    removed = [name for name in gone if results[name].report.state == "Removed"] + forgotten
    if writes and removed:
        try:
            inventory.update(central, namespace, remove=removed)
        except errors.ClusterError as e:  # the next pass prunes them again, finding nothing
            log.warning("cannot update the inventory", extra={"error": str(e)})
    reports = {n: r.report for n, r in results.items() if r.report.state != "Removed"}
    pruned = {
        name: sum(1 for i in results[name].items if i.action == "delete")
        for name in removed
        if name in results
    }
    return PassResult(
        PassReport(revision, reports, removed=tuple(removed), pruned=pruned),
        results,
        central=central_state,
    )


def _interruption(
    name: str, stop: threading.Event | None, owns: Callable[[str], bool] | None
) -> str | None:
    if stop is not None and stop.is_set():
        return "interrupted: gitmesh is shutting down, or lost its lease"
    if owns is not None and not owns(name):
        return "interrupted: another replica of the shard group owns this remote now"
    return None


def _forgotten(gone: Sequence[str], forget: Collection[str]) -> list[str]:
    """The `--forget` names, each a remote whose spec left the repository (else refused:
    forgetting a live remote would leave its objects unowned)."""
    wrong = sorted(set(forget) - set(gone))
    if wrong:
        raise errors.GitmeshError(
            f"--forget {', '.join(wrong)}: not a remote gitmesh applied to whose spec left the "
            "repository; only those can be forgotten"
        )
    return sorted(forget)


def _check_mass_prune(
    gone: Sequence[str], known: inventory.Inventory, mesh: specs.Mesh, settings: Settings
) -> None:
    """Refuse, before anything is applied, a revision that removes more remotes than the
    mesh's threshold, or all of them (`git rm -r remotes` validates fine). Remotes an
    earlier revision removed, whose prune is pending, are not counted again."""
    limit = mesh.mass_prune_threshold
    new = [name for name in gone if name not in known.pruning]
    live = len(known.applied - known.pruning)
    everything = live >= 2 and len(new) == live
    if settings.allow_mass_prune or not new or (len(new) <= limit and not everything):
        return
    shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
    why = (
        f"all {live} remotes gitmesh applied to"
        if everything
        else f"more than massPruneThreshold ({limit}) of the {live} remotes gitmesh applied to"
    )
    pending = len(known.pruning)
    raise errors.MassPruneRefused(
        f"this revision removes {len(new)} remotes ({shown}): {why}"
        + (f" (and {pending} removed earlier are still being pruned)" if pending else "")
        + ". Nothing was applied. Restore the files, or run with --allow-mass-prune to "
        "prune them"
    )


def affected_remotes(
    repo: meshrepo.Repo, state: render.Central, changed: Iterable[Mapping[str, str]]
) -> list[str]:
    """The remotes with an enabled service whose pods are among the changed label sets."""
    label_sets = list(changed)
    out = []
    for name, spec in sorted(repo.remotes.items()):
        if not isinstance(spec, specs.RemoteIstio):
            continue
        for entry in spec.spec.enabled_services:
            reqs = render.selector_of(entry, state)
            if reqs is not None and any(selectors.matches(reqs, labels) for labels in label_sets):
                out.append(name)
                break
    return out


def endpoints_only(
    repo: meshrepo.Repo,
    central: Cluster,
    *,
    connect: Connect,
    settings: Settings,
    names: Iterable[str],
    state: render.Central,
    guard: Guard = _no_guard,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, RemoteResult]:
    """Update just the Endpoints of some remotes from `state` (the hot path of
    `gitmesh run`: the central pods come from its watch cache). `configs` are the remotes'
    kubeconfigs as the last full pass read them; without one, the Secret is read."""
    mesh = repo.mesh
    if mesh is None:
        return {}
    istio = {n: s for n, s in repo.remotes.items() if isinstance(s, specs.RemoteIstio)}
    jobs: dict[str, Callable[[], RemoteResult]] = {
        name: partial(
            _endpoints,
            name,
            istio[name],
            mesh=mesh,
            state=state,
            central=central,
            connect=connect,
            settings=settings,
            config=(configs or {}).get(name),
        )
        for name in names
        if name in istio
    }
    return _each_remote(jobs, settings=settings, guard=guard, prefix="endpoints")


def _endpoints(
    name: str,
    spec: specs.RemoteIstio,
    *,
    mesh: specs.Mesh,
    state: render.Central,
    central: Cluster,
    connect: Connect,
    settings: Settings,
    config: Mapping[str, Any] | None = None,
) -> RemoteResult:
    comp, snapshot = render.endpoints(spec, mesh, state)
    if comp.error:
        return RemoteResult(
            RemoteReport(name, "ReconcileFailed", message=comp.error, error=comp.error)
        )
    desired = [o for o in comp.objects if o["kind"] == "Endpoints"]
    namespace = settings.namespace or mesh.namespace
    try:
        config = config or credentials(name, central, namespace, settings)[0]
        with _connected(connect, name, config, settings, central) as remote:
            res = resources.BY_KIND["Endpoints"]
            current, _ = remote.list(
                res,
                namespace=specs.remote_namespace(spec, mesh),
                label_selector=resources.owner_selector(name),
            )
            current = [
                o
                for o in current
                if (o["metadata"].get("labels") or {}).get(resources.COMPONENT) == "services"
            ]
            items = [
                i for i in plan.component("services", desired, current) if i.action != "delete"
            ]
            applier = _Applier(remote, name, settings, resources.BY_KIND)
            by_ref = {plan.Ref.of(o): o for o in desired}
            patched = sum(
                1 for i in items if i.changes and applier.apply(i, by_ref.get(i.ref)) != "unchanged"
            )
    except Exception as e:  # one remote's failure is that remote's alone
        message = _failed(name, e, config)
        return RemoteResult(RemoteReport(name, "ReconcileFailed", message=message, error=message))
    if patched:
        logs.get().info("updating endpoints", extra={"remote": name, "patched": patched})
    return RemoteResult(
        RemoteReport(
            name,
            "Available",
            endpoints=snapshot,
            components=(
                ComponentReport("services", "Ready", objects=len(desired), patched=patched),
            ),
        ),
        tuple(items),
    )


def b64(text: str) -> str:
    """Base64 of UTF-8 text (for Secrets built in tests and the demo)."""
    return base64.b64encode(text.encode()).decode()


def now_utc() -> str:
    """The current time, as the status branch writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
