"""localkube's server: listeners, clusters, kubeconfigs, faults and request counts.

One `Server` listens on 127.0.0.1 and hosts many clusters, each under its own path prefix
(`/clusters/<name>`), or, with `dedicated_ports=True`, each on a port of its own (so that
taking a cluster down is a real "connection refused"). Requests are served by
gitmesh.localkube.handler.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import random
import secrets
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from gitmesh.localkube import tlsgen, workloads
from gitmesh.localkube.handler import _Handler, _HTTPServer
from gitmesh.localkube.store import ApiError, Store


def count_matching(
    requests: Mapping[tuple[str, str, str, int], int],
    *,
    cluster: str | None,
    verb: str | None,
    resource: str | None,
    code: int | None,
) -> int:
    """How many of `requests` (by cluster, verb, resource, code) match; None matches all."""
    return sum(
        n
        for (c, v, r, s), n in requests.items()
        if (cluster is None or c == cluster)
        and (verb is None or v == verb)
        and (resource is None or r == resource)
        and (code is None or s == code)
    )


@dataclass(slots=True)
class Fault:
    """Make matching requests fail, slow down, or lose their connection.

    `count` requests are affected (None: every one until removed); `probability` draws
    each matching request at random (seeded). `status` answers with that code (and a
    Retry-After for 429/503 when `retry_after` is set); `latency` sleeps first; `drop`
    resets the connection without an answer.
    """

    cluster: str | None = None
    verb: str | None = None
    resource: str | None = None
    status: int | None = None
    retry_after: int | None = None
    latency: float = 0.0
    drop: bool = False
    count: int | None = 1
    probability: float = 1.0
    hits: int = 0

    def matches(self, cluster: str, verb: str, resource: str) -> bool:
        """Whether a request falls under this fault."""
        return (
            (self.cluster is None or self.cluster == cluster)
            and (self.verb is None or self.verb == verb)
            and (self.resource is None or self.resource == resource)
            and (self.count is None or self.count > 0)
        )


@dataclass(slots=True)
class _Cluster:
    name: str
    store: Store
    down: bool = False
    httpd: ThreadingHTTPServer | None = None
    port: int = 0
    pod_ips: Any = None
    workload_delay: float | None = None
    timers: list[threading.Timer] = field(default_factory=list)
    latency: float = 0.0  # every request waits this long first (a far cluster)


class Server:
    """A running localkube: use as a context manager.

    >>> with Server(clusters=["central", "remote-1"]) as kube:
    ...     config = kube.kubeconfig("remote-1")   # a kubeconfig dict for that cluster
    """

    def __init__(
        self,
        clusters: list[str] | tuple[str, ...] = ("local",),
        *,
        port: int = 0,
        tls: bool = False,
        token: str | None = None,
        dedicated_ports: bool = False,
        access_log: Path | None = None,
        history: int = 10_000,
        pod_cidr: str = "10.24.0.0/16",
        seed: int = 0,
        bookmark_interval: float = 5.0,
    ) -> None:
        self.port = port
        self.tls = tls
        self.token = token if token is not None else (secrets.token_urlsafe(24) if tls else None)
        self.dedicated_ports = dedicated_ports
        self.history = history
        self.pod_cidr = pod_cidr
        self.bookmark_interval = bookmark_interval
        self.clusters: dict[str, _Cluster] = {}
        self.faults: list[Fault] = []
        self.requests: Counter[tuple[str, str, str, int]] = Counter()
        self.stopping = threading.Event()
        self.ssl_context: ssl.SSLContext | None = None
        self.tls_material: tlsgen.Material | None = None
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault draws, not crypto
        self._access_log = access_log.open("a", encoding="utf-8") if access_log else None
        self._main: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="localkube-")
        for name in clusters:
            self.clusters[name] = self._new_cluster(name)

    def _new_cluster(self, name: str) -> _Cluster:
        network = ipaddress.ip_network(self.pod_cidr)
        return _Cluster(
            name,
            Store(name, history=self.history),
            pod_ips=itertools.islice(network.hosts(), 1, None),
        )

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start listening (in background threads)."""
        if self.tls:
            self.tls_material = tlsgen.generate()
            cert = Path(self._tmp.name) / "tls.crt"
            key = Path(self._tmp.name) / "tls.key"
            cert.write_bytes(self.tls_material.cert_pem)
            key.write_bytes(self.tls_material.key_pem)
            key.chmod(0o600)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            ctx.set_alpn_protocols(["http/1.1"])
            self.ssl_context = ctx
        self._main = _HTTPServer(("127.0.0.1", self.port), self, None)
        self.port = self._main.server_address[1]
        self._serve(self._main)
        if self.dedicated_ports:
            for cluster in self.clusters.values():
                self._listen(cluster)

    def _serve(self, httpd: _HTTPServer) -> None:
        t = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="localkube"
        )
        t.start()
        self._threads.append(t)

    def _listen(self, cluster: _Cluster) -> None:
        httpd = _HTTPServer(("127.0.0.1", cluster.port), self, cluster.name)
        cluster.port = httpd.server_address[1]
        cluster.httpd = httpd
        self._serve(httpd)

    def stop(self) -> None:
        """Stop listening and end open watches."""
        self.stopping.set()
        for cluster in self.clusters.values():
            with cluster.store.changed:
                cluster.store.changed.notify_all()
            for timer in cluster.timers:
                timer.cancel()
            if cluster.httpd is not None:
                cluster.httpd.shutdown()
                cluster.httpd.server_close()
        if self._main is not None:
            self._main.shutdown()
            self._main.server_close()
        if self._access_log:
            self._access_log.close()
        self._tmp.cleanup()

    # -- clusters ------------------------------------------------------------------------

    def add_cluster(self, name: str) -> Store:
        """Host one more cluster (while running, too)."""
        with self._lock:
            cluster = self._new_cluster(name)
            self.clusters[name] = cluster
        if self.dedicated_ports and self._main is not None:
            self._listen(cluster)
        return cluster.store

    def store(self, name: str) -> Store:
        """The state of one cluster, for direct inspection in tests."""
        return self.clusters[name].store

    def url(self, name: str) -> str:
        """The server URL a client uses for cluster `name`."""
        scheme = "https" if self.tls else "http"
        cluster = self.clusters[name]
        if self.dedicated_ports:
            return f"{scheme}://127.0.0.1:{cluster.port}"
        return f"{scheme}://127.0.0.1:{self.port}/clusters/{name}"

    def down(self, name: str) -> None:
        """Take a cluster off the network: connection refused on a dedicated port, a reset
        connection on the shared one."""
        cluster = self.clusters[name]
        cluster.down = True
        with cluster.store.changed:
            cluster.store.changed.notify_all()  # open watches notice and break
        if cluster.httpd is not None:
            cluster.httpd.shutdown()
            cluster.httpd.server_close()
            cluster.httpd = None

    def up(self, name: str) -> None:
        """Bring a cluster back, on the same URL."""
        cluster = self.clusters[name]
        cluster.down = False
        if self.dedicated_ports and cluster.httpd is None:
            self._listen(cluster)

    def kubeconfig(self, name: str | None = None, *, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig dict for cluster `name` alone, or, without a name, one with a
        context per cluster (the first current)."""
        names = [name] if name else list(self.clusters)
        current = names[0]
        cluster_entries = []
        for n in names:
            entry: dict[str, Any] = {"server": self.url(n)}
            if self.tls_material is not None:
                entry["certificate-authority-data"] = base64.b64encode(
                    self.tls_material.ca_pem
                ).decode()
            cluster_entries.append({"name": n, "cluster": entry})
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": cluster_entries,
            "users": [{"name": n, "user": dict(user)} for n in names],
            "contexts": [
                {"name": n, "context": {"cluster": n, "user": n, "namespace": namespace}}
                for n in names
            ],
            "current-context": current,
        }

    def write_kubeconfig(self, path: Path, name: str | None = None) -> Path:
        """Write `kubeconfig(name)` (all clusters without a name) as YAML, mode 0600."""
        path.write_text(yaml.safe_dump(self.kubeconfig(name), sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    # -- faults and counting -------------------------------------------------------------

    def inject(self, **kwargs: Any) -> Fault:
        """Add a `Fault` (see its fields); returns it so a test can look at `hits`."""
        fault = Fault(**kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def set_access_log(self, path: Path | None) -> None:
        """Append one JSON line per request to `path` from now on (None: stop)."""
        with self._lock:
            if self._access_log:
                self._access_log.close()
            self._access_log = path.open("a", encoding="utf-8") if path else None

    def set_latency(self, cluster: str, seconds: float) -> None:
        """Answer every request to `cluster` `seconds` late: a cluster across a WAN. (A
        latency `Fault` does the same, but faults are matched in turn, one by one.)"""
        self.clusters[cluster].latency = seconds

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self.faults.clear()

    def apply_faults(self, handler: _Handler, cluster: str, verb: str, resource: str) -> None:
        """Called by the handler before serving a request. Each matching fault draws in
        turn (so five faults of 2% fail about 10% of requests); the first that fires acts."""
        known = self.clusters.get(cluster)
        if known is not None and known.latency:
            time.sleep(known.latency)
        if not self.faults:
            return
        with self._lock:
            fault = next(
                (
                    f
                    for f in self.faults
                    if f.matches(cluster, verb, resource)
                    and (f.probability >= 1.0 or self._rng.random() < f.probability)
                ),
                None,
            )
            if fault is None:
                return
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
        if fault.latency:
            time.sleep(fault.latency)
        if fault.drop:
            handler._drop()
        if fault.status:
            reasons = {
                429: "TooManyRequests",
                500: "InternalError",
                503: "ServiceUnavailable",
                409: "Conflict",
                504: "Timeout",
            }
            raise ApiError(
                fault.status,
                reasons.get(fault.status, "Unknown"),
                f"localkube injected fault ({fault.status})",
                {"retryAfterSeconds": fault.retry_after} if fault.retry_after else {},
                retry_after=fault.retry_after,
            )

    def record(
        self,
        *,
        cluster: str,
        verb: str,
        resource: str,
        code: int,
        method: str,
        path: str,
        ms: float,
        agent: str = "",
    ) -> None:
        """Count a request and append it to the access log."""
        with self._lock:
            self.requests[(cluster, verb, resource, code)] += 1
            if self._access_log:
                parsed = urllib.parse.urlsplit(path)
                self._access_log.write(
                    json.dumps(
                        {
                            "method": method,
                            "path": parsed.path,
                            "query": parsed.query,
                            "status": code,
                            "ms": round(ms, 3),
                            "cluster": cluster,
                            "verb": verb,
                            "resource": resource,
                            "time": round(time.time(), 6),
                            "agent": agent,
                        }
                    )
                    + "\n"
                )
                self._access_log.flush()

    def count(
        self,
        *,
        cluster: str | None = None,
        verb: str | None = None,
        resource: str | None = None,
        code: int | None = None,
    ) -> int:
        """How many requests matched (None matches anything)."""
        with self._lock:
            return count_matching(
                self.requests, cluster=cluster, verb=verb, resource=resource, code=code
            )

    def reset_counts(self) -> None:
        """Forget the request counts."""
        with self._lock:
            self.requests.clear()

    # -- workloads -----------------------------------------------------------------------

    # -- workloads: the functions of gitmesh.localkube.workloads, bound as methods ----------

    simulate_workloads = workloads.simulate
    add_pod = workloads.add_pod
    set_pod = workloads.set_pod
