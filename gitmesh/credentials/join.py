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

What it grants is `grants`; this module makes it so and keeps the token fresh.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gitmesh import errors, kubeconfigs, logs, resources
from gitmesh.cluster import Cluster
from gitmesh.credentials import grants
from gitmesh.resources import Obj, Resource

EXPIRES = "gitmesh.io/token-expires"
LIFETIME = "gitmesh.io/token-lifetime"
ACCOUNT_ANNOTATION = "gitmesh.io/token-account"
DEFAULT_TTL = datetime.timedelta(days=30)


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
        grants.NAMESPACE, grants.ACCOUNT, int(lifetime.total_seconds()), dry_run=dry_run
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
        ACCOUNT_ANNOTATION: f"{grants.NAMESPACE}/{grants.ACCOUNT}",
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
        if res == resources.NAMESPACE:
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
    for res, obj in grants.objects(istio_namespace, remote.namespaced_resources()):
        meta = obj["metadata"]
        if meta.get("namespace") in absent:
            what = "created"  # into a namespace that does not exist yet: nothing to ask
        else:
            what = _ensure(remote, res, obj, dry_run=dry_run)
        if dry_run and res == resources.NAMESPACE and what == "created":
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
    if annotations.get(ACCOUNT_ANNOTATION) != f"{grants.NAMESPACE}/{grants.ACCOUNT}":
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
