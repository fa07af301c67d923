"""Passes over many remotes while a share of API requests fail, specs change by commits
and central pods churn; then faults stop and a final pass must converge with nothing lost,
nothing foreign touched and no secret anywhere."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitmesh import cli
from gitmesh.localkube import Server
from gitmesh.testing import sandbox
from tests.gitutil import ROOT, MeshRemote, git

TOKEN = "soakTOKEN-never-print-4b1d"
NS = sandbox.NAMESPACE
TEMPLATE = (ROOT / "example-repo/remotes/remote-eu.yaml").read_text()
FAULTS = (
    {"status": 500},
    {"status": 503},
    {"status": 429, "retry_after": 0},
    {"status": 409},
    {"drop": True},
)


@dataclass
class Outcome:
    passes: int
    commits_reported: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fault_hits: int = 0
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _spec(name: str, rng: random.Random) -> str:
    doc = yaml.safe_load(TEMPLATE.replace("remote-eu", name))
    doc["spec"]["sidecarInjector"]["replicaCount"] = rng.randint(1, 3)
    doc["spec"]["autoInjectionNamespaces"] = rng.choice(
        [["default"], ["default", "payments"], ["payments"], []]
    )
    return yaml.safe_dump(doc)


def _run(args: list[str]) -> tuple[int, str]:
    """Run the CLI in-process, capturing stdout and the log stream."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(args)
    logging.getLogger("gitmesh").handlers.clear()
    return code, out.getvalue()


def soak(
    tmp: Path, *, passes: int, remotes: int = 20, failure_rate: float = 0.10, seed: int = 7
) -> Outcome:
    """Run the soak; `Outcome.problems` lists every broken promise."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not crypto
    names = [f"soak-{i:02d}" for i in range(remotes)]
    outcome = Outcome(passes)
    with Server(clusters=["central", *names], token=TOKEN, seed=seed) as server:
        mesh = sandbox.start(server, remotes=names)
        foreign = _foreign_objects(server, names)
        (tmp / "git").mkdir()
        repo = MeshRemote(tmp / "git")
        repo.commit(
            {
                "remotes/remote-eu.yaml": None,
                "remotes/remoteistio-sample.yaml": None,
                **{f"remotes/{n}.yaml": _spec(n, rng) for n in names},
            },
            "soak remotes",
        )
        kubeconfig = server.write_kubeconfig(tmp / "central.kubeconfig", "central")
        args = [
            "--repo",
            repo.url,
            "--cache-dir",
            str(tmp / "cache"),
            "--central-kubeconfig",
            str(kubeconfig),
            "--concurrency",
            "8",
        ]
        texts: list[str] = []
        faults = [
            server.inject(count=None, probability=failure_rate / len(FAULTS), **f) for f in FAULTS
        ]
        removed: set[str] = set()
        for i in range(passes):
            _churn_pods(server, rng, i)
            if i % 2 == 1:
                changes: dict[str, str | None] = {}
                present = [n for n in names if n not in removed]
                for name in rng.sample(present, 3):
                    changes[f"remotes/{name}.yaml"] = _spec(name, rng)
                victim = rng.choice(names)
                if victim in removed:
                    removed.discard(victim)
                    changes[f"remotes/{victim}.yaml"] = _spec(victim, rng)
                elif len(removed) < 2:
                    removed.add(victim)
                    changes[f"remotes/{victim}.yaml"] = None
                repo.commit(changes, f"soak change {i}")
            code, text = _run(["reconcile", "--once", *args])
            texts.append(text)
            outcome.commits_reported += _commits(text)
            code, text = _run(["plan", "--format", "json", *args])
            texts.append(text)
        outcome.fault_hits = sum(f.hits for f in faults)
        server.clear_faults()
        outcome.requests = server.count()
        code, text = _run(["reconcile", "--once", "--wait", *args])
        texts.append(text)
        outcome.commits_reported += _commits(text)
        if code != 0:
            outcome.problems.append(f"the final pass did not converge (exit {code}):\n{text}")
        code, text = _run(["plan", "--exit-code", "--format", "json", *args])
        texts.append(text)
        if code != 0:
            outcome.problems.append(f"after the final pass, plan still shows changes:\n{text}")
        outcome.history = git(repo.bare, "rev-list", "gitmesh/status").split()
        # What the repository says, not what the loop meant to do.
        removed = {n for n in names if not (repo.work / "remotes" / f"{n}.yaml").exists()}
        if not removed and passes > 2:
            outcome.problems.append("the soak removed no remote; pruning was not exercised")
        _check(
            outcome,
            server,
            mesh=mesh,
            names=names,
            removed=removed,
            foreign=foreign,
            texts=texts,
            repo=repo,
        )
    return outcome


def _commits(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("msg") == "status committed":
                out.append(rec["commit"])
    return out


def _foreign_objects(server: Server, names: list[str]) -> dict[tuple[str, str, str, str], str]:
    """Objects gitmesh does not own; their resourceVersions must not move."""
    out = {}
    for name in names:
        store = server.store(name)
        cm = store.kind("", "v1", "configmaps")
        made = store.create(cm, NS, {"metadata": {"name": "team-config"}, "data": {"a": "b"}})
        out[(name, "configmaps", NS, "team-config")] = made["metadata"]["resourceVersion"]
        svc = store.kind("", "v1", "services")
        made = store.create(
            svc,
            "default",
            {
                "metadata": {"name": "app", "labels": {"app.kubernetes.io/managed-by": "helm"}},
                "spec": {"ports": [{"port": 80}]},
            },
        )
        out[(name, "services", "default", "app")] = made["metadata"]["resourceVersion"]
        sandbox.ensure_namespace(server, name, "by-hand")
        ns = store.kind("", "v1", "namespaces")
        made = store.patch(
            ns,
            "",
            "by-hand",
            "application/merge-patch+json",
            {"metadata": {"labels": {"istio-injection": "enabled"}}},
        )
        out[(name, "namespaces", "", "by-hand")] = made["metadata"]["resourceVersion"]
    return out


def _churn_pods(server: Server, rng: random.Random, i: int) -> None:
    store = server.store("central")
    pods = store.kind("", "v1", "pods")
    listed = store.list(pods, NS)["items"]
    victim = rng.choice(listed)["metadata"]
    labels = victim.get("labels") or {}
    service = next(
        s
        for s, (lab, _, _) in sandbox.ISTIO.items()
        if all(labels.get(k) == v for k, v in lab.items())
    )
    store.delete(pods, NS, victim["name"])
    sandbox.add_istio_pod(server, "central", service, 1000 + i, ready=rng.random() > 0.2)


def _check(
    outcome: Outcome,
    server: Server,
    *,
    mesh: sandbox.Mesh,
    names: list[str],
    removed: set[str],
    foreign: dict[tuple[str, str, str, str], str],
    texts: list[str],
    repo: MeshRemote,
) -> None:
    p = outcome.problems
    missing = [c for c in outcome.commits_reported if c not in outcome.history]
    if missing:
        p.append(f"status commits lost: {missing}")
    if len(outcome.history) != len(set(outcome.commits_reported)):
        p.append(
            f"{len(outcome.history)} status commits on the branch, "
            f"{len(set(outcome.commits_reported))} reported by passes"
        )
    for (cluster, resource, ns, name), rv in foreign.items():
        store = server.store(cluster)
        kind = next(k for k in store.served() if k.resource == resource)
        now = store.get(kind, ns, name)["metadata"]["resourceVersion"]
        if now != rv:
            p.append(f"foreign {resource} {ns}/{name} on {cluster} was modified")
    owned = "app.kubernetes.io/managed-by=gitmesh"
    for name in names:
        store = server.store(name)
        for kind in store.served():
            items = store.list(kind, "", label_selector=owned)["items"]
            if name in removed and items:
                p.append(
                    f"orphans on removed remote {name}: {kind.resource} "
                    f"{[i['metadata']['name'] for i in items]}"
                )
            if kind.resource == "endpoints":
                for ep in items:
                    for subset in ep.get("subsets", []):
                        ips = [a["ip"] for a in subset.get("addresses", [])]
                        if len(ips) != len(set(ips)):
                            p.append(f"duplicate addresses in {name} {ep['metadata']['name']}")
    secrets = [
        TOKEN,
        base64.b64encode(mesh.ca_key_pem).decode()[:40],
        mesh.ca_key_pem.decode().splitlines()[1],
    ]
    status_text = "".join(
        git(repo.bare, "show", f"gitmesh/status:{f}")
        for f in git(repo.bare, "ls-tree", "-r", "--name-only", "gitmesh/status").split()
    )
    for text in [*texts, status_text]:
        for secret in secrets:
            if secret in text:
                p.append(f"a secret value appears in output: {secret[:6]}...")
                break
    final = [
        yaml.safe_load(git(repo.bare, "show", f"gitmesh/status:status/{n}.yaml"))
        for n in names
        if n not in removed
    ]
    bad = [s["name"] for s in final if s["state"] != "Available"]
    if bad:
        p.append(f"not Available after the final pass: {bad}")


def summary(outcome: Outcome) -> dict[str, Any]:
    """The figures of a run."""
    return {
        "passes": outcome.passes,
        "status_commits": len(outcome.history),
        "requests": outcome.requests,
        "faults_injected": outcome.fault_hits,
        "ok": outcome.ok,
        "problems": outcome.problems,
    }
