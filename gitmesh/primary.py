"""The istiod primary's half of an IstiodRemote, on the central cluster.

Observed: the east-west gateway Service's load-balancer address (what remotes reach
istiod by) and istiod's root certificate (ConfigMap `istio-ca-root-cert`, key
`root-cert.pem`).

Written: the Secret istiod reads a remote's kubeconfig from, as `istioctl
create-remote-secret` makes it (istioctl/pkg/multicluster/remote_secret.go at 1.30.3):
`istio-remote-secret-<name>` in the mesh namespace, label `istio/multiCluster: "true"`,
annotation `networking.istio.io/cluster: <name>`, data key `<name>`. Its kubeconfig holds
the remote's server and CA and a TokenRequest token of the remote's
`istio-reader-service-account` — never gitmesh's own credentials — with a bounded lifetime,
renewed once a third of it is left (gitmesh.access.due); a pass that finds it current
writes nothing.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

import yaml

from gitmesh import access, errors, kubeconfigs, plan, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.render import istiodremote

Obj = dict[str, Any]
COMPONENT = "primary"
ROOT_CERT_KEY = "root-cert.pem"
_CONFIGMAP = resources.BY_KIND["ConfigMap"]


def address_of(service: Mapping[str, Any] | None) -> str | None:
    """The first load-balancer address (IP or host name) in a Service's status."""
    status = (service or {}).get("status") or {}
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    return next((str(i.get("ip") or i.get("hostname")) for i in ingress if i), None)


def observe(central: Cluster, mesh: specs.Mesh) -> tuple[str | None, str | None, str | None]:
    """(gateway address, root certificate PEM, what is wrong) on the primary."""
    ns = mesh.namespace
    gateway = mesh.primary.east_west_gateway
    try:
        svc = central.get(resources.SERVICE, ns, gateway)
        cm = central.get(_CONFIGMAP, ns, mesh.primary.root_cert_config_map)
    except errors.NotFound as e:
        return None, None, f"on the primary: {e}"
    except errors.ClusterError as e:
        return None, None, f"cannot read the primary: {e}"
    address = address_of(svc)
    root = (cm.get("data") or {}).get(ROOT_CERT_KEY)
    if not address:
        return None, root, f"the east-west gateway {ns}/{gateway} has no load-balancer address yet"
    if not root:
        return address, None, f"{ns}/{mesh.primary.root_cert_config_map} has no {ROOT_CERT_KEY}"
    return address, str(root), None


def _owned(secret: Obj, name: str) -> bool:
    return resources.owned_by(secret, name)


def _current(secret: Obj, name: str, cluster: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether the Secret's kubeconfig still points at the remote as gitmesh reaches it and
    its token is not due."""
    annotations = secret["metadata"].get("annotations") or {}
    try:
        expires = datetime.datetime.fromisoformat(annotations[access.EXPIRES])
        lifetime = datetime.timedelta(seconds=int(annotations[access.LIFETIME]))
        config = yaml.safe_load(base64.b64decode((secret.get("data") or {})[name]))
        stored, _ = kubeconfigs.current(config)
    except (KeyError, ValueError, TypeError, yaml.YAMLError, errors.GitmeshError):
        return False
    # Compared with what would be written now (a CA file of a --kubeconfig-dir kubeconfig
    # is inlined there).
    wanted, _ = kubeconfigs.current(yaml.safe_load(access.kubeconfig(name, cluster, "-")))
    same = all(
        stored.get(k) == wanted.get(k)
        for k in ("server", "certificate-authority-data", "insecure-skip-tls-verify")
    )
    return same and not access.due(expires, lifetime, now)


def remote_secret(
    name: str,
    *,
    remote: Cluster,
    remote_config: Mapping[str, Any],
    remote_namespace: str,
    central: Cluster,
    namespace: str,
    plan_only: bool,
    dry_run: bool,
    now: datetime.datetime,
) -> plan.Item:
    """Make the primary's remote Secret for `name` current; returns what it came to."""
    secret_name = istiodremote.remote_secret_name(name)
    ref = plan.Ref("Secret", namespace, secret_name)
    cluster, _ = kubeconfigs.current(remote_config)
    try:
        current: Obj | None = central.get(resources.SECRET, namespace, secret_name)
    except errors.NotFound:
        current = None
    if current is not None and not _owned(current, name):
        raise errors.Conflict(
            f"Secret {namespace}/{secret_name} exists on the primary and is not managed by "
            "gitmesh; refusing to take it over"
        )
    if current is not None and _current(current, name, cluster, now):
        return plan.Item("unchanged", COMPONENT, ref)
    action = "create" if current is None else "patch"
    if plan_only:
        return plan.Item(action, COMPONENT, ref)
    answer = remote.request_token(
        remote_namespace,
        istiodremote.READER,
        int(access.DEFAULT_TTL.total_seconds()),
        dry_run=dry_run,
    )
    status = answer.get("status") or {}
    token = access.Token(
        str(status.get("token") or "dry-run"),
        datetime.datetime.fromisoformat(str(status.get("expirationTimestamp") or now.isoformat())),
        access.DEFAULT_TTL,
    )
    wanted = access.secret(
        secret_name, namespace, access.kubeconfig(name, cluster, token.value), token, key=name
    )
    meta = wanted["metadata"]
    meta["labels"].update(
        {resources.MULTICLUSTER: "true", resources.REMOTE: name, resources.COMPONENT: COMPONENT}
    )
    meta["annotations"][istiodremote.CLUSTER_ANNOTATION] = name
    del meta["annotations"][access.ACCOUNT_ANNOTATION]
    if current is None:
        central.create(resources.SECRET, wanted, dry_run=dry_run)
    else:
        central.patch(
            resources.SECRET,
            namespace,
            secret_name,
            [
                {"op": "replace", "path": "/data", "value": wanted["data"]},
                {"op": "add", "path": "/metadata/annotations", "value": meta["annotations"]},
                {"op": "add", "path": "/metadata/labels", "value": meta["labels"]},
            ],
            resource_version=current["metadata"].get("resourceVersion"),
            dry_run=dry_run,
        )
    return plan.Item(action, COMPONENT, ref)


def remove_remote_secret(
    name: str, central: Cluster, namespace: str, *, plan_only: bool, dry_run: bool
) -> plan.Item | None:
    """Delete the primary's remote Secret of a remote that left (only gitmesh's own)."""
    secret_name = istiodremote.remote_secret_name(name)
    try:
        current = central.get(resources.SECRET, namespace, secret_name)
    except errors.NotFound:
        return None
    if not _owned(current, name):
        return None
    rv = current["metadata"].get("resourceVersion")
    item = plan.Item("delete", COMPONENT, plan.Ref.of(current), resource_version=rv)
    if not plan_only:
        central.delete(
            resources.SECRET, namespace, secret_name, resource_version=rv, dry_run=dry_run
        )
    return item
