"""IstiodRemote end to end: remote-eu joins an istiod primary (the central cluster) from git.

What one IstiodRemote makes is checked against Istio's charts at 1.30.3 (manifests/charts/
istio-control/istio-discovery/templates: reader-clusterrole.yaml with istiodRemote.enabled,
remote-istiod-service.yaml, remote-istiod-endpointslices.yaml, mutatingwebhook.yaml) and
`istioctl create-remote-secret` (istioctl/pkg/multicluster/remote_secret.go at 1.30.3)."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import cli, errors, resources
from gitmesh.cluster import Cluster
from gitmesh.credentials import join
from gitmesh.render import istiodremote
from gitmesh.testing import sandbox
from tests.integration.conftest import TOKEN, World
from tests.integration.running import started_runner, wait_for

EU = "remote-eu"
NS = "istio-system"
GATEWAY = "eastwest"  # not the default name: mesh.yaml's primary.eastWestGateway is honoured
SECRET = "istio-remote-secret-remote-eu"
DISCOVERY = "discovery.k8s.io"
ADMISSION = "admissionregistration.k8s.io"
RBAC = "rbac.authorization.k8s.io"
ISTIOD_REMOTE = {
    "apiVersion": "gitmesh.io/v1alpha1",
    "kind": "IstiodRemote",
    "metadata": {"name": EU},
    "spec": {"network": "network2", "injectionNamespaces": ["payments"]},
}


def join_primary(world: World) -> str:
    """The central cluster becomes the primary; remote-eu's file becomes an IstiodRemote."""
    root = sandbox.add_primary(world.server, "central", gateway=GATEWAY)
    mesh = yaml.safe_load((world.repo.work / "mesh.yaml").read_text())
    mesh["primary"] = {"eastWestGateway": GATEWAY}
    world.repo.commit(
        {"mesh.yaml": yaml.safe_dump(mesh), f"remotes/{EU}.yaml": yaml.safe_dump(ISTIOD_REMOTE)},
        "remote-eu joins the istiod primary",
    )
    return root


def remote_secret(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    secret = world.get("central", "secrets", NS, SECRET)
    return secret, yaml.safe_load(base64.b64decode(secret["data"][EU]))


def test_an_istiod_remote_gets_what_istios_charts_install(world: World) -> None:
    """Every object of the remote profile, the primary's remote Secret, Available; a second
    pass writes and commits nothing. remote-eu was a RemoteIstio first: its citadel and
    injector go when it switches models."""
    assert world.reconcile() == 0
    assert "istio-citadel" in world.names(EU, "deployments", NS, group="apps")
    root = join_primary(world)
    assert world.reconcile() == 0
    assert world.status()[f"status/{EU}.yaml"]["state"] == "Available"
    assert world.names(EU, "deployments", NS, group="apps") == []  # the old model's, pruned

    ns = world.get(EU, "namespaces", "", NS)
    assert ns["metadata"]["labels"][istiodremote.NETWORK_LABEL] == "network2"
    assert "istio-reader-service-account" in world.names(EU, "serviceaccounts", NS)
    role = world.get(EU, "clusterroles", "", "istio-reader-clusterrole-istio-system", group=RBAC)
    writes = {
        (res, verb)
        for rule in role["rules"]
        for res in rule["resources"]
        for verb in rule["verbs"]
        if verb not in ("get", "list", "watch")
    }
    # reader-clusterrole.yaml: reads, and with istiodRemote.enabled only these writes.
    assert writes == {
        ("serviceexports", "create"),
        ("serviceexports", "delete"),
        ("tokenreviews", "create"),
        ("subjectaccessreviews", "create"),
        ("configmaps", "create"),
        ("configmaps", "update"),
        ("mutatingwebhookconfigurations", "update"),
        ("mutatingwebhookconfigurations", "patch"),
        ("validatingwebhookconfigurations", "update"),
    }
    binding = world.get(
        EU, "clusterrolebindings", "", "istio-reader-clusterrole-istio-system", group=RBAC
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "istio-reader-service-account", "namespace": NS}
    ]
    svc = world.get(EU, "services", NS, "istiod")
    assert "selector" not in svc["spec"]
    assert [(p["port"], p.get("targetPort")) for p in svc["spec"]["ports"]] == [
        (15012, 15012),
        (443, 15017),
    ]
    eps = world.get(EU, "endpointslices", NS, "istiod", group=DISCOVERY)
    assert eps["endpoints"][0]["addresses"] == ["192.0.2.10"]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "istiod"
    assert sorted(p["port"] for p in eps["ports"]) == [15012, 15017]
    hook = world.get(
        EU, "mutatingwebhookconfigurations", "", "istio-sidecar-injector", group=ADMISSION
    )
    assert len(hook["webhooks"]) == 4
    for webhook in hook["webhooks"]:
        config = webhook["clientConfig"]
        assert config["service"] == {
            "name": "istiod",
            "namespace": NS,
            "path": "/inject/cluster/remote-eu/net/network2",
            "port": 443,
        }
        assert base64.b64decode(config["caBundle"]).decode() == root
    assert (
        world.get(EU, "namespaces", "", "payments")["metadata"]["labels"]["istio-injection"]
        == "enabled"
    )

    secret, config = remote_secret(world)
    assert secret["metadata"]["labels"]["istio/multiCluster"] == "true"
    assert secret["metadata"]["annotations"]["networking.istio.io/cluster"] == EU
    assert list(secret["data"]) == [EU]
    (user,) = config["users"]
    assert set(user["user"]) == {"token"} and user["user"]["token"] != TOKEN

    before, commits = world.writes(), world.status_commits()
    assert world.reconcile() == 0
    assert world.writes() == before
    assert world.status_commits() == commits


def test_a_namespace_gitmesh_created_is_a_no_op_on_the_next_pass(world: World) -> None:
    """The remote has no istio-system: gitmesh creates it with the network label and the
    control-plane annotation, recorded as it records them on a namespace it finds; the
    second pass writes and commits nothing (before: `common ~1`, the records added, and
    a status commit)."""
    world.delete_namespace(EU, NS)
    join_primary(world)
    assert world.reconcile() == 0
    ns = world.get(EU, "namespaces", "", NS)
    assert ns["metadata"]["labels"][istiodremote.NETWORK_LABEL] == "network2"
    before, commits = world.writes(), world.status_commits()
    assert world.reconcile() == 0
    assert world.writes() == before
    assert world.status_commits() == commits


def test_the_gateway_address_change_is_followed(world: World) -> None:
    join_primary(world)
    assert world.reconcile() == 0
    sandbox.set_gateway_address(world.server, "central", "192.0.2.20", gateway=GATEWAY)
    assert world.reconcile() == 0
    eps = world.get(EU, "endpointslices", NS, "istiod", group=DISCOVERY)
    assert eps["endpoints"][0]["addresses"] == ["192.0.2.20"]
    assert world.status()[f"endpoints/{EU}.yaml"]["services"]["istiod"] == [
        "192.0.2.20:15012",
        "192.0.2.20:15017",
    ]


def test_removal_takes_both_halves_and_nothing_foreign(world: World) -> None:
    join_primary(world)
    assert world.reconcile() == 0
    store = world.store(EU)
    store.create(store.kind("", "v1", "configmaps"), NS, {"metadata": {"name": "someone-elses"}})
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves the mesh")
    assert world.reconcile() == 0
    assert SECRET not in world.names("central", "secrets", NS)
    assert world.names(EU, "endpointslices", NS, group=DISCOVERY) == []
    assert world.names(EU, "services", NS) == []
    assert "istio-reader-service-account" not in world.names(EU, "serviceaccounts", NS)
    assert world.names(EU, "mutatingwebhookconfigurations", group=ADMISSION) == []
    labels = world.get(EU, "namespaces", "", NS)["metadata"]["labels"]
    assert istiodremote.NETWORK_LABEL not in labels
    assert "someone-elses" in world.names(EU, "configmaps", NS)


def test_an_invalid_file_prunes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    join_primary(world)
    assert world.reconcile() == 0
    broken = {**ISTIOD_REMOTE, "spec": {"network": "not a network"}}
    world.repo.commit({f"remotes/{EU}.yaml": yaml.safe_dump(broken)}, "a typo")
    assert world.reconcile() == 1
    assert "spec.network" in capsys.readouterr().err
    assert SECRET in world.names("central", "secrets", NS)
    assert world.names(EU, "endpointslices", NS, group=DISCOVERY) == ["istiod"]


@pytest.mark.kube_apiserver_only  # localkube authorizes every authenticated request
def test_the_remote_secret_reads_as_the_reader_only(world: World) -> None:
    join_primary(world)
    assert world.reconcile() == 0
    _, config = remote_secret(world)
    with Cluster("as-istiod", config) as reader:
        assert "istiod" in [
            s["metadata"]["name"] for s in reader.list(resources.SERVICE, namespace=NS)[0]
        ]
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": NS}}
        with pytest.raises(errors.Forbidden):
            reader.create(resources.SECRET, secret)
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "x", "image": "x"}]},
                },
            },
        }
        with pytest.raises(errors.Forbidden):
            reader.create(resources.BY_KIND["Deployment"], deployment)


@pytest.mark.kube_apiserver_only  # RBAC decides only on a real apiserver
def test_gitmesh_join_credentials_suffice_for_an_istiod_remote(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the least-privilege access `gitmesh join` sets up (no admin credentials), the
    remote profile's objects, including the reader ClusterRole gitmesh must hold to grant,
    and the reader token for the primary are all within reach."""
    world.args  # writes central.kubeconfig  # noqa: B018
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    admin = world.tmp / "eu-admin.kubeconfig"
    world.server.write_kubeconfig(admin, EU)
    joined = cli.main(
        [
            "join",
            EU,
            "--remote-kubeconfig",
            str(admin),
            "--central-kubeconfig",
            str(world.tmp / "central.kubeconfig"),
        ]
    )
    assert joined == 0, capsys.readouterr().err
    join_primary(world)
    assert world.reconcile() == 0, capsys.readouterr().err
    assert world.status()[f"status/{EU}.yaml"]["state"] == "Available"
    assert SECRET in world.names("central", "secrets", NS)


def test_gitmesh_run_follows_the_gateway_without_a_poll(world: World, tmp_path: Path) -> None:
    """In `gitmesh run`, a watch on the east-west gateway Service moves the istiod
    EndpointSlice when the load balancer's address changes (polls are an hour apart)."""
    join_primary(world)
    with started_runner(world, tmp_path / "cache"):
        eps = world.get(EU, "endpointslices", NS, "istiod", group=DISCOVERY)
        assert eps["endpoints"][0]["addresses"] == ["192.0.2.10"]
        sandbox.set_gateway_address(world.server, "central", "192.0.2.30", gateway=GATEWAY)

        def moved() -> bool:
            found = world.get(EU, "endpointslices", NS, "istiod", group=DISCOVERY)
            return bool(found["endpoints"][0]["addresses"] == ["192.0.2.30"])

        wait_for(moved, timeout=30, what="the istiod EndpointSlice to follow the gateway")


def test_plan_shows_both_halves_in_every_format(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    join_primary(world)
    capsys.readouterr()
    assert world.plan("--format", "json") == 0
    plan = json.loads(capsys.readouterr().out)
    eu = next(r for r in plan["remotes"] if r["name"] == EU)
    made = {(c["action"], c["kind"], c["name"]) for c in eu["changes"]}
    assert ("create", "EndpointSlice", "istiod") in made
    assert ("create", "Secret", SECRET) in made
    for fmt in ("text", "markdown"):
        assert world.plan("--format", fmt) == 0
        out = capsys.readouterr().out
        assert "EndpointSlice" in out and SECRET in out
    assert SECRET not in world.names("central", "secrets", NS)  # plan writes nothing


def test_the_reader_token_is_renewed_when_due_and_only_then(world: World) -> None:
    join_primary(world)
    assert world.reconcile() == 0
    _, config = remote_secret(world)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    world.merge_patch(
        "central",
        "secrets",
        NS,
        SECRET,
        {"metadata": {"annotations": {join.EXPIRES: soon.strftime("%Y-%m-%dT%H:%M:%SZ")}}},
    )
    assert world.reconcile() == 0
    renewed, new_config = remote_secret(world)
    assert new_config["users"][0]["user"]["token"] != config["users"][0]["user"]["token"]
    version = renewed["metadata"]["resourceVersion"]
    assert world.reconcile() == 0
    assert remote_secret(world)[0]["metadata"]["resourceVersion"] == version


def test_what_the_primary_lacks_is_a_warning_the_remote_stays_available(world: World) -> None:
    """The gateway not exposing 15017, the primary's istiod without EXTERNAL_ISTIOD=true
    (pilot/pkg/features/pilot.go at istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad:
    without it istiod never leads a remote), and a loopback API server address in the remote
    Secret (istioctl's create-remote-secret warns too) are each a warning in the status."""
    join_primary(world)
    store = world.store("central")
    gateway = world.get("central", "services", NS, GATEWAY)
    gateway["spec"]["ports"] = [p for p in gateway["spec"]["ports"] if p["port"] != 15017]
    store.update(store.kind("", "v1", "services"), NS, GATEWAY, gateway)
    store.create(
        store.kind("apps", "v1", "deployments"),
        NS,
        {
            "metadata": {"name": "istiod"},
            "spec": {
                "selector": {"matchLabels": {"app": "istiod"}},
                "template": {
                    "metadata": {"labels": {"app": "istiod"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "discovery",
                                "image": "istio/pilot",
                                "env": [{"name": "CLUSTER_ID", "value": "central"}],
                            }
                        ]
                    },
                },
            },
        },
    )
    assert world.reconcile() == 0
    status = world.status()[f"status/{EU}.yaml"]
    assert status["state"] == "Available"
    text = "\n".join(status["warnings"])
    assert f"{NS}/{GATEWAY} does not expose port 15017" in text
    assert "does not set EXTERNAL_ISTIOD=true" in text
    assert "a loopback address" in text  # the test clusters listen on 127.0.0.1
    deployment = world.get("central", "deployments", NS, "istiod", group="apps")
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "EXTERNAL_ISTIOD", "value": "true"}
    )
    store.update(store.kind("apps", "v1", "deployments"), NS, "istiod", deployment)
    assert world.reconcile() == 0
    text = "\n".join(world.status()[f"status/{EU}.yaml"]["warnings"])
    assert "EXTERNAL_ISTIOD" not in text and "does not expose port 15017" in text


def test_spec_server_is_the_address_istiod_gets(world: World) -> None:
    """spec.server (istioctl create-remote-secret --server) replaces the server gitmesh
    reaches the remote by in the remote Secret; changing it rewrites the Secret."""
    join_primary(world)
    port = world.server.url(EU).rsplit(":", 1)[1]
    server = f"https://localhost:{port}"
    world.edit_remote_spec(EU, lambda d: d["spec"].update(server=server), "istiod's view")
    assert world.reconcile() == 0
    _, config = remote_secret(world)
    assert config["clusters"][0]["cluster"]["server"] == server
    world.edit_remote_spec(EU, lambda d: d["spec"].pop("server"), "gitmesh's view")
    assert world.reconcile() == 0
    _, config = remote_secret(world)
    assert config["clusters"][0]["cluster"]["server"] == world.server.url(EU)


@pytest.mark.parametrize("model", ["RemoteIstio", "IstiodRemote"])
@pytest.mark.parametrize("shape", ["created", "existing", "foreign-labels", "owned-labels"])
def test_every_shape_of_first_pass_is_followed_by_a_no_op(
    world: World, model: str, shape: str
) -> None:
    """Whatever the remote looked like before the first pass — its Istio namespace made by
    gitmesh or already there, carrying someone else's labels and annotations, or already
    carrying the very labels gitmesh sets (injection, network) — the second pass writes
    nothing and commits nothing, for both models."""
    if shape == "created":
        world.delete_namespace(EU, NS)
    elif shape == "foreign-labels":
        for ns in (NS, "payments"):
            world.merge_patch(
                EU,
                "namespaces",
                "",
                ns,
                {"metadata": {"labels": {"team": "mesh"}, "annotations": {"owner": "ops"}}},
            )
    elif shape == "owned-labels":
        owned = {NS: istiodremote.NETWORK_LABEL, "payments": "istio-injection"}
        values = {NS: "network2", "payments": "enabled"}
        for ns, label in owned.items():
            world.merge_patch(
                EU, "namespaces", "", ns, {"metadata": {"labels": {label: values[ns]}}}
            )
    if model == "IstiodRemote":
        join_primary(world)
    assert world.reconcile() == 0
    assert world.status()[f"status/{EU}.yaml"]["state"] == "Available"
    before, commits = world.writes(), world.status_commits()
    assert world.reconcile() == 0
    assert world.writes() == before
    assert world.status_commits() == commits
    if shape == "foreign-labels":  # what was not gitmesh's is still there
        meta = world.get(EU, "namespaces", "", NS)["metadata"]
        assert (meta["labels"]["team"], meta["annotations"]["owner"]) == ("mesh", "ops")
