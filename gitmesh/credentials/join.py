"""gitmesh's own access to a remote: what `gitmesh join` sets up, and its token's renewal.

`join` uses an admin's kubeconfig once, to create on the remote a ServiceAccount for
gitmesh; a Role in the remote's Istio namespace with what gitmesh writes there (it writes
namespaced kinds nowhere else) and a LIST of the kinds served, to tell that namespace
empty; a ClusterRole with the cluster-scoped kinds only, patches and deletes by name, and
`escalate`/`bind` on the ClusterRoles gitmesh writes, by name, so that it grants citadel,
the injector and an IstiodRemote's reader what they need without holding it; a Role that
lets the ServiceAccount renew its own token; and their bindings. No wildcard. It asks the
TokenRequest API for a token of bounded lifetime and writes the kubeconfig Secret on
central that `reconcile` reads: the remote's server and CA, and that token. The admin
credentials are never stored.

On every pass, `renew` replaces a token that has used up two thirds of its lifetime,
through the remote's TokenRequest API, with the token itself; a pass that finds the token
young writes nothing.

The objects carry gitmesh's managed-by label but no remote label, so a reconcile pass
never takes them for its own (and never prunes them).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gitmesh import errors, kubeconfigs, logs, resources
from gitmesh.cluster import Cluster
from gitmesh.render import istiodremote, remoteistio
from gitmesh.resources import Obj, Resource
from gitmesh.specs import profiles

NAMESPACE = "gitmesh"
ACCOUNT = "gitmesh"
CLUSTER_ROLE = "gitmesh-remote"
TOKEN_ROLE = "gitmesh-token"  # noqa: S105 - a Role's name
EXPIRES = "gitmesh.io/token-expires"
LIFETIME = "gitmesh.io/token-lifetime"
ACCOUNT_ANNOTATION = "gitmesh.io/token-account"
DEFAULT_TTL = datetime.timedelta(days=30)
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


def _meta(name: str, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {resources.MANAGED_BY: "gitmesh"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def objects(namespace: str, listable: Sequence[Resource]) -> list[tuple[Resource, Obj]]:
    """What `join` makes on a remote whose Istio namespace is `namespace`, in creation
    order; `listable`, the namespaced kinds the server serves."""
    subject = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]

    def namespace_obj(name: str) -> Obj:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name)}

    def role(kind: str, name: str, ns: str | None, rules: list[Obj]) -> Obj:
        return {
            "apiVersion": f"{_RBAC}/v1",
            "kind": kind,
            "metadata": _meta(name, ns),
            "rules": rules,
        }

    def binding(kind: str, name: str, ns: str | None) -> Obj:
        return {
            "apiVersion": f"{_RBAC}/v1",
            "kind": f"{kind}Binding",
            "metadata": _meta(name, ns),
            "roleRef": {"apiGroup": _RBAC, "kind": kind, "name": name},
            "subjects": subject,
        }

    return [
        (_NS, namespace_obj(NAMESPACE)),
        (
            _SA,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ACCOUNT, NAMESPACE)},
        ),
        (_CLUSTER_ROLE, role("ClusterRole", CLUSTER_ROLE, None, cluster_rules(namespace))),
        (_CLUSTER_BINDING, binding("ClusterRole", CLUSTER_ROLE, None)),
        (_NS, namespace_obj(namespace)),
        (_ROLE, role("Role", CLUSTER_ROLE, namespace, namespace_rules(listable))),
        (_BINDING, binding("Role", CLUSTER_ROLE, namespace)),
        (_ROLE, role("Role", TOKEN_ROLE, NAMESPACE, TOKEN_RULES)),
        (_BINDING, binding("Role", TOKEN_ROLE, NAMESPACE)),
    ]


@dataclass(frozen=True, slots=True)
class Token:
    """A TokenRequest token and when it stops working."""

    value: str
    expires: datetime.datetime
    lifetime: datetime.timedelta


def due(expires: datetime.datetime, lifetime: datetime.timedelta, now: datetime.datetime) -> bool:
    """Whether a token is to be renewed: a third of its lifetime or less is left."""
    return expires - now <= lifetime / 3


def request_token(
    remote: Cluster, lifetime: datetime.timedelta, *, dry_run: bool = False
) -> Token | None:
    """A new token of gitmesh's ServiceAccount on `remote` (None for a dry run)."""
    answer = remote.request_token(
        NAMESPACE, ACCOUNT, int(lifetime.total_seconds()), dry_run=dry_run
    )
    status = answer.get("status") or {}
    if dry_run or not status.get("token"):
        return None
    expires = datetime.datetime.fromisoformat(str(status["expirationTimestamp"]))
    return Token(str(status["token"]), expires, lifetime)


def kubeconfig(name: str, cluster: Mapping[str, Any], token: str) -> str:
    """A kubeconfig for `name` holding the cluster's server and CA, and the token only."""
    entry = {
        k: cluster[k]
        for k in (
            "server",
            "certificate-authority-data",
            "insecure-skip-tls-verify",
            "tls-server-name",
        )
        if k in cluster
    }
    if "certificate-authority" in cluster and "certificate-authority-data" not in entry:
        ca = Path(str(cluster["certificate-authority"])).read_bytes()
        entry["certificate-authority-data"] = base64.b64encode(ca).decode()
    user = f"gitmesh@{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": entry}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }
    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


def secret(name: str, namespace: str, config: str, token: Token, *, key: str | None = None) -> Obj:
    """The kubeconfig Secret on central, as `reconcile` reads it (data key: `key`, by
    default the Secret's name)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {resources.MANAGED_BY: "gitmesh"},
            "annotations": _token_annotations(token),
        },
        "data": {key or name: base64.b64encode(config.encode()).decode()},
    }


def _token_annotations(token: Token) -> dict[str, str]:
    return {
        EXPIRES: token.expires.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        LIFETIME: str(int(token.lifetime.total_seconds())),
        ACCOUNT_ANNOTATION: f"{NAMESPACE}/{ACCOUNT}",
    }


def _ensure(remote: Cluster, res: Resource, obj: Obj, *, dry_run: bool) -> str:
    """Create `obj`, or bring gitmesh's own copy to it; refuse a foreign one."""
    meta = obj["metadata"]
    try:
        current = remote.get(res, meta.get("namespace"), meta["name"])
    except errors.NotFound:
        remote.create(res, obj, dry_run=dry_run)
        return "created"
    labels = current["metadata"].get("labels") or {}
    if labels.get(resources.MANAGED_BY) != "gitmesh":
        if res == _NS:
            return "kept"  # an existing namespace is used as it is
        raise errors.Conflict(
            f"{obj['kind']} {meta['name']} exists on {remote.name} and is not gitmesh's; "
            "refusing to take it over"
        )
    ops = [
        {"op": "replace" if key in current else "add", "path": f"/{key}", "value": obj[key]}
        for key in ("rules", "subjects", "roleRef")
        if key in obj and current.get(key) != obj[key]
    ]
    if not ops:
        return "unchanged"
    remote.patch(
        res,
        meta.get("namespace"),
        meta["name"],
        ops,
        resource_version=current["metadata"].get("resourceVersion"),
        dry_run=dry_run,
    )
    return "updated"


def join(
    name: str,
    remote: Cluster,
    remote_cluster: Mapping[str, Any],
    central: Cluster,
    namespace: str,
    *,
    istio_namespace: str = "istio-system",
    lifetime: datetime.timedelta = DEFAULT_TTL,
    dry_run: bool = False,
) -> list[str]:
    """Set up gitmesh's access to `remote`, whose Istio objects live in `istio_namespace`,
    and store it on central; returns what was done, one line each."""
    done = []
    try:
        existing: Obj | None = central.get(resources.SECRET, namespace, name)
    except errors.NotFound:
        existing = None
    if existing is not None and ACCOUNT_ANNOTATION not in (
        existing["metadata"].get("annotations") or {}
    ):
        raise errors.Conflict(
            f"Secret {namespace}/{name} exists on central and was not written by gitmesh "
            "join; delete it first to replace it"
        )
    absent: set[str] = set()  # namespaces a dry run only pretended to create
    for res, obj in objects(istio_namespace, remote.namespaced_resources()):
        meta = obj["metadata"]
        if meta.get("namespace") in absent:
            what = "created"  # into a namespace that does not exist yet: nothing to ask
        else:
            what = _ensure(remote, res, obj, dry_run=dry_run)
        if dry_run and res == _NS and what == "created":
            absent.add(meta["name"])
        where = f"{meta['namespace']}/" if "namespace" in meta else ""
        done.append(f"{obj['kind']} {where}{meta['name']} on {name}: {what}")
    token = None if absent else request_token(remote, lifetime, dry_run=dry_run)
    if token is None:
        done = [f"{line} (dry run)" for line in done]
        done.append(f"Secret {namespace}/{name} on central: would be written (dry run)")
        return done
    wanted = secret(name, namespace, kubeconfig(name, remote_cluster, token.value), token)
    if existing is None:
        central.create(resources.SECRET, wanted)
        done.append(f"Secret {namespace}/{name} on central: created")
    else:
        _replace_secret(central, existing, wanted)
        done.append(f"Secret {namespace}/{name} on central: updated")
    done.append(f"token valid until {wanted['metadata']['annotations'][EXPIRES]}")
    return done


def _replace_secret(central: Cluster, current: Obj, wanted: Obj) -> Obj:
    meta = current["metadata"]
    annotations = {**(meta.get("annotations") or {}), **wanted["metadata"]["annotations"]}
    return central.patch(
        resources.SECRET,
        meta["namespace"],
        meta["name"],
        [
            {"op": "replace", "path": "/data", "value": wanted["data"]},
            {
                "op": "add" if "annotations" not in meta else "replace",
                "path": "/metadata/annotations",
                "value": annotations,
            },
        ],
        resource_version=meta.get("resourceVersion"),
    )


def renew(
    name: str,
    *,
    remote: Cluster,
    config: Mapping[str, Any],
    central: Cluster,
    current: Obj,
    now: datetime.datetime,
) -> Obj | None:
    """Renew the token of a Secret `join` wrote once it is due; the Secret as renewed, or
    None when nothing was due. A Secret gitmesh did not write is left alone."""
    annotations = current["metadata"].get("annotations") or {}
    if annotations.get(ACCOUNT_ANNOTATION) != f"{NAMESPACE}/{ACCOUNT}":
        return None
    try:
        expires = datetime.datetime.fromisoformat(annotations[EXPIRES])
        lifetime = datetime.timedelta(seconds=int(annotations[LIFETIME]))
    except (KeyError, ValueError):
        lifetime, expires = DEFAULT_TTL, now  # unreadable: renew, with the default lifetime
    if not due(expires, lifetime, now):
        return None
    token = request_token(remote, lifetime)
    if token is None:
        return None
    cluster, _ = kubeconfigs.current(config)
    wanted = secret(
        name, current["metadata"]["namespace"], kubeconfig(name, cluster, token.value), token
    )
    renewed = _replace_secret(central, current, wanted)
    logs.get().info(
        "renewed gitmesh's token",
        extra={"remote": name, "expires": wanted["metadata"]["annotations"][EXPIRES]},
    )
    return renewed


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
