"""gitmesh.credentials.join's pure parts: when a token is due, and the kubeconfig join stores."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import yaml

from gitmesh import kubeconfigs
from gitmesh.credentials import grants, join
from gitmesh.resources import Resource

NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def test_a_token_is_due_with_a_third_of_its_life_left() -> None:
    life = 30 * DAY
    assert not join.due(NOW + 11 * DAY, life, NOW)
    assert join.due(NOW + 10 * DAY, life, NOW)
    assert join.due(NOW - DAY, life, NOW)  # expired


def test_the_stored_kubeconfig_holds_the_token_and_the_ca_inline(tmp_path: Path) -> None:
    """A CA file of the admin's kubeconfig is inlined (a Secret's kubeconfig may not name
    local files); the admin's user entry is not copied."""
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    text = join.kubeconfig(
        "eu", {"server": "https://eu.example:6443", "certificate-authority": str(ca)}, "tok"
    )
    config = kubeconfigs.parse(text, where="test", from_secret=True)
    cluster, user = kubeconfigs.current(config)
    assert user == {"token": "tok"}
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.read_bytes()
    assert "certificate-authority" not in cluster
    assert yaml.safe_load(text)["current-context"] == "eu"


LISTABLE = [
    Resource("v1", "Pod", "pods", True),
    Resource("v1", "ConfigMap", "configmaps", True),
    Resource("apps/v1", "ReplicaSet", "replicasets", True),
]


def test_no_wildcard_and_namespaced_kinds_only_in_the_namespace() -> None:
    """Before: one ClusterRole with create on deployments and create+get on secrets in
    every namespace, and list on */* (every Secret in the cluster). After: namespaced kinds
    only in the Role of the Istio namespace; cluster-wide, only the cluster-scoped kinds
    gitmesh writes, patched and deleted by name; no wildcard anywhere."""
    cluster = grants.cluster_rules("istio-system")
    role = grants.namespace_rules(LISTABLE)
    for rule in [*cluster, *role, *grants.TOKEN_RULES]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
    assert {r for rule in cluster for r in rule["resources"]} == {
        "namespaces",
        "clusterroles",
        "clusterrolebindings",
        "mutatingwebhookconfigurations",
    }
    for rule in cluster:
        named = set(rule["verbs"]) & {"patch", "delete", "escalate", "bind"}
        # Namespaces are patched by no name: the injection label goes on those a spec names.
        if named - ({"patch"} if rule["resources"] == ["namespaces"] else set()):
            assert rule.get("resourceNames"), rule
    writes = {(r, v) for rule in role for r in rule["resources"] for v in rule["verbs"]}
    assert {("deployments", "create"), ("secrets", "get"), ("pods", "list")} <= writes
    assert ("pods", "create") not in writes
    assert ("", "serviceaccounts/token", "create") in grants.granted("istio-system", LISTABLE)


def test_the_roles_gitmesh_may_escalate_are_the_ones_it_renders() -> None:
    names = grants.managed_names("mesh")
    assert names["clusterroles"] == [
        "istio-citadel-mesh",
        "istio-sidecar-injector-mesh",
        "istio-reader-clusterrole-mesh",
    ]
    assert names["mutatingwebhookconfigurations"] == [
        "istio-sidecar-injector",
        "istio-sidecar-injector-mesh",
    ]
