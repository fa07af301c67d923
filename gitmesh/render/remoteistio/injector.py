"""The `sidecarinjector` component of a RemoteIstio: the 1.0/1.1 injector, its template
from the version's chart, and its MutatingWebhookConfiguration. Pure."""

from __future__ import annotations

from gitmesh import resources
from gitmesh.render.base import (
    POD_CREATE_RULES,
    Component,
)
from gitmesh.render.base import dump_yaml as _yaml
from gitmesh.render.remoteistio.context import INJECTOR, Ctx, deployment, object_meta, rbac, service
from gitmesh.resources import Obj
from gitmesh.specs import profiles


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.rstrip("\n").splitlines())


def _injector_template(ctx: Ctx) -> str:
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


def _webhook(ctx: Ctx) -> Obj:
    """The MutatingWebhookConfiguration under the name the injector patches its caBundle
    into (its --webhookConfigName default): charts/sidecarInjectorWebhook/templates/
    mutatingwebhook.yaml. The injectors of 1.0 and 1.1 speak AdmissionReview v1beta1."""
    client: Obj = {"service": {"name": INJECTOR, "namespace": ctx.namespace, "path": "/inject"}}
    if not ctx.served.v1beta1_webhooks and ctx.cacerts is not None:
        client["caBundle"] = ctx.cacerts["root-cert.pem"]  # what the injector would patch
    hook: Obj = {
        "name": profiles.WEBHOOK_NAME,
        "clientConfig": client,
        "rules": [dict(r) for r in POD_CREATE_RULES],
        "failurePolicy": "Fail",
        "namespaceSelector": {"matchLabels": {resources.INJECTION: "enabled"}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1beta1"],
    }
    meta = object_meta(ctx, profiles.WEBHOOK_CONFIG_NAME, "sidecarinjector", namespaced=False)
    meta["labels"] = {"app": INJECTOR, **meta["labels"]}
    return {
        "apiVersion": ctx.webhook_api,
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta,
        "webhooks": [hook],
    }


def refusal(ctx: Ctx) -> str | None:
    """Why the version's injector cannot work on this remote (None: it can).

    The 1.0 and 1.1 injectors patch their webhook's caBundle (their --caCertFile, the
    root-cert.pem citadel writes into their certificate Secret: the remote CA's root) only
    through admissionregistration.k8s.io/v1beta1, which Kubernetes 1.22 stopped serving.
    1.1 returns the error at start and exits; 1.0 logs it every second and serves, so
    gitmesh writes the caBundle it would have patched when it knows that root (the
    intermediate gitmesh mints from the central CA). Sources: tests/unit/test_fidelity.py.
    """
    if ctx.served.v1beta1_webhooks or (ctx.profile.version == "1.0" and ctx.cacerts):
        return None
    why = (
        "exits at start when that fails"
        if ctx.profile.version != "1.0"
        else "needs its root certificate as the caBundle, and gitmesh does not know it "
        "(spec.citadel.caSecretName, or no CA on central)"
    )
    return (
        f"Istio {ctx.profile.version}'s sidecar injector patches its webhook's caBundle only "
        f"through admissionregistration.k8s.io/v1beta1, which {ctx.remote.metadata.name} does "
        f"not serve (Kubernetes 1.22 removed it); the injector {why}: nothing was applied"
    )


# What the injector reads on the remote: its ConfigMaps, and its webhook (to patch its caBundle).
_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "verbs": ["get", "list", "watch", "patch"],
    },
]


def sidecarinjector(ctx: Ctx) -> Component:
    """The sidecar injector and its webhook, for namespaces labelled istio-injection=enabled."""
    conf = ctx.spec.sidecar_injector
    config = _yaml({"policy": "enabled", "template": _injector_template(ctx)}, width=1000)
    objects: list[Obj] = [*rbac(ctx, INJECTOR, "sidecarinjector", _RULES)]
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": object_meta(ctx, INJECTOR, "sidecarinjector"),
            "data": {"config": config},
        }
    )
    objects.append(
        deployment(
            ctx,
            INJECTOR,
            "sidecarinjector",
            "sidecar-injector",
            upstream_app=INJECTOR,
            replicas=conf.replica_count
            if conf.replica_count is not None
            else ctx.mesh.replicas.sidecar_injector,
            container=_container(ctx),
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
        service(
            ctx,
            INJECTOR,
            "sidecarinjector",
            "sidecar-injector",
            [{"port": 443, "targetPort": 443, "protocol": "TCP"}],
        )
    )
    objects.append(_webhook(ctx))
    return Component("sidecarinjector", tuple(objects))


def _container(ctx: Ctx) -> Obj:
    """The injector container: its flags, certificates (citadel's Secret for its
    ServiceAccount), template and mesh config mounted, health-checked by file."""
    conf = ctx.spec.sidecar_injector
    return {
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
