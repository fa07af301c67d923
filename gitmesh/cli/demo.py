"""`gitmesh demo`: the seed's story on a machine with no cluster and no network.

A central and two remote clusters on localkube with a simulated Istio control plane, a
local git remote made from the packaged example repository, then: the remotes join and
become Available; the telemetry pod is deleted and the remotes' Endpoints follow (through
the live watch `gitmesh run` uses); each remote's citadel signs with its own intermediate
CA, and a service nothing backs is a warning; a commit changes `autoInjectionNamespaces`
and the labels follow; remote-eu switches to today's model and joins an istiod primary
(IstiodRemote); finally the status branch's log. Each step checks what it shows, so a
broken step exits non-zero.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from gitmesh import errors, logs, render, specs
from gitmesh.cluster import Cluster
from gitmesh.localkube import Server
from gitmesh.localkube.apiserver import KubeAPIServer
from gitmesh.reconcile import cycle
from gitmesh.reconcile.endpoints import affected_remotes, endpoints_only
from gitmesh.reconcile.observe import observe_central
from gitmesh.reconcile.passes import default_connect, run_pass
from gitmesh.run.endpointsync import EndpointSync
from gitmesh.settings import Settings
from gitmesh.source import Source
from gitmesh.source.gitrepo import Bare
from gitmesh.specs import meshrepo
from gitmesh.status.branch import StatusBranch
from gitmesh.status.results import PassResult
from gitmesh.testing import sandbox

CENTRAL = "central"
REMOTES = ("remoteistio-sample", "remote-eu")
NS = sandbox.NAMESPACE


def example_files() -> dict[str, bytes]:
    """The packaged example mesh repository."""
    root = package_files.files("gitmesh") / "embedded" / "example-repo"
    out = {"mesh.yaml": (root / "mesh.yaml").read_bytes()}
    for entry in (root / "remotes").iterdir():
        if entry.name.endswith(".yaml"):
            out[f"remotes/{entry.name}"] = entry.read_bytes()
    return out


class Demo:
    """The demo's state and its printer."""

    def __init__(
        self, kube: Server | KubeAPIServer, workdir: Path, out: Callable[[str], None]
    ) -> None:
        self.kube = kube
        self.workdir = workdir
        self.out = out
        self.step_no = 0
        self.repo = Bare(workdir / "mesh.git")
        self.source = Source(self.repo.url, cache_dir=workdir / "cache")
        self.central_config = kube.write_kubeconfig(workdir / "kubeconfig", CENTRAL)
        self.central = Cluster(CENTRAL, kube.kubeconfig(CENTRAL))
        self.branch = StatusBranch(self.source.cache, specs.STATUS_BRANCH)
        self.settings = Settings(concurrency=4, wait=True, health_timeout=60.0)

    def step(self, title: str) -> None:
        self.step_no += 1
        self.out(
            f"\n\033[1m== {self.step_no}. {title}\033[0m"
            if sys.stdout.isatty() and not os.environ.get("NO_COLOR")
            else f"\n== {self.step_no}. {title}"
        )

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise errors.GitmeshError(f"demo check failed: {what}")
        self.out(f"   ok: {what}")

    def get(self, cluster: str, resource: str, namespace: str, name: str) -> dict[str, Any]:
        store = self.kube.store(cluster)
        return store.get(store.kind("", "v1", resource), namespace, name)

    def listed(
        self, cluster: str, resource: str, namespace: str, *, group: str = "", selector: str = ""
    ) -> list[dict[str, Any]]:
        store = self.kube.store(cluster)
        listed = store.list(store.kind(group, "v1", resource), namespace, label_selector=selector)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def table(self, rows: Sequence[Sequence[str]]) -> None:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.out(
                "   " + "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )

    def show_services(self, remote: str) -> None:
        self.out(f"   [{remote}] kubectl get svc -n {NS}")
        rows = [("NAME", "TYPE", "CLUSTER-IP", "PORT(S)")]
        for svc in self.listed(remote, "services", NS):
            spec = svc["spec"]
            ports = (
                ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports", []))
                or "<none>"
            )
            rows.append(
                (svc["metadata"]["name"], spec.get("type", ""), spec.get("clusterIP", ""), ports)
            )
        self.table(rows)

    def endpoints(self, remote: str, name: str) -> list[str]:
        ep = self.get(remote, "endpoints", NS, name)
        return [
            f"{a['ip']}:{p['port']}"
            for s in ep.get("subsets", [])
            for a in s.get("addresses", [])
            for p in s.get("ports", [{"port": "-"}])
        ]

    def show_endpoints(self, remote: str) -> None:
        self.out(f"   [{remote}] kubectl get endpoints -n {NS}")
        rows = [("NAME", "ENDPOINTS")]
        for ep in self.listed(remote, "endpoints", NS):
            name = ep["metadata"]["name"]
            shown = self.endpoints(remote, name)
            text = ",".join(shown[:3]) + (f" + {len(shown) - 3} more" if len(shown) > 3 else "")
            rows.append((name, text or "<none>"))
        self.table(rows)

    def one_pass(self) -> PassResult:
        done = cycle.once(self.source, self.run, branch=self.branch.branch)
        assert done is not None  # noqa: S101 - no `before`, never declined
        return done[0]

    def run(self, repo: meshrepo.Repo, commit: str) -> PassResult:
        return run_pass(repo, commit, self.central, connect=default_connect, settings=self.settings)


def _show_intermediates(d: Demo) -> None:
    """Each remote's cacerts: its own intermediate CA, signed by the central root."""
    central = d.get(CENTRAL, "secrets", NS, sandbox.CA_SECRET)["data"]
    root = x509.load_pem_x509_certificate(base64.b64decode(central["ca-cert.pem"]))
    own = set()
    for remote in REMOTES:
        data = d.get(remote, "secrets", NS, "cacerts")["data"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["ca-cert.pem"]))
        cert.verify_directly_issued_by(root)  # raises if not
        d.out(
            f"   [{remote}] secret/cacerts: {cert.subject.rfc4514_string()}, "
            f"signed by {root.subject.rfc4514_string()}, until {cert.not_valid_after_utc:%Y-%m-%d}"
        )
        if data["ca-key.pem"] != central["ca-key.pem"]:
            own.add(data["ca-key.pem"])
    d.check(
        len(own) == len(REMOTES),
        "each remote signs with its own intermediate CA; the central key stays on central",
    )


def _clusters(backend: str) -> Server | KubeAPIServer:
    """The demo's clusters: the emulator, or real kube-apiservers from $KUBEBUILDER_ASSETS."""
    if backend == "kube-apiserver":
        return KubeAPIServer(clusters=[CENTRAL, *REMOTES])
    return Server(clusters=[CENTRAL, *REMOTES])


def run(args: argparse.Namespace) -> int:
    """Play the seed's story; exit 0 when every step checked out."""
    # Warnings are shown once, with the pass that found them; --verbose shows every line.
    logs.setup(fmt="text", level="error" if not args.verbose else "info")
    out = print
    with (
        tempfile.TemporaryDirectory(prefix="gitmesh-demo-") as tmp,
        _clusters(args.backend) as kube,
    ):
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        demo = Demo(kube, workdir, out)
        try:
            _story(demo)
        finally:
            demo.central.close()
        out(f"\nDone in {time.monotonic() - started:.1f}s.")
        if args.keep:
            _keep(demo)
    return 0


def _story(d: Demo) -> None:
    mesh = _central_and_remotes(d)
    files = _repository(d)
    _join(d)
    _endpoints_follow(d, mesh)
    _labels_follow(d, files)
    _istiod_story(d)
    _audit(d)


def _central_and_remotes(d: Demo) -> sandbox.Mesh:
    d.step("Clusters on localkube: a central cluster running Istio, two remotes")
    mesh = sandbox.start(d.kube, central=CENTRAL, remotes=REMOTES)
    rows = [("NAME", "READY", "STATUS", "IP")]
    for obj in d.listed(CENTRAL, "pods", NS):
        rows.append(
            (obj["metadata"]["name"], "1/1", obj["status"]["phase"], obj["status"]["podIP"])
        )
    d.out(f"   [{CENTRAL}] kubectl get pods -n {NS}")
    d.table(rows)
    d.out(f"   remote kubeconfigs are Secrets {NS}/<remote> on {CENTRAL}, as in the walkthrough")
    return mesh


def _repository(d: Demo) -> dict[str, bytes]:
    d.step("The mesh repository: mesh.yaml and one RemoteIstio per remote")
    files = example_files()
    sha = d.repo.commit(files, "Join remoteistio-sample and remote-eu to the mesh")
    d.out(f"   {d.repo.url} at {sha[:12]}: " + ", ".join(sorted(files)))
    return files


def _join(d: Demo) -> None:
    d.step("Reconcile: the remotes join the mesh")
    result = d.one_pass()
    for name, res in sorted(result.remotes.items()):
        created = sum(c.created for c in res.report.components)
        d.out(f"   {name:<20} {res.report.state:<16} {created} objects created")
    d.check(result.all_available, "both remotes are Available")
    for name, res in sorted(result.remotes.items()):
        for comp in res.report.components:
            for warning in comp.warnings:
                d.out(f"   warning [{name}]: {warning}")
    _show_intermediates(d)
    d.show_services("remoteistio-sample")
    d.show_endpoints("remoteistio-sample")
    labels = d.get("remoteistio-sample", "namespaces", "", "default")["metadata"]["labels"]
    d.check(
        labels.get("istio-injection") == "enabled",
        "namespace default is labelled "
        "istio-injection=enabled,istio-operator-managed-injection=enabled",
    )


def _endpoints_follow(d: Demo, mesh: sandbox.Mesh) -> None:
    d.step("Delete the central telemetry pod: the remotes' Endpoints follow (live watch)")
    old = d.endpoints("remoteistio-sample", "istio-telemetry")
    repo = d.source.fetch().parse()
    if repo.mesh is None:
        raise errors.SpecError(list(repo.problems))
    services = observe_central(d.central, repo.mesh, []).services
    updated = threading.Event()

    def on_change(pods: tuple[render.Pod, ...], changed: list[Any]) -> None:
        state = render.Central(pods=pods, services=services)
        names = affected_remotes(repo, state, changed)
        endpoints_only(
            repo,
            d.central,
            connect=default_connect,
            settings=d.settings,
            names=names,
            state=state,
        )
        if d.endpoints("remoteistio-sample", "istio-telemetry") not in ([], old):
            updated.set()

    sync = EndpointSync(d.central, NS, on_change)
    sync.start()
    sync.synced.wait(10)
    pod = mesh.pod_names("istio-telemetry")[0]
    old_ip = d.get(CENTRAL, "pods", NS, pod)["status"]["podIP"]
    store = d.kube.store(CENTRAL)
    store.delete(store.kind("", "v1", "pods"), NS, pod)
    replacement = sandbox.add_istio_pod(d.kube, CENTRAL, "istio-telemetry", 1)
    new_ip = d.get(CENTRAL, "pods", NS, replacement)["status"]["podIP"]
    d.out(
        f"   [{CENTRAL}] kubectl delete pod {pod}   ({old_ip}; its replacement "
        f"{replacement} has {new_ip})"
    )
    t0 = time.monotonic()
    updated.wait(10)
    sync.stop()
    new = d.endpoints("remoteistio-sample", "istio-telemetry")
    d.out(
        f"   [remoteistio-sample] endpoints/istio-telemetry: {','.join(old)} -> "
        f"{','.join(new)}  ({(time.monotonic() - t0) * 1000:.0f} ms)"
    )
    eu = d.endpoints("remote-eu", "istio-telemetry")
    d.check(
        all(e.startswith(new_ip + ":") for e in new) and bool(new),
        "remoteistio-sample follows the new pod",
    )
    d.check(
        any(e.startswith(new_ip + ":") for e in eu)
        and not any(e.startswith(old_ip + ":") for e in eu),
        "remote-eu follows it too (its fixed podIP stays)",
    )
    d.one_pass()  # the endpoint snapshots reach the status branch


def _labels_follow(d: Demo, files: dict[str, bytes]) -> None:
    d.step("A pull request changes autoInjectionNamespaces: the labels follow")
    spec = yaml.safe_load(files["remotes/remoteistio-sample.yaml"])
    spec["spec"]["autoInjectionNamespaces"] = ["payments"]
    text = files["remotes/remoteistio-sample.yaml"].decode().split("apiVersion:")[
        0
    ] + yaml.safe_dump(spec, sort_keys=False)
    sha = d.repo.commit(
        {"remotes/remoteistio-sample.yaml": text.encode()},
        "Inject sidecars in payments instead of default",
    )
    d.out(f"   commit {sha[:12]}: autoInjectionNamespaces [default] -> [payments]")
    result = d.one_pass()
    for item in result.remotes["remoteistio-sample"].items:
        if item.changes:
            d.out(
                f"   ~ {item.ref}: "
                + ", ".join(f"{op['op']} {op['path'].split('/')[-1]}" for op in item.ops)
            )
    default = d.get("remoteistio-sample", "namespaces", "", "default")["metadata"]["labels"]
    payments = d.get("remoteistio-sample", "namespaces", "", "payments")["metadata"]["labels"]
    d.check(
        "istio-injection" not in default and "istio-operator-managed-injection" not in default,
        "default lost both labels",
    )
    d.check(payments.get("istio-injection") == "enabled", "payments gained them")


def _audit(d: Demo) -> None:
    d.step("The audit trail: git log gitmesh/status")
    log = d.repo.log(specs.STATUS_BRANCH, "--format=%h %s", "--shortstat")
    for line in log.splitlines():
        if line.strip():
            d.out(f"   {line}")
    # Four passes changed something (join, endpoint snapshot, labels, istiod): four commits.
    d.check(
        len(d.repo.log(specs.STATUS_BRANCH, "--format=%h").split()) == 4,
        "one status commit per pass that changed something, none for the rest",
    )


def _istiod_story(d: Demo) -> None:
    """Today's model: the central cluster runs istiod, remote-eu joins it as an IstiodRemote."""
    d.step("Today's Istio: remote-eu joins an istiod primary (kind: IstiodRemote)")
    sandbox.add_primary(d.kube, CENTRAL, address="192.0.2.10")
    d.out(f"   [{CENTRAL}] the east-west gateway {NS}/{sandbox.GATEWAY} is at 192.0.2.10")
    doc = {
        "apiVersion": "gitmesh.io/v1alpha1",
        "kind": "IstiodRemote",
        "metadata": {"name": "remote-eu"},
        "spec": {"network": "network2", "injectionNamespaces": ["payments"]},
    }
    text = yaml.safe_dump(doc, sort_keys=False)
    sha = d.repo.commit({"remotes/remote-eu.yaml": text.encode()}, "remote-eu joins istiod")
    d.out(f"   commit {sha[:12]}: remotes/remote-eu.yaml")
    d.out("\n".join(f"     {line}" for line in text.splitlines()))
    result = d.one_pass()
    res = result.remotes["remote-eu"]
    for item in res.items:
        if item.changes:
            where = "central" if item.component == "primary" else "remote-eu"
            d.out(f"   {item.action:<7} [{where}] {item.ref}")
    d.check(res.report.state == "Available", "remote-eu is Available as an IstiodRemote")
    eps = d.kube.store("remote-eu")
    slice_ = eps.get(eps.kind("discovery.k8s.io", "v1", "endpointslices"), NS, "istiod")
    hooks = eps.get(
        eps.kind("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"),
        "",
        "istio-sidecar-injector",
    )
    d.out(f"   [remote-eu] endpointslice/istiod: {slice_['endpoints'][0]['addresses'][0]}")
    d.out("   [remote-eu] webhook path: " + hooks["webhooks"][0]["clientConfig"]["service"]["path"])
    deployments = d.listed("remote-eu", "deployments", NS, group="apps")
    secrets = [o["metadata"]["name"] for o in d.listed(CENTRAL, "secrets", NS)]
    d.check(
        not deployments and "istio-remote-secret-remote-eu" in secrets,
        "its citadel and injector are gone; istiod reads it through istio-remote-secret-remote-eu",
    )


def _keep(d: Demo) -> None:
    kubeconfig = d.workdir / "kubeconfig-all"
    d.kube.write_kubeconfig(kubeconfig)
    d.out(
        f"\nClusters stay up (Ctrl-C to stop). Try:\n"
        f"   export KUBECONFIG={kubeconfig}\n"
        f"   kubectl --context remoteistio-sample get svc,endpoints -n {NS}\n"
        f"   git --git-dir {d.repo.path} log gitmesh/status"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
