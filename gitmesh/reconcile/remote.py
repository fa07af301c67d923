"""One remote in a pass: credentials, observe, render, plan and apply, component by
component (a failing component stops the later ones), then strays and the primary's
remote Secret. Never raises: a failure is the remote's report."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from gitmesh import errors, health, kubeconfigs, logs, plan, render, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials import ca
from gitmesh.credentials.remote import (
    Connect,
    connected,
    credentials,
    failed,
    renewed,
    set_multicluster,
)
from gitmesh.reconcile import offline, primary, rollouts
from gitmesh.reconcile.apply import Applier, apply_component, component_items
from gitmesh.reconcile.observe import Observed, observe_remote, served
from gitmesh.resources import Obj
from gitmesh.settings import Settings
from gitmesh.status.reports import ComponentReport, RemoteReport
from gitmesh.status.results import RemoteResult


@dataclass(slots=True)
class _Outcome:
    """What one remote's pass has come to so far: a report per component, the items
    planned, and the first failure (after which later components are skipped)."""

    reports: list[ComponentReport] = field(default_factory=list)
    items: list[plan.Item] = field(default_factory=list)
    failure: str | None = None
    rollouts: list[health.Rollout] = field(default_factory=list)  # not rolled out yet


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
    log.debug("planning remote" if settings.plan_only else "reconciling remote", extra=ctx)
    started = time.monotonic()
    namespace = settings.namespace or mesh.namespace
    config: Mapping[str, Any] | None = None
    out = _Outcome()
    try:
        config, secret = credentials(name, central, namespace, settings)
        with connected(connect, name, config, settings, central) as remote:
            if secret is not None and not (settings.plan_only or settings.dry_run):
                secret = renewed(name, remote, config, central, secret)
            observed = observe_remote(remote, name, [specs.remote_namespace(spec, mesh)], reads)
            needs = render.needs(spec)
            rendered = render.remote(
                spec,
                mesh,
                central_state,
                cacerts=_cacerts(spec, central_state, observed),
                webhook_api=observed.kinds[resources.WEBHOOK.kind].api_version,
                served=served(remote, observed) if needs.v1beta1_webhooks else None,
            )
            applier = Applier(remote, name, settings, observed.kinds)
            _credential_warnings(out, config, ctx)
            out.failure = _refusal(needs, central_state, rendered, remote)
            _components(
                out,
                rendered,
                observed=observed,
                applier=applier,
                interrupted=interrupted,
                ctx=ctx,
            )
            _strays(out, rendered, observed, applier)
            if out.failure is None and needs.primary:
                step = _Primary(name, remote, config, rendered.namespace, needs.primary_server)
                _primary_secret(out, step, central=central, mesh=mesh, settings=settings, ctx=ctx)
            if out.failure is None and not (settings.plan_only or settings.dry_run):
                out.rollouts = rollouts.check(rendered, observed, applier, started, interrupted)
    except Exception as e:  # one remote's failure, whatever it is, is that remote's alone
        if settings.plan_only and isinstance(e, errors.MissingCredentials):
            return offline.as_new(name, spec, mesh, central_state)  # a PR adding a remote
        message = failed(name, e, config)
        _log_failure(settings, ctx, message)
        return RemoteResult(RemoteReport(name, "ReconcileFailed", message=message, error=message))
    return _result(
        name,
        out,
        rendered,
        pilot_reads=needs.pilot_reads_kubeconfig,
        secret=secret,
        central=central,
        config=config,
        settings=settings,
        ctx=ctx,
    )


def _result(
    name: str,
    out: _Outcome,
    rendered: render.Rendered,
    *,
    pilot_reads: bool,
    secret: Obj | None,
    central: Cluster,
    config: Mapping[str, Any],
    settings: Settings,
    ctx: Mapping[str, str],
) -> RemoteResult:
    """What the remote's pass came to: failed, planned, or Available (then gitmesh's
    kubeconfig Secret is labelled for central's pilot when it reads it)."""
    log = logs.get()
    if out.failure is not None:
        return _failed_result(
            name, out, rendered=rendered, config=config, settings=settings, ctx=ctx
        )
    if settings.plan_only:
        log.debug("planned remote", extra=ctx)
        return RemoteResult(
            RemoteReport(
                name, "Planned", components=tuple(out.reports), endpoints=rendered.endpoints
            ),
            tuple(out.items),
        )
    if secret is not None and not settings.dry_run:
        # Only central's pilot (1.0/1.1) reads gitmesh's own Secret: an istiod primary
        # reads istio-remote-secret-<name>, and given both it may pick gitmesh's token.
        set_multicluster(central, secret, pilot_reads)
    counts = {
        f"objects{f.title()}": sum(getattr(r, f) for r in out.reports)
        for f in ("created", "patched", "deleted")
    }
    state, message = health.state(out.rollouts)
    extra = {**ctx, "status": state, **counts, **({"waiting": message} if message else {})}
    log.info("remote reconciled", extra=extra)
    return RemoteResult(
        RemoteReport(
            name,
            state,
            message=message,
            components=tuple(out.reports),
            endpoints=rendered.endpoints,
        ),
        tuple(out.items),
        desired=_digests(rendered) if settings.desired_digests else {},
    )


def _log_failure(settings: Settings, ctx: Mapping[str, str], message: str) -> None:
    logs.get().error(
        "cannot plan remote" if settings.plan_only else "remote failed",
        extra={**ctx, "status": "ReconcileFailed", "error": message},
    )


def _failed_result(
    name: str,
    out: _Outcome,
    *,
    rendered: render.Rendered,
    config: Mapping[str, Any],
    settings: Settings,
    ctx: Mapping[str, str],
) -> RemoteResult:
    failure = errors.one_line(out.failure or "", kubeconfigs.secrets(config))
    _log_failure(settings, ctx, failure)
    # The snapshot says what the remote has: only when its Endpoints were applied.
    applied = any(r.name == "services" and r.state == "Ready" for r in out.reports)
    return RemoteResult(
        RemoteReport(
            name,
            "ReconcileFailed",
            message=failure,
            components=tuple(out.reports),
            error=failure,
            endpoints=rendered.endpoints if applied else None,
        ),
        tuple(out.items),
    )


def _credential_warnings(out: _Outcome, config: Mapping[str, Any], ctx: Mapping[str, str]) -> None:
    """A kubeconfig that works but is unsafe (no TLS verification...): warned, and kept
    in the status as the `credentials` component's warnings."""
    unsafe = tuple(kubeconfigs.warnings(config, ctx["remote"]))
    for warning in unsafe:
        logs.get().warning(warning, extra={**ctx, "component": "credentials"})
    if unsafe:
        out.reports.append(ComponentReport("credentials", "Ready", warnings=unsafe))


def _components(
    out: _Outcome,
    rendered: render.Rendered,
    *,
    observed: Observed,
    applier: Applier,
    interrupted: Callable[[], str | None] | None,
    ctx: Mapping[str, str],
) -> None:
    """Plan and apply each component in order; after a failure, the rest are Skipped."""
    log = logs.get()
    for comp in rendered.components:
        if out.failure is None and interrupted is not None:
            out.failure = interrupted()
        if out.failure is not None:
            out.reports.append(ComponentReport(comp.name, "Skipped"))
            continue
        log.debug("reconciling", extra={**ctx, "component": comp.name})
        failure = comp.error
        if failure is None:
            items = component_items(comp, observed, rendered.namespace)
            out.items += items
            try:
                out.reports.append(apply_component(applier, comp, items))
                log.debug("reconciled", extra={**ctx, "component": comp.name})
                continue
            except errors.ClusterError as e:
                failure = str(e)
        out.failure = failure
        out.reports.append(ComponentReport(comp.name, "Failed", error=failure))
        log.error("component failed", extra={**ctx, "component": comp.name, "error": failure})


def _strays(out: _Outcome, rendered: render.Rendered, observed: Observed, applier: Applier) -> None:
    """Objects labelled with a component this remote's model does not render (another
    model's, or a component gitmesh no longer has): deleted once the rest applied."""
    rendered_names = {c.name for c in rendered.components}
    stray = plan.component(
        "stray",
        [],
        [o for c, objs in observed.by_component.items() if c not in rendered_names for o in objs],
    )
    out.items += stray
    if out.failure is not None or applier.settings.plan_only or not stray:
        return
    try:
        for item in stray:
            applier.apply(item, None)
        out.reports.append(ComponentReport("stray", "Ready", deleted=len(stray)))
    except errors.ClusterError as e:
        out.failure = str(e)


@dataclass(frozen=True, slots=True)
class _Primary:
    """The remote as the istiod primary's remote Secret names it."""

    name: str
    remote: Cluster
    config: Mapping[str, Any]
    namespace: str  # the remote's Istio namespace
    server: str | None  # the address the primary reaches it at (None: the kubeconfig's)


def _primary_secret(
    out: _Outcome,
    step: _Primary,
    *,
    central: Cluster,
    mesh: specs.Mesh,
    settings: Settings,
    ctx: Mapping[str, str],
) -> None:
    """The istiod primary's remote Secret for this remote, on central (an IstiodRemote)."""
    try:
        item = primary.remote_secret(
            step.name,
            remote=step.remote,
            remote_config=step.config,
            remote_namespace=step.namespace,
            server=step.server,
            central=central,
            namespace=mesh.namespace,
            plan_only=settings.plan_only,
            dry_run=settings.dry_run,
            now=datetime.datetime.now(datetime.UTC),
        )
    except errors.ClusterError as e:
        out.failure = f"the primary's remote Secret: {e}"
        out.reports.append(ComponentReport(primary.COMPONENT, "Failed", error=out.failure))
        return
    out.items.append(item)
    done = "" if settings.plan_only else item.action
    server = step.server or kubeconfigs.endpoint(step.config)[0]
    warnings = tuple(primary.server_warnings(server, step.name))
    for warning in warnings:
        logs.get().warning(warning, extra={**ctx, "component": primary.COMPONENT})
    out.reports.append(
        ComponentReport(
            primary.COMPONENT,
            "Ready",
            warnings=warnings,
            objects=1,
            created=int(done == "create"),
            patched=int(done == "patch"),
        )
    )


def _refusal(
    needs: render.Needs, central: render.Central, rendered: render.Rendered, remote: Cluster
) -> str | None:
    """Why nothing can work on this remote (a central CA that cannot sign its intermediate,
    an injector its Kubernetes cannot serve), or None: then nothing is written, not even
    the namespace and mesh config (they would be half a remote)."""
    if needs.central_ca and central.ca_error:
        return central.ca_error
    if rendered.refused is None:
        return None
    try:
        version = f"{remote.name} runs Kubernetes {remote.server_version() or '(unknown)'}"
    except errors.ClusterError as e:
        version = f"its version could not be read: {e}"
    return f"{rendered.refused} ({version})"


def _cacerts(
    spec: specs.Remote, central: render.Central, observed: Observed
) -> Mapping[str, str] | None:
    """A RemoteIstio's intermediate CA: the one it has while that is still good, else a new
    one signed by the central CA. None when the spec brings its own or central has none."""
    if not render.needs(spec).central_ca or central.ca_data is None or central.ca_error:
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


def _digests(rendered: render.Rendered) -> dict[plan.Ref, str]:
    out = {}
    for comp in rendered.components:
        for obj in comp.objects:
            text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
            out[plan.Ref.of(obj)] = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return out
