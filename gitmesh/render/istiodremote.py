"""The desired objects of one IstiodRemote: a remote joined to an istiod primary. Pure.

What Istio's own charts install for the `remote` profile (istio/istio 1.30.3,
manifests/charts/istio-control/istio-discovery with `istiodRemote.enabled`, and
manifests/charts/base), with the east-west gateway's address observed on the primary:

- common: the remote's Istio namespace, labelled `topology.istio.io/network` when the
  spec names a network, and annotated `topology.istio.io/controlPlaneClusters` with the
  primary's cluster ID (mesh.yaml `primary.clusterID`, default `*`), without which an
  `EXTERNAL_ISTIOD` primary does not manage the remote;
- reader: ServiceAccount `istio-reader-service-account` and the reader ClusterRole and
  binding (templates/reader-clusterrole.yaml: reads, plus the writes istiod makes on a
  remote: configmaps, and the webhooks' caBundle);
- istiod: a selector-less `istiod` Service (15012; 443 -> 15017) and, for an IP address,
  the EndpointSlice holding it (remote-istiod-service.yaml, remote-istiod-endpointslices.yaml);
  for a host name, the Service is an ExternalName instead;
- sidecarinjector: MutatingWebhookConfiguration `istio-sidecar-injector` calling istiod
  through that Service at `/inject/cluster/<name>/net/<network>`
  (`istiodRemote.injectionPath`), trusting the primary's root certificate;
- injection: `istio-injection=enabled` on the spec's namespaces.

The primary's half, the remote Secret istiod reads, is not rendered here: it holds a
token only the remote can issue (gitmesh.reconcile and gitmesh.credentials.join).
"""

from __future__ import annotations

import base64
import ipaddress

from gitmesh import resources, specs
from gitmesh.render.base import POD_CREATE_RULES, Central, Component, Rendered, meta
from gitmesh.resources import Obj

ISTIOD = "istiod"
READER = "istio-reader-service-account"
WEBHOOK = "istio-sidecar-injector"
NETWORK_LABEL = "topology.istio.io/network"
# istioctl/pkg/multicluster/remote_secret.go remoteSecretPrefix (a name, not a secret)
REMOTE_SECRET_PREFIX = "istio-remote-secret-"  # noqa: S105
CLUSTER_ANNOTATION = "networking.istio.io/cluster"
# istio.io/api annotation TopologyControlPlaneClusters, read by istiod's checkShouldLead
# (pilot/pkg/serviceregistry/kube/controller/multicluster.go): a comma-separated list of
# cluster IDs, or "*".
CONTROL_PLANE_CLUSTERS = "topology.istio.io/controlPlaneClusters"
_ISTIO_GROUPS = [
    "config.istio.io",
    "security.istio.io",
    "networking.istio.io",
    "authentication.istio.io",
    "rbac.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
]
_READ = ["get", "list", "watch"]
# templates/reader-clusterrole.yaml at 1.30.3, with istiodRemote.enabled (MCS_API_GROUP
# left at its default).
READER_RULES: list[Obj] = [
    {"apiGroups": _ISTIO_GROUPS, "resources": ["*"], "verbs": _READ},
    {
        "apiGroups": [""],
        "resources": [
            "endpoints",
            "pods",
            "services",
            "nodes",
            "replicationcontrollers",
            "namespaces",
            "secrets",
            "configmaps",
        ],
        "verbs": _READ,
    },
    {"apiGroups": ["networking.istio.io"], "verbs": _READ, "resources": ["workloadentries"]},
    {
        "apiGroups": ["networking.x-k8s.io", "gateway.networking.k8s.io"],
        "resources": ["gateways"],
        "verbs": _READ,
    },
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": _READ,
    },
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {
        "apiGroups": ["multicluster.x-k8s.io"],
        "resources": ["serviceexports"],
        "verbs": [*_READ, "create", "delete"],
    },
    {"apiGroups": ["multicluster.x-k8s.io"], "resources": ["serviceimports"], "verbs": _READ},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": _READ},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["subjectaccessreviews"],
        "verbs": ["create"],
    },
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["create", "get", "list", "watch", "update"],
    },
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "verbs": ["get", "list", "watch", "update"],
    },
]


def webhook_name(namespace: str) -> str:
    """`istio-sidecar-injector`, suffixed by the namespace unless it is istio-system."""
    return WEBHOOK if namespace == "istio-system" else f"{WEBHOOK}-{namespace}"


def reader_role_name(namespace: str) -> str:
    """`istio-reader-clusterrole-<namespace>` (no revision)."""
    return f"istio-reader-clusterrole-{namespace}"


def remote_secret_name(remote: str) -> str:
    """The Secret on the primary that istiod reads the remote's kubeconfig from."""
    return REMOTE_SECRET_PREFIX + remote


def injection_path(remote: specs.IstiodRemote) -> str:
    """`istiodRemote.injectionPath` as Istio's primary-remote guide sets it (istiod reads
    key/value pairs from the path: pkg/kube/inject/webhook.go parseInjectEnvs)."""
    path = f"/inject/cluster/{remote.metadata.name}"
    if remote.spec.network:
        path += f"/net/{remote.spec.network}"
    return path


def _address_type(address: str) -> str | None:
    try:
        return "IPv4" if ipaddress.ip_address(address).version == 4 else "IPv6"
    except ValueError:
        return None


def common(remote: specs.IstiodRemote, ns: str, mesh: specs.Mesh) -> Component:
    labels = {NETWORK_LABEL: remote.spec.network} if remote.spec.network else {}
    # Which istiods manage the remote's config (leader election, istio-ca-root-cert in its
    # namespaces): without it an EXTERNAL_ISTIOD primary never does.
    annotations = {CONTROL_PLANE_CLUSTERS: mesh.primary.cluster_id}
    ns_meta = meta(remote, ns, ns, "common", namespaced=False)
    ns_meta["labels"].update(labels)
    ns_meta.setdefault("annotations", {}).update(annotations)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta}
    return Component(
        "common", (namespace,), namespace_labels=labels, namespace_annotations=annotations
    )


def reader(remote: specs.IstiodRemote, ns: str) -> Component:
    role = reader_role_name(ns)
    account = meta(remote, ns, READER, "reader")
    account["labels"]["app"] = "istio-reader"
    return Component(
        "reader",
        (
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": meta(remote, ns, role, "reader", namespaced=False),
                "rules": READER_RULES,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": meta(remote, ns, role, "reader", namespaced=False),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": ns}],
            },
        ),
    )


def istiod(remote: specs.IstiodRemote, ns: str, central: Central) -> Component:
    address = central.gateway_address
    if central.primary_error or not address:
        return Component(
            "istiod",
            error=central.primary_error or "the primary's east-west gateway has no address",
        )
    svc_meta = meta(remote, ns, ISTIOD, "istiod")
    svc_meta["labels"]["app.kubernetes.io/name"] = "istiod"
    spec: Obj = {
        "ports": [
            {"port": 15012, "name": "tcp-istiod", "protocol": "TCP"},
            {"port": 443, "targetPort": 15017, "name": "tcp-webhook", "protocol": "TCP"},
        ]
    }
    family = _address_type(address)
    if family is None:  # a host name: the chart makes the Service an ExternalName
        spec["type"] = "ExternalName"
        spec["externalName"] = address
    objects: list[Obj] = [
        {"apiVersion": "v1", "kind": "Service", "metadata": svc_meta, "spec": spec}
    ]
    if family is not None:
        slice_meta = meta(remote, ns, ISTIOD, "istiod")
        slice_meta["labels"].update(
            {
                "kubernetes.io/service-name": ISTIOD,
                resources.SLICE_MANAGED_BY: "gitmesh",
                "app.kubernetes.io/name": "istiod",
            }
        )
        objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": slice_meta,
                "addressType": family,
                "endpoints": [{"addresses": [str(ipaddress.ip_address(address))]}],
                "ports": [
                    {"port": 15012, "name": "tcp-istiod", "protocol": "TCP"},
                    {"port": 15017, "name": "tcp-webhook", "protocol": "TCP"},
                ],
            }
        )
    return Component("istiod", tuple(objects), warnings=central.primary_warnings)


def _webhook(prefix: str, path: str, ns: str, ca_bundle: str) -> Obj:
    """templates/mutatingwebhook.yaml's "core" for the default revision."""
    return {
        "name": f"{prefix}sidecar-injector.istio.io",
        "clientConfig": {
            "service": {"name": ISTIOD, "namespace": ns, "path": path, "port": 443},
            "caBundle": ca_bundle,
        },
        "sideEffects": "None",
        "rules": [dict(r) for r in POD_CREATE_RULES],
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "admissionReviewVersions": ["v1"],
    }


def _expr(key: str, operator: str, *values: str) -> Obj:
    out: Obj = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


def sidecarinjector(remote: specs.IstiodRemote, ns: str, central: Central) -> Component:
    if central.primary_error or not central.root_cert:
        return Component(
            "sidecarinjector",
            error=central.primary_error or "the primary's root certificate is not known",
        )
    ca = base64.b64encode(central.root_cert.encode()).decode()
    name = webhook_name(ns)
    hook_meta = meta(remote, ns, name, "sidecarinjector", namespaced=False)
    hook_meta["labels"].update({"app": "sidecar-injector", "istio.io/rev": "default"})
    return Component(
        "sidecarinjector",
        (
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": hook_meta,
                "webhooks": _hooks(injection_path(remote), ns, ca),
            },
        ),
    )


def _hooks(path: str, ns: str, ca: str) -> list[Obj]:
    """The four webhooks of the default revision: by namespace or object label, each
    with its revision and istio-injection selectors."""
    not_false = {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", "false")]}
    return [
        {
            **_webhook("rev.namespace.", path, ns, ca),
            "namespaceSelector": {
                "matchExpressions": [
                    _expr("istio.io/rev", "In", "default"),
                    _expr(resources.INJECTION, "DoesNotExist"),
                ]
            },
            "objectSelector": not_false,
        },
        {
            **_webhook("rev.object.", path, ns, ca),
            "namespaceSelector": {
                "matchExpressions": [
                    _expr("istio.io/rev", "DoesNotExist"),
                    _expr(resources.INJECTION, "DoesNotExist"),
                ]
            },
            "objectSelector": {
                "matchExpressions": [
                    _expr("sidecar.istio.io/inject", "NotIn", "false"),
                    _expr("istio.io/rev", "In", "default"),
                ]
            },
        },
        {
            **_webhook("namespace.", path, ns, ca),
            "namespaceSelector": {
                "matchExpressions": [_expr(resources.INJECTION, "In", "enabled")]
            },
            "objectSelector": not_false,
        },
        {
            **_webhook("object.", path, ns, ca),
            "namespaceSelector": {
                "matchExpressions": [
                    _expr(resources.INJECTION, "DoesNotExist"),
                    _expr("istio.io/rev", "DoesNotExist"),
                ]
            },
            "objectSelector": {
                "matchExpressions": [
                    _expr("sidecar.istio.io/inject", "In", "true"),
                    _expr("istio.io/rev", "DoesNotExist"),
                ]
            },
        },
    ]


def render(remote: specs.IstiodRemote, mesh: specs.Mesh, central: Central) -> Rendered:
    """The desired state of one IstiodRemote on its cluster."""
    ns = specs.remote_namespace(remote, mesh)
    address = central.gateway_address
    return Rendered(
        namespace=ns,
        components=(
            common(remote, ns, mesh),
            reader(remote, ns),
            istiod(remote, ns, central),
            sidecarinjector(remote, ns, central),
            Component("injection", namespaces=tuple(remote.spec.injection_namespaces)),
        ),
        endpoints={ISTIOD: (f"{address}:15012", f"{address}:15017")} if address else None,
    )
