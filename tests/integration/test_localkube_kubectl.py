"""kubectl, a client nobody here wrote, against the `gitmesh localkube` command."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.kubectl

KUBECTL = shutil.which("kubectl")
if KUBECTL is None:
    if os.environ.get("CI"):
        pytest.fail("kubectl is not installed; CI must have it", pytrace=False)
    pytest.skip("kubectl is not installed", allow_module_level=True)


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache)}

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(KUBECTL), *args],
            input=stdin,
            capture_output=True,
            check=False,
            text=True,
            env=self.env,
            timeout=30,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(scope="module", params=["http", "https"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kubectl, Path]]:
    """`gitmesh localkube` in a subprocess (HTTP, then HTTPS), stopped with SIGTERM."""
    tmp = tmp_path_factory.mktemp("kubectl")
    kubeconfig = tmp / "kubeconfig"
    log = tmp / "access.jsonl"
    args = [
        sys.executable,
        "-m",
        "gitmesh",
        "localkube",
        "--kubeconfig",
        str(kubeconfig),
        "--clusters",
        "local,second",
        "--access-log",
        str(log),
    ]
    if request.param == "https":
        args.append("--tls")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "serving" in proc.stdout.readline()
    yield Kubectl(kubeconfig, tmp / "cache"), log
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(10)
    proc.stdout.close()
    assert code == 0


@pytest.fixture
def kubectl(served: tuple[Kubectl, Path]) -> Iterator[Kubectl]:
    k = served[0]
    ns = f"t{time.monotonic_ns() % 10**9}"
    k.run("create", "namespace", ns)  # a typed generator: protobuf on the wire
    k.env["NS"] = ns
    k.run("config", "set-context", "--current", "--namespace", ns)
    yield k
    k.run("delete", "namespace", ns, "--wait=false")


CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg", "labels": {"app": "demo", "tier": "web"}},
    "data": {"a": "1"},
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "demo"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                ]
            },
        },
    },
}


def test_get_lists_namespaces_in_every_output(kubectl: Kubectl) -> None:
    """kubectl get works as a table, as JSON, as YAML and as names."""
    table = kubectl.run("get", "namespaces").stdout
    assert "default" in table and "Active" in table
    listed = kubectl.json("get", "namespaces")
    assert "kube-system" in [i["metadata"]["name"] for i in listed["items"]]
    assert (
        yaml.safe_load(kubectl.run("get", "ns", "default", "-o", "yaml").stdout)["kind"]
        == "Namespace"
    )
    assert "namespace/default" in kubectl.run("get", "ns", "-o", "name").stdout.split()


def test_create_and_get_with_selectors(kubectl: Kubectl) -> None:
    """Objects made with create -f are found by -l selectors, and not by others."""
    kubectl.run("create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP))
    assert kubectl.run(
        "get", "cm", "-l", "app=demo,tier in (web)", "-o", "name"
    ).stdout.split() == ["configmap/cfg"]
    assert kubectl.run("get", "cm", "-l", "tier!=web", "-o", "name").stdout.split() == []
    again = kubectl.run(
        "create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP), check=False
    )
    assert again.returncode != 0 and "AlreadyExists" in again.stderr


def test_apply_twice_second_is_a_no_op(kubectl: Kubectl, served: tuple[Kubectl, Path]) -> None:
    """kubectl apply creates, then reports unchanged and sends no write."""
    doc = json.dumps(DEPLOYMENT)
    assert "created" in kubectl.run("apply", "--validate=false", "-f", "-", stdin=doc).stdout
    before = served[1].read_text().count('"method": "PATCH"')
    assert "unchanged" in kubectl.run("apply", "--validate=false", "-f", "-", stdin=doc).stdout
    assert served[1].read_text().count('"method": "PATCH"') == before
    changed = {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 3}}
    assert (
        "configured"
        in kubectl.run("apply", "--validate=false", "-f", "-", stdin=json.dumps(changed)).stdout
    )
    assert kubectl.json("get", "deploy", "web")["spec"]["replicas"] == 3


def test_label_and_annotate(kubectl: Kubectl) -> None:
    """label and annotate set, overwrite and remove metadata."""
    kubectl.run("create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP))
    kubectl.run("label", "cm", "cfg", "stage=one")
    kubectl.run("label", "cm", "cfg", "stage=two", "--overwrite")
    kubectl.run("label", "cm", "cfg", "tier-")
    kubectl.run("annotate", "cm", "cfg", "note=hello")
    meta = kubectl.json("get", "cm", "cfg")["metadata"]
    assert meta["labels"] == {"app": "demo", "stage": "two"}
    assert meta["annotations"]["note"] == "hello"


@pytest.mark.parametrize(
    ("kind", "patch", "check"),
    [
        (
            "json",
            '[{"op":"add","path":"/data/b","value":"2"}]',
            lambda o: o["data"] == {"a": "1", "b": "2"},
        ),
        ("merge", '{"data":{"a":null,"c":"3"}}', lambda o: o["data"] == {"c": "3"}),
        ("strategic", '{"data":{"a":"9"}}', lambda o: o["data"] == {"a": "9"}),
    ],
)
def test_patch_types_on_configmap(kubectl: Kubectl, kind: str, patch: str, check: Any) -> None:
    """kubectl patch with each patch type."""
    kubectl.run("create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP))
    kubectl.run("patch", "cm", "cfg", "--type", kind, "-p", patch)
    assert check(kubectl.json("get", "cm", "cfg"))


def test_strategic_patch_merges_containers(kubectl: Kubectl) -> None:
    """A strategic patch of one container keeps the others and their fields."""
    kubectl.run("apply", "--validate=false", "-f", "-", stdin=json.dumps(DEPLOYMENT))
    kubectl.run(
        "patch",
        "deploy",
        "web",
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "extra", "image": "busybox:1.36"},
                                {"name": "c", "image": "nginx:1.26"},
                            ]
                        }
                    }
                }
            }
        ),
    )
    containers = kubectl.json("get", "deploy", "web")["spec"]["template"]["spec"]["containers"]
    by_name = {c["name"]: c for c in containers}
    assert by_name["c"]["image"] == "nginx:1.26"
    assert by_name["c"]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert by_name["extra"]["image"] == "busybox:1.36"


def test_delete(kubectl: Kubectl) -> None:
    """delete removes the object; a second delete is NotFound."""
    kubectl.run("create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP))
    assert "deleted" in kubectl.run("delete", "cm", "cfg").stdout
    gone = kubectl.run("get", "cm", "cfg", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_get_watch_sees_changes(kubectl: Kubectl) -> None:
    """kubectl get -w streams the changes made while it watches."""
    watcher = subprocess.Popen(
        [str(KUBECTL), "get", "cm", "-w", "-o", "name", "-l", "app=demo", "--request-timeout=4s"],
        stdout=subprocess.PIPE,
        text=True,
        env=kubectl.env,
    )
    time.sleep(1.0)
    kubectl.run("create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP))
    kubectl.run("label", "cm", "cfg", "seen=yes")
    kubectl.run("delete", "cm", "cfg")
    try:
        out, _ = watcher.communicate(timeout=10)
    finally:
        watcher.kill()
    assert out.split().count("configmap/cfg") >= 3


def test_second_context_is_another_cluster(kubectl: Kubectl) -> None:
    """Each --clusters name is a context of its own, with its own objects."""
    kubectl.run("create", "--validate=false", "-f", "-", stdin=json.dumps(CONFIGMAP))
    other = kubectl.run("--context", "second", "get", "cm", "-A", "-o", "name").stdout
    assert "configmap/cfg" not in other


def test_access_log_has_one_json_line_per_request(served: tuple[Kubectl, Path]) -> None:
    """--access-log writes method, path, query, status, ms and cluster per request."""
    kubectl, log = served
    kubectl.run("get", "ns", "default", "-o", "name")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    last = lines[-1]
    assert {"method", "path", "query", "status", "ms", "cluster"} <= set(last)
    assert last["verb"] == "get" and last["resource"] == "namespaces"
    assert last["method"] == "GET" and last["status"] == 200 and last["cluster"] == "local"


def test_typed_generators_speak_protobuf(kubectl: Kubectl) -> None:
    """kubectl create configmap/secret/serviceaccount send protobuf, which localkube decodes;
    other kinds get a 415 that says what to do instead."""
    kubectl.run("create", "configmap", "gen", "--from-literal=a=b", "--from-literal=c=d")
    kubectl.run("create", "secret", "generic", "gen-secret", "--from-literal=token=abc")
    kubectl.run("create", "serviceaccount", "robot")
    assert kubectl.json("get", "cm", "gen")["data"] == {"a": "b", "c": "d"}
    secret = kubectl.json("get", "secret", "gen-secret")
    assert base64.b64decode(secret["data"]["token"]) == b"abc" and secret["type"] == "Opaque"
    assert kubectl.json("get", "sa", "robot")["metadata"]["name"] == "robot"
    failed = kubectl.run("create", "deployment", "web", "--image=nginx", check=False)
    assert failed.returncode != 0 and "send JSON (kubectl create -f)" in failed.stderr
