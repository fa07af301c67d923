"""gitmesh benchmarks. Not part of the test suite; run from a checkout:

    python -m tests.bench                      # everything (about 10 minutes on 2 cores)
    python -m tests.bench --only passes --sizes 10,100
    python -m tests.bench --json bench-results.json

The emulator runs in a separate process (tests/bench/emulator.py) and gitmesh runs as the
`gitmesh` command, so gitmesh's own cost is what is measured; request counts come from
localkube's access log. Prints a table and writes JSON. Goals are checked and reported,
met or not; nothing here is tuned to pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from gitmesh import render, specs
from gitmesh.cli import durations
from gitmesh.cluster import Cluster
from gitmesh.localkube import Server
from gitmesh.reconcile.observe import observe_central
from gitmesh.settings import Settings
from gitmesh.source import Source
from gitmesh.source.gitrepo import Bare, Cache
from gitmesh.status import reports
from gitmesh.status.branch import StatusBranch
from gitmesh.testing import sandbox
from tests.bench.emulator import remote_names
from tests.integration.hostile import flood_server

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "example-repo/remotes/remoteistio-sample.yaml").read_text()
MESH = (ROOT / "example-repo/mesh.yaml").read_bytes()
WRITES = ("create", "update", "patch", "delete", "deletecollection")
# For kubectl's side of the comparison: the intermediate CA's contents do not matter.
CACERTS = dict.fromkeys(("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"), "eA==")


class Emulator:
    """tests.bench.emulator in a subprocess, and its access log."""

    def __init__(
        self,
        remotes: int,
        workdir: Path,
        backend: str = "localkube",
        latency: float = 0.0,
        prefix: str = "remote",
    ) -> None:
        self.dir = workdir
        self.backend = backend
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.emulator",
                "--remotes",
                str(remotes),
                "--dir",
                str(workdir),
                "--backend",
                backend,
                "--latency",
                str(latency),
                "--prefix",
                prefix,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.log = workdir / "access.jsonl"

    def offset(self) -> int:
        return self.log.stat().st_size

    def cpu_s(self) -> float:
        """The emulator's CPU so far (it shares the machine with what is measured)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def since(self, offset: int) -> list[dict[str, Any]]:
        if self.backend != "localkube":
            time.sleep(0.5)  # the access log follows kube-apiserver's audit log
        with self.log.open("rb") as f:
            f.seek(offset)
            return [json.loads(line) for line in f.read().splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        if self.proc.stdout:
            self.proc.stdout.close()


@contextmanager
def emulator(
    remotes: int,
    workdir: Path,
    backend: str = "localkube",
    latency: float = 0.0,
    prefix: str = "remote",
) -> Iterator[Emulator]:
    emu = Emulator(remotes, workdir, backend, latency, prefix)
    try:
        yield emu
    finally:
        emu.stop()


def mesh_repo(path: Path, names: list[str]) -> Bare:
    repo = Bare(path)
    files: dict[str, bytes | None] = {"mesh.yaml": MESH}
    for name in names:
        files[f"remotes/{name}.yaml"] = TEMPLATE.replace("remoteistio-sample", name).encode()
    repo.commit(files, f"{len(names)} remotes")
    return repo


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """Run a command; (wall seconds, CPU seconds, peak RSS in MiB, exit code).

    CPU comes from wait4 (its children's included, once reaped). Peak RSS is the sum of
    the process's and its worker processes' own VmHWM (an upper bound of their peak
    together; the git commands gitmesh runs, one at a time, are left out), read from
    /proc while it runs: wait4's ru_maxrss is not the child's alone
    (posix_spawn's child shares the parent's memory until it execs, and a forked one
    starts from the parent's peak: a 160 MiB bench made kubectl report 162 MiB)."""
    start = time.monotonic()
    path = shutil.which(args[0]) or args[0]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = os.posix_spawn(
            path,
            args,
            {**os.environ, **(env or {})},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
            ],
        )
    finally:
        os.close(devnull)
    peaks: dict[int, int] = {}  # the process and its children (gitmesh --workers)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        for proc in (pid, *_children(pid)):
            if proc == pid or not _comm(proc).startswith("git"):
                peaks[proc] = max(peaks.get(proc, 0), _hwm_kib(proc))
        time.sleep(0.01)
    seconds = time.monotonic() - start
    # wait4 counts the CPU of the children it reaped (a pool's workers are reaped by it).
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, sum(peaks.values()) / 1024, os.waitstatus_to_exitcode(status)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except (OSError, ValueError):
        return []


def _hwm_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def per_remote(lines: list[dict[str, Any]], remotes: set[str]) -> dict[str, float]:
    counts: Counter[str] = Counter(line["verb"] for line in lines if line["cluster"] in remotes)
    n = max(1, len(remotes))
    return {verb: round(c / n, 2) for verb, c in sorted(counts.items())}


def gitmesh_reconcile(
    emu: Emulator, repo: Bare, cache: Path, concurrency: int = 8, workers: int = 1
) -> list[str]:
    return [
        "gitmesh",
        "reconcile",
        "--once",
        "--repo",
        repo.url,
        "--cache-dir",
        str(cache),
        "--central-kubeconfig",
        str(emu.dir / "central.kubeconfig"),
        "--concurrency",
        str(concurrency),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


def bench_passes(sizes: list[int], tmp: Path, backend: str = "localkube") -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        work = tmp / f"passes-{backend}-{size}"
        names = remote_names(size)
        with emulator(size, work, backend) as emu:
            repo = mesh_repo(work / "mesh.git", names)
            cmd = gitmesh_reconcile(emu, repo, work / "cache")
            row: dict[str, Any] = {"remotes": size, "backend": backend}
            for phase in ("initial", "noop"):
                offset = emu.offset()
                seconds, cpu, rss, code = run_cli(cmd)
                lines = emu.since(offset)
                row[phase] = {
                    "seconds": round(seconds, 2),
                    "cpu_s": round(cpu, 2),
                    "cpu_ms_per_remote": round(1000 * cpu / size, 2),
                    "peak_rss_mib": round(rss, 1),
                    "exit": code,
                    "requests_per_remote": per_remote(lines, set(names)),
                    "central_requests": sum(1 for x in lines if x["cluster"] == "central"),
                }
            rows.append(row)
            print(
                f"  passes R={size}: initial {row['initial']['seconds']}s, "
                f"no-op {row['noop']['seconds']}s",
                flush=True,
            )
    return rows


def bench_endpoints(size: int, samples: int, tmp: Path) -> dict[str, Any]:
    work = tmp / "endpoints"
    names = remote_names(size)
    with emulator(size, work) as emu:
        repo = mesh_repo(work / "mesh.git", names)
        port = 18000 + os.getpid() % 1000
        log = (work / "run.log").open("w")
        run = subprocess.Popen(
            [
                "gitmesh",
                "run",
                "--repo",
                repo.url,
                "--cache-dir",
                str(work / "cache"),
                "--central-kubeconfig",
                str(emu.dir / "central.kubeconfig"),
                "--interval",
                "3600",
                "--resync",
                "3600",
                "--listen",
                f"127.0.0.1:{port}",
                "--probe-listen",
                f"127.0.0.1:{port + 1}",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            import urllib.request

            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.5)
            client = kubernetes.config.new_client_from_config(str(emu.dir / "central.kubeconfig"))
            core = kubernetes.client.CoreV1Api(client)
            pod = next(
                p.metadata.name
                for p in core.list_namespaced_pod(
                    sandbox.NAMESPACE, label_selector="istio-mixer-type=telemetry"
                ).items
            )
            latencies = []
            for i in range(samples):
                ip = f"10.99.{i // 250}.{i % 250 + 1}"
                offset = emu.offset()
                t0 = time.time()
                core.patch_namespaced_pod_status(
                    pod, sandbox.NAMESPACE, {"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}
                )
                done: dict[str, float] = {}
                deadline = time.monotonic() + 15
                while len(done) < size and time.monotonic() < deadline:
                    for line in emu.since(offset):
                        if (
                            line["verb"] == "patch"
                            and line["resource"] == "endpoints"
                            and line["status"] == 200
                            and line["cluster"] in names
                            and "istio-telemetry" in line["path"]
                        ):
                            done.setdefault(line["cluster"], line["time"])
                    time.sleep(0.02)
                latencies.append(max(done.values()) - t0 if len(done) == size else float("inf"))
                time.sleep(0.1)
            client.close()
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(60)
            log.close()
    finite = sorted(latencies)
    return {
        "remotes": size,
        "samples": samples,
        "p50_ms": round(statistics.median(finite) * 1000, 1),
        "p99_ms": round(finite[min(len(finite) - 1, int(len(finite) * 0.99))] * 1000, 1),
        "max_ms": round(finite[-1] * 1000, 1),
    }


def desired_objects(emu: Emulator, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """What gitmesh renders for each remote, as kubectl would apply it."""
    mesh = specs.Mesh.model_validate(yaml.safe_load(MESH))
    with Cluster("central", emu.dir / "central.kubeconfig") as central:
        spec0 = specs.RemoteIstio.model_validate(yaml.safe_load(TEMPLATE))
        state = observe_central(central, mesh, [spec0])
    out = {}
    for name in names:
        spec = specs.RemoteIstio.model_validate(
            yaml.safe_load(TEMPLATE.replace("remoteistio-sample", name))
        )
        rendered = render.remote(spec, mesh, state, cacerts=CACERTS)
        objs = [o for c in rendered.components for o in c.objects if o["kind"] != "Namespace"]
        for ns in spec.spec.auto_injection_namespaces:
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": ns,
                        "labels": {
                            "istio-injection": "enabled",
                            "istio-operator-managed-injection": "enabled",
                        },
                    },
                }
            )
        out[name] = objs
    return out


def bench_kubectl(size: int, tmp: Path) -> dict[str, Any]:
    work = tmp / "kubectl"
    names = remote_names(2 * size)
    by_kubectl, by_gitmesh = names[:size], names[size:]
    with emulator(2 * size, work) as emu:
        manifests = {}
        for name, objs in desired_objects(emu, by_kubectl).items():
            path = work / f"{name}.yaml"
            path.write_text(yaml.safe_dump_all(objs))
            manifests[name] = path
        env = {
            "KUBECONFIG": str(emu.dir / "all.kubeconfig"),
            "KUBECACHEDIR": str(work / "kubecache"),
        }
        repo = mesh_repo(work / "mesh.git", by_gitmesh)
        cmd = gitmesh_reconcile(emu, repo, work / "cache")
        result: dict[str, Any] = {"remotes": size}
        for phase in ("initial", "noop"):
            offset = emu.offset()
            start = time.monotonic()
            for name, path in manifests.items():
                proc = subprocess.run(
                    ["kubectl", "apply", "--validate=false", "--context", name, "-f", str(path)],
                    capture_output=True,
                    text=True,
                    env={**os.environ, **env},
                    check=False,
                )
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr)
            kubectl_s = time.monotonic() - start
            kubectl_lines = emu.since(offset)
            offset = emu.offset()
            gitmesh_s, _, _, _ = run_cli(cmd)
            gitmesh_lines = emu.since(offset)
            k_req = sum(1 for x in kubectl_lines if x["cluster"] in by_kubectl)
            g_req = sum(1 for x in gitmesh_lines if x["cluster"] in by_gitmesh)
            result[phase] = {
                "kubectl_seconds": round(kubectl_s, 2),
                "gitmesh_seconds": round(gitmesh_s, 2),
                "kubectl_requests": k_req,
                "gitmesh_requests": g_req,
                "speedup": round(kubectl_s / gitmesh_s, 1),
                "request_ratio": round(k_req / max(1, g_req), 1),
            }
    return result


def _row(
    case: str,
    tool: str,
    phase: str,
    *,
    remotes: int,
    latency: float,
    measured: tuple[float, float, float],
    requests: int,
) -> dict[str, Any]:
    wall, cpu, rss = measured
    return {
        "case": case,
        "tool": tool,
        "phase": phase,
        "remotes": remotes,
        "latency_ms": round(latency * 1000),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_remote": round(1000 * cpu / remotes, 2),
        "requests": requests,
        "peak_rss_mib": round(rss, 1),
    }


def _gitmesh_phases(
    case: str,
    emu: Emulator,
    names: list[str],
    work: Path,
    *,
    latency: float,
    concurrency: int,
    workers: int = 1,
) -> list[dict[str, Any]]:
    repo = mesh_repo(work / f"{case}.git", names)
    cmd = gitmesh_reconcile(emu, repo, work / f"{case}-cache", concurrency, workers)
    rows = []
    for phase in ("initial", "noop"):
        offset, emu_cpu = emu.offset(), emu.cpu_s()
        wall, cpu, rss, code = run_cli(cmd)
        emu_cpu = emu.cpu_s() - emu_cpu
        if code != 0:
            raise RuntimeError(f"gitmesh reconcile exited {code} ({case}, {phase})")
        requests = sum(1 for x in emu.since(offset) if x.get("agent", "").startswith("gitmesh"))
        row = _row(
            case,
            "gitmesh",
            phase,
            remotes=len(names),
            latency=latency,
            measured=(wall, cpu, rss),
            requests=requests,
        )
        row["emulator_cpu_s"] = round(emu_cpu, 2)
        rows.append(row)
        print(f"  {case} gitmesh {phase}: {row['wall_s']} s, {row['cpu_ms_per_remote']} ms/remote")
    return rows


def _kubectl_phases(
    emu: Emulator, names: list[str], work: Path, latency: float
) -> list[dict[str, Any]]:
    manifests = {}
    for name, objs in desired_objects(emu, names).items():
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(objs))
        manifests[name] = path
    env = {"KUBECONFIG": str(emu.dir / "all.kubeconfig")}
    rows = []
    half = len(names) // 2
    # Each kubectl variant applies to remotes of its own, empty before its first pass.
    for tool, parallel, mine in (
        ("kubectl-seq", 1, names[:half]),
        ("kubectl-par8", 8, names[half:]),
    ):
        env["KUBECACHEDIR"] = str(work / f"kubecache-{tool}")
        for phase in ("initial", "noop"):
            offset = emu.offset()
            start = time.monotonic()
            with ThreadPoolExecutor(parallel) as pool:
                runs = list(
                    pool.map(
                        lambda item: run_cli(
                            ["kubectl", "apply", "--validate=false", "--context", item[0],
                             "-f", str(item[1])],
                            env,
                        ),
                        [(n, manifests[n]) for n in mine],
                    )
                )  # fmt: skip
            wall = time.monotonic() - start
            if any(code != 0 for *_, code in runs):
                raise RuntimeError(f"kubectl apply failed ({tool}, {phase})")
            cpu = sum(r[1] for r in runs)
            rss = max(r[2] for r in runs)
            requests = sum(1 for x in emu.since(offset) if x["cluster"] in mine)
            rows.append(
                _row(
                    "vs-kubectl",
                    tool,
                    phase,
                    remotes=len(mine),
                    latency=latency,
                    measured=(wall, cpu, rss),
                    requests=requests,
                )
            )
            print(f"  vs-kubectl {tool} {phase}: {wall:.2f} s", flush=True)
    return rows


def bench_wan(
    remotes: int,
    latency: float,
    kubectl_remotes: int,
    concurrency: int,
    tmp: Path,
    *,
    workers: tuple[int, ...] = (1,),
) -> list[dict[str, Any]]:
    """gitmesh over `remotes` far remotes (`latency` per request on each, none on
    central), once per worker count on clusters of their own (case `fleet`, or
    `fleet-wN` with N workers); then gitmesh, sequential kubectl and 8-parallel kubectl
    side by side over `kubectl_remotes` remotes each (kubectl over 1000 far remotes would
    take hours)."""
    work = tmp / f"wan-{remotes}-{round(latency * 1000)}"
    k = kubectl_remotes
    fleet, vs = remote_names(remotes), remote_names(3 * k, "vs")
    rows = []
    for n in workers:
        case = "fleet" if n == 1 else f"fleet-w{n}"
        with emulator(remotes, work / case, latency=latency) as emu:
            rows += _gitmesh_phases(
                case, emu, fleet, work, latency=latency, concurrency=concurrency, workers=n
            )
    if k:
        # Clusters of their own: the fleet's inventory would make these a mass prune.
        with emulator(len(vs), work / "vs", latency=latency, prefix="vs") as emu:
            rows += _gitmesh_phases(
                "vs-kubectl", emu, vs[:k], work, latency=latency, concurrency=concurrency
            )
            rows += _kubectl_phases(emu, vs[k:], work, latency)
    return rows


def bench_git(size: int, tmp: Path) -> dict[str, Any]:
    work = tmp / "git"
    names = remote_names(size)
    repo = mesh_repo(work / "mesh.git", names)
    source = Source(repo.url, cache_dir=work / "cache")
    start = time.monotonic()
    snap = source.fetch()
    read_s = time.monotonic() - start
    start = time.monotonic()
    parsed = snap.parse()
    parse_s = time.monotonic() - start
    assert len(parsed.remotes) == size
    comps = tuple(
        reports.ComponentReport(c, "Ready", objects=5, created=5)
        for c in ("common", "citadel", "sidecarinjector", "services", "injection")
    )
    report = reports.PassReport(
        snap.commit,
        {
            n: reports.RemoteReport(
                n,
                "Available",
                components=comps,
                endpoints={"istio-pilot": (f"10.24.{i // 250}.{i % 250}:15010",)},
            )
            for i, n in enumerate(names)
        },
    )
    branch = StatusBranch(Cache(repo.url, cache_dir=work / "cache2"), "gitmesh/status")

    def write() -> str | None:
        return branch.write(
            lambda cur: reports.render(report, cur, "2026-01-01T00:00:00Z"),
            lambda ch: reports.message(report, ch),
        )

    start = time.monotonic()
    assert write()
    write_s = time.monotonic() - start
    start = time.monotonic()
    assert write() is None
    noop_s = time.monotonic() - start
    return {
        "remotes": size,
        "fetch_and_read_seconds": round(read_s, 2),
        "validate_seconds": round(parse_s, 2),
        "status_commit_seconds": round(write_s, 2),
        "status_noop_seconds": round(noop_s, 2),
    }


def bench_localkube_list(objects: int) -> dict[str, Any]:
    with Server(clusters=["local"]) as server:
        store = server.store("local")
        kind = store.kind("", "v1", "configmaps")
        for i in range(objects):
            store.create(
                kind,
                "default",
                {
                    "metadata": {
                        "name": f"cm-{i:05d}",
                        "labels": {"app": "target" if i % 100 == 0 else "other"},
                    },
                    "data": {"k": "v" * 64},
                },
            )
        client = kubernetes.config.new_client_from_config_dict(server.kubeconfig())
        core = kubernetes.client.CoreV1Api(client)
        times = []
        for _ in range(30):
            start = time.monotonic()
            got = core.list_namespaced_config_map("default", label_selector="app=target")
            times.append(time.monotonic() - start)
        client.close()
        assert len(got.items) == objects // 100
    times.sort()
    return {
        "objects": objects,
        "matched": objects // 100,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(times[int(len(times) * 0.95)] * 1000, 1),
    }


def bench_hostile(size: int, tmp: Path) -> list[dict[str, Any]]:
    """Every remote answers every LIST with an endless valid JSON body, all at once: the
    pass's time and peak memory at two --max-response-size bounds."""
    work = tmp / "hostile"
    names = remote_names(size)
    rows = []
    with emulator(size, work) as emu, flood_server() as url:
        repo = mesh_repo(work / "mesh.git", names)
        configs = work / "kubeconfigs"
        configs.mkdir()
        for name in names:
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": name, "cluster": {"server": url}}],
                "users": [{"name": name, "user": {"token": "t"}}],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
            }
            (configs / name).write_text(yaml.safe_dump(config))
        for cap in ("16Mi", "1Mi"):
            cmd = [
                *gitmesh_reconcile(emu, repo, work / f"cache-{cap}", concurrency=size),
                "--kubeconfig-dir",
                str(configs),
                "--max-response-size",
                cap,
            ]
            seconds, cpu, rss, code = run_cli(cmd)
            rows.append(
                {
                    "remotes": size,
                    "cap": cap,
                    "seconds": round(seconds, 2),
                    "cpu_s": round(cpu, 2),
                    "peak_rss_mib": round(rss, 1),
                    "exit": code,
                }
            )
            print(f"  hostile R={size} cap {cap}: {seconds:.1f}s, {rss:.0f} MiB", flush=True)
    return rows


def _wan(r: dict[str, Any], case: str, tool: str, phase: str, latency: int) -> list[Any]:
    return [
        w
        for w in r.get("wan", [])
        if (w["case"], w["tool"], w["phase"], w["latency_ms"]) == (case, tool, phase, latency)
    ]


def _speedups(rows: list[dict[str, Any]]) -> list[tuple[int, str, float]]:
    """(latency, phase, kubectl-par8 wall / gitmesh wall) over the same number of remotes."""
    out = []
    for latency in sorted({w["latency_ms"] for w in rows}):
        for phase in ("initial", "noop"):
            found = {
                w["tool"]: w
                for w in rows
                if (w["case"], w["phase"], w["latency_ms"]) == ("vs-kubectl", phase, latency)
            }
            if "gitmesh" in found and "kubectl-par8" in found:
                ratio = found["kubectl-par8"]["wall_s"] / max(found["gitmesh"]["wall_s"], 0.01)
                out.append((latency, phase, round(ratio, 1)))
    return out


def _fleet_goal(phase: str, check: Any) -> Any:
    def goal(r: dict[str, Any]) -> bool | None:
        rows = [w for w in _wan(r, "fleet", "gitmesh", phase, 50) if w["remotes"] == 1000]
        return check(rows[0]) if rows else None

    return goal


GOALS = [
    (
        "WAN (50 ms per remote request): 1000-remote no-op pass under 10 s",
        _fleet_goal("noop", lambda w: w["wall_s"] < 10),
    ),
    (
        "WAN (50 ms per remote request): 1000-remote first pass under 30 s",
        _fleet_goal("initial", lambda w: w["wall_s"] < 30),
    ),
    (
        "no-op pass: at most 6 ms of gitmesh CPU per remote (1000 remotes)",
        _fleet_goal("noop", lambda w: w["cpu_ms_per_remote"] <= 6),
    ),
    (
        "peak RSS under 300 MiB at 1000 remotes, both passes",
        lambda r: (
            all(
                w["peak_rss_mib"] < 300
                for w in r.get("wan", [])
                if w["tool"] == "gitmesh" and w["remotes"] == 1000
            )
            if any(w["remotes"] == 1000 for w in r.get("wan", []))
            else None
        ),
    ),
    (
        "at least 5x faster than 8-parallel kubectl apply, both passes, at 50 ms",
        lambda r: (
            all(ratio >= 5 for latency, _, ratio in _speedups(r["wan"]) if latency == 50)
            if any(latency == 50 for latency, _, _ in _speedups(r.get("wan", [])))
            else None
        ),
    ),
    (
        "no-op pass: at most one LIST per managed kind per remote (10) and no writes",
        lambda r: (
            all(
                sum(v for k, v in row["noop"]["requests_per_remote"].items() if k in WRITES) == 0
                and row["noop"]["requests_per_remote"].get("list", 0) <= 10
                for row in r.get("passes", [])
            )
            if r.get("passes")
            else None
        ),
    ),
    (
        "no-op pass over 1000 remotes under 5 s",
        lambda r: next(
            (row["noop"]["seconds"] < 5 for row in r.get("passes", []) if row["remotes"] == 1000),
            None,
        ),
    ),
    (
        "endpoint propagation p99 under 1 s at 100 remotes",
        lambda r: r["endpoints"]["p99_ms"] < 1000 if "endpoints" in r else None,
    ),
    (
        "at least 10x faster than kubectl apply on the first pass",
        lambda r: r["kubectl"]["initial"]["speedup"] >= 10 if "kubectl" in r else None,
    ),
    (
        "at least 20x fewer requests than kubectl apply on the no-op pass",
        lambda r: r["kubectl"]["noop"]["request_ratio"] >= 20 if "kubectl" in r else None,
    ),
    (
        "reading 1000 specs at a commit under 2 s",
        lambda r: (
            r["git"]["fetch_and_read_seconds"] + r["git"]["validate_seconds"] < 2
            if "git" in r
            else None
        ),
    ),
    (
        "one status commit for 1000 remotes under 5 s",
        lambda r: r["git"]["status_commit_seconds"] < 5 if "git" in r else None,
    ),
    (
        "every remote flooding every LIST (8 remotes, 14 reads each at once): peak RSS under "
        "1 GiB at the default 16Mi bound, every remote failed, not the pass",
        lambda r: (
            all(h["peak_rss_mib"] < 1024 and h["exit"] == 1 for h in r["hostile"])
            if r.get("hostile")
            else None
        ),
    ),
    (
        "a labelled LIST out of 10,000 objects well under a second",
        lambda r: r["localkube"]["median_ms"] < 250 if "localkube" in r else None,
    ),
]


def table(results: dict[str, Any]) -> str:
    out = []
    if "passes" in results:
        out.append(
            "| backend | remotes | initial pass | no-op pass | CPU ms/remote, initial / no-op | "
            "requests/remote, initial | requests/remote, no-op | peak RSS |"
        )
        out.append("|---|---:|---:|---:|---:|---|---|---:|")
        for row in results["passes"]:
            i, n = row["initial"], row["noop"]
            fmt = lambda d: ", ".join(f"{k} {v:g}" for k, v in d.items())  # noqa: E731
            out.append(
                f"| {row.get('backend', 'localkube')} | {row['remotes']} | {i['seconds']} s | "
                f"{n['seconds']} s | {i['cpu_ms_per_remote']} / {n['cpu_ms_per_remote']} | "
                f"{fmt(i['requests_per_remote'])} | {fmt(n['requests_per_remote'])} | "
                f"{max(i['peak_rss_mib'], n['peak_rss_mib']):.0f} MiB |"
            )
    if "endpoints" in results:
        e = results["endpoints"]
        out.append(
            f"\nEndpoint propagation across {e['remotes']} remotes ({e['samples']} pod "
            f"IP changes): p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms, max "
            f"{e['max_ms']} ms"
        )
    if "kubectl" in results:
        k = results["kubectl"]
        out.append(f"\n`kubectl apply` per remote vs gitmesh, {k['remotes']} remotes:\n")
        out.append(
            "| pass | kubectl | gitmesh | speed-up | kubectl requests | gitmesh requests | ratio |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for phase in ("initial", "noop"):
            p = k[phase]
            out.append(
                f"| {phase} | {p['kubectl_seconds']} s | {p['gitmesh_seconds']} s | "
                f"{p['speedup']}x | {p['kubectl_requests']} | {p['gitmesh_requests']} |"
                f" {p['request_ratio']}x |"
            )
    if "git" in results:
        g = results["git"]
        out.append(
            f"\ngit, {g['remotes']} remotes: clone+read {g['fetch_and_read_seconds']} s, "
            f"validate {g['validate_seconds']} s, status commit "
            f"{g['status_commit_seconds']} s, no-op status {g['status_noop_seconds']} s"
        )
    if "localkube" in results:
        lk = results["localkube"]
        out.append(
            f"\nlocalkube: labelled LIST of {lk['matched']} out of {lk['objects']} "
            f"objects: median {lk['median_ms']} ms, p95 {lk['p95_ms']} ms"
        )
    if "hostile" in results:
        out.append("\n| hostile remotes | --max-response-size | wall | CPU | peak RSS | exit |")
        out.append("|---:|---|---:|---:|---:|---:|")
        for h in results["hostile"]:
            out.append(
                f"| {h['remotes']} | {h['cap']} | {h['seconds']} s | {h['cpu_s']} s | "
                f"{h['peak_rss_mib']:.0f} MiB | {h['exit']} |"
            )
    if "wan" in results:
        out.append(
            "\n| case | tool | pass | remotes | latency | wall | CPU | CPU ms/remote | "
            "requests | peak RSS |"
        )
        out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for w in results["wan"]:
            out.append(
                f"| {w['case']} | {w['tool']} | {w['phase']} | {w['remotes']} | "
                f"{w['latency_ms']} ms | {w['wall_s']} s | {w['cpu_s']} s | "
                f"{w['cpu_ms_per_remote']} | {w['requests']} | {w['peak_rss_mib']:.0f} MiB |"
            )
        for latency, phase, ratio in _speedups(results["wan"]):
            out.append(f"- {latency} ms, {phase}: gitmesh {ratio}x faster than 8-parallel kubectl")
    out.append("\nGoals:")
    for text, check in GOALS:
        verdict = check(results)
        mark = "n/a" if verdict is None else ("met" if verdict else "MISSED")
        out.append(f"- {mark}: {text}")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench")
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--endpoint-remotes", type=int, default=100)
    p.add_argument("--endpoint-samples", type=int, default=30)
    p.add_argument("--kubectl-remotes", type=int, default=20)
    p.add_argument("--git-remotes", type=int, default=1000)
    p.add_argument(
        "--only",
        default="passes,endpoints,kubectl,git,localkube,hostile",
        help="any of passes,endpoints,kubectl,git,localkube,wan,hostile (wan: far remotes; "
        "hostile: every remote floods its answers)",
    )
    p.add_argument("--remotes", type=int, default=1000, help="wan: how many remotes")
    p.add_argument(
        "--workers", default="1", help="wan: gitmesh --workers, one fleet run each, as 1,2"
    )
    p.add_argument(
        "--latency",
        default="50ms",
        help="wan: the time each remote takes to answer, as 50ms or 0s; several as 0s,50ms",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=Settings().concurrency,
        help="wan: gitmesh --concurrency (default: gitmesh's own default)",
    )
    p.add_argument("--json", type=Path, default=Path("bench-results.json"))
    p.add_argument(
        "--backend",
        default="localkube",
        help="for the passes: localkube, kube-apiserver, or both as localkube,kube-apiserver",
    )
    args = p.parse_args()
    only = set(args.only.split(","))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}
    }
    with tempfile.TemporaryDirectory(prefix="gitmesh-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "localkube" in only:
            results["localkube"] = bench_localkube_list(10_000)
            print("  localkube list done", flush=True)
        if "git" in only:
            results["git"] = bench_git(args.git_remotes, tmp)
            print("  git done", flush=True)
        if "kubectl" in only:
            results["kubectl"] = bench_kubectl(args.kubectl_remotes, tmp)
            print("  kubectl done", flush=True)
        if "endpoints" in only:
            results["endpoints"] = bench_endpoints(
                args.endpoint_remotes, args.endpoint_samples, tmp
            )
            print("  endpoints done", flush=True)
        if "hostile" in only:
            results["hostile"] = bench_hostile(8, tmp)
        if "wan" in only:
            results["wan"] = [
                row
                for latency in args.latency.split(",")
                for row in bench_wan(
                    args.remotes,
                    durations.parse(latency),
                    args.kubectl_remotes,
                    args.concurrency,
                    tmp,
                    workers=tuple(int(n) for n in args.workers.split(",")),
                )
            ]
        if "passes" in only:
            sizes = [int(s) for s in args.sizes.split(",")]
            results["passes"] = [
                row
                for backend in args.backend.split(",")
                for row in bench_passes(sizes, tmp, backend)
            ]
    results["goals"] = {text: check(results) for text, check in GOALS}
    args.json.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
