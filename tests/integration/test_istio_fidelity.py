"""Issue 12's acceptance on live clusters: the example mesh (Istio 1.0.5 images) as the
injector, citadel and sidecars of that version need it, with each remote's own
intermediate CA. Facts and their sources are in tests/unit/test_fidelity.py; these tests
hold what actually lands on the clusters, on both backends."""

from __future__ import annotations

import base64
import datetime
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh.credentials import ca
from gitmesh.testing import sandbox
from tests.integration.conftest import World
from tests.unit.test_fidelity import INJECTOR_FLAGS

SAMPLE = "remoteistio-sample"
EU = "remote-eu"
NS = "istio-system"
INJECTOR_FLAGS_1_0 = INJECTOR_FLAGS["1.0"]  # facts and their sources: test_fidelity.py


def injector(world: World, remote: str) -> dict[str, Any]:
    deploy = world.get(remote, "deployments", NS, "istio-sidecar-injector", group="apps")
    container: dict[str, Any] = deploy["spec"]["template"]["spec"]["containers"][0]
    return container


def mesh_config(world: World, remote: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        world.get(remote, "configmaps", NS, "istio")["data"]["mesh"]
    )
    return data


def test_what_lands_is_what_istio_1_0_needs(world: World) -> None:
    """The webhook under the name the injector patches; no injector flag Istio 1.0 lacks;
    discovery on 15007, 15005 with controlPlaneSecurityEnabled (remote-eu); probes."""
    assert world.reconcile() == 0
    for remote in (SAMPLE, EU):
        hooks = world.names(
            remote, "mutatingwebhookconfigurations", group="admissionregistration.k8s.io"
        )
        assert hooks == ["istio-sidecar-injector"]
        container = injector(world, remote)
        assert {a[2:].split("=")[0] for a in container["args"]} <= INJECTOR_FLAGS_1_0
        assert container["livenessProbe"]["exec"]["command"][:2] == [
            "/usr/local/bin/sidecar-injector",
            "probe",
        ]
        assert container["readinessProbe"]["periodSeconds"] == 4
    assert mesh_config(world, SAMPLE)["defaultConfig"]["discoveryAddress"].endswith(":15007")
    assert mesh_config(world, EU)["defaultConfig"]["discoveryAddress"].endswith(":15005")


def decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_each_remote_has_its_own_intermediate_and_never_the_central_key(
    world: World, tmp_path: Path
) -> None:
    """cacerts verifies against the central root with `openssl verify`; its key is not the
    central key and differs per remote; a second pass rewrites nothing."""
    assert world.reconcile() == 0
    central = decoded(world.get("central", "secrets", NS, sandbox.CA_SECRET))
    (tmp_path / "root.pem").write_bytes(central["ca-cert.pem"])
    keys = set()
    for remote in (SAMPLE, EU):
        cacerts = decoded(world.get(remote, "secrets", NS, "cacerts"))
        for name, data in cacerts.items():
            (tmp_path / f"{remote}-{name}").write_bytes(data)
        verify = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(tmp_path / "root.pem"),
                "-untrusted",
                str(tmp_path / f"{remote}-cert-chain.pem"),
                str(tmp_path / f"{remote}-ca-cert.pem"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
        assert cacerts["root-cert.pem"] == central["ca-cert.pem"]
        assert cacerts["ca-key.pem"] != central["ca-key.pem"]
        assert central["ca-key.pem"] not in b"".join(cacerts.values())
        keys.add(cacerts["ca-key.pem"])
    assert len(keys) == 2
    before, commits = world.writes(), world.status_commits()
    assert world.reconcile() == 0
    assert world.writes() == before  # nothing renewed, nothing rewritten
    assert world.status_commits() == commits


def test_an_unbacked_service_is_a_warning_and_the_remote_stays_available(world: World) -> None:
    world.edit_remote_spec(
        SAMPLE,
        lambda d: d["spec"]["enabledServices"].append({"name": "istio-galley"}),
        "Enable a service central does not run",
    )
    assert world.reconcile() == 0
    status = world.status()[f"status/{SAMPLE}.yaml"]
    assert status["state"] == "Available"
    galley = [w for w in status["warnings"] if "enabled service istio-galley:" in w]
    assert len(galley) == 2
    assert "no Service istio-galley in istio-system" in galley[0]
    assert "no ready pod" in galley[1] and "Endpoints are empty" in galley[1]
    assert status["components"]["services"]["warnings"] == status["warnings"]


@pytest.mark.localkube_only
def test_a_remote_serving_only_v1beta1_webhooks_gets_one(world: World) -> None:
    """A remote older than Kubernetes 1.16 (the Istio 1.0 era) serves admissionregistration
    at v1beta1 alone: gitmesh follows its discovery and writes the webhook there."""
    store = world.store(EU)
    store.serve_only("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "v1beta1")
    assert world.reconcile() == 0
    hook = world.get(
        EU,
        "mutatingwebhookconfigurations",
        "",
        "istio-sidecar-injector",
        group="admissionregistration.k8s.io",
        version="v1beta1",
    )
    assert hook["apiVersion"] == "admissionregistration.k8s.io/v1beta1"
    before = world.writes(EU)
    assert world.reconcile() == 0
    assert world.writes(EU) == before


def test_a_1_0_injector_where_v1beta1_webhooks_are_gone_gets_the_ca_bundle_it_would_patch(
    world: World,
) -> None:
    """Before: on Kubernetes 1.22 and later (both backends serve admissionregistration at
    v1 alone) the 1.0 injector's caBundle patch failed, the webhook kept an empty
    caBundle, and with failurePolicy Fail every pod in an injection namespace was
    rejected. After: gitmesh writes the caBundle the injector would have patched, the
    root of the remote's CA (sources: tests/unit/test_fidelity.py); then a no-op."""
    assert world.reconcile() == 0
    for remote in (SAMPLE, EU):
        hook = world.get(
            remote,
            "mutatingwebhookconfigurations",
            "",
            "istio-sidecar-injector",
            group="admissionregistration.k8s.io",
        )
        root = world.get(remote, "secrets", NS, "cacerts")["data"]["root-cert.pem"]
        assert hook["webhooks"][0]["clientConfig"]["caBundle"] == root
    before = world.writes()
    assert world.reconcile() == 0
    assert world.writes() == before


def test_a_1_1_remote_where_v1beta1_webhooks_are_gone_is_refused_before_any_write(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 1.1 injector exits when its first caBundle patch fails: plan and the pass refuse
    the remote, naming the Istio and the Kubernetes version, and write nothing to it."""
    mesh = yaml.safe_load((world.repo.work / "mesh.yaml").read_text())
    mesh["istioVersion"] = "1.1"
    mesh["images"] = {k: v.replace(":1.0.5", ":1.1.0") for k, v in mesh["images"].items()}
    world.repo.commit({"mesh.yaml": yaml.safe_dump(mesh)}, "Istio 1.1")
    assert world.plan() == 1
    assert "Istio 1.1's sidecar injector" in capsys.readouterr().err
    writes = {r: world.writes(r) for r in (SAMPLE, EU)}
    assert world.reconcile() == 1
    for remote in (SAMPLE, EU):
        status = world.status()[f"status/{remote}.yaml"]
        assert status["state"] == "ReconcileFailed"
        assert (
            "Istio 1.1's sidecar injector patches its webhook's caBundle only" in status["message"]
        )
        assert f"({remote} runs Kubernetes v1." in status["message"]
        assert world.writes(remote) == writes[remote]


def replace_central_ca(world: World, data: dict[str, str]) -> None:
    world.merge_patch("central", "secrets", NS, sandbox.CA_SECRET, {"data": data})


def citadel_digest(world: World, remote: str) -> str:
    deploy = world.get(remote, "deployments", NS, "istio-citadel", group="apps")
    digest: str = deploy["spec"]["template"]["metadata"]["annotations"]["gitmesh.io/cacerts-digest"]
    return digest


def test_a_central_ca_rotation_restarts_citadel_once(world: World) -> None:
    """After the central CA is rotated, one pass mints each remote a new intermediate and
    changes citadel's pod template with it (citadel reads its CA only at start: sources in
    tests/unit/test_render.py), then the next pass writes nothing."""
    assert world.reconcile() == 0
    first = {r: citadel_digest(world, r) for r in (SAMPLE, EU)}
    replace_central_ca(world, ca.self_signed_root("rotated", datetime.datetime.now(datetime.UTC)))
    assert world.reconcile() == 0
    for remote in (SAMPLE, EU):
        assert citadel_digest(world, remote) != first[remote]
    before, commits = world.writes(), world.status_commits()
    assert world.reconcile() == 0
    assert world.writes() == before
    assert world.status_commits() == commits


def test_a_central_ca_three_days_from_expiry_is_a_no_op_every_pass(world: World) -> None:
    """Before: in the central CA's last 30 days every pass minted a new `cacerts` for every
    remote (`citadel +0 ~1 -0`) and committed a status change."""
    now = datetime.datetime.now(datetime.UTC)
    replace_central_ca(
        world, ca.self_signed_root("short", now, lifetime=datetime.timedelta(days=3))
    )
    assert world.reconcile() == 0
    before, commits = world.writes(), world.status_commits()
    assert world.reconcile() == 0
    assert world.writes() == before
    assert world.status_commits() == commits


def test_a_central_ca_that_cannot_sign_an_intermediate_is_refused_before_any_write(
    world: World,
) -> None:
    """A pathlen:0 central CA (an intermediate itself) would let citadel start and every
    workload chain fail `path length constraint exceeded`: the remotes are refused with
    the reason, and nothing is written to them."""
    now = datetime.datetime.now(datetime.UTC)
    replace_central_ca(world, ca.self_signed_root("leafish", now, path_length=0))
    writes = {r: world.writes(r) for r in (SAMPLE, EU)}
    assert world.reconcile() == 1
    for remote in (SAMPLE, EU):
        status = world.status()[f"status/{remote}.yaml"]
        assert status["state"] == "ReconcileFailed"
        assert "pathlen:0" in status["message"]
        assert world.writes(remote) == writes[remote]
        assert "cacerts" not in world.names(remote, "secrets", NS)
