"""IstiodRemote judged by a real istiod: istiod built from source (tools/build-istiod.sh,
istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad, Istio master at 1.31) as the primary of
a primary-remote install, on real kube-apiservers (central and two remotes), through the
CLI as a user works: `gitmesh join`, a mesh repository of IstiodRemotes, `gitmesh
reconcile --once` and `gitmesh run`.

Everything runs in the session's own network namespace (tests/conftest.py): the remotes'
kube-apiservers call istiod's webhook at TEST-NET-1 addresses or loopback, never off the
machine. Two cluster sets, because kube-apiserver's aggregator routing is per process:
the gateway-IP path (`--enable-aggregator-routing`: webhooks by Service are called at the
EndpointSlice gitmesh writes) and the gateway-hostname path (an ExternalName Service
`localhost`, istiod's webhook on 443; aggregator routing refuses ExternalName).

The debug views are istiod's (pilot/pkg/xds/debug.go): /debug/clusterz (each remote's id,
secretName, syncStatus), /debug/registryz, /debug/endpointShardz."""

from __future__ import annotations

import base64
import datetime
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import cli
from gitmesh.credentials import join
from gitmesh.localkube import istiod as real_istiod
from gitmesh.localkube.apiserver import ASSETS_ENV, BUILD_SCRIPT, KubeAPIServer, free_port
from gitmesh.testing import sandbox
from tests.gitutil import ROOT, MeshRemote
from tests.integration.conftest import TOKEN, World, require_real_tier
from tests.integration.running import Proc, wait_for

pytestmark = pytest.mark.istiod

NS = "istio-system"
APPS = "apps"
REMOTES = ("remote-a", "remote-b")
NETWORKS = {"remote-a": "network-a", "remote-b": "network-b"}
GATEWAY = "istio-eastwestgateway"


def _remote_file(name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitmesh.io/v1alpha1",
            "kind": "IstiodRemote",
            "metadata": {"name": name},
            "spec": {"network": NETWORKS[name], "injectionNamespaces": [APPS]},
        }
    )


class RealMesh(World):
    istiod: real_istiod.Istiod

    def clusterz(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.istiod.debug("clusterz")}

    def synced(self, *names: str) -> dict[str, dict[str, Any]] | None:
        """clusterz, once every one of `names` is in it and synced."""
        found = self.clusterz()
        ok = all(found.get(n, {}).get("syncStatus") == "synced" for n in names)
        return found if ok else None

    def join(self, name: str) -> int:
        admin = self.tmp / f"{name}-admin.kubeconfig"
        self.server.write_kubeconfig(admin, name)
        return cli.main(
            [
                "join",
                name,
                "--remote-kubeconfig",
                str(admin),
                "--central-kubeconfig",
                self._central(),
            ]
        )

    def _central(self) -> str:
        self.args  # noqa: B018 - writes central.kubeconfig
        return str(self.tmp / "central.kubeconfig")


def _gateway(kube: KubeAPIServer, address: dict[str, str]) -> None:
    """The east-west gateway Service exposing istiod (samples/multicluster/
    gen-eastwest-gateway.sh: tls-istiod 15012, tls-webhook 15017), with its address."""
    store = kube.store("central")
    kind = store.kind("", "v1", "services")
    store.create(
        kind,
        NS,
        {
            "metadata": {"name": GATEWAY, "labels": {"istio": "eastwestgateway"}},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"istio": "eastwestgateway"},
                "ports": [
                    {"name": "tls-istiod", "port": 15012, "targetPort": 15012},
                    {"name": "tls-webhook", "port": 15017, "targetPort": 15017},
                ],
            },
        },
    )
    move_gateway(kube, address)


def move_gateway(kube: KubeAPIServer, address: dict[str, str]) -> None:
    store = kube.store("central")
    store.patch(
        store.kind("", "v1", "services"),
        NS,
        GATEWAY,
        "application/merge-patch+json",
        {"status": {"loadBalancer": {"ingress": [address]}}},
        subresource="status",
    )


def _mesh(
    tmp: Path,
    *,
    address: dict[str, str],
    aggregator_routing: bool,
    webhook_port: int,
    xds_port: int = 15012,
) -> Iterator[RealMesh]:
    missing = None
    if not os.environ.get(ASSETS_ENV):
        missing = f"${ASSETS_ENV} is unset: build with `bash {BUILD_SCRIPT}`"
    elif not os.environ.get(real_istiod.ISTIOD_ENV):
        missing = (
            f"${real_istiod.ISTIOD_ENV} is unset: build with `bash {real_istiod.BUILD_SCRIPT}`"
        )
    require_real_tier(missing)
    assets = real_istiod.assets_dir()
    with KubeAPIServer(
        clusters=["central", *REMOTES], token=TOKEN, aggregator_routing=aggregator_routing
    ) as kube:
        real_istiod.install_crds(kube.store("central"), assets)
        sandbox.ensure_namespace(kube, "central", NS)
        _gateway(kube, address)
        for name in REMOTES:
            # A workload's Service on each remote, for istiod's registry.
            sandbox.ensure_namespace(kube, name, APPS)
            store = kube.store(name)
            store.create(
                store.kind("", "v1", "services"),
                APPS,
                {
                    "metadata": {"name": f"web-{name}"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "name": "http"}]},
                },
            )
        with real_istiod.Istiod(
            kube.kubeconfig("central"),
            cluster_id="central",
            webhook_port=webhook_port,
            xds_port=xds_port,
        ) as istiod:
            _wait_root_cert(kube, "central", NS)
            (tmp / "git").mkdir()
            repo = MeshRemote(tmp / "git", ROOT / "example-repo/istiod")
            mesh_yaml = yaml.safe_load((repo.work / "mesh.yaml").read_text())
            mesh_yaml["primary"]["clusterID"] = "central"
            repo.commit(
                {
                    "mesh.yaml": yaml.safe_dump(mesh_yaml),
                    "remotes/remote-west.yaml": None,
                    **{f"remotes/{n}.yaml": _remote_file(n) for n in REMOTES},
                },
                "two remotes join the istiod primary",
            )
            world = RealMesh(kube, sandbox.Mesh(kube, "central", list(REMOTES), b""), repo, tmp)
            world.istiod = istiod
            for name in REMOTES:
                assert world.join(name) == 0
            assert world.reconcile() == 0
            assert {s["state"] for s in world.status().values() if "state" in s} == {"Available"}
            yield world


def _wait_root_cert(kube: KubeAPIServer, cluster: str, namespace: str) -> str:
    store = kube.store(cluster)

    def published() -> str | None:
        try:
            cm = store.get(store.kind("", "v1", "configmaps"), namespace, "istio-ca-root-cert")
        except Exception:
            return None
        return str((cm.get("data") or {}).get("root-cert.pem") or "") or None

    return str(wait_for(published, timeout=60, what=f"istio-ca-root-cert in {cluster}/{namespace}"))


@pytest.fixture(scope="module")
def by_ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealMesh]:
    """The gateway-IP path: the gateway at 192.0.2.10, remotes with aggregator routing."""
    yield from _mesh(
        tmp_path_factory.mktemp("by-ip"),
        address={"ip": "192.0.2.10"},
        aggregator_routing=True,
        webhook_port=15017,
    )


@pytest.fixture(scope="module")
def by_hostname(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealMesh]:
    """The gateway-hostname path: the gateway at `localhost`, istiod's webhook on 443
    (its xDS port elsewhere: the gateway-IP path's istiod may still hold 15012)."""
    yield from _mesh(
        tmp_path_factory.mktemp("by-hostname"),
        address={"hostname": "localhost"},
        aggregator_routing=False,
        webhook_port=443,
        xds_port=free_port(),
    )


def injected(world: RealMesh, name: str, pod: str) -> dict[str, str]:
    """Create a pod on remote `name` in the injection namespace; the env of the sidecar
    the real istiod injected into it (no kubelet runs it)."""
    store = world.store(name)
    wait_for(
        lambda: "default" in world.names(name, "serviceaccounts", APPS),
        what=f"the default ServiceAccount of {name}/{APPS}",
    )
    obj = store.request(
        "POST",
        f"/api/v1/namespaces/{APPS}/pods",
        {
            "metadata": {"name": pod, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "localkube/pause:1"}]},
        },
    )
    # On Kubernetes >= 1.29 istiod injects istio-proxy as a native sidecar: an init
    # container with restartPolicy Always (pkg/kube/inject: DetectNativeSidecar).
    spec = obj["spec"]
    containers = {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}
    assert "istio-proxy" in containers, (
        f"no sidecar in {sorted(containers)}; istiod said:\n{world.istiod.tail(40)}"
    )
    return {e["name"]: e.get("value", "") for e in containers["istio-proxy"].get("env", [])}


def test_istiod_reads_each_remote_from_its_remote_secret(by_ip: RealMesh) -> None:
    """1. Each remote synced in clusterz, from istio-remote-secret-<name>; its Services in
    the registry; its EndpointSlices in the endpoint shards."""
    found = wait_for(lambda: by_ip.synced(*REMOTES), timeout=60, what="both remotes synced")
    for name in REMOTES:
        assert found[name]["secretName"] == f"{NS}/istio-remote-secret-{name}"
    registry = by_ip.istiod.debug("registryz")
    hosts = {s["hostname"] for s in registry}
    for name in REMOTES:
        assert f"web-{name}.{APPS}.svc.cluster.local" in hosts
    shards = by_ip.istiod.debug("endpointShardz")
    istiod_shards = shards[f"istiod.{NS}.svc.cluster.local"][NS]["Shards"]
    for name in REMOTES:
        (shard,) = [v for k, v in istiod_shards.items() if k.endswith(f"/{name}")]
        assert {a for e in shard for a in e["Addresses"]} == {"192.0.2.10"}
        assert {e["EndpointPort"] for e in shard} == {15012, 15017}
        assert {e["Network"] for e in shard} == {NETWORKS[name]}


def test_pods_get_the_sidecar_with_the_remote_cluster_and_network(by_ip: RealMesh) -> None:
    """2. kube-apiserver calls istiod at the gateway IP (the EndpointSlice gitmesh wrote)
    on gitmesh's injection path, trusting gitmesh's caBundle."""
    for name in REMOTES:
        env = injected(by_ip, name, "web-0")
        assert env["ISTIO_META_CLUSTER_ID"] == name
        assert env["ISTIO_META_NETWORK"] == NETWORKS[name]


def test_istiod_writes_its_root_into_the_remote_namespaces(by_ip: RealMesh) -> None:
    """3. The primary manages the remote's config (topology.istio.io/controlPlaneClusters):
    istio-ca-root-cert appears in the injection namespace, the root central has."""
    root = _wait_root_cert(by_ip.server, "central", NS)  # type: ignore[arg-type]
    for name in REMOTES:
        assert _wait_root_cert(by_ip.server, name, APPS) == root  # type: ignore[arg-type]


def test_after_restarts_istiod_reads_only_the_remote_secrets(by_ip: RealMesh) -> None:
    """4. istiod restarted, again and again: every remote is read through
    istio-remote-secret-<name>, never gitmesh's own Secret (which carries no
    istio/multiCluster label)."""
    for name in REMOTES:
        labels = by_ip.get("central", "secrets", NS, name)["metadata"].get("labels") or {}
        assert "istio/multiCluster" not in labels
    for _ in range(3):
        by_ip.istiod.restart()
        found = wait_for(lambda: by_ip.synced(*REMOTES), timeout=60, what="synced after restart")
        assert {n: found[n]["secretName"] for n in REMOTES} == {
            n: f"{NS}/istio-remote-secret-{n}" for n in REMOTES
        }


def test_a_renewed_reader_token_keeps_the_remote_synced(by_ip: RealMesh) -> None:
    """6. The reader token's renewal (made due here) writes a new token; istiod reloads
    the Secret and stays synced."""
    name = REMOTES[0]
    secret_name = f"istio-remote-secret-{name}"

    def token() -> str:
        secret = by_ip.get("central", "secrets", NS, secret_name)
        config = yaml.safe_load(base64.b64decode(secret["data"][name]))
        return str(config["users"][0]["user"]["token"])

    before = token()
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
    by_ip.merge_patch(
        "central",
        "secrets",
        NS,
        secret_name,
        {"metadata": {"annotations": {join.EXPIRES: soon.isoformat()}}},
    )
    time.sleep(1.1)  # a token minted within the same second would be the same
    assert by_ip.reconcile() == 0
    assert token() != before
    wait_for(lambda: by_ip.synced(*REMOTES), timeout=60, what="synced after renewal")
    env = injected(by_ip, name, "web-after-renewal")
    assert env["ISTIO_META_CLUSTER_ID"] == name


def test_gitmesh_run_follows_the_gateway_and_so_does_istiod(
    by_ip: RealMesh, procs: list[Proc]
) -> None:
    """5. The gateway's address moves: `gitmesh run` rewrites the remotes' istiod
    EndpointSlice, and istiod's endpoint shard for each remote follows."""
    run = Proc(by_ip, "run", "--interval", "3600")
    procs.append(run)
    wait_for(lambda: run.get("/readyz")[0] == 200, timeout=60, what="gitmesh run ready")
    move_gateway(by_ip.server, {"ip": "192.0.2.20"})  # type: ignore[arg-type]

    def followed() -> bool:
        shards = by_ip.istiod.debug("endpointShardz")[f"istiod.{NS}.svc.cluster.local"][NS]
        addresses = {
            k.rsplit("/", 1)[-1]: {a for e in v for a in e["Addresses"]}
            for k, v in shards["Shards"].items()
        }
        return all(addresses.get(n) == {"192.0.2.20"} for n in REMOTES)

    wait_for(followed, timeout=60, what="istiod's shards at the new gateway address")
    assert run.stop() == 0
    move_gateway(by_ip.server, {"ip": "192.0.2.10"})  # type: ignore[arg-type]
    assert by_ip.reconcile() == 0


def test_a_removed_remote_leaves_istiod_and_the_other_stays(by_ip: RealMesh) -> None:
    """7. remote-b's file removed: its remote Secret goes first, istiod drops it from
    clusterz; remote-a stays synced."""
    gone, kept = REMOTES[1], REMOTES[0]
    by_ip.repo.commit({f"remotes/{gone}.yaml": None}, f"{gone} leaves the mesh")
    assert by_ip.reconcile() == 0
    assert f"istio-remote-secret-{gone}" not in by_ip.names("central", "secrets", NS)
    wait_for(lambda: gone not in by_ip.clusterz(), timeout=60, what=f"{gone} out of clusterz")
    assert by_ip.synced(kept)


def test_the_gateway_hostname_path_injects_too(by_hostname: RealMesh) -> None:
    """2, by the gateway-hostname path: the remote's istiod Service is an ExternalName
    (`localhost`), kube-apiserver calls https://localhost:443 on gitmesh's path."""
    found = wait_for(lambda: by_hostname.synced(*REMOTES), timeout=60, what="synced")
    assert {n: found[n]["secretName"] for n in REMOTES} == {
        n: f"{NS}/istio-remote-secret-{n}" for n in REMOTES
    }
    for name in REMOTES:
        svc = by_hostname.get(name, "services", NS, "istiod")
        assert svc["spec"]["type"] == "ExternalName"
        env = injected(by_hostname, name, "web-0")
        assert env["ISTIO_META_CLUSTER_ID"] == name
        assert env["ISTIO_META_NETWORK"] == NETWORKS[name]
