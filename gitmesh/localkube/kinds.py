"""The kinds localkube serves, and the discovery documents that describe them.

Built-in kinds are a table; kinds of CustomResourceDefinitions are added at run time when
a CRD is created (and removed when it is deleted), as kube-apiserver's apiextensions
server does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Kind:
    """One served resource: where it lives in the URL space and how it behaves."""

    group: str
    version: str
    resource: str  # plural, as in URLs
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    # Whether metadata.generation is kept (bumped when anything but metadata/status changes).
    generation: bool = False
    custom: bool = False
    categories: tuple[str, ...] = ()
    name_rule: str = "subdomain"  # "subdomain", "label" or "path" (RBAC names)
    list_kind: str = field(default="")

    @property
    def api_version(self) -> str:
        """`group/version`, or just `version` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        """The singular resource name (lower-case kind)."""
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """(group, resource): how the store files this kind's objects."""
        return (self.group, self.resource)


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

BUILTIN: tuple[Kind, ...] = (
    Kind(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        ("ns",),
        status_subresource=True,
        name_rule="label",
    ),
    Kind("", "v1", "pods", "Pod", True, ("po",), status_subresource=True, categories=("all",)),
    Kind(
        "",
        "v1",
        "services",
        "Service",
        True,
        ("svc",),
        status_subresource=True,
        categories=("all",),
        name_rule="label",
    ),
    Kind("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Kind("", "v1", "secrets", "Secret", True),
    Kind("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Kind("", "v1", "events", "Event", True, ("ev",)),
    Kind(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        status_subresource=True,
        generation=True,
        categories=("all",),
    ),
    Kind(
        "batch",
        "v1",
        "jobs",
        "Job",
        True,
        (),
        status_subresource=True,
        generation=True,
        categories=("all",),
    ),
    Kind(
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        True,
        ("cj",),
        status_subresource=True,
        generation=True,
        categories=("all",),
    ),
    Kind(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        True,
        ("netpol",),
        generation=True,
    ),
    Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, name_rule="path"),
    Kind(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        name_rule="path",
    ),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", True, name_rule="path"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, name_rule="path"),
    Kind(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        generation=True,
    ),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", True),
    Kind(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        status_subresource=True,
        generation=True,
    ),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        status_subresource=True,
        generation=True,
    ),
)


def from_crd(crd: dict[str, Any]) -> list[Kind]:
    """The kinds a CustomResourceDefinition serves (one per served version)."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    out = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        out.append(
            Kind(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                spec.get("scope", "Namespaced") == "Namespaced",
                tuple(names.get("shortNames", [])),
                status_subresource="status" in version.get("subresources", {}),
                generation=True,
                custom=True,
                categories=tuple(names.get("categories", [])),
                list_kind=names.get("listKind", ""),
            )
        )
    return out


def resource_list(group_version: str, kinds: list[Kind]) -> dict[str, Any]:
    """The APIResourceList served at /api/v1 or /apis/GROUP/VERSION."""
    resources: list[dict[str, Any]] = []
    for k in sorted(kinds, key=lambda k: k.resource):
        entry: dict[str, Any] = {
            "name": k.resource,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": VERBS,
        }
        if k.short_names:
            entry["shortNames"] = list(k.short_names)
        if k.categories:
            entry["categories"] = list(k.categories)
        resources.append(entry)
        if k.status_subresource:
            resources.append(
                {
                    "name": f"{k.resource}/status",
                    "singularName": "",
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def group_list(kinds: list[Kind]) -> dict[str, Any]:
    """The APIGroupList served at /apis."""
    groups: dict[str, list[str]] = {}
    for k in kinds:
        if k.group and k.version not in groups.setdefault(k.group, []):
            groups[k.group].append(k.version)
    out = []
    for name in sorted(groups):
        versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in groups[name]]
        out.append({"name": name, "versions": versions, "preferredVersion": versions[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}
