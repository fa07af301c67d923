"""The `citadel` component of a RemoteIstio: the remote's CA (Istio 1.0/1.1's citadel,
signing with the intermediate gitmesh keeps in `cacerts`), its RBAC and Service. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from gitmesh.render.base import (
    Component,
)
from gitmesh.render.remoteistio.context import (
    CACERTS,
    CITADEL,
    Ctx,
    deployment,
    object_meta,
    rbac,
    service,
)
from gitmesh.resources import Obj

# What citadel reads and writes on the remote: its Secrets, ServiceAccounts and Services.
_RULES = [
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["create", "get", "watch", "list", "update", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["serviceaccounts", "services"],
        "verbs": ["get", "watch", "list"],
    },
]


def citadel(ctx: Ctx) -> Component:
    """Citadel, signing workload certificates with the remote's own intermediate CA
    (Secret `cacerts`, minted from the central CA by the caller), or with the Secret the
    spec names (`citadel.caSecretName`)."""
    conf = ctx.spec.citadel
    ca_secret = conf.ca_secret_name or CACERTS
    objects: list[Obj] = [*rbac(ctx, CITADEL, "citadel", _RULES)]
    objects.append(
        deployment(
            ctx,
            CITADEL,
            "citadel",
            "citadel",
            upstream_app="security",
            replicas=conf.replica_count
            if conf.replica_count is not None
            else ctx.mesh.replicas.citadel,
            container=_container(ctx),
            volumes=[{"name": "cacerts", "secret": {"secretName": ca_secret, "optional": False}}],
            node_selector=conf.node_selector,
            pod_annotations=_restart_on(ctx.cacerts) if conf.ca_secret_name is None else None,
        )
    )
    monitoring = ctx.profile.monitoring_port
    ports = [
        {"name": "grpc-citadel", "port": 8060, "targetPort": 8060, "protocol": "TCP"},
        {
            "name": "http-monitoring",
            "port": monitoring,
            "targetPort": monitoring,
            "protocol": "TCP",
        },
    ]
    objects.append(service(ctx, CITADEL, "citadel", "citadel", ports))
    if conf.ca_secret_name is None:
        if ctx.cacerts is None:
            return Component(
                "citadel",
                error=ctx.central.ca_error
                or (
                    f"the central CA secret {ctx.mesh.namespace}/{ctx.mesh.central.ca_secret_name} "
                    "was not found; create it or set citadel.caSecretName"
                ),
            )
        objects.insert(
            0,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": object_meta(ctx, CACERTS, "citadel"),
                "data": dict(ctx.cacerts),
            },
        )
    return Component("citadel", tuple(objects))


# Citadel 1.0/1.1 reads a plugged-in CA once, at start (the source is cited in
# tests/unit/test_render.py::test_citadel_restarts_when_the_cacerts_gitmesh_writes_change):
# a new `cacerts` takes effect when its pods restart, which a changed pod template makes
# them do (as `kubectl rollout restart` and Helm's checksum annotations do).
CACERTS_DIGEST = "gitmesh.io/cacerts-digest"


def _restart_on(cacerts: Mapping[str, str] | None) -> dict[str, str]:
    """The pod template annotation that changes when the `cacerts` gitmesh writes does."""
    if cacerts is None:
        return {}
    text = json.dumps(dict(cacerts), sort_keys=True, separators=(",", ":"))
    return {CACERTS_DIGEST: hashlib.sha256(text.encode()).hexdigest()[:32]}


def _container(ctx: Ctx) -> Obj:
    """The citadel container: its flags as the version's chart sets them, signing with
    the CA mounted from the `cacerts` Secret (or the spec's)."""
    conf = ctx.spec.citadel
    prof = ctx.profile
    ns = ctx.namespace
    dns_names = ",".join(
        f"{account}.{ns}:{service}.{ns}"
        for account, service in (n.split(":") for n in prof.citadel_custom_dns_names)
    )
    return {
        "name": "citadel",
        "image": conf.image or ctx.mesh.images.citadel,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--append-dns-names=true",
            "--grpc-port=8060",
            "--grpc-hostname=citadel",
            f"--citadel-storage-namespace={ns}",
            f"--custom-dns-names={dns_names}",
            *prof.citadel_extra_args,
            "--self-signed-ca=false",
            "--signing-cert=/etc/cacerts/ca-cert.pem",
            "--signing-key=/etc/cacerts/ca-key.pem",
            "--root-cert=/etc/cacerts/root-cert.pem",
            "--cert-chain=/etc/cacerts/cert-chain.pem",
        ],
        "ports": [
            {"containerPort": 8060, "name": "grpc-citadel"},
            {"containerPort": prof.monitoring_port, "name": "http-monitoring"},
        ],
        "resources": ctx.resources_for(conf.resources),
        "volumeMounts": [{"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": True}],
    }
