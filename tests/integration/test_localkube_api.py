"""localkube driven by the official `kubernetes` client (typed and dynamic), over HTTP and
HTTPS: every behaviour the emulator promises, as kube-apiserver has it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes import dynamic
from kubernetes.client import ApiException

from gitmesh.localkube import Server
from tests.conftest import ClientFor

CM = "configmaps"


@pytest.fixture(params=["http", "https"])
def kube(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One localkube cluster `local`, over HTTP and over HTTPS with a bearer token."""
    with Server(clusters=["local", "other"], tls=request.param == "https") as server:
        yield server


@pytest.fixture
def core(kube: Server, client_for: ClientFor) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client_for(kube, "local"))


@pytest.fixture
def apps(kube: Server, client_for: ClientFor) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(client_for(kube, "local"))


@pytest.fixture
def dyn(kube: Server, client_for: ClientFor) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(client_for(kube, "local"))


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def status_of(e: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(e.body)
    return body


DEPLOYMENT = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    },
                    {"name": "side", "image": "busybox:1.36"},
                ]
            },
        },
    },
}

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "remoteistios.istio.banzaicloud.io"},
    "spec": {
        "group": "istio.banzaicloud.io",
        "scope": "Namespaced",
        "names": {
            "plural": "remoteistios",
            "singular": "remoteistio",
            "kind": "RemoteIstio",
            "listKind": "RemoteIstioList",
        },
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {"status": {}},
            }
        ],
    },
}


class TestObjects:
    def test_create_sets_uid_timestamp_and_resource_version(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """A created object gets a uid, a creationTimestamp and a resourceVersion."""
        made = core.create_namespaced_config_map("default", cm("a", x="1"))
        assert made.metadata.uid and made.metadata.creation_timestamp
        assert int(made.metadata.resource_version) > 0

    def test_create_existing_name_is_409_already_exists(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """Creating a name that exists is 409 AlreadyExists with a Status body."""
        core.create_namespaced_config_map("default", cm("a"))
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map("default", cm("a"))
        assert e.value.status == 409
        body = status_of(e.value)
        assert body["kind"] == "Status" and body["reason"] == "AlreadyExists"
        assert body["details"] == {"name": "a", "kind": "configmaps"}

    def test_stale_update_is_409_conflict(self, core: kubernetes.client.CoreV1Api) -> None:
        """A PUT carrying an old resourceVersion is refused with 409 Conflict."""
        made = core.create_namespaced_config_map("default", cm("a", x="1"))
        fresh = core.read_namespaced_config_map("a", "default")
        fresh.data = {"x": "2"}
        core.replace_namespaced_config_map("a", "default", fresh)
        made.data = {"x": "3"}
        with pytest.raises(ApiException) as e:
            core.replace_namespaced_config_map("a", "default", made)
        assert e.value.status == 409 and status_of(e.value)["reason"] == "Conflict"
        assert core.read_namespaced_config_map("a", "default").data == {"x": "2"}

    def test_update_that_changes_nothing_writes_nothing(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """An update equal to what is stored keeps the resourceVersion."""
        made = core.create_namespaced_config_map("default", cm("a", x="1"))
        same = core.replace_namespaced_config_map("a", "default", made)
        assert same.metadata.resource_version == made.metadata.resource_version

    def test_resource_version_rises_on_every_write_across_kinds(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """One counter per cluster: every write of any kind gets a higher resourceVersion."""
        rvs = [
            core.create_namespaced_config_map("default", cm("a")).metadata.resource_version,
            core.create_namespaced_secret(
                "default", {"metadata": {"name": "s"}}
            ).metadata.resource_version,
            core.patch_namespaced_config_map(
                "a", "default", {"data": {"k": "v"}}
            ).metadata.resource_version,
        ]
        assert [int(r) for r in rvs] == sorted(int(r) for r in rvs)
        assert len(set(rvs)) == 3

    def test_clusters_are_isolated(self, kube: Server, client_for: ClientFor) -> None:
        """An object created in one cluster does not exist in another."""
        one = kubernetes.client.CoreV1Api(client_for(kube, "local"))
        two = kubernetes.client.CoreV1Api(client_for(kube, "other"))
        one.create_namespaced_config_map("default", cm("only-here"))
        with pytest.raises(ApiException) as e:
            two.read_namespaced_config_map("only-here", "default")
        assert e.value.status == 404

    def test_create_in_missing_namespace_is_404(self, core: kubernetes.client.CoreV1Api) -> None:
        """A namespaced create into a namespace that does not exist is 404."""
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map("nowhere", cm("a"))
        assert e.value.status == 404
        assert status_of(e.value)["details"] == {"name": "nowhere", "kind": "namespaces"}

    @pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "a" * 254])
    def test_invalid_name_is_422(self, core: kubernetes.client.CoreV1Api, name: str) -> None:
        """Names that are not RFC 1123 subdomains are 422 Invalid naming the field."""
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map("default", cm(name))
        body = status_of(e.value)
        assert e.value.status == 422 and body["reason"] == "Invalid"
        assert body["details"]["causes"][0]["field"] == "metadata.name"

    def test_resource_version_on_create_is_refused(self, core: kubernetes.client.CoreV1Api) -> None:
        """As etcd3's store does, a create that carries a resourceVersion fails."""
        body = cm("a")
        body["metadata"]["resourceVersion"] = "5"
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map("default", body)
        assert e.value.status == 500

    def test_generation_bumps_on_spec_change_only(self, apps: kubernetes.client.AppsV1Api) -> None:
        """metadata.generation rises when the spec changes, not when labels do."""
        made = apps.create_namespaced_deployment("default", DEPLOYMENT)
        assert made.metadata.generation == 1
        relabelled = apps.patch_namespaced_deployment(
            "web", "default", {"metadata": {"labels": {"extra": "x"}}}
        )
        assert relabelled.metadata.generation == 1
        scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
        assert scaled.metadata.generation == 2

    def test_service_gets_cluster_ip_unless_headless(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """A Service gets a clusterIP and default port fields; a headless one keeps None."""
        svc = core.create_namespaced_service(
            "default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        )
        assert svc.spec.cluster_ip and svc.spec.cluster_ip != "None"
        assert svc.spec.ports[0].protocol == "TCP" and svc.spec.ports[0].target_port == 80
        headless = core.create_namespaced_service(
            "default",
            {"metadata": {"name": "hl"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
        )
        assert headless.spec.cluster_ip == "None"


class TestLists:
    @pytest.fixture(autouse=True)
    def objects(self, core: kubernetes.client.CoreV1Api) -> None:
        for name, labels in [
            ("a", {"tier": "web", "env": "prod"}),
            ("b", {"tier": "db", "env": "prod"}),
            ("c", {"tier": "web"}),
            ("d", {}),
        ]:
            core.create_namespaced_config_map("default", cm(name, labels))

    @pytest.mark.parametrize(
        ("selector", "expected"),
        [
            ("tier=web", ["a", "c"]),
            ("tier==web", ["a", "c"]),
            ("tier!=web", ["b", "d"]),
            ("tier in (web,db)", ["a", "b", "c"]),
            ("tier notin (web)", ["b", "d"]),
            ("env", ["a", "b"]),
            ("!env", ["c", "d"]),
            ("tier=web,env=prod", ["a"]),
        ],
    )
    def test_label_selectors(
        self, core: kubernetes.client.CoreV1Api, selector: str, expected: list[str]
    ) -> None:
        """Each label selector operator selects what Kubernetes would."""
        got = core.list_namespaced_config_map("default", label_selector=selector)
        assert [i.metadata.name for i in got.items] == expected

    def test_field_selectors(self, core: kubernetes.client.CoreV1Api) -> None:
        """metadata.name and metadata.namespace field selectors, = and !=."""
        got = core.list_config_map_for_all_namespaces(
            field_selector="metadata.name!=a,metadata.namespace=default"
        )
        assert [i.metadata.name for i in got.items] == ["b", "c", "d"]

    def test_unknown_field_selector_is_400(self, core: kubernetes.client.CoreV1Api) -> None:
        """Field selectors are limited to what the kind supports."""
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map("default", field_selector="data.x=1")
        assert e.value.status == 400

    def test_pod_phase_field_selector(
        self, kube: Server, core: kubernetes.client.CoreV1Api
    ) -> None:
        """Pods can be selected by status.phase."""
        kube.add_pod("local", "default", "running", labels={"app": "x"})
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "pending"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
        got = core.list_namespaced_pod("default", field_selector="status.phase=Running")
        assert [p.metadata.name for p in got.items] == ["running"]

    def test_limit_and_continue_page_through_everything(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """Pages of `limit` items chained by `continue` return each object once, in order."""
        first = core.list_namespaced_config_map("default", limit=3)
        assert [i.metadata.name for i in first.items] == ["a", "b", "c"]
        assert first.metadata._continue and first.metadata.remaining_item_count == 1
        rest = core.list_namespaced_config_map(
            "default", limit=3, _continue=first.metadata._continue
        )
        assert [i.metadata.name for i in rest.items] == ["d"]
        assert not rest.metadata._continue


class TestWatch:
    def test_watch_resumes_from_resource_version(self, core: kubernetes.client.CoreV1Api) -> None:
        """A watch from resourceVersion N replays every later change, in order."""
        start = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", cm("a", x="1"))
        core.patch_namespaced_config_map("a", "default", {"data": {"x": "2"}})
        core.delete_namespaced_config_map("a", "default")
        events = list(
            kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=start,
                timeout_seconds=1,
            )
        )
        assert [(e["type"], e["object"].metadata.name) for e in events] == [
            ("ADDED", "a"),
            ("MODIFIED", "a"),
            ("DELETED", "a"),
        ]
        rvs = [int(e["object"].metadata.resource_version) for e in events]
        assert rvs == sorted(rvs) and rvs[0] > int(start)

    def test_watch_sees_live_changes(self, core: kubernetes.client.CoreV1Api) -> None:
        """Changes made while a watch is open arrive on it."""
        seen: list[tuple[str, str]] = []
        rv = core.list_namespaced_config_map("default").metadata.resource_version

        def consume() -> None:
            for e in kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2
            ):
                seen.append((e["type"], e["object"].metadata.name))
                if len(seen) == 2:
                    return

        t = threading.Thread(target=consume)
        t.start()
        time.sleep(0.2)
        core.create_namespaced_config_map("default", cm("live"))
        core.delete_namespaced_config_map("live", "default")
        t.join(5)
        assert seen == [("ADDED", "live"), ("DELETED", "live")]

    def test_selector_transitions_are_added_and_deleted(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """An object entering a watched selector is ADDED; leaving it is DELETED."""
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", cm("a", {"sel": "no"}))
        core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"sel": "yes"}}})
        core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"sel": "no"}}})
        events = list(
            kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=rv,
                label_selector="sel=yes",
                timeout_seconds=1,
            )
        )
        assert [e["type"] for e in events] == ["ADDED", "DELETED"]

    def test_watch_from_compacted_version_is_410_gone(
        self, kube: Server, core: kubernetes.client.CoreV1Api
    ) -> None:
        """Once history is compacted, a watch from an older resourceVersion gets 410."""
        old = core.create_namespaced_config_map("default", cm("a")).metadata.resource_version
        core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}})
        kube.store("local").compact()
        core.patch_namespaced_config_map("a", "default", {"data": {"x": "2"}})
        with pytest.raises(ApiException) as e:
            list(
                kubernetes.watch.Watch().stream(
                    core.list_namespaced_config_map,
                    "default",
                    resource_version=old,
                    timeout_seconds=1,
                )
            )
        assert e.value.status == 410

    def test_watch_without_version_starts_with_current_objects(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """A watch from no resourceVersion first lists what exists as ADDED."""
        core.create_namespaced_config_map("default", cm("a"))
        events = list(
            kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map, "default", timeout_seconds=1
            )
        )
        assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "a")]

    def test_bookmarks_carry_the_current_version(
        self, kube: Server, core: kubernetes.client.CoreV1Api
    ) -> None:
        """With allowWatchBookmarks, a BOOKMARK with the latest resourceVersion arrives."""
        rv = core.create_namespaced_config_map("default", cm("a")).metadata.resource_version
        resp = core.list_namespaced_config_map(
            "default",
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
            _preload_content=False,
        )
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        assert lines[-1]["type"] == "BOOKMARK"
        assert lines[-1]["object"]["metadata"]["resourceVersion"] == str(kube.store("local").rv)


class TestDeletion:
    def test_finalizers_hold_deletion_until_removed(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """With finalizers, delete only sets deletionTimestamp; removing them deletes."""
        body = cm("a")
        body["metadata"]["finalizers"] = ["example.com/hold"]
        core.create_namespaced_config_map("default", body)
        core.delete_namespaced_config_map("a", "default")
        held = core.read_namespaced_config_map("a", "default")
        assert held.metadata.deletion_timestamp is not None
        core.patch_namespaced_config_map(
            "a", "default", [{"op": "remove", "path": "/metadata/finalizers"}]
        )
        with pytest.raises(ApiException) as e:
            core.read_namespaced_config_map("a", "default")
        assert e.value.status == 404

    def test_deleting_a_namespace_removes_its_contents(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """A namespace's objects go with it; creating in a terminating one is forbidden."""
        core.create_namespace({"metadata": {"name": "team"}})
        core.create_namespaced_config_map("team", cm("a"))
        core.delete_namespace("team")
        with pytest.raises(ApiException) as e:
            core.read_namespace("team")
        assert e.value.status == 404
        assert (
            core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=team").items
            == []
        )

    def test_delete_collection_by_label(self, core: kubernetes.client.CoreV1Api) -> None:
        """DELETE on a collection removes exactly the selected objects."""
        core.create_namespaced_config_map("default", cm("a", {"drop": "yes"}))
        core.create_namespaced_config_map("default", cm("b", {"drop": "no"}))
        core.delete_collection_namespaced_config_map("default", label_selector="drop=yes")
        names = [i.metadata.name for i in core.list_namespaced_config_map("default").items]
        assert names == ["b"]

    def test_delete_precondition_on_resource_version(
        self, core: kubernetes.client.CoreV1Api
    ) -> None:
        """A delete with a stale resourceVersion precondition is 409 and deletes nothing."""
        made = core.create_namespaced_config_map("default", cm("a"))
        core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}})
        with pytest.raises(ApiException) as e:
            core.delete_namespaced_config_map(
                "a",
                "default",
                body={"preconditions": {"resourceVersion": made.metadata.resource_version}},
            )
        assert e.value.status == 409
        assert core.read_namespaced_config_map("a", "default")


class TestPatches:
    def test_json_patch_test_failure_is_422(self, core: kubernetes.client.CoreV1Api) -> None:
        """A failed `test` op is 422 Invalid (as kube-apiserver answers) and writes nothing."""
        made = core.create_namespaced_config_map("default", cm("a", x="1"))
        core.patch_namespaced_config_map("a", "default", {"data": {"x": "2"}})
        with pytest.raises(ApiException) as e:
            core.patch_namespaced_config_map(
                "a",
                "default",
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": made.metadata.resource_version,
                    },
                    {"op": "replace", "path": "/data/x", "value": "3"},
                ],
            )
        assert e.value.status == 422
        # Word for word what kube-apiserver v1.36 answers (see test_differential.py).
        status = status_of(e.value)
        assert status["message"] == "the server rejected our request due to an error in our request"
        assert status["details"] == {}
        assert core.read_namespaced_config_map("a", "default").data == {"x": "2"}

    def test_json_patch_with_passing_test_applies(self, core: kubernetes.client.CoreV1Api) -> None:
        """A patch whose `test` holds is applied."""
        made = core.create_namespaced_config_map("default", cm("a", x="1"))
        out = core.patch_namespaced_config_map(
            "a",
            "default",
            [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": made.metadata.resource_version,
                },
                {"op": "add", "path": "/data/y", "value": "2"},
            ],
        )
        assert out.data == {"x": "1", "y": "2"}

    def test_merge_patch_null_deletes(
        self, core: kubernetes.client.CoreV1Api, dyn: dynamic.DynamicClient
    ) -> None:
        """A merge patch sets keys and removes those set to null."""
        core.create_namespaced_config_map("default", cm("a", x="1", y="2"))
        out = dyn.resources.get(api_version="v1", kind="ConfigMap").patch(
            namespace="default",
            name="a",
            body={"data": {"x": None, "z": "3"}},
            content_type="application/merge-patch+json",
        )
        assert out.data.to_dict() == {"y": "2", "z": "3"}

    def test_strategic_merge_patch_merges_lists_by_key(
        self, apps: kubernetes.client.AppsV1Api
    ) -> None:
        """Containers and env merge by name, ports by containerPort; `$patch: delete` works."""
        apps.create_namespaced_deployment("default", DEPLOYMENT)
        out = apps.patch_namespaced_deployment(
            "web",
            "default",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "env": [
                                        {"name": "B", "value": "two"},
                                        {"name": "C", "value": "3"},
                                    ],
                                    "ports": [{"containerPort": 8080}],
                                },
                                {"name": "side", "$patch": "delete"},
                            ],
                        }
                    }
                }
            },
        )
        containers = out.spec.template.spec.containers
        assert [c.name for c in containers] == ["app"]
        assert containers[0].image == "nginx:1.25"
        assert [(e.name, e.value) for e in containers[0].env] == [
            ("A", "1"),
            ("B", "two"),
            ("C", "3"),
        ]
        # A new keyed element the live list cannot order comes first, as on kube-apiserver
        # (test_differential's strategic-merge-new-keyed-order).
        assert [p.container_port for p in containers[0].ports] == [8080, 80]

    def test_strategic_merge_patch_on_custom_resource_is_415(
        self, dyn: dynamic.DynamicClient
    ) -> None:
        """Custom resources take JSON and merge patches only, as in kube."""
        dyn.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        ).create(body=CRD)
        api = dynamic.DynamicClient(dyn.client).resources.get(
            api_version="istio.banzaicloud.io/v1beta1", kind="RemoteIstio"
        )
        api.create(
            namespace="default",
            body={
                "apiVersion": "istio.banzaicloud.io/v1beta1",
                "kind": "RemoteIstio",
                "metadata": {"name": "r"},
                "spec": {"a": 1},
            },
        )
        with pytest.raises(kubernetes.dynamic.exceptions.DynamicApiError) as e:
            api.patch(
                namespace="default",
                name="r",
                body={"spec": {"a": 2}},
                content_type="application/strategic-merge-patch+json",
            )
        assert e.value.status == 415
        merged = api.patch(
            namespace="default",
            name="r",
            body={"spec": {"a": 2}},
            content_type="application/merge-patch+json",
        )
        assert merged.spec.a == 2


class TestStatusSubresource:
    def test_deployment_status_only_through_status(self, apps: kubernetes.client.AppsV1Api) -> None:
        """Writes to the main resource keep status; writes to /status change only status."""
        apps.create_namespaced_deployment("default", DEPLOYMENT)
        apps.patch_namespaced_deployment("web", "default", {"status": {"readyReplicas": 9}})
        assert apps.read_namespaced_deployment("web", "default").status.ready_replicas is None
        out = apps.patch_namespaced_deployment_status(
            "web", "default", {"status": {"readyReplicas": 2}, "spec": {"replicas": 7}}
        )
        assert out.status.ready_replicas == 2 and out.spec.replicas == 2

    def test_custom_resource_status_subresource(self, dyn: dynamic.DynamicClient) -> None:
        """A CRD with a status subresource: create drops status; /status sets only status."""
        dyn.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        ).create(body=CRD)
        api = dynamic.DynamicClient(dyn.client).resources.get(
            api_version="istio.banzaicloud.io/v1beta1", kind="RemoteIstio"
        )
        made = api.create(
            namespace="default",
            body={
                "apiVersion": "istio.banzaicloud.io/v1beta1",
                "kind": "RemoteIstio",
                "metadata": {"name": "r"},
                "spec": {"a": 1},
                "status": {"state": "Bogus"},
            },
        )
        assert "status" not in made.to_dict()
        body = made.to_dict()
        body["status"] = {"state": "Available"}
        body["spec"] = {"a": 5}
        out = api.status.replace(namespace="default", body=body)
        assert out.status.state == "Available" and out.spec.a == 1


class TestDiscovery:
    def test_dynamic_client_finds_every_kind(self, dyn: dynamic.DynamicClient) -> None:
        """kubernetes.dynamic discovers the built-in kinds gitmesh uses."""
        for api_version, kind in [
            ("v1", "Namespace"),
            ("v1", "Pod"),
            ("v1", "Service"),
            ("v1", "Endpoints"),
            ("v1", "Secret"),
            ("v1", "ConfigMap"),
            ("v1", "ServiceAccount"),
            ("v1", "Event"),
            ("apps/v1", "Deployment"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
            ("coordination.k8s.io/v1", "Lease"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ]:
            assert dyn.resources.get(api_version=api_version, kind=kind).kind == kind

    def test_crd_created_at_run_time_is_served(self, dyn: dynamic.DynamicClient) -> None:
        """Creating a CRD serves its kind (discovery and CRUD); deleting it stops that."""
        crds = dyn.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        )
        created = crds.create(body=CRD)
        conditions = {c["type"]: c["status"] for c in created.status.conditions}
        assert conditions["Established"] == "True"
        fresh = dynamic.DynamicClient(dyn.client)
        api = fresh.resources.get(api_version="istio.banzaicloud.io/v1beta1", kind="RemoteIstio")
        api.create(
            namespace="default",
            body={
                "apiVersion": "istio.banzaicloud.io/v1beta1",
                "kind": "RemoteIstio",
                "metadata": {"name": "remoteistio-sample"},
                "spec": {},
            },
        )
        listed = api.get(namespace="default")
        assert [i.metadata.name for i in listed.items] == ["remoteistio-sample"]
        assert listed.items[0].kind == "RemoteIstio"
        crds.delete(name=CRD["metadata"]["name"])
        with pytest.raises(ApiException) as e:
            dyn.client.call_api(
                "/apis/istio.banzaicloud.io/v1beta1/namespaces/default/remoteistios",
                "GET",
                auth_settings=["BearerToken"],
                _preload_content=False,
            )
        assert e.value.status == 404


class TestAuthAndFaults:
    def test_wrong_token_is_401(self, localkube_tls: Server) -> None:
        """Over HTTPS a wrong bearer token is refused with 401."""
        config = localkube_tls.kubeconfig("local")
        config["users"][0]["user"]["token"] = "wrong"
        client = kubernetes.config.new_client_from_config_dict(config)
        with pytest.raises(ApiException) as e:
            kubernetes.client.CoreV1Api(client).list_namespace()
        client.close()
        assert e.value.status == 401

    @pytest.mark.parametrize("code", [500, 503, 409])
    def test_injected_status(
        self, kube: Server, core: kubernetes.client.CoreV1Api, code: int
    ) -> None:
        """The next matching request fails with the chosen status; the one after succeeds."""
        fault = kube.inject(cluster="local", verb="list", resource=CM, status=code, count=1)
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map("default")
        assert e.value.status == code and fault.hits == 1
        core.list_namespaced_config_map("default")

    def test_injected_429_has_retry_after(
        self, kube: Server, core: kubernetes.client.CoreV1Api
    ) -> None:
        """A 429 fault carries Retry-After, which the client's urllib3 honours on a GET."""
        core.create_namespaced_config_map("default", cm("a"))
        fault = kube.inject(verb="get", resource=CM, status=429, retry_after=1)
        start = time.monotonic()
        assert core.read_namespaced_config_map("a", "default").metadata.name == "a"
        assert fault.hits == 1 and time.monotonic() - start >= 1
        assert kube.count(verb="get", resource=CM, code=429) == 1

    def test_injected_429_on_a_write_reaches_the_caller(
        self, kube: Server, core: kubernetes.client.CoreV1Api
    ) -> None:
        """Writes are not retried by the client: the caller sees 429 and Retry-After."""
        kube.inject(verb="create", resource=CM, status=429, retry_after=3)
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map("default", cm("a"))
        assert e.value.status == 429 and e.value.headers["Retry-After"] == "3"

    def test_injected_latency(self, kube: Server, core: kubernetes.client.CoreV1Api) -> None:
        """A latency fault delays the answer."""
        kube.inject(verb="list", resource=CM, latency=0.3)
        start = time.monotonic()
        core.list_namespaced_config_map("default")
        assert time.monotonic() - start >= 0.3

    def test_dropped_connection(self, kube: Server, core: kubernetes.client.CoreV1Api) -> None:
        """A dropped connection surfaces as a protocol error in the client."""
        kube.inject(verb="list", resource=CM, drop=True, count=10)
        with pytest.raises(urllib3.exceptions.HTTPError):
            core.list_namespaced_config_map("default", _request_timeout=5)

    def test_cluster_down_is_connection_refused_and_comes_back(self, client_for: ClientFor) -> None:
        """With dedicated ports, a cluster that is down refuses connections; up again works."""
        with Server(clusters=["a", "b"], dedicated_ports=True) as server:
            a = kubernetes.client.CoreV1Api(client_for(server, "a"))
            b = kubernetes.client.CoreV1Api(client_for(server, "b"))
            server.down("a")
            with pytest.raises(urllib3.exceptions.MaxRetryError) as e:
                a.list_namespace(_request_timeout=2)
            assert isinstance(e.value.reason, urllib3.exceptions.NewConnectionError)
            assert b.list_namespace().items
            server.up("a")
            assert a.list_namespace().items

    def test_requests_are_counted(self, kube: Server, core: kubernetes.client.CoreV1Api) -> None:
        """Requests are counted by cluster, verb, resource and status code."""
        kube.reset_counts()
        core.create_namespaced_config_map("default", cm("a"))
        core.list_namespaced_config_map("default", label_selector="x=y")
        with pytest.raises(ApiException):
            core.read_namespaced_config_map("missing", "default")
        assert kube.count(cluster="local", verb="create", resource=CM, code=201) == 1
        assert kube.count(cluster="local", verb="list", resource=CM) == 1
        assert kube.count(cluster="local", verb="get", resource=CM, code=404) == 1
        assert kube.count(cluster="other") == 0


class TestWorkloads:
    def test_deployments_become_ready(
        self, kube: Server, apps: kubernetes.client.AppsV1Api
    ) -> None:
        """With workload simulation, a Deployment reports its replicas ready."""
        kube.simulate_workloads("local", delay=0.01)
        apps.create_namespaced_deployment("default", DEPLOYMENT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = apps.read_namespaced_deployment("web", "default").status
            if status.ready_replicas == 2:
                break
            time.sleep(0.02)
        assert status.ready_replicas == 2 and status.observed_generation == 1

    def test_pods_get_ips_and_readiness(
        self, kube: Server, core: kubernetes.client.CoreV1Api
    ) -> None:
        """Simulated pods run with IPs from the pod CIDR and a Ready condition."""
        kube.add_pod("local", "default", "p1", labels={"istio": "pilot"})
        kube.add_pod("local", "default", "p2", labels={"istio": "pilot"}, ready=False)
        pods = {
            p.metadata.name: p
            for p in core.list_namespaced_pod("default", label_selector="istio=pilot").items
        }
        assert pods["p1"].status.pod_ip.startswith("10.24.")
        ready = {
            n: next(c.status for c in p.status.conditions if c.type == "Ready")
            for n, p in pods.items()
        }
        assert ready == {"p1": "True", "p2": "False"}


def test_probabilistic_faults_add_up(client_for: ClientFor) -> None:
    """Five faults of 2% each fail about 10% of matching requests, each kind drawn."""
    with Server(clusters=["local"], seed=3) as server:
        faults = [
            server.inject(verb="get", resource=CM, status=code, count=None, probability=0.02)
            for code in (500, 503, 409, 400, 418)
        ]
        core = kubernetes.client.CoreV1Api(client_for(server, "local"))
        core.create_namespaced_config_map("default", cm("a"))
        failed = 0
        for _ in range(400):
            try:
                core.read_namespaced_config_map("a", "default")
            except ApiException:
                failed += 1
        assert 20 <= failed <= 60
        assert all(f.hits > 0 for f in faults)
