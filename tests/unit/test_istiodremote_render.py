"""The IstiodRemote renderer's choices that depend on its inputs (pure)."""

from __future__ import annotations

from typing import Any

from gitmesh import render, specs

MESH = specs.Mesh.model_validate({"apiVersion": "gitmesh.io/v1alpha1", "kind": "Mesh"})


def remote(**spec: Any) -> specs.IstiodRemote:
    return specs.IstiodRemote.model_validate(
        {
            "apiVersion": "gitmesh.io/v1alpha1",
            "kind": "IstiodRemote",
            "metadata": {"name": "w"},
            "spec": spec,
        }
    )


def objects(spec: specs.IstiodRemote, central: render.Central) -> dict[str, Any]:
    out = render.remote(spec, MESH, central)
    return {f"{o['kind']}/{o['metadata']['name']}": o for c in out.components for o in c.objects}


def test_a_host_name_makes_an_external_name_service_and_no_slice() -> None:
    """remote-istiod-service.yaml: an address that is not an IP becomes ExternalName;
    remote-istiod-endpointslices.yaml renders only for an IP (istio 1.30.3)."""
    found = objects(remote(), render.Central(gateway_address="gw.example.com", root_cert="x"))
    svc = found["Service/istiod"]["spec"]
    assert svc["type"] == "ExternalName" and svc["externalName"] == "gw.example.com"
    assert "EndpointSlice/istiod" not in found
    v6 = objects(remote(), render.Central(gateway_address="2001:db8::1", root_cert="x"))
    assert v6["EndpointSlice/istiod"]["addressType"] == "IPv6"


def test_the_injection_path_names_the_network_only_when_set() -> None:
    central = render.Central(gateway_address="192.0.2.1", root_cert="x")
    for spec, path in (
        (remote(), "/inject/cluster/w"),
        (remote(network="n2"), "/inject/cluster/w/net/n2"),
    ):
        hook = objects(spec, central)["MutatingWebhookConfiguration/istio-sidecar-injector"]
        assert {h["clientConfig"]["service"]["path"] for h in hook["webhooks"]} == {path}


def test_without_the_primary_the_istiod_components_fail_with_the_reason() -> None:
    out = render.remote(remote(), MESH, render.Central(primary_error="no gateway address"))
    failed = {c.name: c.error for c in out.components if c.error}
    assert failed == {"istiod": "no gateway address", "sidecarinjector": "no gateway address"}


def test_the_namespace_names_the_primary_that_manages_the_remote() -> None:
    """An EXTERNAL_ISTIOD primary leads (and so writes istio-ca-root-cert into) only remotes
    whose Istio namespace carries topology.istio.io/controlPlaneClusters with its cluster
    ID or "*" (checkShouldLead, pilot/pkg/serviceregistry/kube/controller/multicluster.go,
    istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad)."""
    central = render.Central(gateway_address="192.0.2.1", root_cert="x")
    key = "topology.istio.io/controlPlaneClusters"
    for mesh, wanted in (
        (MESH, "*"),
        (MESH.model_copy(update={"primary": specs.Primary(clusterID="central")}), "central"),
    ):
        out = render.remote(remote(), mesh, central)
        common = next(c for c in out.components if c.name == "common")
        assert common.namespace_annotations == {key: wanted}
        (ns,) = common.objects
        assert ns["metadata"]["annotations"][key] == wanted


def test_a_primary_cluster_id_must_be_one_istio_accepts() -> None:
    for bad in ("a,b", "", "-x", "x" * 64):
        try:
            specs.Primary(clusterID=bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_each_model_says_what_it_needs_of_the_pipeline() -> None:
    """render.needs is the only place a stage learns what a model asks of it: the central
    CA and the pilot's read of gitmesh's kubeconfig Secret for a RemoteIstio (unless it
    brings its own CA) and whether the remote serves v1beta1 webhooks (its injector's
    caBundle), the primary (and the address it reaches the remote at) for an IstiodRemote;
    only a RemoteIstio's Endpoints follow central's pods."""
    istio, own_ca = (
        specs.RemoteIstio.model_validate(
            {
                "apiVersion": "istio.banzaicloud.io/v1beta1",
                "kind": "RemoteIstio",
                "metadata": {"name": "r"},
                "spec": {"enabledServices": [{"name": "istio-pilot"}], **extra},
            }
        )
        for extra in ({}, {"citadel": {"caSecretName": "mine"}})
    )
    assert render.needs(istio) == render.Needs(
        central_ca=True, pilot_reads_kubeconfig=True, central_pods=True, v1beta1_webhooks=True
    )
    assert not render.needs(own_ca).central_ca
    assert render.needs(remote()) == render.Needs(primary=True)
    server = "https://w.example:6443"
    assert render.needs(remote(server=server)).primary_server == server
    pilot = render.Pod("pilot-1", "10.0.0.1", {"app": "pilot"}, True)
    central = render.Central(
        pods=(pilot,),
        services={"istio-pilot": render.CentralService("istio-pilot", {"app": "pilot"}, ())},
    )
    assert render.follows(istio, central, [{"app": "pilot"}])
    assert not render.follows(istio, central, [{"app": "mixer"}])
    assert not render.follows(remote(), central, [{"app": "pilot"}])
    assert render.endpoints(remote(), MESH, central) is None
    found = render.endpoints(istio, MESH, central)
    assert found is not None and found[1] == {"istio-pilot": ("10.0.0.1",)}
