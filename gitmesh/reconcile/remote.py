"""One remote in a pass: credentials, observe, render, plan and apply, component by
component (a failing component stops the later ones), then strays and the primary's
remote Secret. Never raises: a failure is the remote's report."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from gitmesh import errors, kubeconfigs, logs, plan, render, resources, specs
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
from gitmesh.reconcile import primary
from gitmesh.reconcile.apply import Applier, apply_component, component_items
from gitmesh.reconcile.observe import Observed, observe_remote
from gitmesh.settings import Settings
from gitmesh.status.reports import ComponentReport, RemoteReport
from gitmesh.status.results import RemoteResult


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
        with connected(connect, name, config, settings, central) as remote:
            if secret is not None and not (settings.plan_only or settings.dry_run):
                secret = renewed(name, remote, config, central, secret)
            observed = observe_remote(remote, name, [specs.remote_namespace(spec, mesh)], reads)
            rendered = render.remote(
                spec,
                mesh,
                central_state,
                cacerts=_cacerts(spec, central_state, observed),
                webhook_api=observed.kinds[resources.WEBHOOK.kind].api_version,
            )
            applier = Applier(remote, name, settings, observed.kinds)
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
                items = component_items(comp, observed, rendered.namespace)
                all_items += items
                try:
                    reports.append(apply_component(applier, comp, items))
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
        message = failed(name, e, config)
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
        set_multicluster(central, secret, isinstance(spec, specs.RemoteIstio))
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


def _cacerts(
    spec: specs.Remote, central: render.Central, observed: Observed
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


def _digests(rendered: render.Rendered) -> dict[plan.Ref, str]:
    out = {}
    for comp in rendered.components:
        for obj in comp.objects:
            text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
            out[plan.Ref.of(obj)] = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return out
