"""Every spec field takes effect: render the seed's sample with one field changed and find
the change in the objects (and a guard that no model field is left out of this table)."""

from __future__ import annotations

import copy
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from gitmesh import render, specs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = yaml.safe_load((ROOT / "example-repo/remotes/remoteistio-sample.yaml").read_text())
MESH = yaml.safe_load((ROOT / "example-repo/mesh.yaml").read_text())
CENTRAL = render.Central(
    pods=(
        render.Pod("pilot-0", "10.24.0.2", {"istio": "pilot"}, True),
        render.Pod("pilot-1", "10.24.0.3", {"istio": "pilot"}, False),
        render.Pod("policy-0", "10.24.0.4", {"istio-mixer-type": "policy"}, True),
    ),
    services={
        "istio-pilot": render.CentralService(
            "istio-pilot", {"istio": "pilot"}, ({"name": "grpc-xds", "port": 15010},)
        )
    },
    ca_data={"ca-cert.pem": "Y2VydA==", "ca-key.pem": "a2V5"},
)
# What the caller hands render as the remote's intermediate CA (gitmesh.credentials.ca).
CACERTS = dict.fromkeys(("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"), "eA==")
Obj = dict[str, Any]


def istio_1_1(doc: Obj) -> None:
    """mesh.yaml for Istio 1.1: the version, and images that agree with it."""
    doc["istioVersion"] = "1.1"
    doc["images"] = {k: v.replace(":1.0.5", ":1.1.0") for k, v in doc["images"].items()}


# Fields only a later Istio honours are tried on a mesh of that version.
MESH_FOR_FIELD: dict[str, Callable[[Obj], None]] = {
    "spec.sidecarInjector.rewriteAppHTTPProbe": istio_1_1,
}


def rendered(
    spec_change: Callable[[Obj], None] | None = None,
    mesh_change: Callable[[Obj], None] | None = None,
) -> list[Obj]:
    spec, mesh = copy.deepcopy(SAMPLE), copy.deepcopy(MESH)
    if spec_change:
        spec_change(spec)
    if mesh_change:
        mesh_change(mesh)
    out = render.remote(
        specs.RemoteIstio.model_validate(spec),
        specs.Mesh.model_validate(mesh),
        CENTRAL,
        cacerts=CACERTS,
    )
    objs = [o for c in out.components for o in c.objects]
    injection = next(c for c in out.components if c.name == "injection")
    return [*objs, {"kind": "InjectionIntent", "namespaces": list(injection.namespaces)}]


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    return next(
        o
        for o in objs
        if o["kind"] == kind and (name is None or o.get("metadata", {}).get("name") == name)
    )


def container(objs: list[Obj], deployment: str) -> Obj:
    c: Obj = find(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    return c


def injector_config(objs: list[Obj]) -> str:
    text: str = find(objs, "ConfigMap", "istio-sidecar-injector")["data"]["config"]
    return text


def mesh_config(objs: list[Obj]) -> str:
    text: str = find(objs, "ConfigMap", "istio")["data"]["mesh"]
    return text


def holds(check: Callable[[list[Obj]], bool], objs: list[Obj]) -> bool:
    """A check that looks for something absent is false, not an error."""
    try:
        return bool(check(objs))
    except (KeyError, IndexError, StopIteration):
        return False


def spec_set(path: str, value: Any) -> Callable[[Obj], None]:
    def change(doc: Obj) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return change


RESOURCES = {"limits": {"memory": "300Mi"}, "requests": {"cpu": "50m"}}
# (field path in the wire format, change, what must show up)
SPEC_CASES: list[tuple[str, Callable[[Obj], None], Callable[[list[Obj]], bool]]] = [
    (
        "metadata.name",
        spec_set("metadata.name", "other"),
        lambda o: all(
            x.get("metadata", {}).get("labels", {}).get("gitmesh.io/remote") == "other"
            for x in o
            if x["kind"] != "InjectionIntent"
        ),
    ),
    (
        "metadata.namespace",
        spec_set("metadata.namespace", "istio-remote"),
        lambda o: find(o, "ConfigMap", "istio")["metadata"]["namespace"] == "istio-remote",
    ),
    (
        "metadata.labels",
        spec_set("metadata.labels", {"team": "mesh"}),
        lambda o: find(o, "Service", "istio-pilot")["metadata"]["labels"]["team"] == "mesh",
    ),
    (
        "metadata.annotations",
        spec_set("metadata.annotations", {"owner": "ops"}),
        lambda o: (
            find(o, "Deployment", "istio-citadel")["metadata"]["annotations"]["owner"] == "ops"
        ),
    ),
    (
        "spec.enabledServices.name",
        spec_set("spec.enabledServices", [{"name": "istio-extra", "podIPs": ["10.9.9.9"]}]),
        lambda o: (
            find(o, "Endpoints", "istio-extra")["subsets"][0]["addresses"] == [{"ip": "10.9.9.9"}]
        ),
    ),
    (
        "spec.enabledServices.labelSelector",
        spec_set(
            "spec.enabledServices",
            [{"name": "istio-pilot", "labelSelector": "istio-mixer-type=policy"}],
        ),
        lambda o: (
            find(o, "Endpoints", "istio-pilot")["subsets"][0]["addresses"] == [{"ip": "10.24.0.4"}]
        ),
    ),
    (
        "spec.enabledServices.podIPs",
        spec_set("spec.enabledServices", [{"name": "istio-pilot", "podIPs": ["10.8.0.1"]}]),
        lambda o: (
            {"ip": "10.8.0.1"} in find(o, "Endpoints", "istio-pilot")["subsets"][0]["addresses"]
        ),
    ),
    (
        "spec.enabledServices.ports",
        spec_set(
            "spec.enabledServices",
            [
                {
                    "name": "istio-pilot",
                    "ports": [
                        {"name": "grpc", "port": 15010, "targetPort": 15020, "protocol": "TCP"}
                    ],
                }
            ],
        ),
        lambda o: (
            find(o, "Service", "istio-pilot")["spec"]["ports"][0]["targetPort"] == 15020
            and find(o, "Endpoints", "istio-pilot")["subsets"][0]["ports"][0]["port"] == 15020
        ),
    ),
    (
        "spec.autoInjectionNamespaces",
        spec_set("spec.autoInjectionNamespaces", ["payments"]),
        lambda o: find(o, "InjectionIntent")["namespaces"] == ["payments"],
    ),
    (
        "spec.includeIPRanges",
        spec_set("spec.includeIPRanges", "10.0.0.0/8"),
        lambda o: "10.0.0.0/8" in injector_config(o),
    ),
    (
        "spec.excludeIPRanges",
        spec_set("spec.excludeIPRanges", "10.1.0.0/16"),
        lambda o: "10.1.0.0/16" in injector_config(o),
    ),
    (
        "spec.controlPlaneSecurityEnabled",
        spec_set("spec.controlPlaneSecurityEnabled", True),
        lambda o: (
            "controlPlaneAuthPolicy: MUTUAL_TLS" in mesh_config(o)
            and "istio-pilot.istio-system:15005" in mesh_config(o)
        ),
    ),
    (
        "spec.defaultResources",
        spec_set("spec.defaultResources", RESOURCES),
        lambda o: (
            container(o, "istio-citadel")["resources"]["limits"] == {"memory": "300Mi"}
            and container(o, "istio-sidecar-injector")["resources"]["requests"] == {"cpu": "50m"}
        ),
    ),
    (
        "spec.citadel.replicaCount",
        spec_set("spec.citadel.replicaCount", 3),
        lambda o: find(o, "Deployment", "istio-citadel")["spec"]["replicas"] == 3,
    ),
    (
        "spec.citadel.image",
        spec_set("spec.citadel.image", "reg/citadel:x"),
        lambda o: container(o, "istio-citadel")["image"] == "reg/citadel:x",
    ),
    (
        "spec.citadel.resources",
        spec_set("spec.citadel.resources", RESOURCES),
        lambda o: (
            container(o, "istio-citadel")["resources"] == RESOURCES
            # the others keep the charts' global.defaultResources
            and container(o, "istio-sidecar-injector")["resources"] == {"requests": {"cpu": "10m"}}
        ),
    ),
    (
        "spec.citadel.nodeSelector",
        spec_set("spec.citadel.nodeSelector", {"pool": "infra"}),
        lambda o: (
            find(o, "Deployment", "istio-citadel")["spec"]["template"]["spec"]["nodeSelector"]
            == {"pool": "infra"}
        ),
    ),
    (
        "spec.citadel.caSecretName",
        spec_set("spec.citadel.caSecretName", "my-ca"),
        lambda o: (
            not any(x["kind"] == "Secret" for x in o)
            and find(o, "Deployment", "istio-citadel")["spec"]["template"]["spec"]["volumes"][0][
                "secret"
            ]["secretName"]
            == "my-ca"
        ),
    ),
    (
        "spec.sidecarInjector.replicaCount",
        spec_set("spec.sidecarInjector.replicaCount", 2),
        lambda o: find(o, "Deployment", "istio-sidecar-injector")["spec"]["replicas"] == 2,
    ),
    (
        "spec.sidecarInjector.image",
        spec_set("spec.sidecarInjector.image", "reg/inj:x"),
        lambda o: container(o, "istio-sidecar-injector")["image"] == "reg/inj:x",
    ),
    (
        "spec.sidecarInjector.resources",
        spec_set("spec.sidecarInjector.resources", RESOURCES),
        lambda o: container(o, "istio-sidecar-injector")["resources"] == RESOURCES,
    ),
    (
        "spec.sidecarInjector.nodeSelector",
        spec_set("spec.sidecarInjector.nodeSelector", {"pool": "infra"}),
        lambda o: (
            find(o, "Deployment", "istio-sidecar-injector")["spec"]["template"]["spec"][
                "nodeSelector"
            ]
            == {"pool": "infra"}
        ),
    ),
    (
        "spec.sidecarInjector.rewriteAppHTTPProbe",
        spec_set("spec.sidecarInjector.rewriteAppHTTPProbe", True),
        lambda o: "rewriteAppHTTPProbe: true" in injector_config(o),
    ),
    (
        "spec.proxy.image",
        spec_set("spec.proxy.image", "reg/proxy:x"),
        lambda o: "reg/proxy:x" in injector_config(o),
    ),
    (
        "spec.proxy.resources",
        spec_set("spec.proxy.resources", RESOURCES),
        lambda o: "300Mi" in injector_config(o) and "50m" in injector_config(o),
    ),
    (
        "spec.proxy.enableCoreDump",
        spec_set("spec.proxy.enableCoreDump", True),
        lambda o: "enable-core-dump" in injector_config(o),
    ),
]
MESH_CASES: list[tuple[str, Callable[[Obj], None], Callable[[list[Obj]], bool]]] = [
    (
        "namespace",
        spec_set("namespace", "mesh"),
        lambda o: find(o, "Namespace")["metadata"]["name"] == "mesh",
    ),
    (
        "images.citadel",
        spec_set("images.citadel", "m/citadel:1"),
        lambda o: container(o, "istio-citadel")["image"] == "m/citadel:1",
    ),
    (
        "images.sidecarInjector",
        spec_set("images.sidecarInjector", "m/inj:1"),
        lambda o: container(o, "istio-sidecar-injector")["image"] == "m/inj:1",
    ),
    (
        "images.proxy",
        spec_set("images.proxy", "m/proxy:1"),
        lambda o: "m/proxy:1" in injector_config(o),
    ),
    (
        "images.proxyInit",
        spec_set("images.proxyInit", "m/init:1"),
        lambda o: "m/init:1" in injector_config(o),
    ),
    (
        "central.clusterDomain",
        spec_set("central.clusterDomain", "corp.local"),
        lambda o: "istio-policy.istio-system.svc.corp.local:9091" in mesh_config(o),
    ),
    (
        "central.addresses.pilot",
        spec_set("central.addresses.pilot", "pilot.example:15010"),
        lambda o: "discoveryAddress: pilot.example:15010" in mesh_config(o),
    ),
    (
        "central.addresses.policy",
        spec_set("central.addresses.policy", "policy.example:9091"),
        lambda o: "mixerCheckServer: policy.example:9091" in mesh_config(o),
    ),
    (
        "central.addresses.telemetry",
        spec_set("central.addresses.telemetry", "telemetry.example:9091"),
        lambda o: "mixerReportServer: telemetry.example:9091" in mesh_config(o),
    ),
    (
        "central.addresses.zipkin",
        spec_set("central.addresses.zipkin", "zipkin.example:9411"),
        lambda o: "zipkinAddress: zipkin.example:9411" in mesh_config(o),
    ),
    (
        "istioVersion",
        istio_1_1,
        lambda o: "istio-pilot.istio-system:15010" in mesh_config(o),
    ),
]


@pytest.mark.parametrize(("field", "change", "shows"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_remoteistio_field_takes_effect(
    field: str, change: Callable[[Obj], None], shows: Callable[[list[Obj]], bool]
) -> None:
    """Changing the field changes the rendered objects where the README says it does."""
    mesh = MESH_FOR_FIELD.get(field)
    before, after = rendered(mesh_change=mesh), rendered(spec_change=change, mesh_change=mesh)
    assert not holds(shows, before), f"{field}: the check passes without the change"
    assert holds(shows, after), f"{field} did not take effect"


@pytest.mark.parametrize(("field", "change", "shows"), MESH_CASES, ids=[c[0] for c in MESH_CASES])
def test_mesh_field_takes_effect(
    field: str, change: Callable[[Obj], None], shows: Callable[[list[Obj]], bool]
) -> None:
    """Changing a mesh.yaml field changes the rendered objects."""
    before, after = rendered(), rendered(mesh_change=change)
    assert not holds(shows, before), f"{field}: the check passes without the change"
    assert holds(shows, after), f"{field} did not take effect"


def _wire_paths(model: type[pydantic.BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        wire = info.alias or name
        path = f"{prefix}{wire}"
        inner = info.annotation
        for arg in typing.get_args(inner) or (inner,):
            item = typing.get_args(arg)[0] if typing.get_origin(arg) is list else arg
            if (
                isinstance(item, type)
                and issubclass(item, pydantic.BaseModel)
                and item not in (specs.ResourceRequirements, specs.ServicePort)
            ):
                out |= _wire_paths(item, path + ".")
                break
        else:
            out.add(path)
    return out


def test_every_field_is_covered() -> None:
    """Each RemoteIstio and mesh.yaml field (bar the envelope) has a case above."""
    envelope = {
        "apiVersion",
        "kind",
        "statusBranch",
        "central.caSecretName",
        "replicas.citadel",
        "replicas.sidecarInjector",
        # Which objects on central an IstiodRemote pass reads: tests/integration/
        # test_istiod_remote.py names non-default ones and finds them read.
        "primary.eastWestGateway",
        "primary.rootCertConfigMap",
        # IstiodRemote only: tests/unit/test_istiodremote_render.py.
        "primary.clusterID",
        # How many removed remotes a pass prunes unasked: tests/integration/test_audit.py.
        "massPruneThreshold",
    }
    remote = _wire_paths(specs.RemoteIstio) - envelope
    mesh = _wire_paths(specs.Mesh) - envelope
    assert remote == {c[0] for c in SPEC_CASES}
    assert mesh == {c[0] for c in MESH_CASES}


def test_replica_defaults_and_central_ca_secret_come_from_mesh() -> None:
    """mesh.yaml's replica defaults apply when a remote sets none; the central CA secret's
    name is the one named in the error when it is missing."""

    def unset(doc: Obj) -> None:
        doc["spec"].pop("citadel")
        doc["spec"].pop("sidecarInjector")

    def defaults(doc: Obj) -> None:
        doc["replicas"] = {"citadel": 4, "sidecarInjector": 5}
        doc["central"]["caSecretName"] = "root-ca"

    objs = rendered(spec_change=unset, mesh_change=defaults)
    assert find(objs, "Deployment", "istio-citadel")["spec"]["replicas"] == 4
    assert find(objs, "Deployment", "istio-sidecar-injector")["spec"]["replicas"] == 5
    spec = specs.RemoteIstio.model_validate(SAMPLE)
    mesh = specs.Mesh.model_validate({**MESH, "central": {"caSecretName": "root-ca"}})
    out = render.remote(spec, mesh, render.Central())
    citadel = next(c for c in out.components if c.name == "citadel")
    assert citadel.error and "istio-system/root-ca" in citadel.error


def test_endpoints_hold_only_ready_pods_and_central_ports() -> None:
    """The seed's pilot service takes the ready central pods and the central Service's
    ports; a not-ready pod is left out."""
    objs = rendered()
    subset = find(objs, "Endpoints", "istio-pilot")["subsets"][0]
    assert subset["addresses"] == [{"ip": "10.24.0.2"}]
    assert subset["ports"] == [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"}]


def test_citadel_restarts_when_the_cacerts_gitmesh_writes_change() -> None:
    """Citadel 1.0/1.1 reads a plugged-in CA once, when it starts: createCA, called once
    from main, loads --signing-cert/--signing-key/--cert-chain/--root-cert through
    ca.NewPluggedCertIstioCAOptions (istio 1.0.5 security/cmd/istio_ca/main.go lines 320
    and 411-428; 1.1.0 lines 393-417); the only rotator is the CA client's, started only
    with an upstream --ca-address (1.0.5 lines 379-389, 1.1.0 lines 359-378), which
    gitmesh never sets. So a new `cacerts` takes effect only through a restart: the pod
    template carries its digest, and changes with it (a rollout, as `kubectl rollout
    restart` makes one). A CA the spec brings (caSecretName) is not gitmesh's to watch."""

    def digest(cacerts: dict[str, str] | None, change: Callable[[Obj], None] | None = None) -> Any:
        spec = copy.deepcopy(SAMPLE)
        if change:
            change(spec)
        out = render.remote(
            specs.RemoteIstio.model_validate(spec),
            specs.Mesh.model_validate(MESH),
            CENTRAL,
            cacerts=cacerts,
        )
        objs = [o for c in out.components for o in c.objects]
        template = find(objs, "Deployment", "istio-citadel")["spec"]["template"]
        return template["metadata"]["annotations"].get("gitmesh.io/cacerts-digest")

    renewed = {**CACERTS, "ca-cert.pem": "bmV3"}
    assert digest(CACERTS) is not None
    assert digest(CACERTS) == digest(dict(CACERTS))  # the same cacerts, no restart
    assert digest(renewed) != digest(CACERTS)
    assert digest(None, spec_set("spec.citadel.caSecretName", "mine")) is None
