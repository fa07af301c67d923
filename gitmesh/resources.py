"""The Kubernetes kinds gitmesh reads and writes, and the labels that mark what it owns.
Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A Kubernetes object as JSON: what every stage passes around.
Obj = dict[str, Any]

MANAGED_BY = "app.kubernetes.io/managed-by"
REMOTE = "gitmesh.io/remote"
COMPONENT = "gitmesh.io/component"
OWNED_FIELDS = "gitmesh.io/owned-fields"
INJECTION = "istio-injection"
MANAGED_INJECTION = "istio-operator-managed-injection"
MULTICLUSTER = "istio/multiCluster"
# EndpointSlices carry their writer; gitmesh observes only its own (a cluster's mirroring
# controller copies an Endpoints' labels onto the slices it makes).
SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"

# Every component of either model (RemoteIstio; IstiodRemote), in apply order.
COMPONENTS = (
    "common",
    "citadel",
    "reader",
    "istiod",
    "sidecarinjector",
    "services",
    "injection",
)


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of a collection or of one object."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


NAMESPACE = Resource("v1", "Namespace", "namespaces", False)
POD = Resource("v1", "Pod", "pods", True)
SECRET = Resource("v1", "Secret", "secrets", True)
SERVICE = Resource("v1", "Service", "services", True)
LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases", True)

# The kinds gitmesh creates on remotes: one labelled LIST each per pass.
MANAGED: tuple[Resource, ...] = (
    Resource("v1", "ConfigMap", "configmaps", True),
    SECRET,
    Resource("v1", "ServiceAccount", "serviceaccounts", True),
    SERVICE,
    Resource("v1", "Endpoints", "endpoints", True),
    Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
    Resource("apps/v1", "Deployment", "deployments", True),
    Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
)
BY_KIND: Mapping[str, Resource] = {r.kind: r for r in (*MANAGED, NAMESPACE, POD, LEASE)}
WEBHOOK = BY_KIND["MutatingWebhookConfiguration"]
# What a cluster older than Kubernetes 1.16 serves instead (the Istio 1.0/1.1 era).
WEBHOOK_V1BETA1 = Resource(
    "admissionregistration.k8s.io/v1beta1", WEBHOOK.kind, WEBHOOK.plural, WEBHOOK.namespaced
)


def of(obj: Mapping[str, Any]) -> Resource:
    """The resource of an object, by its kind."""
    return BY_KIND[obj["kind"]]


def owner_selector(remote: str) -> str:
    """The label selector of everything gitmesh manages for `remote`."""
    return f"{MANAGED_BY}=gitmesh,{REMOTE}={remote}"


def owned_by(obj: Mapping[str, Any], remote: str) -> bool:
    """Whether `obj` carries gitmesh's ownership labels for `remote`."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(MANAGED_BY) == "gitmesh" and labels.get(REMOTE) == remote
