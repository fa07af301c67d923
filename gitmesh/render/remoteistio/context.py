"""What every RemoteIstio component is made from: the rendering context (spec, mesh,
what central offers, the version's profile), the objects' metadata, and the shapes they
share (RBAC, a Deployment, a Service); and the `common` component. Pure."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from gitmesh import specs
from gitmesh.render.base import (
    Central,
    Component,
)
from gitmesh.render.base import dump_yaml as _yaml
from gitmesh.render.base import meta as _base_meta
from gitmesh.resources import Obj
from gitmesh.specs import profiles

CITADEL = "istio-citadel"
INJECTOR = "istio-sidecar-injector"
CACERTS = "cacerts"
WEBHOOK_API = "admissionregistration.k8s.io/v1"


# Both charts annotate the control-plane pods so (before priority classes) the rescheduler
# keeps them: charts/{security,sidecarInjectorWebhook}/templates/deployment.yaml.
POD_ANNOTATIONS = {
    "sidecar.istio.io/inject": "false",
    "scheduler.alpha.kubernetes.io/critical-pod": "",
}


def object_meta(ctx: Ctx, name: str, component: str, *, namespaced: bool = True) -> Obj:
    return _base_meta(ctx.remote, ctx.namespace, name, component, namespaced=namespaced)


@dataclass(frozen=True, slots=True)
class Served:
    """What the remote serves beyond the kinds gitmesh writes: whether it still serves
    admissionregistration.k8s.io/v1beta1 (Kubernetes before 1.22)."""

    v1beta1_webhooks: bool = True


@dataclass(frozen=True, slots=True)
class Ctx:
    remote: specs.RemoteIstio
    mesh: specs.Mesh
    central: Central
    namespace: str
    cacerts: Mapping[str, str] | None = None
    webhook_api: str = WEBHOOK_API
    served: Served = Served()

    @property
    def spec(self) -> specs.RemoteIstioSpec:
        return self.remote.spec

    @property
    def profile(self) -> profiles.Profile:
        return profiles.get(self.mesh.version)

    def enabled(self, service: str) -> bool:
        return any(s.name == service for s in self.spec.enabled_services)

    def resources_for(self, own: specs.ResourceRequirements | None) -> Obj:
        """A component's resources: its own, else the spec's defaultResources, else the
        chart's global.defaultResources (requests cpu 10m at 1.0.5 and 1.1.0)."""
        chosen = own or self.spec.default_resources
        return chosen.wire() if chosen else {"requests": {"cpu": "10m"}}

    def address(self, service: str, port: int, *, fqdn: bool = False) -> str:
        override = getattr(self.mesh.central.addresses, service.removeprefix("istio-"), None)
        if override:
            return str(override)
        host = f"{service}.{self.namespace}"
        if fqdn:
            host += f".svc.{self.mesh.central.cluster_domain}"
        return f"{host}:{port}"


def mesh_config(ctx: Ctx) -> str:
    """The mesh config as the version's chart writes it (install/kubernetes/helm/istio/
    templates/configmap.yaml), with the remote's addresses."""
    secure = ctx.spec.control_plane_security_enabled
    prof = ctx.profile
    discovery = prof.discovery_port_secure if secure else prof.discovery_port
    default: Obj = {
        "binaryPath": "/usr/local/bin/envoy",
        "concurrency": 0 if prof.version == "1.0" else 2,
        "configPath": "/etc/istio/proxy",
        "connectTimeout": "10s",
        "controlPlaneAuthPolicy": "MUTUAL_TLS" if secure else "NONE",
        "discoveryAddress": ctx.address("istio-pilot", discovery),
        "drainDuration": "45s",
        "parentShutdownDuration": "1m0s",
        "proxyAdminPort": 15000,
        "serviceCluster": "istio-proxy",
    }
    zipkin = ctx.address("zipkin", 9411)
    if prof.tracing_block:
        default["tracing"] = {"zipkin": {"address": zipkin}}
    else:
        default["zipkinAddress"] = zipkin
    config: Obj = {
        "defaultConfig": default,
        "enableTracing": True,
        "accessLogFile": "/dev/stdout",
        "sdsUdsPath": "",
        "sdsRefreshDelay": "15s",
    }
    if prof.version == "1.1":
        config["trustDomain"] = ctx.mesh.central.cluster_domain
    mixer_port = prof.mixer_port_secure if secure else prof.mixer_port
    policy = ctx.enabled("istio-policy") or ctx.mesh.central.addresses.policy
    if policy:
        config["mixerCheckServer"] = ctx.address("istio-policy", mixer_port, fqdn=True)
        config["policyCheckFailOpen"] = False
    config["disablePolicyChecks"] = not policy
    if ctx.enabled("istio-telemetry") or ctx.mesh.central.addresses.telemetry:
        config["mixerReportServer"] = ctx.address("istio-telemetry", mixer_port, fqdn=True)
    return _yaml(config)


def common(ctx: Ctx) -> Component:
    """The namespace (created only if missing) and the mesh config ConfigMap `istio`."""
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": object_meta(ctx, ctx.namespace, "common", namespaced=False),
    }
    mesh = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(ctx, "istio", "common"),
        "data": {"mesh": mesh_config(ctx)},
    }
    return Component("common", (ns, mesh))


def rbac(ctx: Ctx, base: str, component: str, rules: list[Obj]) -> tuple[Obj, ...]:
    sa_name = f"{base}-service-account"
    cluster_name = f"{base}-{ctx.namespace}"
    return (
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": object_meta(ctx, sa_name, component),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": object_meta(ctx, cluster_name, component, namespaced=False),
            "rules": copy.deepcopy(rules),  # each rendered object its own
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": object_meta(ctx, cluster_name, component, namespaced=False),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": ctx.namespace}],
        },
    )


def deployment(
    ctx: Ctx,
    name: str,
    component: str,
    app: str,
    *,
    upstream_app: str,
    replicas: int,
    container: Obj,
    volumes: list[Obj],
    node_selector: Mapping[str, str],
    pod_annotations: Mapping[str, str] | None = None,
) -> Obj:
    # The selector stays what gitmesh has always used (a Deployment's selector cannot
    # change); the Deployment carries upstream's labels as well.
    labels = {"istio": app, "app": app}
    pod_spec: Obj = {
        "serviceAccountName": f"{name}-service-account",
        "containers": [container],
        "volumes": volumes,
    }
    if node_selector:
        pod_spec["nodeSelector"] = dict(sorted(node_selector.items()))
    meta = object_meta(ctx, name, component)
    meta["labels"] = {"app": upstream_app, "istio": app, **meta["labels"]}
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {**POD_ANNOTATIONS, **(pod_annotations or {})},
            },
            "spec": pod_spec,
        },
    }
    if ctx.profile.rolling_update:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def service(ctx: Ctx, name: str, component: str, app: str, ports: list[Obj]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ctx, name, component),
        "spec": {"selector": {"istio": app}, "ports": ports},
    }
