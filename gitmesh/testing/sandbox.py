"""A simulated Istio mesh on localkube: the central control plane's pods, services and CA
secret, the remotes' kubeconfig Secrets, and remote clusters prepared as the seed's
walkthrough prepares them. Used by the tests, the benchmarks and `gitmesh demo`; shipped
so users can try their own mesh repositories against it.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from gitmesh.credentials import ca
from gitmesh.localkube import Server
from gitmesh.localkube.store import ApiError

if TYPE_CHECKING:
    from gitmesh.localkube.apiserver import KubeAPIServer

    Backend = Server | KubeAPIServer

NAMESPACE = "istio-system"
CA_SECRET = "istio-ca-secret"  # noqa: S105 - a Secret's name

# name -> (pod labels, service selector, service ports)
ISTIO: dict[str, tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]] = {
    "istio-pilot": (
        {"istio": "pilot", "app": "pilot"},
        {"istio": "pilot"},
        [
            {"name": "grpc-xds", "port": 15010},
            {"name": "https-xds", "port": 15011},
            {"name": "http-legacy-discovery", "port": 8080},
            {"name": "http-monitoring", "port": 9093},
        ],
    ),
    "istio-policy": (
        {"istio": "mixer", "istio-mixer-type": "policy", "app": "policy"},
        {"istio": "mixer", "istio-mixer-type": "policy"},
        [{"name": "grpc-mixer", "port": 9091}, {"name": "grpc-mixer-mtls", "port": 15004}],
    ),
    "istio-telemetry": (
        {"istio": "mixer", "istio-mixer-type": "telemetry", "app": "telemetry"},
        {"istio": "mixer", "istio-mixer-type": "telemetry"},
        [{"name": "grpc-mixer", "port": 9091}, {"name": "grpc-mixer-mtls", "port": 15004}],
    ),
    "istio-statsd-prom-bridge": (
        {"istio": "statsd-prom-bridge"},
        {"istio": "statsd-prom-bridge"},
        [
            {"name": "statsd-prom", "port": 9102},
            {"name": "statsd-udp", "port": 9125, "protocol": "UDP"},
        ],
    ),
    "zipkin": ({"app": "jaeger"}, {"app": "jaeger"}, [{"name": "http", "port": 9411}]),
}


@dataclass(frozen=True, slots=True)
class Mesh:
    """Handles to a simulated mesh."""

    server: Backend
    central: str
    remotes: tuple[str, ...]
    ca_key_pem: bytes

    def pod_names(self, service: str) -> list[str]:
        """The central pods behind an Istio service."""
        store = self.server.store(self.central)
        pods = store.list(store.kind("", "v1", "pods"), NAMESPACE)["items"]
        labels = ISTIO[service][0]
        return [
            p["metadata"]["name"]
            for p in pods
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
        ]


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _create(
    server: Backend, cluster: str, resource: str, namespace: str, body: dict[str, Any]
) -> None:
    """Create a core/v1 object directly in a localkube cluster's store."""
    store = server.store(cluster)
    store.create(store.kind("", "v1", resource), namespace, body)


def ensure_namespace(server: Backend, cluster: str, name: str) -> None:
    """Create a namespace unless it exists."""
    store = server.store(cluster)
    kind = store.kind("", "v1", "namespaces")
    try:
        store.get(kind, "", name)
    except ApiError as e:
        if e.code != 404:
            raise
        store.create(kind, "", {"metadata": {"name": name}})


def kubeconfig_secret(
    server: Backend, central: str, remote: str, *, namespace: str = NAMESPACE
) -> None:
    """What `kubectl create secret generic <remote> --from-file <remote>` makes, on central."""
    config = yaml.safe_dump(server.kubeconfig(remote))
    _create(
        server,
        central,
        "secrets",
        namespace,
        {"metadata": {"name": remote}, "data": {remote: _b64(config)}},
    )


GATEWAY = "istio-eastwestgateway"
ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"


def add_primary(
    server: Backend,
    central: str = "central",
    *,
    address: str = "192.0.2.10",
    gateway: str = GATEWAY,
    root_cert_config_map: str = ROOT_CERT_CONFIGMAP,
) -> str:
    """Make `central` an istiod primary as IstiodRemotes see it: istiod's root certificate
    in a ConfigMap, and an east-west gateway Service with a load-balancer address. Returns
    the root certificate (PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    root = base64.b64decode(ca.self_signed_root("cluster.local", now)["ca-cert.pem"])
    ensure_namespace(server, central, NAMESPACE)
    _create(
        server,
        central,
        "configmaps",
        NAMESPACE,
        {"metadata": {"name": root_cert_config_map}, "data": {"root-cert.pem": root.decode()}},
    )
    _create(
        server,
        central,
        "services",
        NAMESPACE,
        {
            "metadata": {"name": gateway, "labels": {"istio": "eastwestgateway"}},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"istio": "eastwestgateway"},
                "ports": [
                    {"name": "tls-istiod", "port": 15012, "targetPort": 15012},
                    {"name": "tls-webhook", "port": 15017, "targetPort": 15017},
                ],
            },
        },
    )
    set_gateway_address(server, central, address, gateway=gateway)
    return root.decode()


def set_gateway_address(
    server: Backend, central: str, address: str | None, *, gateway: str = GATEWAY
) -> None:
    """What the cloud's load-balancer controller does: publish (or, with None, withdraw) the
    east-west gateway's address in its status."""
    store = server.store(central)
    ingress = [] if address is None else [{"ip": address}]
    store.patch(
        store.kind("", "v1", "services"),
        NAMESPACE,
        gateway,
        "application/merge-patch+json",
        {"status": {"loadBalancer": {"ingress": ingress}}},
        subresource="status",
    )


def add_istio_pod(
    server: Backend, central: str, service: str, index: int = 0, *, ready: bool = True
) -> str:
    """Start one more pod behind a central Istio service; returns its name."""
    labels = ISTIO[service][0]
    name = f"{service}-{index:04d}"
    server.add_pod(
        central,
        NAMESPACE,
        name,
        labels=labels,
        ready=ready,
        ports=[p["port"] for p in ISTIO[service][2]],
    )
    return name


def start(
    server: Backend,
    *,
    central: str = "central",
    remotes: Iterable[str] = (),
    pods_per_service: int = 1,
    remote_namespaces: Iterable[str] = ("payments",),
    rollouts: bool = True,
) -> Mesh:
    """Seed `server` with a central Istio control plane and prepared remotes (whose
    Deployments roll out, unless `rollouts=False`: `simulate_workloads` later)."""
    ensure_namespace(server, central, NAMESPACE)
    for service, (_, selector, ports) in ISTIO.items():
        _create(
            server,
            central,
            "services",
            NAMESPACE,
            {
                "metadata": {"name": service, "labels": {"app": service}},
                "spec": {"selector": selector, "ports": [dict(p) for p in ports]},
            },
        )
        for i in range(pods_per_service):
            add_istio_pod(server, central, service, i)
    root = ca.self_signed_root("cluster.local", datetime.datetime.now(datetime.UTC))
    _create(
        server,
        central,
        "secrets",
        NAMESPACE,
        {
            "metadata": {"name": CA_SECRET},
            "type": "istio.io/ca-root",
            "data": root,
        },
    )
    names = tuple(remotes)
    for remote in names:
        kubeconfig_secret(server, central, remote)
        ensure_namespace(server, remote, NAMESPACE)
        for ns in remote_namespaces:
            ensure_namespace(server, remote, ns)
        if rollouts:
            server.simulate_workloads(remote)
    key_pem = base64.b64decode(root["ca-key.pem"])
    return Mesh(server=server, central=central, remotes=names, ca_key_pem=key_pem)


def b64(text: str) -> str:
    """Base64 of UTF-8 text (for Secrets built in tests and the demo)."""
    return base64.b64encode(text.encode()).decode()
