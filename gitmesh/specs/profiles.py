"""What differs between the Istio versions gitmesh renders for: one `Profile` per version.

Pure data. Every value here is read from Istio's own source at the pinned tag (the chart
under `install/kubernetes/helm/istio`, the injector's and citadel's flag definitions, the
mesh config protos) or from the upstream operator's remote rendering (banzaicloud/
istio-operator 0.0.8 for Istio 1.0, 0.1.0 for 1.1); tests/unit/test_fidelity.py holds the
rendered objects against those facts, naming file and tag for each.

A spec field that the chosen version lacks is refused (`unsupported_fields`), never dropped
or turned into a flag the binary does not know.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources as package_data
from typing import Any

from gitmesh import specs

Version = specs.IstioVersion


@dataclass(frozen=True, slots=True)
class Profile:
    """How one Istio version wants its remote components."""

    version: Version
    tag: str  # the istio/istio tag these facts were read at
    discovery_port: int  # mesh config discoveryAddress without / with controlPlaneSecurity
    discovery_port_secure: int
    mixer_port: int
    mixer_port_secure: int
    monitoring_port: int  # citadel's http-monitoring
    citadel_custom_dns_names: tuple[str, ...]  # service-account:service, in the namespace
    citadel_extra_args: tuple[str, ...]
    rolling_update: bool  # charts set maxSurge 1 / maxUnavailable 0 on the deployments
    proxy_resources: Mapping[str, Any]  # global.proxy.resources
    tracing_block: bool  # 1.1 moved zipkinAddress under defaultConfig.tracing
    mesh_keys: frozenset[str]  # MeshConfig fields the version's proto has
    proxy_keys: frozenset[str]  # ProxyConfig fields (mesh config defaultConfig)
    # Spec fields the version lacks: wire path -> why.
    unsupported_fields: Mapping[tuple[str, ...], str]

    @property
    def injection_template(self) -> str:
        """The sidecar injection template text, with `@@NAME@@` placeholders."""
        return _template(self.version)


@functools.cache
def _template(version: str) -> str:
    return (package_data.files("gitmesh") / "injection" / f"{version}.yaml").read_text("utf-8")


# Injector flags: pilot/cmd/sidecar-injector/main.go, identical at 1.0.5 and 1.1.0.
INJECTOR_FLAGS = frozenset(
    {
        "meshConfig",
        "injectConfig",
        "tlsCertFile",
        "tlsKeyFile",
        "caCertFile",
        "port",
        "healthCheckInterval",
        "healthCheckFile",
        "kubeconfig",
        "webhookConfigName",
        "webhookName",
    }
)
# The MutatingWebhookConfiguration the injector patches its caBundle into (the default of
# --webhookConfigName), and the webhook inside it (--webhookName).
WEBHOOK_CONFIG_NAME = "istio-sidecar-injector"
WEBHOOK_NAME = "sidecar-injector.istio.io"

_PROXY_1_0 = frozenset(
    {
        "availabilityZone",
        "binaryPath",
        "concurrency",
        "configPath",
        "connectTimeout",
        "controlPlaneAuthPolicy",
        "customConfigFile",
        "discoveryAddress",
        "discoveryRefreshDelay",
        "drainDuration",
        "interceptionMode",
        "parentShutdownDuration",
        "proxyAdminPort",
        "proxyBootstrapTemplatePath",
        "serviceCluster",
        "statNameLength",
        "statsdUdpAddress",
        "zipkinAddress",
    }
)
_MESH_1_0 = frozenset(
    {
        "accessLogFile",
        "authPolicy",
        "connectTimeout",
        "defaultConfig",
        "disablePolicyChecks",
        "enableClientSidePolicyCheck",
        "enableTracing",
        "ingressClass",
        "ingressControllerMode",
        "ingressService",
        "mixerAddress",
        "mixerCheckServer",
        "mixerReportServer",
        "outboundTrafficPolicy",
        "policyCheckFailOpen",
        "proxyHttpPort",
        "proxyListenPort",
        "rdsRefreshDelay",
        "sdsRefreshDelay",
        "sdsUdsPath",
    }
)

PROFILES: Mapping[Version, Profile] = {
    "1.0": Profile(
        version="1.0",
        tag="1.0.5",
        discovery_port=15007,
        discovery_port_secure=15005,
        mixer_port=9091,
        mixer_port_secure=15004,
        monitoring_port=9093,
        citadel_custom_dns_names=(
            "istio-pilot-service-account:istio-pilot",
            "istio-ingressgateway-service-account:istio-ingressgateway",
        ),
        citadel_extra_args=(),
        rolling_update=False,
        proxy_resources={"requests": {"cpu": "10m"}},
        tracing_block=False,
        mesh_keys=_MESH_1_0,
        proxy_keys=_PROXY_1_0,
        unsupported_fields={
            ("spec", "sidecarInjector", "rewriteAppHTTPProbe"): (
                "Istio 1.0 cannot rewrite HTTP probes (the injector has no such option; "
                "it came in 1.1); remove the field or run Istio 1.1"
            ),
        },
    ),
    "1.1": Profile(
        version="1.1",
        tag="1.1.0",
        discovery_port=15010,
        discovery_port_secure=15011,
        mixer_port=9091,
        mixer_port_secure=15004,
        monitoring_port=15014,
        citadel_custom_dns_names=("istio-pilot-service-account:istio-pilot",),
        citadel_extra_args=("--monitoring-port=15014",),
        rolling_update=True,
        proxy_resources={
            "limits": {"cpu": "2000m", "memory": "128Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"},
        },
        tracing_block=True,
        mesh_keys=_MESH_1_0
        | {
            "accessLogEncoding",
            "accessLogFormat",
            "configSources",
            "defaultDestinationRuleExportTo",
            "defaultServiceExportTo",
            "defaultVirtualServiceExportTo",
            "dnsRefreshRate",
            "enableSdsTokenMount",
            "localityLbSetting",
            "rootNamespace",
            "sdsUseK8sSaJwt",
            "sidecarToTelemetrySessionAffinity",
            "tcpKeepalive",
            "trustDomain",
        },
        proxy_keys=_PROXY_1_0 | {"envoyMetricsServiceAddress", "tracing"},
        unsupported_fields={},
    ),
}


def get(version: Version) -> Profile:
    """The profile of a supported version."""
    return PROFILES[version]


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = data
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


_IMAGE_FIELDS = (
    ("spec", "citadel", "image"),
    ("spec", "sidecarInjector", "image"),
    ("spec", "proxy", "image"),
)


def refusals(remote: specs.RemoteIstio, mesh: specs.Mesh) -> list[tuple[tuple[str, ...], str]]:
    """What in `remote` the mesh's Istio version cannot honour: (wire path, reason)."""
    profile = get(mesh.version)
    wire = remote.model_dump(by_alias=True, exclude_unset=True)
    out = [(path, why) for path, why in profile.unsupported_fields.items() if _get(wire, path)]
    for path in _IMAGE_FIELDS:
        ref = _get(wire, path)
        version = specs.image_version(ref) if isinstance(ref, str) else None
        if version and version != profile.version:
            out.append(
                (
                    path,
                    f"is Istio {version} but the mesh runs Istio {profile.version} "
                    "(mesh.yaml); every component must run the same Istio",
                )
            )
    return out
