"""`gitmesh join`: gitmesh's own least-privilege access to a remote, through the CLI as a
user types it, on both backends (on kube-apiserver, RBAC really decides)."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import cli
from gitmesh.cluster import Cluster
from gitmesh.credentials import grants
from gitmesh.credentials import join as access
from gitmesh.errors import Forbidden
from tests.integration.conftest import TOKEN, World

EU = "remote-eu"
NS = "istio-system"


def admin_kubeconfig(world: World, name: str) -> Path:
    path = world.tmp / f"{name}-admin.kubeconfig"
    world.server.write_kubeconfig(path, name)
    return path


def join(world: World, *extra: str) -> int:
    return cli.main(
        [
            "join",
            EU,
            "--remote-kubeconfig",
            str(admin_kubeconfig(world, EU)),
            "--central-kubeconfig",
            str(world.tmp / "central.kubeconfig"),
            *extra,
        ]
    )


def stored(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    secret = world.get("central", "secrets", NS, EU)
    config = yaml.safe_load(base64.b64decode(secret["data"][EU]))
    return secret, config


@pytest.fixture
def joined(world: World, capsys: pytest.CaptureFixture[str]) -> World:
    """remote-eu's sandbox Secret (an admin token, as people paste them) replaced by what
    `gitmesh join` writes."""
    world.args  # writes central.kubeconfig  # noqa: B018
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    assert join(world) == 0, capsys.readouterr().err
    return world


def test_join_stores_a_token_of_its_own_and_reconcile_uses_it(
    joined: World, capsys: pytest.CaptureFixture[str]
) -> None:
    out = capsys.readouterr().out
    assert f"Secret {NS}/{EU} on central: created" in out
    assert "ClusterRole gitmesh-remote on remote-eu: created" in out
    secret, config = stored(joined)
    user = config["users"][0]["user"]
    assert set(user) == {"token"} and user["token"] != TOKEN  # never the admin credentials
    assert TOKEN not in base64.b64decode(secret["data"][EU]).decode()
    expires = datetime.datetime.fromisoformat(secret["metadata"]["annotations"][access.EXPIRES])
    left = expires - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=29) < left <= datetime.timedelta(days=30)
    assert joined.reconcile() == 0
    assert joined.status()[f"status/{EU}.yaml"]["state"] == "Available"


def test_the_roles_are_what_a_run_sends(joined: World) -> None:
    """Every (resource, verb) gitmesh sends to the remote over a first pass, a no-op, a
    spec change and the remote's removal is granted; what is granted but not sent is only
    re-reads after a conflict, patches that undo drift on kinds this run did not drift, the
    token's renewal, an IstiodRemote's (this run has none; test_istiod_remote.py runs
    one), the lists that tell a namespace empty, and the escalate and bind that let
    gitmesh grant citadel's and the injector's roles without holding them."""
    joined.server.reset_counts()
    assert joined.reconcile() == 0
    assert joined.reconcile() == 0
    joined.edit_remote_spec(
        EU, lambda d: d["spec"]["citadel"].update(replicaCount=2), "Two citadels"
    )
    assert joined.reconcile() == 0
    joined.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves")
    assert joined.reconcile() == 0
    used = {
        (resource, verb)
        for (cluster, verb, resource, code), _ in joined.server.requests.items()
        if cluster == EU and resource != "discovery" and code < 400
    }
    with Cluster(EU, joined.server.kubeconfig(EU)) as admin:
        listable = admin.namespaced_resources()
    granted = {(res, verb) for _, res, verb in grants.granted(NS, listable)}
    assert used <= granted, used - granted
    justified = {
        *((r, "get") for r, _ in granted),
        *((r, "patch") for r, _ in granted),
        *((r, "delete") for r, _ in granted),
        *((r.plural, "list") for r in listable),
        ("serviceaccounts/token", "create"),
        ("endpointslices", "create"),
        ("clusterroles", "escalate"),
        ("clusterroles", "bind"),
    }
    assert granted - used <= justified, granted - used - justified


def test_a_due_token_is_renewed_once(joined: World) -> None:
    _, config = stored(joined)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    joined.merge_patch(
        "central",
        "secrets",
        NS,
        EU,
        {"metadata": {"annotations": {access.EXPIRES: soon.strftime("%Y-%m-%dT%H:%M:%SZ")}}},
    )
    assert joined.reconcile() == 0
    renewed, new_config = stored(joined)
    assert new_config["users"][0]["user"]["token"] != config["users"][0]["user"]["token"]
    assert renewed["metadata"]["annotations"][access.EXPIRES] > soon.isoformat()
    assert renewed["metadata"]["labels"]["istio/multiCluster"] == "true"
    version = renewed["metadata"]["resourceVersion"]
    assert joined.reconcile() == 0
    assert stored(joined)[0]["metadata"]["resourceVersion"] == version


def test_dry_run_writes_nothing_and_a_foreign_secret_is_kept(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.args  # noqa: B018
    assert join(world, "--dry-run") == 1  # the sandbox's Secret is not join's
    assert "was not written by gitmesh join" in capsys.readouterr().err
    assert world.names(EU, "serviceaccounts", "gitmesh") == []
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    assert join(world, "--dry-run") == 0
    assert "would be written (dry run)" in capsys.readouterr().out
    assert "gitmesh" not in world.names(EU, "namespaces")
    assert grants.CLUSTER_ROLE not in world.names(
        EU, "clusterroles", group="rbac.authorization.k8s.io"
    )
    assert EU not in world.names("central", "secrets", NS)


@pytest.mark.kube_apiserver_only  # localkube authorizes every authenticated request
def test_the_token_cannot_do_what_gitmesh_does_not(joined: World) -> None:
    _, config = stored(joined)
    with Cluster(EU, config) as remote:
        from gitmesh import resources

        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"containers": [{"name": "x", "image": "x"}]},
        }
        with pytest.raises(Forbidden):
            remote.create(resources.POD, pod)
        with pytest.raises(Forbidden):
            remote.request_token("kube-system", "default", 3600)


@pytest.mark.kube_apiserver_only  # as above
def test_the_token_writes_namespaced_kinds_only_in_the_istio_namespace(joined: World) -> None:
    """Before: the ClusterRole join minted held create on Deployments and create and get on
    Secrets in every namespace, and list on */*: run a pod as any ServiceAccount, read
    every Secret. After: a Role in the Istio namespace holds those; elsewhere the token
    cannot create a Deployment, read or list a Secret, nor grant itself a role it does not
    name (while the pass above, its ClusterRoles granted by `escalate`, still works)."""
    from gitmesh import resources

    _, config = stored(joined)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "x"}]},
            },
        },
    }
    admin_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "gitmesh-wants-more"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }
    with Cluster(EU, config) as remote:
        with pytest.raises(Forbidden):
            remote.create(resources.BY_KIND["Deployment"], deployment)
        with pytest.raises(Forbidden):
            remote.get(resources.SECRET, "kube-system", "anything")
        with pytest.raises(Forbidden):
            remote.list(resources.SECRET)
        with pytest.raises(Forbidden):
            remote.create(resources.BY_KIND["ClusterRole"], admin_role)
        # In its own namespace, what it converges.
        remote.list(resources.SECRET, namespace=NS)
        remote.create(
            resources.BY_KIND["Deployment"],
            {**deployment, "metadata": {"name": "x", "namespace": NS}},
            dry_run=True,
        )
