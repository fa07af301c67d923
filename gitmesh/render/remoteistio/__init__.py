"""The desired objects of one RemoteIstio remote, component by component. Pure.

Inputs are the RemoteIstio spec, `mesh.yaml` and what was observed on the central cluster
(`Central`); the output is plain Kubernetes objects (dicts) with gitmesh's ownership
labels, in component order: common, citadel, sidecarinjector, services, injection. Every
spec field lands somewhere in the output (tests/unit/test_render.py checks each one).
Objects never carry fields a server would drop (empty `subsets`), so that reading them
back shows no drift.

A module per component: `context` (with `common`), `citadel`, `injector` and `services`.
"""

from __future__ import annotations

from collections.abc import Mapping

from gitmesh import specs
from gitmesh.render.base import Central, Component, Rendered
from gitmesh.render.remoteistio.citadel import citadel
from gitmesh.render.remoteistio.context import (
    CACERTS,
    CITADEL,
    INJECTOR,
    WEBHOOK_API,
    Ctx,
    Served,
    common,
)
from gitmesh.render.remoteistio.injector import refusal, sidecarinjector
from gitmesh.render.remoteistio.services import endpoints, follows, selector_of, services

__all__ = [
    "CACERTS",
    "CITADEL",
    "INJECTOR",
    "WEBHOOK_API",
    "Served",
    "endpoints",
    "follows",
    "render",
    "selector_of",
]


def render(
    spec: specs.RemoteIstio,
    mesh: specs.Mesh,
    central: Central,
    *,
    cacerts: Mapping[str, str] | None = None,
    webhook_api: str = WEBHOOK_API,
    served: Served | None = None,
) -> Rendered:
    """The desired state of one remote. `cacerts` is the remote's intermediate CA (the
    caller keeps or mints it: `gitmesh.credentials.ca`); `webhook_api` the
    admissionregistration version the remote serves; `served`, what else it does."""
    namespace = specs.remote_namespace(spec, mesh)
    ctx = Ctx(spec, mesh, central, namespace, cacerts, webhook_api, served or Served())
    svc, snapshot = services(ctx)
    components = (
        common(ctx),
        citadel(ctx),
        sidecarinjector(ctx),
        svc,
        Component("injection", namespaces=tuple(spec.spec.auto_injection_namespaces)),
    )
    return Rendered(
        namespace=ctx.namespace, components=components, endpoints=snapshot, refused=refusal(ctx)
    )
