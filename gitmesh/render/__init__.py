"""The desired objects of one remote, by the model its file names. Pure.

One renderer per Istio model behind `remote()`: `remoteistio` (the 2019 RemoteIstio: a
citadel and an injector on every remote, copies of central Services) and `istiodremote`
(a remote joined to today's istiod primary). Both return a `Rendered`: components in
apply order, each a tuple of plain Kubernetes objects carrying gitmesh's ownership labels;
the shared pipeline (plan, apply, status) does not know which model made them.

What a model asks of the pipeline around render is said here too, so that no stage
outside asks which model a remote is: `needs(spec)` (the central CA, the istiod primary,
gitmesh's kubeconfig Secret read by central's pilot), `follows(spec, ...)` and
`endpoints(spec, ...)` (the hot path: Endpoints that follow central's pods).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gitmesh import specs
from gitmesh.render import istiodremote, remoteistio
from gitmesh.render.base import Central, CentralService, Component, Pod, Rendered
from gitmesh.render.remoteistio import CACERTS, WEBHOOK_API, Served
from gitmesh.resources import Obj

__all__ = [
    "CACERTS",
    "WEBHOOK_API",
    "Central",
    "CentralService",
    "Component",
    "Needs",
    "Obj",
    "Pod",
    "Rendered",
    "Served",
    "endpoints",
    "follows",
    "needs",
    "remote",
]


@dataclass(frozen=True, slots=True)
class Needs:
    """What a remote's model asks of the pipeline around render."""

    # The central CA Secret: the pass keeps or mints the remote's intermediate (`cacerts`).
    central_ca: bool = False
    # The istiod primary on central (its gateway and root certificate), and a remote
    # Secret there with the remote's reader token.
    primary: bool = False
    # The address the primary reaches the remote at (None: its kubeconfig's server).
    primary_server: str | None = None
    # Central's 1.0/1.1 pilot reads gitmesh's own kubeconfig Secret (labelled
    # istio/multiCluster); an istiod primary reads its remote Secret instead.
    pilot_reads_kubeconfig: bool = False
    # Endpoints that follow central's pods (the hot path of `gitmesh run`).
    central_pods: bool = False
    # Whether the remote serves admissionregistration.k8s.io/v1beta1 matters: the 1.0/1.1
    # sidecar injector patches its webhook's caBundle only there.
    v1beta1_webhooks: bool = False


def needs(spec: specs.Remote) -> Needs:
    """What `spec`'s model needs beyond its rendered objects."""
    if isinstance(spec, specs.IstiodRemote):
        return Needs(primary=True, primary_server=spec.spec.server)
    return Needs(
        central_ca=spec.spec.citadel.ca_secret_name is None,
        pilot_reads_kubeconfig=True,
        central_pods=True,
        v1beta1_webhooks=True,
    )


def follows(spec: specs.Remote, central: Central, changed: Sequence[Mapping[str, str]]) -> bool:
    """Whether the remote's Endpoints follow central pods with one of the `changed` label
    sets (only a RemoteIstio copies central's Services)."""
    return isinstance(spec, specs.RemoteIstio) and remoteistio.follows(spec, central, changed)


def endpoints(
    spec: specs.Remote, mesh: specs.Mesh, central: Central
) -> tuple[Component, Mapping[str, tuple[str, ...]] | None] | None:
    """Just the component whose Endpoints follow central's pods, and its snapshot; None
    for a model with none."""
    if not isinstance(spec, specs.RemoteIstio):
        return None
    return remoteistio.endpoints(spec, mesh, central)


def remote(
    spec: specs.Remote,
    mesh: specs.Mesh,
    central: Central,
    *,
    cacerts: Mapping[str, str] | None = None,
    webhook_api: str = WEBHOOK_API,
    served: Served | None = None,
) -> Rendered:
    """The desired state of one remote. For a RemoteIstio, `cacerts` is its intermediate CA
    (the caller keeps or mints it: `gitmesh.credentials.ca`), `webhook_api` the
    admissionregistration version gitmesh writes the webhook at and `served` what else
    the remote serves that the model depends on."""
    if isinstance(spec, specs.IstiodRemote):
        return istiodremote.render(spec, mesh, central)
    return remoteistio.render(
        spec, mesh, central, cacerts=cacerts, webhook_api=webhook_api, served=served
    )
