"""What gitmesh renders, held against facts read from Istio's and the upstream operator's
source at pinned tags (istio/istio 1.0.5 and 1.1.0; banzaicloud/istio-operator 0.0.8, the
seed's era). Each fact names the file and tag it came from; they are copied here, not
recalled, so that a test fails when the rendering drifts from what the binaries accept.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import render, specs
from gitmesh.specs import meshrepo, profiles

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = yaml.safe_load((ROOT / "example-repo/remotes/remoteistio-sample.yaml").read_text())
EU = yaml.safe_load((ROOT / "example-repo/remotes/remote-eu.yaml").read_text())
MESH = yaml.safe_load((ROOT / "example-repo/mesh.yaml").read_text())
CACERTS = dict.fromkeys(("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"), "eA==")
Obj = dict[str, Any]

# istio/istio pilot/cmd/sidecar-injector/main.go, `rootCmd.PersistentFlags()` at 1.0.5 and
# at 1.1.0 (the same eleven flags at both tags). The injector exits on any other flag.
INJECTOR_FLAGS = {
    "1.0": {
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
    },
}
INJECTOR_FLAGS["1.1"] = INJECTOR_FLAGS["1.0"]
# ... the default of --webhookConfigName, the configuration patchCertLoop writes the
# caBundle into (same file, both tags; operator 0.0.8 pkg/resources/sidecarinjector
# `webhookName = "istio-sidecar-injector"`).
WEBHOOK_CONFIG_NAME = "istio-sidecar-injector"

# security/cmd/istio_ca/main.go at 1.0.5 (flags.StringVar/IntVar/BoolVar); 1.1.0 has these
# too. Only the ones gitmesh passes are listed.
CITADEL_FLAGS = {
    "append-dns-names",
    "grpc-port",
    "grpc-hostname",
    "citadel-storage-namespace",
    "custom-dns-names",
    "monitoring-port",
    "self-signed-ca",
    "signing-cert",
    "signing-key",
    "root-cert",
    "cert-chain",
}

# Discovery ports in the mesh config: install/kubernetes/helm/istio/templates/configmap.yaml
# at 1.0.5 (15007 plain, 15005 with controlPlaneSecurityEnabled; also operator 0.0.8
# pkg/resources/common/configmap.go discoveryPort()) and at 1.1.0 (15010 / 15011).
DISCOVERY = {"1.0": (15007, 15005), "1.1": (15010, 15011)}
# Mixer: same files, 9091 plain / 15004 secure at both tags.
MIXER = (9091, 15004)

# MeshConfig and ProxyConfig fields (json names) of istio.io/api as vendored at each tag:
# vendor/istio.io/api/mesh/v1alpha1/config.pb.go (1.0.5: both messages), config.pb.go and
# proxy.pb.go (1.1.0). The mesh config is parsed strictly (pilot/pkg/model/conversion.go,
# jsonpb): an unknown key stops pilot and the injector. 1.0.5 has no `trustDomain`.
MESH_KEYS = {
    "1.0": {
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
    },
}
MESH_KEYS["1.1"] = MESH_KEYS["1.0"] | {
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
}
PROXY_KEYS = {
    "1.0": {
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
    },
}
PROXY_KEYS["1.1"] = PROXY_KEYS["1.0"] | {"envoyMetricsServiceAddress", "tracing"}

# The injection template: install/kubernetes/helm/istio/templates/
# sidecar-injector-configmap.yaml at each tag, with the chart's default values.
TEMPLATE_FACTS = {
    "1.0": [
        '- "-d"',  # istio-init excludes the status port from capture
        "privileged: true",  # istio-init's securityContext
        "containerPort: 15090",  # global.proxy.stats.prometheusPort
        "name: ISTIO_META_POD_NAME",
        "name: ISTIO_META_INTERCEPTION_MODE",
        "--discoveryRefreshDelay",
        "--zipkinAddress",
        "path: /healthz/ready",  # readiness, when status.sidecar.istio.io/port is set
        "`status.sidecar.istio.io/port` 0",  # global.proxy.statusPort: 0 at 1.0.5
    ],
    "1.1": [
        "rewriteAppHTTPProbe: false",  # SidecarInjectionSpec, pilot/pkg/kube/inject/inject.go
        '- "-d"',
        "containerPort: 15090",
        "name: ISTIO_META_CONFIG_NAMESPACE",
        "- --domain",
        "- $(POD_NAMESPACE).svc.cluster.local",
        "`status.sidecar.istio.io/port` 15020",  # global.proxy.statusPort: 15020 at 1.1.0
        ".ProxyConfig.GetTracing.GetZipkin.GetAddress",
        "path: /healthz/ready",
    ],
}
# Not in 1.0.5's template: features that came later.
TEMPLATE_ABSENT = {"1.0": ["rewriteAppHTTPProbe", "ISTIO_META_CONFIG_NAMESPACE", "--domain"]}

# charts/sidecarInjectorWebhook/templates/deployment.yaml (both tags): exec probes.
INJECTOR_PROBE = [
    "/usr/local/bin/sidecar-injector",
    "probe",
    "--probe-path=/health",
    "--interval=4s",
]


def mesh_doc(version: str) -> Obj:
    doc: Obj = copy.deepcopy(MESH)
    if version == "1.1":
        doc["istioVersion"] = "1.1"
        doc["images"] = {k: v.replace(":1.0.5", ":1.1.0") for k, v in doc["images"].items()}
    return doc


def objects(version: str, spec: Obj = SAMPLE, **changes: Any) -> list[Obj]:
    doc = copy.deepcopy(spec)
    doc["spec"].update(changes)
    out = render.remote(
        specs.RemoteIstio.model_validate(doc),
        specs.Mesh.model_validate(mesh_doc(version)),
        render.Central(),
        cacerts=CACERTS,
    )
    return [o for c in out.components for o in c.objects]


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objs: list[Obj], deployment: str) -> Obj:
    found: Obj = find(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    return found


def flags(args: list[str]) -> set[str]:
    return {re.sub(r"^--?([^=]+).*", r"\1", a) for a in args}


def mesh_config(objs: list[Obj]) -> Obj:
    data: Obj = yaml.safe_load(find(objs, "ConfigMap", "istio")["data"]["mesh"])
    return data


def template(objs: list[Obj]) -> str:
    config = yaml.safe_load(find(objs, "ConfigMap", "istio-sidecar-injector")["data"]["config"])
    text: str = config["template"]
    return text


VERSIONS = ("1.0", "1.1")


@pytest.mark.parametrize("version", VERSIONS)
def test_injector_flags_are_the_injectors(version: str) -> None:
    """Every argument the injector gets is one of its flags."""
    args = container(objects(version), "istio-sidecar-injector")["args"]
    assert flags(args) <= INJECTOR_FLAGS[version]


@pytest.mark.parametrize("version", VERSIONS)
def test_webhook_is_the_one_the_injector_patches(version: str) -> None:
    """The MutatingWebhookConfiguration has the name the injector writes its caBundle to,
    and the webhook inside it the injector's --webhookName default."""
    objs = objects(version)
    hooks = [o for o in objs if o["kind"] == "MutatingWebhookConfiguration"]
    assert [h["metadata"]["name"] for h in hooks] == [WEBHOOK_CONFIG_NAME]
    hook = hooks[0]["webhooks"][0]
    assert hook["name"] == "sidecar-injector.istio.io"
    assert hook["clientConfig"]["service"]["path"] == "/inject"
    # The 1.0 and 1.1 injectors decode AdmissionReview v1beta1 only.
    assert hook["admissionReviewVersions"] == ["v1beta1"]


# Why the caBundle matters past Kubernetes 1.21 (istio/istio pilot/cmd/sidecar-injector/
# main.go): both injectors patch their webhook's caBundle only through
# `client.AdmissionregistrationV1beta1()`, which Kubernetes 1.22 stopped serving.
# - 1.0.5, patchCertLoop (lines 116-157): the patch runs on a one-second ticker and a
#   failure is only logged ("Patch webhook failed"); the webhook server runs regardless.
# - 1.1.0, patchCertLoop (lines 121-146): the first patch's error is returned, RunE
#   returns "failed to start patch cert loop" (lines 94-96) before `go wh.Run`: it exits.
# What it would patch is its --caCertFile, default /etc/istio/certs/root-cert.pem (1.0.5
# line 169, 1.1.0 line 210): the root-cert.pem citadel writes into its certificate Secret,
# `sc.ca.GetCAKeyCertBundle().GetRootCertPem()` (1.0.5 security/pkg/pki/ca/controller/
# secret.go lines 242-246), the --root-cert citadel was given: cacerts' root-cert.pem.
SERVED_1_22 = render.Served(v1beta1_webhooks=False)


def rendered_on(version: str, served: render.Served, cacerts: Obj | None = CACERTS) -> Any:
    return render.remote(
        specs.RemoteIstio.model_validate(SAMPLE),
        specs.Mesh.model_validate(mesh_doc(version)),
        render.Central(),
        cacerts=cacerts,
        served=served,
    )


def test_a_1_0_injector_past_kubernetes_1_21_gets_the_ca_bundle_it_cannot_patch() -> None:
    out = rendered_on("1.0", SERVED_1_22)
    assert out.refused is None
    objs = [o for c in out.components for o in c.objects]
    hook = find(objs, "MutatingWebhookConfiguration", WEBHOOK_CONFIG_NAME)["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == CACERTS["root-cert.pem"]
    # Where the injector can patch it, it is the injector's: gitmesh leaves it alone.
    objs = objects("1.0")
    hook = find(objs, "MutatingWebhookConfiguration", WEBHOOK_CONFIG_NAME)["webhooks"][0]
    assert "caBundle" not in hook["clientConfig"]


@pytest.mark.parametrize(
    ("version", "cacerts", "why"),
    [
        ("1.1", CACERTS, "exits at start"),
        ("1.0", None, "does not know it"),  # the spec's own CA: its root is not gitmesh's
    ],
)
def test_an_injector_that_cannot_work_past_kubernetes_1_21_is_refused(
    version: str, cacerts: Obj | None, why: str
) -> None:
    refused = rendered_on(version, SERVED_1_22, cacerts).refused
    assert refused is not None
    assert f"Istio {version}'s sidecar injector" in refused
    assert "admissionregistration.k8s.io/v1beta1" in refused
    assert "Kubernetes 1.22 removed it" in refused
    assert why in refused
    assert rendered_on(version, render.Served(), cacerts).refused is None


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("secure", [False, True])
def test_discovery_and_mixer_ports(version: str, secure: bool) -> None:
    config = mesh_config(objects(version, controlPlaneSecurityEnabled=secure))
    port = DISCOVERY[version][secure]
    assert config["defaultConfig"]["discoveryAddress"] == f"istio-pilot.istio-system:{port}"
    assert config["defaultConfig"]["controlPlaneAuthPolicy"] == ("MUTUAL_TLS" if secure else "NONE")
    mixer = MIXER[secure]
    assert config["mixerCheckServer"].endswith(f":{mixer}")
    assert config["mixerReportServer"].endswith(f":{mixer}")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("spec", [SAMPLE, EU], ids=["sample", "eu"])
def test_mesh_config_keys_exist_in_the_versions_proto(version: str, spec: Obj) -> None:
    config = mesh_config(objects(version, spec))
    assert set(config) <= MESH_KEYS[version]
    assert set(config["defaultConfig"]) <= PROXY_KEYS[version]


@pytest.mark.parametrize("version", VERSIONS)
def test_injection_template_is_the_charts(version: str) -> None:
    text = template(objects(version))
    for fact in TEMPLATE_FACTS[version]:
        assert fact in text, fact
    for absent in TEMPLATE_ABSENT.get(version, []):
        assert absent not in text, absent
    # The template is YAML once the per-pod `[[ ]]` actions are taken out (control lines
    # dropped, values replaced).
    plain = re.sub(r"(?m)^\s*\[\[.*?\]\]\s*$\n?", "", text)
    plain = re.sub(r"\[\[.*?\]\]", "x", plain)
    parsed = yaml.safe_load(plain)
    assert parsed["containers"][0]["name"] == "istio-proxy"
    assert parsed["initContainers"][0]["name"] == "istio-init"
    assert "istio-certs" in [v["name"] for v in parsed["volumes"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_citadel_as_the_chart_runs_it(version: str) -> None:
    """charts/security/templates/deployment.yaml: the flags, the deployment's labels
    (`app: security`, operator 0.0.8 citadel.go citadelLabels), the critical-pod
    annotation, the chart's default CPU request; 1.1 moves monitoring to 15014 and adds
    the rolling-update strategy."""
    objs = objects(version)
    c = container(objs, "istio-citadel")
    assert flags(c["args"]) <= CITADEL_FLAGS
    dns = next(a for a in c["args"] if a.startswith("--custom-dns-names="))
    ingress = "istio-ingressgateway-service-account.istio-system:istio-ingressgateway"
    assert (ingress in dns) == (version == "1.0")
    assert c["resources"] == {"requests": {"cpu": "10m"}}
    deploy = find(objs, "Deployment", "istio-citadel")
    assert deploy["metadata"]["labels"]["app"] == "security"
    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert annotations["scheduler.alpha.kubernetes.io/critical-pod"] == ""
    monitoring = 9093 if version == "1.0" else 15014
    svc_ports = {
        p["name"]: p["port"] for p in find(objs, "Service", "istio-citadel")["spec"]["ports"]
    }
    assert svc_ports == {"grpc-citadel": 8060, "http-monitoring": monitoring}
    assert ("strategy" in deploy["spec"]) == (version == "1.1")


@pytest.mark.parametrize("version", VERSIONS)
def test_injector_probes_resources_labels(version: str) -> None:
    objs = objects(version)
    c = container(objs, "istio-sidecar-injector")
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["exec"]["command"] == INJECTOR_PROBE
        assert c[probe]["initialDelaySeconds"] == 4
        assert c[probe]["periodSeconds"] == 4
    assert c["resources"] == {"requests": {"cpu": "10m"}}
    deploy = find(objs, "Deployment", "istio-sidecar-injector")
    assert deploy["metadata"]["labels"]["app"] == "istio-sidecar-injector"


def test_a_field_istio_1_0_lacks_is_refused_by_validate() -> None:
    """rewriteAppHTTPProbe arrived in 1.1 (inject.go SidecarInjectionSpec at 1.1.0; absent
    at 1.0.5): on a 1.0 mesh `validate` refuses it with the reason, at its line."""
    doc = copy.deepcopy(SAMPLE)
    doc["spec"]["sidecarInjector"] = {"rewriteAppHTTPProbe": True}
    files = {
        "mesh.yaml": yaml.safe_dump(MESH).encode(),
        "remotes/remoteistio-sample.yaml": yaml.safe_dump(doc).encode(),
    }
    repo = meshrepo.parse(files)
    (problem,) = repo.invalid["remoteistio-sample"]
    assert problem.field == "spec.sidecarInjector.rewriteAppHTTPProbe"
    assert "Istio 1.0" in problem.message and problem.line > 1
    files["mesh.yaml"] = yaml.safe_dump(mesh_doc("1.1")).encode()
    assert meshrepo.parse(files).ok


def test_components_of_other_versions_are_refused() -> None:
    """mesh.yaml names one Istio; images of another are refused, in mesh.yaml and in a
    remote's overrides."""
    mixed = copy.deepcopy(MESH)
    mixed["images"]["proxy"] = "docker.io/istio/proxyv2:1.1.0"
    repo = meshrepo.parse({"mesh.yaml": yaml.safe_dump(mixed).encode()})
    assert [p.field for p in repo.problems] == ["images"]
    assert "different Istio versions" in repo.problems[0].message
    doc = copy.deepcopy(SAMPLE)
    doc["spec"]["proxy"] = {"image": "docker.io/istio/proxyv2:1.1.2"}
    repo = meshrepo.parse(
        {
            "mesh.yaml": yaml.safe_dump(MESH).encode(),
            "remotes/remoteistio-sample.yaml": yaml.safe_dump(doc).encode(),
        }
    )
    assert [p.field for p in repo.problems] == ["spec.proxy.image"]


def test_profiles_hold_the_same_facts() -> None:
    """gitmesh.specs.profiles is where render reads these facts from; it agrees with the list
    above, so neither drifts alone."""
    assert INJECTOR_FLAGS["1.0"] == profiles.INJECTOR_FLAGS
    assert profiles.WEBHOOK_CONFIG_NAME == WEBHOOK_CONFIG_NAME
    for version in VERSIONS:
        prof = profiles.PROFILES[version]  # type: ignore[index]
        assert prof.mesh_keys == MESH_KEYS[version]
        assert prof.proxy_keys == PROXY_KEYS[version]
        assert (prof.discovery_port, prof.discovery_port_secure) == DISCOVERY[version]
