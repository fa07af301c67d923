"""The desired objects of one RemoteIstio remote, component by component. Pure.

Inputs are the RemoteIstio spec, `mesh.yaml` and what was observed on the central cluster
(`Central`); the output is plain Kubernetes objects (dicts) with gitmesh's ownership
labels, in component order: common, citadel, sidecarinjector, services, injection. Every
spec field lands somewhere in the output (tests/unit/test_render.py checks each one).
Objects never carry fields a server would drop (empty `subsets`), so that reading them
back shows no drift.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from gitmesh import resources, selectors, specs
from gitmesh.render.base import (
    POD_CREATE_RULES,
    Central,
    Component,
    Rendered,
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
_POD_ANNOTATIONS = {
    "sidecar.istio.io/inject": "false",
    "scheduler.alpha.kubernetes.io/critical-pod": "",
}


def _meta(ctx: _Ctx, name: str, component: str, *, namespaced: bool = True) -> Obj:
    return _base_meta(ctx.remote, ctx.namespace, name, component, namespaced=namespaced)


@dataclass(frozen=True, slots=True)
class _Ctx:
    remote: specs.RemoteIstio
    mesh: specs.Mesh
    central: Central
    namespace: str
    cacerts: Mapping[str, str] | None = None
    webhook_api: str = WEBHOOK_API

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


def _mesh_config(ctx: _Ctx) -> str:
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


def common(ctx: _Ctx) -> Component:
    """The namespace (created only if missing) and the mesh config ConfigMap `istio`."""
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(ctx, ctx.namespace, "common", namespaced=False),
    }
    mesh = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(ctx, "istio", "common"),
        "data": {"mesh": _mesh_config(ctx)},
    }
    return Component("common", (ns, mesh))


def _rbac(ctx: _Ctx, base: str, component: str, rules: list[Obj]) -> tuple[Obj, ...]:
    sa_name = f"{base}-service-account"
    cluster_name = f"{base}-{ctx.namespace}"
    return (
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ctx, sa_name, component)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(ctx, cluster_name, component, namespaced=False),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(ctx, cluster_name, component, namespaced=False),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": ctx.namespace}],
        },
    )


def _deployment(
    ctx: _Ctx,
    name: str,
    component: str,
    app: str,
    *,
    upstream_app: str,
    replicas: int,
    container: Obj,
    volumes: list[Obj],
    node_selector: Mapping[str, str],
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
    meta = _meta(ctx, name, component)
    meta["labels"] = {"app": upstream_app, "istio": app, **meta["labels"]}
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels, "annotations": dict(_POD_ANNOTATIONS)},
            "spec": pod_spec,
        },
    }
    if ctx.profile.rolling_update:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def _service(ctx: _Ctx, name: str, component: str, app: str, ports: list[Obj]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ctx, name, component),
        "spec": {"selector": {"istio": app}, "ports": ports},
    }


def citadel(ctx: _Ctx) -> Component:
    """Citadel, signing workload certificates with the remote's own intermediate CA
    (Secret `cacerts`, minted from the central CA by the caller), or with the Secret the
    spec names (`citadel.caSecretName`)."""
    conf = ctx.spec.citadel
    ca_secret = conf.ca_secret_name or CACERTS
    rules = [
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
    prof = ctx.profile
    ns = ctx.namespace
    dns_names = ",".join(
        f"{account}.{ns}:{service}.{ns}"
        for account, service in (n.split(":") for n in prof.citadel_custom_dns_names)
    )
    container: Obj = {
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
    objects: list[Obj] = [*_rbac(ctx, CITADEL, "citadel", rules)]
    objects.append(
        _deployment(
            ctx,
            CITADEL,
            "citadel",
            "citadel",
            upstream_app="security",
            replicas=conf.replica_count
            if conf.replica_count is not None
            else ctx.mesh.replicas.citadel,
            container=container,
            volumes=[{"name": "cacerts", "secret": {"secretName": ca_secret, "optional": False}}],
            node_selector=conf.node_selector,
        )
    )
    monitoring = prof.monitoring_port
    objects.append(
        _service(
            ctx,
            CITADEL,
            "citadel",
            "citadel",
            [
                {"name": "grpc-citadel", "port": 8060, "targetPort": 8060, "protocol": "TCP"},
                {
                    "name": "http-monitoring",
                    "port": monitoring,
                    "targetPort": monitoring,
                    "protocol": "TCP",
                },
            ],
        )
    )
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
                "metadata": _meta(ctx, CACERTS, "citadel"),
                "data": dict(ctx.cacerts),
            },
        )
    return Component("citadel", tuple(objects))


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.rstrip("\n").splitlines())


def _injector_template(ctx: _Ctx) -> str:
    """The version's sidecar injection template (gitmesh/injection/<version>.yaml: the
    chart's template with its default values; `[[ ]]` is expanded per pod by the injector)."""
    spec = ctx.spec
    proxy_init = ctx.mesh.images.proxy_init
    own = spec.proxy.resources or spec.default_resources
    proxy_res = own.wire() if own else dict(ctx.profile.proxy_resources)
    core_dump = (
        "- name: enable-core-dump\n  args:\n  - -c\n"
        "  - sysctl -w kernel.core_pattern=/var/lib/istio/core.proxy && ulimit -c unlimited\n"
        f"  command:\n  - /bin/sh\n  image: {proxy_init}\n  imagePullPolicy: IfNotPresent\n"
        "  resources: {}\n  securityContext:\n    privileged: true\n"
        if spec.proxy.enable_core_dump
        else ""
    )
    values = {
        "PROXY_INIT_IMAGE": proxy_init,
        "PROXY_IMAGE": spec.proxy.image or ctx.mesh.images.proxy,
        "INCLUDE_IP_RANGES": spec.include_ip_ranges,
        "EXCLUDE_IP_RANGES": spec.exclude_ip_ranges,
        "CORE_DUMP": core_dump,
        # The charts drop readOnlyRootFilesystem when core dumps are on.
        "READ_ONLY_ROOT": ""
        if spec.proxy.enable_core_dump
        else "    readOnlyRootFilesystem: true\n",
        "PROXY_RESOURCES": _indent(_yaml(proxy_res), 4),
        "REWRITE_APP_HTTP_PROBE": "true"
        if spec.sidecar_injector.rewrite_app_http_probe
        else "false",
        "CLUSTER_DOMAIN": ctx.mesh.central.cluster_domain,
    }
    text = ctx.profile.injection_template
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


# The injector's probes: charts/sidecarInjectorWebhook/templates/deployment.yaml.
_INJECTOR_PROBE: Obj = {
    "exec": {
        "command": [
            "/usr/local/bin/sidecar-injector",
            "probe",
            "--probe-path=/health",
            "--interval=4s",
        ]
    },
    "initialDelaySeconds": 4,
    "periodSeconds": 4,
}


def _webhook(ctx: _Ctx) -> Obj:
    """The MutatingWebhookConfiguration under the name the injector patches its caBundle
    into (its --webhookConfigName default): charts/sidecarInjectorWebhook/templates/
    mutatingwebhook.yaml. The injectors of 1.0 and 1.1 speak AdmissionReview v1beta1."""
    hook: Obj = {
        "name": profiles.WEBHOOK_NAME,
        "clientConfig": {
            "service": {"name": INJECTOR, "namespace": ctx.namespace, "path": "/inject"}
        },
        "rules": [dict(r) for r in POD_CREATE_RULES],
        "failurePolicy": "Fail",
        "namespaceSelector": {"matchLabels": {resources.INJECTION: "enabled"}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1beta1"],
    }
    meta = _meta(ctx, profiles.WEBHOOK_CONFIG_NAME, "sidecarinjector", namespaced=False)
    meta["labels"] = {"app": INJECTOR, **meta["labels"]}
    return {
        "apiVersion": ctx.webhook_api,
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta,
        "webhooks": [hook],
    }


def sidecarinjector(ctx: _Ctx) -> Component:
    """The sidecar injector and its webhook, for namespaces labelled istio-injection=enabled."""
    conf = ctx.spec.sidecar_injector
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "verbs": ["get", "list", "watch", "patch"],
        },
    ]
    config = _yaml({"policy": "enabled", "template": _injector_template(ctx)}, width=1000)
    container: Obj = {
        "name": "sidecar-injector-webhook",
        "image": conf.image or ctx.mesh.images.sidecar_injector,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--caCertFile=/etc/istio/certs/root-cert.pem",
            "--tlsCertFile=/etc/istio/certs/cert-chain.pem",
            "--tlsKeyFile=/etc/istio/certs/key.pem",
            "--injectConfig=/etc/istio/inject/config",
            "--meshConfig=/etc/istio/config/mesh",
            "--healthCheckInterval=2s",
            "--healthCheckFile=/health",
        ],
        "volumeMounts": [
            {"name": "config-volume", "mountPath": "/etc/istio/config", "readOnly": True},
            {"name": "certs", "mountPath": "/etc/istio/certs", "readOnly": True},
            {"name": "inject-config", "mountPath": "/etc/istio/inject", "readOnly": True},
        ],
        "livenessProbe": dict(_INJECTOR_PROBE),
        "readinessProbe": dict(_INJECTOR_PROBE),
        "resources": ctx.resources_for(conf.resources),
    }
    objects: list[Obj] = [*_rbac(ctx, INJECTOR, "sidecarinjector", rules)]
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(ctx, INJECTOR, "sidecarinjector"),
            "data": {"config": config},
        }
    )
    objects.append(
        _deployment(
            ctx,
            INJECTOR,
            "sidecarinjector",
            "sidecar-injector",
            upstream_app=INJECTOR,
            replicas=conf.replica_count
            if conf.replica_count is not None
            else ctx.mesh.replicas.sidecar_injector,
            container=container,
            volumes=[
                {"name": "config-volume", "configMap": {"name": "istio"}},
                {"name": "certs", "secret": {"secretName": f"istio.{INJECTOR}-service-account"}},
                {
                    "name": "inject-config",
                    "configMap": {"name": INJECTOR, "items": [{"key": "config", "path": "config"}]},
                },
            ],
            node_selector=conf.node_selector,
        )
    )
    objects.append(
        _service(
            ctx,
            INJECTOR,
            "sidecarinjector",
            "sidecar-injector",
            [{"port": 443, "targetPort": 443, "protocol": "TCP"}],
        )
    )
    objects.append(_webhook(ctx))
    return Component("sidecarinjector", tuple(objects))


def _ports(ctx: _Ctx, entry: specs.IstioService) -> list[Obj]:
    if entry.ports:
        out = []
        for p in entry.ports:
            port: Obj = {
                "port": p.port,
                "protocol": p.protocol,
                "targetPort": p.target_port if p.target_port is not None else p.port,
            }
            if p.name:
                port["name"] = p.name
            out.append(port)
        return out
    central = ctx.central.services.get(entry.name)
    if central is None:
        return []
    defaults = []
    for cp in central.ports:
        port = {
            "port": cp["port"],
            "protocol": cp.get("protocol", "TCP"),
            "targetPort": cp.get("targetPort", cp["port"]),
        }
        if cp.get("name"):
            port["name"] = cp["name"]
        defaults.append(port)
    return defaults


def _endpoint_port(port: Obj) -> int:
    target = port.get("targetPort")
    return target if isinstance(target, int) else int(port["port"])


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))


def selector_of(
    entry: specs.IstioService, central: Central
) -> tuple[selectors.Requirement, ...] | None:
    """The pods behind an enabled service: its labelSelector, else the central Service's."""
    if entry.label_selector:
        return selectors.parse_labels(entry.label_selector)
    found = central.services.get(entry.name)
    if found and found.selector:
        return selectors.from_match_labels(found.selector)
    return None


def services(ctx: _Ctx) -> tuple[Component, Mapping[str, tuple[str, ...]] | None]:
    """A selector-less headless Service and its Endpoints per enabled service."""
    if ctx.central.pods_error:
        return Component(
            "services",
            error=f"cannot read the central Istio pods: "
            f"{ctx.central.pods_error}; the remotes' Endpoints are left as they "
            "are",
        ), None
    objects: list[Obj] = []
    snapshot: dict[str, tuple[str, ...]] = {}
    warnings: list[str] = []
    where = f"{ctx.mesh.namespace} on the central cluster"
    for entry in ctx.spec.enabled_services:
        ports = _ports(ctx, entry)
        if not ports:
            warnings.append(
                f"enabled service {entry.name}: no Service {entry.name} in {where} and no "
                "ports in the spec; the remote Service has no ports"
            )
        svc_spec: Obj = {"clusterIP": "None"}
        if ports:
            svc_spec["ports"] = ports
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(ctx, entry.name, "services"),
                "spec": svc_spec,
            }
        )
        reqs = selector_of(entry, ctx.central)
        ips = {str(ip) for ip in entry.pod_ips}
        if reqs is not None:
            ips |= {
                p.ip
                for p in ctx.central.pods
                if p.ready and p.ip and selectors.matches(reqs, p.labels)
            }
        addresses = [{"ip": ip} for ip in sorted(ips, key=_ip_key)]
        if not addresses:
            chosen = (
                f"labelSelector {entry.label_selector}"
                if entry.label_selector
                else f"the selector of Service {entry.name}"
            )
            warnings.append(
                f"enabled service {entry.name}: no ready pod in {where} matches "
                + (chosen if reqs is not None else "anything (no Service, no labelSelector)")
                + " and the spec lists no podIPs; its Endpoints are empty"
            )
        endpoints: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": _meta(ctx, entry.name, "services"),
        }
        ep_ports = []
        for p in ports:
            ep: Obj = {"port": _endpoint_port(p), "protocol": p["protocol"]}
            if p.get("name"):
                ep["name"] = p["name"]
            ep_ports.append(ep)
        if addresses:
            subset: Obj = {"addresses": addresses}
            if ep_ports:
                subset["ports"] = ep_ports
            endpoints["subsets"] = [subset]
        objects.append(endpoints)
        snapshot[entry.name] = (
            tuple(f"{_host(a['ip'])}:{p['port']}" for a in addresses for p in ep_ports)
            if ep_ports
            else tuple(a["ip"] for a in addresses)
        )
    return Component("services", tuple(objects), warnings=tuple(warnings)), snapshot


def endpoints(
    spec: specs.RemoteIstio, mesh: specs.Mesh, central: Central
) -> tuple[Component, Mapping[str, tuple[str, ...]] | None]:
    """Just the `services` component (Services and Endpoints) and the snapshot."""
    return services(_Ctx(spec, mesh, central, specs.remote_namespace(spec, mesh)))


def render(
    spec: specs.RemoteIstio,
    mesh: specs.Mesh,
    central: Central,
    *,
    cacerts: Mapping[str, str] | None = None,
    webhook_api: str = WEBHOOK_API,
) -> Rendered:
    """The desired state of one remote. `cacerts` is the remote's intermediate CA (the
    caller keeps or mints it: `gitmesh.credentials.ca`); `webhook_api` the
    admissionregistration version the remote serves."""
    ctx = _Ctx(spec, mesh, central, specs.remote_namespace(spec, mesh), cacerts, webhook_api)
    svc, snapshot = services(ctx)
    components = (
        common(ctx),
        citadel(ctx),
        sidecarinjector(ctx),
        svc,
        Component("injection", namespaces=tuple(spec.spec.auto_injection_namespaces)),
    )
    return Rendered(namespace=ctx.namespace, components=components, endpoints=snapshot)
