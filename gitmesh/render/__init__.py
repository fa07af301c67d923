"""The desired objects of one remote, by the model its file names. Pure.

One renderer per Istio model behind `remote()`: `remoteistio` (the 2019 RemoteIstio: a
citadel and an injector on every remote, copies of central Services) and `istiodremote`
(a remote joined to today's istiod primary). Both return a `Rendered`: components in
apply order, each a tuple of plain Kubernetes objects carrying gitmesh's ownership labels;
the shared pipeline (plan, apply, status) does not know which model made them.
"""

from __future__ import annotations

from collections.abc import Mapping

from gitmesh import specs
from gitmesh.render import istiodremote, remoteistio
from gitmesh.render.base import Central, CentralService, Component, Pod, Rendered
from gitmesh.render.remoteistio import CACERTS, WEBHOOK_API, endpoints, selector_of
from gitmesh.resources import Obj

__all__ = [
    "CACERTS",
    "WEBHOOK_API",
    "Central",
    "CentralService",
    "Component",
    "Obj",
    "Pod",
    "Rendered",
    "endpoints",
    "remote",
    "selector_of",
]


def remote(
    spec: specs.Remote,
    mesh: specs.Mesh,
    central: Central,
    *,
    cacerts: Mapping[str, str] | None = None,
    webhook_api: str = WEBHOOK_API,
) -> Rendered:
    """The desired state of one remote. For a RemoteIstio, `cacerts` is its intermediate CA
    (the caller keeps or mints it: `gitmesh.credentials.ca`) and `webhook_api` the
    admissionregistration version the remote serves."""
    if isinstance(spec, specs.IstiodRemote):
        return istiodremote.render(spec, mesh, central)
    return remoteistio.render(spec, mesh, central, cacerts=cacerts, webhook_api=webhook_api)
