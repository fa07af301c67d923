"""What `gitmesh join` grants on a remote, as plain data: the ServiceAccount, the Role in the
remote's Istio namespace (what gitmesh writes there, and a LIST of the kinds served), the
ClusterRole (the cluster-scoped kinds only, patches and deletes by name, `escalate`/`bind`
on the ClusterRoles gitmesh writes), the Role that renews its own token, their bindings;
and the grants as (group, resource, verb) triples to compare with what a pass sends.
Pure."""

from __future__ import annotations

from collections.abc import Sequence

from gitmesh import resources
from gitmesh.render import istiodremote, remoteistio
from gitmesh.resources import Obj, Resource
from gitmesh.specs import profiles

NAMESPACE = "gitmesh"
ACCOUNT = "gitmesh"
CLUSTER_ROLE = "gitmesh-remote"
TOKEN_ROLE = "gitmesh-token"  # noqa: S105 - a Role's name
_RBAC = "rbac.authorization.k8s.io"
_ADMISSION = "admissionregistration.k8s.io"
_CORE = ""
# What gitmesh sends to a remote. Namespaced kinds only in the remote's Istio namespace (a
# Role there): a labelled LIST per pass, CREATE/PATCH/DELETE to converge, GET to re-read
# after a conflict.
_CONVERGE = ["list", "get", "create", "patch", "delete"]


_NAMESPACED = [
    {
        "apiGroups": [_CORE],
        "resources": ["configmaps", "endpoints", "secrets", "serviceaccounts", "services"],
        "verbs": _CONVERGE,
    },
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _CONVERGE},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _CONVERGE},
    # IstiodRemote: the primary's remote Secret holds a token of the reader account.
    {
        "apiGroups": [_CORE],
        "resources": ["serviceaccounts/token"],
        "resourceNames": [istiodremote.READER],
        "verbs": ["create"],
    },
]


# Its own token, renewed with itself: only that ServiceAccount, only in its namespace.
TOKEN_RULES: list[Obj] = [
    {
        "apiGroups": [_CORE],
        "resources": ["serviceaccounts/token"],
        "resourceNames": [ACCOUNT],
        "verbs": ["create"],
    }
]


def managed_names(namespace: str) -> dict[str, list[str]]:
    """The cluster-scoped objects gitmesh writes for an Istio namespace, by resource: the
    ClusterRoles (and their bindings) of citadel, the injector and an IstiodRemote's
    reader, and the two models' webhooks."""
    roles = [
        f"{remoteistio.CITADEL}-{namespace}",
        f"{remoteistio.INJECTOR}-{namespace}",
        istiodremote.reader_role_name(namespace),
    ]
    webhooks = sorted({profiles.WEBHOOK_CONFIG_NAME, istiodremote.webhook_name(namespace)})
    return {"clusterroles": roles, "mutatingwebhookconfigurations": webhooks}


def cluster_rules(namespace: str) -> list[Obj]:
    """The ClusterRole: cluster-scoped kinds only, and the objects gitmesh writes by name.
    A create cannot be limited by name (RBAC does not know it yet). Kubernetes lets a
    subject grant only what it holds, unless it may `escalate` the role (and `bind` it):
    both by name, so gitmesh grants citadel, the injector and the reader their rights
    without holding them (it could not otherwise read a Secret outside its namespace)."""
    names = managed_names(namespace)
    roles = names["clusterroles"]
    return [
        {
            "apiGroups": [_CORE],
            "resources": ["namespaces"],
            # No create: join makes the Istio namespace (the Role lives there).
            "verbs": ["list", "get", "patch"],
        },
        {
            "apiGroups": [_CORE],
            "resources": ["namespaces"],
            "resourceNames": [namespace],
            "verbs": ["delete"],
        },
        {
            "apiGroups": [_RBAC],
            "resources": ["clusterroles", "clusterrolebindings"],
            "verbs": ["list", "get", "create"],
        },
        {
            "apiGroups": [_RBAC],
            "resources": ["clusterroles", "clusterrolebindings"],
            "resourceNames": roles,
            "verbs": ["patch", "delete"],
        },
        {
            "apiGroups": [_RBAC],
            "resources": ["clusterroles"],
            "resourceNames": roles,
            "verbs": ["bind", "escalate"],
        },
        {
            "apiGroups": [_ADMISSION],
            "resources": ["mutatingwebhookconfigurations"],
            "verbs": ["list", "get", "create"],
        },
        {
            "apiGroups": [_ADMISSION],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": names["mutatingwebhookconfigurations"],
            "verbs": ["patch", "delete"],
        },
    ]


def namespace_rules(listable: Sequence[Resource]) -> list[Obj]:
    """The Role in the Istio namespace: what gitmesh converges there, and a LIST of every
    kind the server served at join time, by name (no wildcard), so that gitmesh can tell
    the namespace empty before it deletes one it made; a kind added later cannot be
    listed, and the namespace is then kept."""
    by_group: dict[str, set[str]] = {}
    for res in listable:
        group = res.api_version.rpartition("/")[0]
        by_group.setdefault(group, set()).add(res.plural)
    lists = [
        {"apiGroups": [group], "resources": sorted(plurals), "verbs": ["list"]}
        for group, plurals in sorted(by_group.items())
    ]
    return [*_NAMESPACED, *lists]


_SA = resources.BY_KIND["ServiceAccount"]
_NS = resources.NAMESPACE
_CLUSTER_ROLE = resources.BY_KIND["ClusterRole"]
_CLUSTER_BINDING = resources.BY_KIND["ClusterRoleBinding"]
_ROLE = Resource(f"{_RBAC}/v1", "Role", "roles", True)
_BINDING = Resource(f"{_RBAC}/v1", "RoleBinding", "rolebindings", True)


def object_meta(name: str, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {resources.MANAGED_BY: "gitmesh"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def objects(namespace: str, listable: Sequence[Resource]) -> list[tuple[Resource, Obj]]:
    """What `join` makes on a remote whose Istio namespace is `namespace`, in creation
    order; `listable`, the namespaced kinds the server serves."""
    subject = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]

    def namespace_obj(name: str) -> Obj:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": object_meta(name)}

    def role(kind: str, name: str, ns: str | None, rules: list[Obj]) -> Obj:
        return {
            "apiVersion": f"{_RBAC}/v1",
            "kind": kind,
            "metadata": object_meta(name, ns),
            "rules": rules,
        }

    def binding(kind: str, name: str, ns: str | None) -> Obj:
        return {
            "apiVersion": f"{_RBAC}/v1",
            "kind": f"{kind}Binding",
            "metadata": object_meta(name, ns),
            "roleRef": {"apiGroup": _RBAC, "kind": kind, "name": name},
            "subjects": subject,
        }

    return [
        (_NS, namespace_obj(NAMESPACE)),
        (
            _SA,
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": object_meta(ACCOUNT, NAMESPACE),
            },
        ),
        (_CLUSTER_ROLE, role("ClusterRole", CLUSTER_ROLE, None, cluster_rules(namespace))),
        (_CLUSTER_BINDING, binding("ClusterRole", CLUSTER_ROLE, None)),
        (_NS, namespace_obj(namespace)),
        (_ROLE, role("Role", CLUSTER_ROLE, namespace, namespace_rules(listable))),
        (_BINDING, binding("Role", CLUSTER_ROLE, namespace)),
        (_ROLE, role("Role", TOKEN_ROLE, NAMESPACE, TOKEN_RULES)),
        (_BINDING, binding("Role", TOKEN_ROLE, NAMESPACE)),
    ]


def granted(namespace: str, listable: Sequence[Resource]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples the ClusterRole and the Roles grant (for tests)."""
    rules: Sequence[Obj] = [
        *cluster_rules(namespace),
        *namespace_rules(listable),
        *TOKEN_RULES,
    ]
    return {
        (group, res, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }
