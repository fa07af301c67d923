"""The istiod primary's half of an IstiodRemote, on the central cluster.

Observed: the east-west gateway Service's load-balancer address (what remotes reach
istiod by) and istiod's root certificate (ConfigMap `istio-ca-root-cert`, key
`root-cert.pem`).

Checked, as warnings (the remote stays Available; a real istiod showed each one breaks
the join): the east-west gateway Service exposes istiod's 15012 and 15017
(samples/multicluster/expose-istiod.yaml, gen-eastwest-gateway.sh); the primary's istiod
Deployment, where central has one and gitmesh may read it, sets `EXTERNAL_ISTIOD=true`
(pilot/pkg/features/pilot.go; without it istiod never leads a remote); the remote's API
server address in its remote Secret is not loopback (istioctl's create-remote-secret warns
the same way).

Written: the Secret istiod reads a remote's kubeconfig from, as `istioctl
create-remote-secret` makes it (istioctl/pkg/multicluster/remote_secret.go at 1.30.3):
`istio-remote-secret-<name>` in the mesh namespace, label `istio/multiCluster: "true"`,
annotation `networking.istio.io/cluster: <name>`, data key `<name>`. Its kubeconfig holds
the remote's server and CA and a TokenRequest token of the remote's
`istio-reader-service-account` — never gitmesh's own credentials — with a bounded lifetime,
renewed once a third of it is left (gitmesh.credentials.join.due); a pass that finds it current
writes nothing.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

import yaml

from gitmesh import errors, kubeconfigs, plan, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials import join
from gitmesh.render import istiodremote
from gitmesh.resources import Obj

COMPONENT = "primary"
ROOT_CERT_KEY = "root-cert.pem"
ISTIOD_PORTS = (15012, 15017)  # xDS and the injection webhook, through the gateway
ISTIOD_DEPLOYMENT = "istiod"
_CONFIGMAP = resources.BY_KIND["ConfigMap"]
_DEPLOYMENT = resources.BY_KIND["Deployment"]


def gateway_warnings(service: Mapping[str, Any], where: str) -> list[str]:
    """What the east-west gateway Service lacks to expose istiod to remotes."""
    ports = {p.get("port") for p in (service.get("spec") or {}).get("ports") or ()}
    missing = [str(p) for p in ISTIOD_PORTS if p not in ports]
    if not missing:
        return []
    return [
        f"the east-west gateway {where} does not expose port {' and '.join(missing)} "
        "(istiod's xDS 15012 and webhook 15017, samples/multicluster/expose-istiod.yaml): "
        "remotes cannot reach istiod through it"
    ]


def istiod_warnings(deployment: Mapping[str, Any], where: str) -> list[str]:
    """Whether the primary's istiod manages remotes (EXTERNAL_ISTIOD=true)."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or ():
        for env in container.get("env") or ():
            if env.get("name") == "EXTERNAL_ISTIOD" and env.get("value") == "true":
                return []
    return [
        f"the primary's istiod ({where}) does not set EXTERNAL_ISTIOD=true "
        "(values.global.externalIstiod): it will not manage the remotes' config, and "
        "injected pods wait for istio-ca-root-cert"
    ]


def server_warnings(server: str, name: str) -> list[str]:
    """A remote API server address only gitmesh's host can reach, as istioctl warns."""
    host = urllib.parse.urlsplit(server).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return []
    return [
        f"the API server address istiod gets for {name} is {server}, a loopback address: "
        "istiod reaches it only if it runs on the same host as that API server "
        "(spec.server sets the address istiod uses)"
    ]


def _address(entry: object) -> str | None:
    """An ingress entry's IP, parsed, else its host name if it is a DNS name."""
    if not isinstance(entry, Mapping):
        return None
    ip, host = entry.get("ip"), entry.get("hostname")
    if isinstance(ip, str) and ip:
        try:
            return str(ipaddress.ip_address(ip))
        except ValueError:
            pass
    if isinstance(host, str) and host:
        try:
            return specs.dns_subdomain(host)  # as kube-apiserver checks a hostname
        except ValueError:
            return None
    return None


def address_of(service: Mapping[str, Any] | None) -> str | None:
    """The first load-balancer address in a Service's status that is an IP or a DNS name;
    entries with neither (a real API server takes one with only `ports`) or with anything
    else are passed over, never rendered."""
    status = (service or {}).get("status") or {}
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if not isinstance(ingress, list):
        return None
    return next((a for a in map(_address, ingress) if a), None)


class Observed(NamedTuple):
    """The primary as IstiodRemotes need it, or what is wrong (`error`) or doubtful."""

    address: str | None = None
    root: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def observe(central: Cluster, mesh: specs.Mesh) -> Observed:
    """The gateway address, istiod's root certificate (PEM), and warnings, on the primary."""
    ns = mesh.namespace
    gateway = mesh.primary.east_west_gateway
    try:
        svc = central.get(resources.SERVICE, ns, gateway)
        cm = central.get(_CONFIGMAP, ns, mesh.primary.root_cert_config_map)
    except errors.NotFound as e:
        return Observed(error=f"on the primary: {e}")
    except errors.ClusterError as e:
        return Observed(error=f"cannot read the primary: {e}")
    warnings = gateway_warnings(svc, f"{ns}/{gateway}")
    try:
        deployment = central.get(_DEPLOYMENT, ns, ISTIOD_DEPLOYMENT)
        warnings += istiod_warnings(deployment, f"Deployment {ns}/{ISTIOD_DEPLOYMENT}")
    except errors.ClusterError:
        pass  # not there (istiod runs elsewhere), or not gitmesh's to read: nothing to check
    address = address_of(svc)
    root = (cm.get("data") or {}).get(ROOT_CERT_KEY)
    if not address:
        status = svc.get("status") or {}
        if (status.get("loadBalancer") or {}).get("ingress"):
            error = (
                f"the east-west gateway {ns}/{gateway} has no usable load-balancer address: "
                "its status.loadBalancer.ingress holds no IP address or DNS name"
            )
        else:
            error = f"the east-west gateway {ns}/{gateway} has no load-balancer address yet"
        return Observed(None, root, error, tuple(warnings))
    if not root:
        error = f"{ns}/{mesh.primary.root_cert_config_map} has no {ROOT_CERT_KEY}"
        return Observed(address, None, error, tuple(warnings))
    return Observed(address, str(root), None, tuple(warnings))


def _owned(secret: Obj, name: str) -> bool:
    return resources.owned_by(secret, name)


def _current(secret: Obj, name: str, cluster: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether the Secret's kubeconfig still points at the remote as gitmesh reaches it and
    its token is not due."""
    annotations = secret["metadata"].get("annotations") or {}
    try:
        expires = datetime.datetime.fromisoformat(annotations[join.EXPIRES])
        lifetime = datetime.timedelta(seconds=int(annotations[join.LIFETIME]))
        config = yaml.safe_load(base64.b64decode((secret.get("data") or {})[name]))
        stored, _ = kubeconfigs.current(config)
    except (KeyError, ValueError, TypeError, yaml.YAMLError, errors.GitmeshError):
        return False
    # Compared with what would be written now (a CA file of a --kubeconfig-dir kubeconfig
    # is inlined there).
    wanted, _ = kubeconfigs.current(yaml.safe_load(join.kubeconfig(name, cluster, "-")))
    same = all(
        stored.get(k) == wanted.get(k)
        for k in ("server", "certificate-authority-data", "insecure-skip-tls-verify")
    )
    return same and not join.due(expires, lifetime, now)


def remote_secret(
    name: str,
    *,
    remote: Cluster,
    remote_config: Mapping[str, Any],
    remote_namespace: str,
    server: str | None = None,
    central: Cluster,
    namespace: str,
    plan_only: bool,
    dry_run: bool,
    now: datetime.datetime,
) -> plan.Item:
    """Make the primary's remote Secret for `name` current (its kubeconfig naming `server`
    when given, else the remote's server as gitmesh reaches it); returns what it came to."""
    secret_name = istiodremote.remote_secret_name(name)
    ref = plan.Ref("Secret", namespace, secret_name)
    cluster, _ = kubeconfigs.current(remote_config)
    if server is not None:
        cluster = {**cluster, "server": server}
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
    wanted = _reader_secret(name, remote, remote_namespace, cluster, ref, dry_run=dry_run, now=now)
    meta = wanted["metadata"]
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


def _reader_secret(
    name: str,
    remote: Cluster,
    remote_namespace: str,
    cluster: Mapping[str, Any],
    ref: plan.Ref,
    *,
    dry_run: bool,
    now: datetime.datetime,
) -> Obj:
    """The remote Secret istiod reads: a kubeconfig with a new token of the remote's
    reader ServiceAccount, never gitmesh's own."""
    answer = remote.request_token(
        remote_namespace,
        istiodremote.READER,
        int(join.DEFAULT_TTL.total_seconds()),
        dry_run=dry_run,
    )
    status = answer.get("status") or {}
    token = join.Token(
        str(status.get("token") or "dry-run"),
        datetime.datetime.fromisoformat(str(status.get("expirationTimestamp") or now.isoformat())),
        join.DEFAULT_TTL,
    )
    wanted = join.secret(
        ref.name, ref.namespace, join.kubeconfig(name, cluster, token.value), token, key=name
    )
    meta = wanted["metadata"]
    meta["labels"].update(
        {resources.MULTICLUSTER: "true", resources.REMOTE: name, resources.COMPONENT: COMPONENT}
    )
    meta["annotations"][istiodremote.CLUSTER_ANNOTATION] = name
    del meta["annotations"][join.ACCOUNT_ANNOTATION]
    return wanted


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
