"""The reconcile pass end to end: localkube clusters, a real git repository, the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from gitmesh import cli
from gitmesh.cluster import Cluster
from gitmesh.reconcile.passes import run_pass
from gitmesh.settings import Settings
from gitmesh.source import Source
from gitmesh.specs import meshrepo
from gitmesh.testing import sandbox
from gitmesh.testing.sandbox import b64
from tests.integration.conftest import REMOTES, TOKEN, World

SAMPLE = "remoteistio-sample"
EU = "remote-eu"
NS = "istio-system"


def ready_ips(world: World, service: str) -> list[str]:
    store = world.store("central")
    ips = []
    for name in world.mesh.pod_names(service):
        pod = store.get(store.kind("", "v1", "pods"), NS, name)
        # A deleted pod lingers on a real apiserver (graceful deletion, no kubelet to end
        # it) with a deletionTimestamp: it is not ready, whatever its conditions say.
        ready = "deletionTimestamp" not in pod["metadata"] and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"]
        )
        if ready:
            ips.append(pod["status"]["podIP"])
    return sorted(ips)


def endpoint_ips(world: World, remote: str, service: str) -> list[str]:
    ep = world.get(remote, "endpoints", NS, service)
    return sorted(a["ip"] for s in ep.get("subsets", []) for a in s["addresses"])


def test_first_pass_builds_what_the_seed_shows(world: World) -> None:
    """citadel and injector with their Services, headless selector-less Services whose
    Endpoints hold the ready central pods, `default` labelled; the status says Available."""
    assert world.reconcile() == 0
    assert world.names(SAMPLE, "deployments", NS, group="apps") == [
        "istio-citadel",
        "istio-sidecar-injector",
    ]
    services = {
        n: world.get(SAMPLE, "services", NS, n) for n in world.names(SAMPLE, "services", NS)
    }
    assert [p["port"] for p in services["istio-citadel"]["spec"]["ports"]] == [8060, 9093]
    assert [p["port"] for p in services["istio-sidecar-injector"]["spec"]["ports"]] == [443]
    for name in ("istio-pilot", "istio-policy", "istio-statsd", "istio-telemetry", "zipkin"):
        spec = services[name]["spec"]
        assert spec["clusterIP"] == "None" and "selector" not in spec
    assert endpoint_ips(world, SAMPLE, "istio-pilot") == ready_ips(world, "istio-pilot")
    assert endpoint_ips(world, SAMPLE, "zipkin") == ready_ips(world, "zipkin")
    # The seed's statsd selector ("statsd-prom-bridge": a label key) matches no pod.
    assert endpoint_ips(world, SAMPLE, "istio-statsd") == []
    eu_pilot = world.get(EU, "endpoints", NS, "istio-pilot")["subsets"][0]
    assert [p["port"] for p in eu_pilot["ports"]] == [15010, 15011, 8080]
    labels = world.get(SAMPLE, "namespaces", "", "default")["metadata"]["labels"]
    assert labels["istio-injection"] == "enabled"
    assert labels["istio-operator-managed-injection"] == "enabled"
    status = world.status()
    assert {status[f"status/{r}.yaml"]["state"] for r in REMOTES} == {"Available"}
    eps = status[f"endpoints/{SAMPLE}.yaml"]["services"]
    assert eps["istio-pilot"] == [
        f"{ip}:{port}"
        for ip in ready_ips(world, "istio-pilot")
        for port in (8080, 9093, 15010, 15011)
    ]
    secret = world.get("central", "secrets", NS, SAMPLE)
    assert secret["metadata"]["labels"]["istio/multiCluster"] == "true"


def test_second_pass_writes_nothing_and_commits_nothing(world: World) -> None:
    """With nothing changed: no write request anywhere, one LIST per kind, one discovery
    request (whether the remote serves v1beta1 webhooks: the 1.0 injector's caBundle),
    no commit."""
    assert world.reconcile() == 0
    commits = world.status_commits()
    world.server.reset_counts()
    assert world.reconcile() == 0
    assert world.writes() == 0
    assert world.status_commits() == commits
    for remote in REMOTES:
        lists = world.server.count(cluster=remote, verb="list")
        assert lists == 11  # 10 managed kinds (EndpointSlice for IstiodRemotes) + namespaces
        assert world.server.count(cluster=remote, verb="get") == 1


def test_endpoints_follow_central_pods(world: World) -> None:
    """A deleted central pod leaves the Endpoints; with no ready pods they are empty."""
    sandbox.add_istio_pod(world.server, "central", "istio-telemetry", 1)
    assert world.reconcile() == 0
    assert len(endpoint_ips(world, SAMPLE, "istio-telemetry")) == 2
    store = world.store("central")
    pods = store.kind("", "v1", "pods")
    store.delete(pods, NS, "istio-telemetry-0000")
    assert world.reconcile() == 0
    assert endpoint_ips(world, SAMPLE, "istio-telemetry") == ready_ips(world, "istio-telemetry")
    assert len(endpoint_ips(world, SAMPLE, "istio-telemetry")) == 1
    world.server.set_pod("central", NS, "istio-telemetry-0001", ready=False)
    assert world.reconcile() == 0
    ep = world.get(SAMPLE, "endpoints", NS, "istio-telemetry")
    assert "subsets" not in ep
    status = world.status()[f"endpoints/{SAMPLE}.yaml"]
    assert status["services"]["istio-telemetry"] == []
    assert status["services"]["istio-pilot"]


def test_injection_labels_follow_the_list(world: World) -> None:
    """Leaving autoInjectionNamespaces removes both labels; hand-labelled namespaces stay."""
    sandbox.ensure_namespace(world.server, EU, "manual")
    world.merge_patch(
        EU, "namespaces", "", "manual", {"metadata": {"labels": {"istio-injection": "enabled"}}}
    )
    assert world.reconcile() == 0
    assert (
        world.get(EU, "namespaces", "", "payments")["metadata"]["labels"][
            "istio-operator-managed-injection"
        ]
        == "enabled"
    )
    world.edit_remote_spec(
        EU,
        lambda d: d["spec"].update(autoInjectionNamespaces=["default"]),
        "Stop injecting payments",
    )
    assert world.reconcile() == 0
    labels = world.get(EU, "namespaces", "", "payments")["metadata"]["labels"]
    assert "istio-injection" not in labels and "istio-operator-managed-injection" not in labels
    assert (
        world.get(EU, "namespaces", "", "manual")["metadata"]["labels"]["istio-injection"]
        == "enabled"
    )


class EditsBeforePatch(Cluster):
    """A gitmesh Cluster whose first patch of the `istio` ConfigMap is preceded by another
    writer's edit through the API (the race this test is about)."""

    def __init__(self, *args: Any, world: World, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.world = world
        self.raced = False

    def patch(
        self,
        res: Any,
        namespace: str | None,
        name: str,
        ops: list[dict[str, Any]],
        *,
        resource_version: str | None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        if name == "istio" and res.kind == "ConfigMap" and not self.raced:
            self.raced = True
            other = Cluster("other-writer", self.world.server.kubeconfig(self.name))
            other.patch(
                res,
                namespace,
                name,
                [{"op": "add", "path": "/metadata/labels/team", "value": "payments"}],
                resource_version=None,
            )
            other.close()
        return super().patch(
            res, namespace, name, ops, resource_version=resource_version, dry_run=dry_run
        )


def test_concurrent_edit_conflicts_and_replans(world: World, tmp_path: Any) -> None:
    """An edit between observe and apply fails the resourceVersion test; gitmesh re-plans
    and applies on top of it: drift is fixed and the other writer's label survives."""
    assert world.reconcile() == 0
    store = world.store(SAMPLE)
    cm = store.kind("", "v1", "configmaps")
    world.merge_patch(SAMPLE, "configmaps", NS, "istio", {"data": {"mesh": "drifted"}})
    source = Source(world.repo.url, cache_dir=tmp_path / "c")
    snap = source.fetch()
    repo = snap.parse()
    racers: list[EditsBeforePatch] = []

    def connect(name: str, config: Mapping[str, Any]) -> Cluster:
        cluster = EditsBeforePatch(name, config, world=world)
        racers.append(cluster)
        return cluster

    world.server.reset_counts()
    with Cluster("central", world.server.kubeconfig("central")) as central:
        result = run_pass(repo, snap.commit, central, connect=connect, settings=Settings())
    assert result.all_available
    assert world.server.count(cluster=SAMPLE, verb="patch", resource="configmaps", code=422) == 1
    final = store.get(cm, NS, "istio")
    assert final["metadata"]["labels"]["team"] == "payments"
    assert final["data"]["mesh"] != "drifted" and "discoveryAddress" in final["data"]["mesh"]


@pytest.mark.localkube_only
def test_one_remote_down_the_other_goes_on(world: World, tmp_path: Any) -> None:
    """A remote that cannot be reached is ReconcileFailed with the reason; the other is
    Available; the exit code says not everything is Available."""
    world.server.down(EU)
    assert world.reconcile() == 1
    status = world.status()
    assert status[f"status/{SAMPLE}.yaml"]["state"] == "Available"
    eu = status[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed"
    assert "cannot reach remote-eu" in eu["message"]
    world.server.up(EU)
    assert world.reconcile() == 0
    assert world.status()[f"status/{EU}.yaml"]["state"] == "Available"


def test_broken_spec_deletes_nothing_and_removed_file_prunes_all(world: World) -> None:
    """A spec broken in a commit is InvalidSpec and nothing is deleted; removing its file
    removes everything gitmesh made there, namespace labels included."""
    assert world.reconcile() == 0
    before = world.names(EU, "services", NS)
    world.repo.commit(
        {
            f"remotes/{EU}.yaml": "apiVersion: istio.banzaicloud.io/v1beta1\n"
            "kind: RemoteIstio\nmetadata:\n  name: remote-eu\nspec:\n"
            "  enabledServices: [{name: istio-pilot, podIPs: [nope]}]\n"
        },
        "Break remote-eu",
    )
    world.server.reset_counts()
    assert world.reconcile() == 1
    assert world.server.count(cluster=EU) == 0  # not even read
    assert world.names(EU, "services", NS) == before
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "InvalidSpec"
    assert "remotes/remote-eu.yaml:6:" in eu["message"] and "podIPs[0]" in eu["message"]
    world.repo.commit({f"remotes/{EU}.yaml": None}, "Remove remote-eu")
    assert world.reconcile() == 0
    owned = "app.kubernetes.io/managed-by=gitmesh"
    for resource, group in (
        ("services", ""),
        ("endpoints", ""),
        ("configmaps", ""),
        ("secrets", ""),
        ("serviceaccounts", ""),
        ("deployments", "apps"),
    ):
        assert world.names(EU, resource, selector=owned, group=group) == [], resource
    for resource in ("clusterroles", "clusterrolebindings"):
        assert (
            world.names(
                EU,
                resource,
                selector=owned,
                group="rbac.authorization.k8s.io",
            )
            == []
        )
    for ns in ("default", "payments"):
        labels = world.get(EU, "namespaces", "", ns)["metadata"].get("labels", {})
        assert "istio-injection" not in labels
    assert world.names(EU, "namespaces") == sorted(
        ["default", "istio-system", "kube-node-lease", "kube-public", "kube-system", "payments"]
    )
    assert f"status/{EU}.yaml" not in world.status()


def test_field_removed_from_spec_is_removed_from_object(world: World) -> None:
    """A field dropped from the spec leaves the object; fields others set stay."""
    assert world.reconcile() == 0
    store = world.store(EU)
    deploy = store.kind("apps", "v1", "deployments")
    world.merge_patch(
        EU,
        "deployments",
        NS,
        "istio-citadel",
        {"metadata": {"annotations": {"someone.else/note": "keep me"}}},
        group="apps",
    )
    citadel = store.get(deploy, NS, "istio-citadel")
    assert citadel["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "256Mi"
    }
    world.edit_remote_spec(
        EU, lambda d: d["spec"]["citadel"].pop("resources"), "Drop citadel limits"
    )
    assert world.reconcile() == 0
    citadel = store.get(deploy, NS, "istio-citadel")
    resources = citadel["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "10m", "memory": "64Mi"}}
    assert citadel["metadata"]["annotations"]["someone.else/note"] == "keep me"


def test_secrets_never_leak(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the kubeconfig token nor the CA key shows in logs, plans or the status."""
    ca_key = world.mesh.ca_key_pem.decode()
    secret_markers = [TOKEN, ca_key.splitlines()[1]]
    assert world.reconcile() == 0
    world.merge_patch(SAMPLE, "secrets", NS, "cacerts", {"data": {"ca-key.pem": "dGFtcGVyZWQ="}})
    for fmt in ("text", "json", "markdown"):
        assert world.plan("--format", fmt) == 0
    assert world.reconcile() == 0
    out = capsys.readouterr()
    assert "***" in out.out and "/data/ca-key.pem" in out.out
    texts = [
        out.out,
        out.err,
        json.dumps(world.status()),
        world.get(SAMPLE, "secrets", NS, "cacerts")["metadata"]["annotations"][
            "gitmesh.io/owned-fields"
        ],
    ]
    import base64

    encoded = base64.b64encode(world.mesh.ca_key_pem).decode()
    for text in texts:
        for marker in [*secret_markers, encoded[:40], "dGFtcGVyZWQ="]:
            assert marker not in text


def test_plan_exit_codes_and_formats(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --exit-code answers as kubectl diff: 1 with changes, 0 without, 2 when a remote
    cannot be planned (before: 2 with changes, 1 on errors); JSON lists JSON Patch ops."""
    assert world.plan("--exit-code", "--format", "json") == 1
    plan = json.loads(capsys.readouterr().out)
    assert plan["changes"] > 0
    eu = next(r for r in plan["remotes"] if r["name"] == EU)
    creates = [c for c in eu["changes"] if c["action"] == "create"]
    assert {"kind": "Deployment", "name": "istio-citadel"}.items() <= creates[5].items()
    assert world.writes() == 0  # plan writes nothing
    assert world.reconcile() == 0
    capsys.readouterr()
    assert world.plan("--exit-code") == 0
    out = capsys.readouterr().out
    assert "0 change(s) to 0 of 2 remote(s)." in out and "2 remote(s) unchanged." in out
    assert world.plan("--format", "markdown") == 0
    comment = capsys.readouterr().out
    assert "**0 change(s) to 0 of 2 remote(s).**" in comment and "remote-eu" not in comment
    # A remote whose kubeconfig is broken cannot be planned.
    world.merge_patch("central", "secrets", NS, EU, {"data": {EU: b64("clusters: [")}})
    assert world.plan("--exit-code") == 2
    assert world.plan() == 1
    captured = capsys.readouterr()
    assert "cannot plan" in captured.out + captured.err


def test_a_remote_not_joined_yet_is_planned_as_new(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a pull request adding a remote before its kubeconfig Secret exists (the
    natural order) failed the plan ('cannot plan'). After: planned as new, with a note
    saying to run `gitmesh join`; reconcile still refuses it alone until then."""
    spec = yaml.safe_load((world.repo.work / "remotes" / f"{EU}.yaml").read_text())
    spec["metadata"]["name"] = "remote-new"
    world.repo.commit({"remotes/remote-new.yaml": yaml.safe_dump(spec)}, "add remote-new")
    assert world.reconcile() == 1
    assert world.status()["status/remote-new.yaml"]["state"] == "ReconcileFailed"
    assert world.status()[f"status/{EU}.yaml"]["state"] == "Available"
    capsys.readouterr()
    assert world.plan("--exit-code") == 1  # changes, not an error
    out = capsys.readouterr().out
    assert "remote remote-new: " in out and " to create" in out
    assert "note: not joined yet" in out and "gitmesh join remote-new" in out
    assert world.plan("-o", "markdown") == 0
    assert "not joined yet" in capsys.readouterr().out


def test_kubeconfig_is_reread_each_pass(world: World) -> None:
    """A rotated (here: broken, then fixed) kubeconfig Secret takes effect on the next pass."""
    store = world.store("central")
    secrets = store.kind("", "v1", "secrets")
    good = store.get(secrets, NS, EU)["data"][EU]
    bad = world.server.kubeconfig(EU)
    next(u for u in bad["users"] if u["name"] == EU)["user"]["token"] = "rotated-away"
    world.merge_patch("central", "secrets", NS, EU, {"data": {EU: b64(yaml.safe_dump(bad))}})
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed" and "Unauthorized" in eu["message"]
    assert "rotated-away" not in json.dumps(eu)
    world.merge_patch("central", "secrets", NS, EU, {"data": {EU: good}})
    assert world.reconcile() == 0


def test_exec_plugins_are_refused_unless_allowed(world: World) -> None:
    """A kubeconfig with an exec plugin is refused (Flux CVE-2022-24817)."""
    evil = world.server.kubeconfig(EU)
    next(u for u in evil["users"] if u["name"] == EU)["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/sh",
            "args": ["-c", "touch /tmp/x"],
        }
    }
    world.merge_patch("central", "secrets", NS, EU, {"data": {EU: b64(yaml.safe_dump(evil))}})
    assert world.reconcile() == 1
    assert "exec plugin" in world.status()[f"status/{EU}.yaml"]["message"]


def test_kubeconfig_dir_is_an_alternative_to_secrets(world: World) -> None:
    """--kubeconfig-dir DIR/<name> is used before the central Secret."""
    store = world.store("central")
    secrets = store.kind("", "v1", "secrets")
    for remote in REMOTES:
        store.delete(secrets, NS, remote)
    assert world.reconcile() == 1
    kdir = world.tmp / "kubeconfigs"
    kdir.mkdir()
    for remote in REMOTES:
        world.server.write_kubeconfig(kdir / remote, remote)
    assert world.reconcile("--kubeconfig-dir", str(kdir)) == 0


@pytest.mark.localkube_only
def test_a_failed_pass_leaves_no_lock(world: World) -> None:
    """A pass that fails half-way (dropped connections while creating Deployments) blocks
    nothing: the next pass finishes the job (upstream issue #328)."""
    world.server.inject(
        cluster=SAMPLE, verb="create", resource="deployments", drop=True, count=None
    )
    start = time.monotonic()
    assert world.reconcile() == 1
    assert time.monotonic() - start < 60
    sample = world.status()[f"status/{SAMPLE}.yaml"]
    assert sample["state"] == "ReconcileFailed"
    assert sample["components"]["citadel"]["state"] == "Failed"
    assert sample["components"]["services"]["state"] == "Skipped"
    world.server.clear_faults()
    assert world.reconcile() == 0
    assert world.status()[f"status/{SAMPLE}.yaml"]["state"] == "Available"


def test_invalid_mesh_file_aborts_before_touching_anything(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken mesh.yaml is an error naming the file; no cluster is written to."""
    world.repo.commit(
        {"mesh.yaml": "apiVersion: gitmesh.io/v1alpha1\nkind: Mesh\nnamespace: Bad_NS\n"},
        "Break mesh.yaml",
    )
    assert world.reconcile() == 1
    assert "mesh.yaml:3:12: namespace:" in capsys.readouterr().err
    assert world.writes() == 0


@pytest.mark.localkube_only
def test_central_pods_unreadable_keeps_endpoints(world: World) -> None:
    """An API error reading the central pods is not 'zero pods': Endpoints stay."""
    assert world.reconcile() == 0
    before = endpoint_ips(world, SAMPLE, "istio-pilot")
    world.server.inject(cluster="central", verb="list", resource="pods", status=403, count=None)
    assert world.reconcile() == 1
    assert endpoint_ips(world, SAMPLE, "istio-pilot") == before
    sample = world.status()[f"status/{SAMPLE}.yaml"]
    assert sample["components"]["services"]["state"] == "Failed"
    assert "cannot read the central Istio pods" in sample["message"]


def test_repo_parse_of_example(world: World) -> None:
    """The example repository's remotes are the ones the world hosts."""
    files, _ = meshrepo.read_dir(world.repo.work)
    assert sorted(meshrepo.parse(files).remotes) == sorted(REMOTES)


def test_status_command_after_a_pass(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """gitmesh status shows both remotes Available with their endpoint counts."""
    assert world.reconcile() == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                "status",
                "--repo",
                world.repo.url,
                "--cache-dir",
                str(world.tmp / "cache"),
                "--format",
                "json",
            ]
        )
        == 0
    )
    rows = {r["remote"]: r for r in json.loads(capsys.readouterr().out)["remotes"]}
    assert rows[SAMPLE]["state"] == "Available" and not rows[SAMPLE]["outOfSync"]
    # pilot 4 ports, policy 2, telemetry 2, zipkin 1, statsd none: one pod each
    assert rows[SAMPLE]["endpoints"] == 4 + 2 + 2 + 1


@pytest.mark.localkube_only
def test_failed_remote_keeps_its_last_endpoint_snapshot(world: World) -> None:
    """When a remote fails before its Endpoints are applied, the status branch keeps the
    snapshot of what the remote has, not what gitmesh wanted it to have."""
    assert world.reconcile() == 0
    before = world.status()[f"endpoints/{SAMPLE}.yaml"]
    before_eu = world.status()[f"endpoints/{EU}.yaml"]
    sandbox.add_istio_pod(world.server, "central", "istio-pilot", 3)
    world.server.inject(
        cluster=SAMPLE, verb="patch", resource="deployments", status=422, count=None
    )
    world.edit_remote_spec(
        SAMPLE, lambda d: d["spec"]["citadel"].update(replicaCount=2), "Two citadels"
    )
    assert world.reconcile() == 1
    assert world.status()[f"endpoints/{SAMPLE}.yaml"] == before
    after_eu = world.status()[f"endpoints/{EU}.yaml"]["services"]["istio-pilot"]
    assert len(after_eu) > len(before_eu["services"]["istio-pilot"])  # the new pod is in


def test_quantities_written_as_the_server_answers_them(world: World) -> None:
    """`cpu: 0.5` and `memory: 1024Mi` in a spec are written as 500m and 1Gi, so the server's
    canonical form never reads back as drift."""
    world.edit_remote_spec(
        EU,
        lambda d: d["spec"]["citadel"].update(
            resources={"requests": {"cpu": 0.5, "memory": "1024Mi"}}
        ),
        "Non-canonical quantities",
    )
    assert world.reconcile() == 0
    citadel = world.get(EU, "deployments", NS, "istio-citadel", group="apps")
    resources = citadel["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "1Gi"}
    world.server.reset_counts()
    assert world.reconcile() == 0
    assert world.writes() == 0
