"""deploy/: kustomize builds offline, objects validate against the Kubernetes schemas,
RBAC is exactly what gitmesh uses (checked against a real run's requests), and kubectl
applies the manifests to localkube."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gitmesh import cli
from gitmesh.localkube import Server
from gitmesh.testing import sandbox
from tests.integration.conftest import World
from tests.integration.running import Proc, started_runner, wait_for

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {
    "base": ROOT / "deploy/base",
    "run": ROOT / "deploy/overlays/run",
    "sharded": ROOT / "deploy/overlays/sharded",
}
REPLICAS = {"run": 2, "sharded": 3}
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.kubectl
if KUBECTL is None:
    if os.environ.get("CI"):
        pytest.fail("kubectl is not installed; CI must have it", pytrace=False)
    pytest.skip("kubectl is not installed", allow_module_level=True)


def build(variant: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(VARIANTS[variant])],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kustomize_builds_offline_and_validates(variant: str) -> None:
    """Every object of every variant is valid for Kubernetes 1.32 (strict: no unknown
    fields)."""
    docs = build(variant)
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "NetworkPolicy",
    } <= kinds
    assert ("CronJob" in kinds) == (variant == "base")
    assert ("Deployment" in kinds) == (variant in REPLICAS)
    assert ("PodDisruptionBudget" in kinds) == (variant in REPLICAS)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32.0", strict=True)


def _rules(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"].get("namespace", ""), r)
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
        for r in d.get("rules", [])
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_is_least_privilege(variant: str) -> None:
    """No wildcards; cluster-wide only `get` of the kube-system namespace by name (central's
    identity); Secrets only in the mesh namespace, the Lease and the inventory only by
    their own names (but create, which resourceNames cannot limit); sharded, the member
    Leases only in gitmesh's own namespace."""
    docs = build(variant)
    cluster_wide = [d["rules"] for d in docs if d["kind"] == "ClusterRole"]
    assert cluster_wide == [
        [
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "resourceNames": ["kube-system"],
                "verbs": ["get"],
            }
        ]
    ]
    for namespace, rule in _rules(docs):
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule.get(field, []), rule
        if "secrets" in rule["resources"]:
            assert namespace == "istio-system"
            assert set(rule["verbs"]) <= {"get", "patch"}
        if "leases" in rule["resources"] and variant == "sharded":
            assert namespace == "gitmesh"
        elif "leases" in rule["resources"] and set(rule["verbs"]) != {"create"}:
            assert rule.get("resourceNames") == ["gitmesh"]
        if "configmaps" in rule["resources"] and set(rule["verbs"]) != {"create"}:
            assert rule.get("resourceNames") == ["gitmesh-inventory"]


def _granted(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (verb, res)
        for _, rule in _rules(docs)
        for res in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("variant", sorted(REPLICAS))
def test_rbac_grants_exactly_what_a_run_uses(world: World, tmp_path: Path, variant: str) -> None:
    """The verbs gitmesh run sends to the central cluster are exactly those granted;
    sharded, the member Leases in gitmesh's namespace instead of the leader Lease."""
    run: dict[str, Any] = (
        {"shard": True, "lease_namespace": "gitmesh"} if variant == "sharded" else {}
    )
    sandbox.ensure_namespace(world.server, "central", "gitmesh")
    world.server.reset_counts()
    with started_runner(world, tmp_path / "c", identity="rbac-check", **run) as runner:
        sandbox.add_istio_pod(world.server, "central", "istio-pilot", 9)
        time.sleep(1.0)
        # A remote leaves: the inventory is patched, the kubeconfig Secret unlabelled.
        world.repo.commit({"remotes/remote-eu.yaml": None}, "remote-eu leaves")
        runner.poll()
        inventory = world.get("central", "configmaps", "istio-system", "gitmesh-inventory")
        assert "remote-eu" not in inventory["data"]["remotes"]
    used = {
        (verb, resource)
        for (cluster, verb, resource, code), n in world.server.requests.items()
        if cluster == "central" and resource != "discovery"
    }
    granted = _granted(build(variant))
    assert used == granted, {
        "used, not granted": used - granted,
        "granted, not used": granted - used,
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pods_run_locked_down(variant: str) -> None:
    """Non-root, read-only root filesystem, no capabilities, requests and limits."""
    for doc in build(variant):
        if doc["kind"] not in ("Deployment", "CronJob"):
            continue
        spec = doc["spec"]
        pod = (
            spec["jobTemplate"]["spec"]["template"]["spec"]
            if doc["kind"] == "CronJob"
            else spec["template"]["spec"]
        )
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
        if doc["kind"] == "Deployment":
            assert spec["replicas"] == REPLICAS[variant]
            c = pod["containers"][0]
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kubectl_applies_the_manifests_to_localkube(variant: str, tmp_path: Path) -> None:
    """kubectl apply accepts every object; a second apply changes nothing."""
    with Server(clusters=["central"]) as server:
        sandbox.ensure_namespace(server, "central", "istio-system")
        env = {
            **os.environ,
            "KUBECONFIG": str(server.write_kubeconfig(tmp_path / "kc")),
            "KUBECACHEDIR": str(tmp_path / "cache"),
        }
        manifest = tmp_path / "all.yaml"
        manifest.write_text(yaml.safe_dump_all(build(variant)))

        def apply() -> str:
            proc = subprocess.run(
                [str(KUBECTL), "apply", "--validate=false", "-f", str(manifest)],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        first = apply()
        assert first.count("created") == len(build(variant))
        # A PodDisruptionBudget's selector has patchStrategy "replace": kubectl always sends
        # it and says "configured" (as on any cluster; see Azure/eno#246).
        again = [line for line in apply().splitlines() if "poddisruptionbudget" not in line]
        assert again and all("unchanged" in line for line in again)


def test_dockerfile_is_slim_pinned_and_non_root() -> None:
    """Pinned base images, a separate build stage, a numeric non-root user, git inside."""
    text = (ROOT / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 2 and all(":" in f and "latest" not in f for f in froms)
    final = text.split("FROM ")[-1]
    assert "USER 65532:65532" in final
    assert "git" in final and not any(tool in final for tool in ("gcc", "build-essential"))
    assert json.loads(final.split("ENTRYPOINT ")[1].splitlines()[0]) == ["gitmesh"]
    # bytecode is compiled at build time: the root filesystem is read-only at run time
    assert "--no-compile" not in final and "pip install" in final


def _apply(world: World, docs: list[dict[str, Any]]) -> None:
    kubeconfig = world.tmp / "admin.kubeconfig"
    world.server.write_kubeconfig(kubeconfig, "central")
    subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _service_account_kubeconfig(world: World) -> Path:
    """A central kubeconfig holding a TokenRequest token of deploy/'s ServiceAccount."""
    store = world.store("central")
    answer = store.request(
        "POST",
        "/api/v1/namespaces/gitmesh/serviceaccounts/gitmesh/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    config = world.server.kubeconfig("central")
    config["users"][0]["user"] = {"token": answer["status"]["token"]}
    path = world.tmp / "gitmesh-sa.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.kube_apiserver_only  # localkube authorizes anything
def test_least_privilege_is_enforced(
    world: World, procs: list[Proc], capsys: pytest.CaptureFixture[str]
) -> None:
    """On a real apiserver (RBAC on): deploy/'s ServiceAccount can run `reconcile --once`
    and `gitmesh run`; with one permission removed, the pass fails with a Forbidden
    message naming the verb and resource."""
    _apply(world, build("run"))
    kubeconfig = _service_account_kubeconfig(world)
    args = [
        "--repo",
        world.repo.url,
        "--cache-dir",
        str(world.tmp / "cache"),
        "--central-kubeconfig",
        str(kubeconfig),
    ]
    assert cli.main(["reconcile", "--once", *args]) == 0, capsys.readouterr().err
    assert "forbidden" not in capsys.readouterr().err.lower()

    world.repo.commit({}, "a commit for gitmesh run to see")
    proc = Proc(world, "least-privilege", "--central-kubeconfig", str(kubeconfig))
    procs.append(proc)
    wait_for(lambda: world.status_commits() >= 2, timeout=60, what="a status commit")
    assert proc.stop() == 0
    assert proc.said("leadership acquired")
    assert "forbidden" not in proc.log.read_text().lower()

    role = next(d for d in build("base") if d["kind"] == "Role")
    role["rules"] = [r for r in role["rules"] if "pods" not in r["resources"]]
    role["rules"].append({"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]})
    _apply(world, [role])
    capsys.readouterr()
    assert cli.main(["reconcile", "--once", *args]) == 1
    status = world.status()["status/remote-eu.yaml"]
    assert 'cannot list resource "pods"' in status["message"], status


@pytest.mark.kube_apiserver_only  # localkube authorizes anything
def test_a_sharded_replica_runs_on_its_rbac(world: World, procs: list[Proc]) -> None:
    """On a real apiserver: overlays/sharded's ServiceAccount can join the shard group,
    reconcile, and leave (deleting its member Lease)."""
    _apply(world, build("sharded"))
    kubeconfig = _service_account_kubeconfig(world)
    proc = Proc(
        world,
        "shard-rbac",
        "--central-kubeconfig",
        str(kubeconfig),
        "--shard",
        "--lease-namespace",
        "gitmesh",
    )
    procs.append(proc)
    wait_for(lambda: world.status_commits() >= 1, timeout=60, what="a status commit")
    assert proc.stop() == 0
    assert proc.said("joined the shard group") and proc.said("left the shard group")
    assert "forbidden" not in proc.log.read_text().lower()
    assert world.names("central", "leases", "gitmesh", group="coordination.k8s.io") == []
