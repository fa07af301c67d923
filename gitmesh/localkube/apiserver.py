"""`gitmesh localkube --backend kube-apiserver`: real clusters from real binaries.

One etcd, and per cluster one kube-apiserver (its own `--etcd-prefix`) and one
kube-controller-manager (namespace lifecycle, garbage collection, the ServiceAccount and
root-CA publisher controllers), built from source by `tools/build-kube-assets.sh` and found
through `$KUBEBUILDER_ASSETS` (envtest's convention). RBAC authorization is on; the admin
kubeconfig authenticates with a static token in `system:masters`; ServiceAccount tokens
(TokenRequest) work. Everything lives in one temporary directory, removed on stop, and
every process is ended on stop (SIGTERM, then SIGKILL).

`KubeAPIServer` offers what tests, the sandbox and the CLI use of the emulator's `Server`:
`kubeconfig`/`write_kubeconfig`/`url`, `store(name)` (a facade speaking the same methods
over HTTP, so `gitmesh.testing.sandbox` seeds both alike), `add_pod`/`set_pod`, and request
counts and the `--access-log` JSON lines, derived from kube-apiserver's audit log (only
clients' requests: the control plane's own are left out). It cannot inject faults or take
a cluster down; tests that need that run on the emulator only.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import ipaddress
import itertools
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gitmesh.errors import GitmeshError
from gitmesh.localkube import kubelet, tlsgen, workloads
from gitmesh.localkube.apistore import ApiStore
from gitmesh.localkube.server import count_matching
from gitmesh.localkube.store import ApiError

ASSETS_ENV = "KUBEBUILDER_ASSETS"
PR_SET_PDEATHSIG = 1
BUILD_SCRIPT = "tools/build-kube-assets.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
START_TIMEOUT = 90.0
STOP_GRACE = 1.0  # for all processes together; then SIGKILL (the data dir is ours alone)
DEFAULT_SA = "/api/v1/namespaces/default/serviceaccounts/default"
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    # Deployments roll out into ReplicaSets and pods; pods start only with the simulated
    # kubelet (simulate_workloads), else Deployments stay unavailable, as on a cluster
    # without nodes.
    "deployment-controller",
    "replicaset-controller",
)
SEED_USER = "localkube:seed"
# The control plane's own users and the store facade's: not a client's, not counted.
_CONTROL_PLANE = ("system:apiserver", "system:kube-controller-manager", SEED_USER)
_METHODS = {
    "get": "GET",
    "list": "GET",
    "watch": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}


class AssetsMissing(GitmeshError):
    """The kube-apiserver binaries are not where `$KUBEBUILDER_ASSETS` says."""


def assets_dir(explicit: Path | None = None) -> Path:
    """The directory holding the binaries, or a clear error naming the build script."""
    raw = explicit or (Path(os.environ[ASSETS_ENV]) if os.environ.get(ASSETS_ENV) else None)
    if raw is None:
        raise AssetsMissing(
            f"${ASSETS_ENV} is not set: build the binaries with `bash {BUILD_SCRIPT}` and "
            f"export {ASSETS_ENV}=<the directory it prints>"
        )
    missing = [b for b in BINARIES if not (raw / b).is_file()]
    if missing:
        raise AssetsMissing(
            f"{raw} lacks {', '.join(missing)}: run `bash {BUILD_SCRIPT}` and point "
            f"{ASSETS_ENV} at the directory it prints"
        )
    return raw


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range when it can be.

    A port the kernel handed out as ephemeral may be handed out again, as the source
    port of any outgoing connection, before the server that was meant to have it
    binds; ports below the range are never handed out that way.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = random.sample(range(10000, low), min(64, max(low - 10000, 0)))
    for port in [*candidates, 0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise GitmeshError("no free loopback port")


class _Locked(Iterator[Any]):
    """An iterator several threads take from (the pod IPs: tests and the kubelet)."""

    def __init__(self, it: Iterator[Any]) -> None:
        self._it, self._lock = it, threading.Lock()

    def __next__(self) -> Any:
        with self._lock:
            return next(self._it)


@dataclass(slots=True)
class _Cluster:
    name: str
    port: int
    store: ApiStore
    audit: Path
    pod_ips: Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]
    audit_offset: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


class KubeAPIServer:
    """Real clusters: etcd, kube-apiserver and kube-controller-manager per cluster.

    >>> with KubeAPIServer(clusters=["central", "west"]) as kube:
    ...     config = kube.kubeconfig("west")
    """

    tls = True

    def __init__(
        self,
        clusters: list[str] | tuple[str, ...] = ("local",),
        *,
        access_log: Path | None = None,
        token: str | None = None,
        assets: Path | None = None,
        controllers: bool = True,
        pod_cidr: str = "10.24.0.0/16",
        aggregator_routing: bool = False,
    ) -> None:
        self.assets = assets_dir(assets)
        # --enable-aggregator-routing: webhooks by Service are called at the Service's
        # endpoints (matched by port name), not its ClusterIP; kube-apiserver then refuses
        # ExternalName Services for webhooks (ResolveEndpoint, apiserver's proxy.go).
        self.aggregator_routing = aggregator_routing
        self.names = list(clusters)
        self.token = token or secrets.token_urlsafe(24)
        self.controllers = controllers
        self.pod_cidr = pod_cidr
        self.clusters: dict[str, _Cluster] = {}
        self._requests: Counter[tuple[str, str, str, int]] = Counter()
        self._access_log = access_log.open("a", encoding="utf-8") if access_log else None
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="kube-apiserver-")
        self.dir = Path(self._tmp.name)
        self._etcd: subprocess.Popen[bytes] | None = None
        self._logs: dict[int, Path] = {}
        self._stopping = threading.Event()
        self._kubelets: list[threading.Thread] = []
        # The store facade acts as its own user, left out of the counts: on the emulator,
        # store calls are not requests either.
        self._seed_token = secrets.token_urlsafe(24)
        self.tls_material = tlsgen.generate(("127.0.0.1", "localhost"))

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> KubeAPIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.dir / f"{name}.log"
        # A process group of its own: stop() ends it and whatever it started.
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.dir,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
            )
        self._logs[proc.pid] = log
        return proc

    def start(self) -> None:
        """Start etcd and every cluster; returns once each serves and is ready."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        d = self.dir
        (d / "tls.crt").write_bytes(self.tls_material.cert_pem + self.tls_material.ca_pem)
        (d / "tls.key").write_bytes(self.tls_material.key_pem)
        (d / "ca.crt").write_bytes(self.tls_material.ca_pem)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (d / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        kcm_token = secrets.token_urlsafe(24)
        (d / "tokens.csv").write_text(
            f'{self.token},admin,admin,"system:masters"\n'
            f'{self._seed_token},{SEED_USER},seed,"system:masters"\n'
            f"{kcm_token},system:kube-controller-manager,kcm\n"
        )
        (d / "audit-policy.yaml").write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\n"
            "omitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
        )
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._etcd = self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                "--data-dir", str(d / "etcd"),
                "--listen-client-urls", etcd_url,
                "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level", "warn",
            ],
        )  # fmt: skip
        self._wait(lambda: _http_ok(f"{etcd_url}/health"), "etcd", self._etcd)
        network = ipaddress.ip_network(self.pod_cidr)
        for name in self.names:
            proc, port = self._spawn_apiserver(name, etcd_url)
            url = f"https://127.0.0.1:{port}"
            store = ApiStore(url, self._seed_token, self.tls_material.ca_pem)
            cluster = _Cluster(
                name,
                port,
                store,
                d / f"{name}-audit.log",
                _Locked(itertools.islice(network.hosts(), 1, None)),
                0,
                [proc],
            )
            self.clusters[name] = cluster
        for cluster in self.clusters.values():
            for attempt in range(3):
                try:
                    self._wait(
                        functools.partial(_ready, cluster.store),
                        f"kube-apiserver of {cluster.name}",
                        cluster.processes[0],
                    )
                    break
                except GitmeshError as e:
                    # The port was free when chosen, and taken before the server bound it.
                    if attempt == 2 or "address already in use" not in str(e):
                        raise
                    proc, port = self._spawn_apiserver(cluster.name, etcd_url)
                    cluster.processes[0], cluster.port = proc, port
                    cluster.store = ApiStore(
                        f"https://127.0.0.1:{port}", self._seed_token, self.tls_material.ca_pem
                    )
            if self.controllers:
                self._start_controllers(cluster, kcm_token)
        for cluster in self.clusters.values() if self.controllers else ():
            # Namespaces usable as on a cluster: the default ServiceAccount is there.
            self._wait(
                functools.partial(_exists, cluster.store, DEFAULT_SA),
                f"the default ServiceAccount of {cluster.name}",
                cluster.processes[-1],
            )
        self.reset_counts()

    def _spawn_apiserver(self, name: str, etcd_url: str) -> tuple[subprocess.Popen[bytes], int]:
        d = self.dir
        port = free_port()
        audit = d / f"{name}-audit.log"
        proc = self._spawn(
            f"{name}-kube-apiserver",
            [
                str(self.assets / "kube-apiserver"),
                "--etcd-servers", etcd_url,
                "--etcd-prefix", f"/registry-{name}",
                "--bind-address", "127.0.0.1",
                "--secure-port", str(port),
                "--tls-cert-file", str(d / "tls.crt"),
                "--tls-private-key-file", str(d / "tls.key"),
                "--cert-dir", str(d / f"{name}-certs"),
                "--token-auth-file", str(d / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(d / "sa.key"),
                "--service-account-signing-key-file", str(d / "sa.key"),
                "--service-cluster-ip-range", "10.0.0.0/16",
                "--audit-policy-file", str(d / "audit-policy.yaml"),
                "--audit-log-path", str(audit),
                "--audit-log-mode", "blocking",
                "--audit-log-format", "json",
                # Only written into the `kubernetes` Endpoints, which may not be loopback;
                # nothing connects to it (TEST-NET-1, RFC 5737).
                "--advertise-address", "192.0.2.10",
                "--allow-privileged",
                *(["--enable-aggregator-routing=true"] if self.aggregator_routing else []),
            ],
        )  # fmt: skip
        return proc, port

    def _wait(self, check: Any, what: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise GitmeshError(
                    f"{what} exited with {proc.returncode} while starting: {self._tail(proc)}"
                )
            if check():
                return
            time.sleep(0.2)
        raise GitmeshError(f"{what} was not ready after {START_TIMEOUT:g}s: {self._tail(proc)}")

    def _tail(self, proc: subprocess.Popen[bytes]) -> str:
        """The last lines a process logged."""
        with contextlib.suppress(OSError, KeyError):
            lines = self._logs[proc.pid].read_text(errors="replace").splitlines()
            return " | ".join(lines[-5:])[-1500:]
        return ""

    def _start_controllers(self, cluster: _Cluster, token: str) -> None:
        kubeconfig = self.dir / f"{cluster.name}-kcm.kubeconfig"
        config = self.kubeconfig(cluster.name)
        config["users"][0]["user"] = {"token": token}
        kubeconfig.write_text(yaml.safe_dump(config))
        args = [
            str(self.assets / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--root-ca-file={self.dir / 'ca.crt'}",
            f"--service-account-private-key-file={self.dir / 'sa.key'}",
            # Each controller under its own ServiceAccount, as on real clusters: the
            # namespace controller needs the rights of its own ClusterRole.
            "--use-service-account-credentials=true",
        ]
        cluster.processes.append(self._spawn(f"{cluster.name}-kube-controller-manager", args))

    def stop(self) -> None:
        """End every process (and its group) and remove the temporary directory."""
        self._stopping.set()
        for thread in self._kubelets:
            thread.join(timeout=STOP_GRACE)
        procs = [p for c in self.clusters.values() for p in reversed(c.processes)]
        if self._etcd is not None:
            procs.append(self._etcd)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._access_log:
            self._access_log.close()
            self._access_log = None
        self._tmp.cleanup()

    # -- clients -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The first cluster's port (each cluster has its own)."""
        return next(iter(self.clusters.values())).port

    def url(self, name: str) -> str:
        """The server URL of cluster `name`."""
        return f"https://127.0.0.1:{self.clusters[name].port}"

    def kubeconfig(self, name: str | None = None, *, namespace: str = "default") -> dict[str, Any]:
        """An admin kubeconfig for cluster `name`, or one with a context per cluster."""
        names = [name] if name else self.names
        ca = base64.b64encode(self.tls_material.ca_pem).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {"name": n, "cluster": {"server": self.url(n), "certificate-authority-data": ca}}
                for n in names
            ],
            "users": [{"name": n, "user": {"token": self.token}} for n in names],
            "contexts": [
                {"name": n, "context": {"cluster": n, "user": n, "namespace": namespace}}
                for n in names
            ],
            "current-context": names[0],
        }

    def write_kubeconfig(self, path: Path, name: str | None = None) -> Path:
        """Write `kubeconfig(name)` as YAML, mode 0600."""
        path.write_text(yaml.safe_dump(self.kubeconfig(name), sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    def store(self, name: str) -> ApiStore:
        """The store-like facade of cluster `name`."""
        return self.clusters[name].store

    def add_pod(self, name: str, namespace: str, pod: str, **kwargs: Any) -> dict[str, Any]:
        """Create a running pod (see `workloads.add_pod`), once the namespace has the
        `default` ServiceAccount that pod admission looks up."""
        self._default_service_account(name, namespace)
        return workloads.add_pod(self, name, namespace, pod, **kwargs)

    set_pod = workloads.set_pod

    def _default_service_account(self, name: str, namespace: str) -> None:
        # The ServiceAccount controller makes it a moment after the namespace; without
        # controllers nothing does, and we make it as that controller would.
        store = self.store(name)
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        deadline = time.monotonic() + (10.0 if self.controllers else 0.0)
        while not _exists(store, f"{path}/default"):
            if time.monotonic() >= deadline:
                with contextlib.suppress(ApiError):  # 409: the controller was first
                    store.request("POST", path, {"metadata": {"name": "default"}})
                return
            time.sleep(0.1)

    def simulate_workloads(self, name: str, *, delay: float = 0.05) -> None:
        """Start cluster `name`'s simulated kubelet (gitmesh.localkube.kubelet): its pods
        start, and its Deployments roll out by the real controllers."""
        cluster = self.clusters[name]

        ips = cluster.pod_ips
        self._kubelets.append(
            kubelet.start(cluster.store, lambda: str(next(ips)), self._stopping, delay=delay)
        )

    # -- counts and the access log -------------------------------------------------------

    def _drain(self) -> None:
        """Fold audit events written since the last call into the counts and the log."""
        for cluster in self.clusters.values():
            if not cluster.audit.exists():
                continue
            with cluster.audit.open("rb") as f:
                f.seek(cluster.audit_offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            cluster.audit_offset += end
            for line in data[:end].splitlines():
                self._record(cluster.name, json.loads(line))

    def _record(self, cluster: str, event: dict[str, Any]) -> None:
        user = (event.get("user") or {}).get("username", "")
        if user in _CONTROL_PLANE or user.startswith("system:serviceaccount:kube-system:"):
            return
        verb = event.get("verb", "")
        # A watch is counted when it starts streaming (ResponseStarted), as the emulator
        # counts it; everything else when it completes.
        if (event.get("stage") == "ResponseStarted") != (verb == "watch"):
            return
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "") or "discovery"
        code = int((event.get("responseStatus") or {}).get("code", 0))
        self._requests[(cluster, verb, resource, code)] += 1
        if self._access_log:
            uri = urllib.parse.urlsplit(event.get("requestURI", ""))
            started = _timestamp(event.get("requestReceivedTimestamp", ""))
            done = _timestamp(event.get("stageTimestamp", ""))
            self._access_log.write(
                json.dumps(
                    {
                        "method": _METHODS.get(verb, verb.upper()),
                        "path": uri.path,
                        "query": uri.query,
                        "status": code,
                        "ms": round((done - started) * 1000, 3),
                        "cluster": cluster,
                        "verb": verb,
                        "resource": resource,
                        "time": round(done, 6),
                        "agent": event.get("userAgent", ""),
                    }
                )
                + "\n"
            )
            self._access_log.flush()

    @property
    def requests(self) -> Counter[tuple[str, str, str, int]]:
        """Client requests by (cluster, verb, resource, code), as the emulator counts."""
        with self._lock:
            self._drain()
            return Counter(self._requests)

    def count(
        self,
        *,
        cluster: str | None = None,
        verb: str | None = None,
        resource: str | None = None,
        code: int | None = None,
    ) -> int:
        """How many client requests matched (None matches anything)."""
        with self._lock:
            self._drain()
            return count_matching(
                self._requests, cluster=cluster, verb=verb, resource=resource, code=code
            )

    def reset_counts(self) -> None:
        """Forget the request counts."""
        with self._lock:
            self._drain()
            self._requests.clear()

    def set_access_log(self, path: Path | None) -> None:
        """Append one JSON line per client request to `path` from now on."""
        with self._lock:
            self._drain()
            if self._access_log:
                self._access_log.close()
            self._access_log = path.open("a", encoding="utf-8") if path else None

    def follow_access_log(self, stop: threading.Event, interval: float = 0.2) -> None:
        """Keep the access log current until `stop` (for `gitmesh localkube`)."""
        while not stop.wait(interval):
            with self._lock:
                self._drain()


def _die_with_parent() -> None:
    """In the child: be sent SIGKILL when the process that started it dies, so a test
    run killed outright leaves no kube-apiserver or etcd behind (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback etcd
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def _ready(store: ApiStore) -> bool:
    try:
        store.request("GET", "/readyz", raw=True)
    except (ApiError, OSError, ValueError):
        return False
    return True


def _exists(store: ApiStore, path: str) -> bool:
    try:
        store.request("GET", path)
    except (ApiError, OSError, ValueError):
        return False
    return True
