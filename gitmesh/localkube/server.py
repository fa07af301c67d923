"""localkube's HTTP(S) front: routing, discovery, watches, Tables, auth, faults, counting.

One `Server` listens on 127.0.0.1 and hosts many clusters, each under its own path prefix
(`/clusters/<name>`), or, with `dedicated_ports=True`, each on a port of its own (so that
taking a cluster down is a real "connection refused"). The handler turns a request into
a call on the cluster's `Store` and the store's `ApiError` into a `Status` body.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import itertools
import json
import random
import secrets
import socket
import ssl
import struct
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from gitmesh import selectors
from gitmesh.localkube import kinds, tlsgen
from gitmesh.localkube.kinds import Kind
from gitmesh.localkube.store import ApiError, Event, Obj, Store, bad_request

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-localkube",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "",
    "compiler": "python",
    "platform": "linux/amd64",
}
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's default request body limit


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
class _Route:
    cluster: str
    store: Store
    path: str


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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], owner: Server, pinned: str | None) -> None:
        self.owner = owner
        self.pinned = pinned
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()
        if self.owner.ssl_context is not None:
            conn = self.owner.ssl_context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-response (watch consumers, dropped faults) are normal.
        pass


class _Dropped(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ------------------------------------------------------------------------

    @property
    def owner(self) -> Server:
        return self.server.owner

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY:
                    raise ApiError(413, "RequestEntityTooLarge", "request entity too large")
        else:
            if length > MAX_BODY:
                raise ApiError(413, "RequestEntityTooLarge", "request entity too large")
            data = self.rfile.read(length) if length else b""
        if not data:
            return None
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if "protobuf" in ctype or "cbor" in ctype:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media "
                "types include: application/json, application/yaml",
            )
        try:
            if ctype.endswith("yaml"):
                return yaml.safe_load(data)
            return json.loads(data)
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"the body of the request could not be decoded: {e}") from e

    def _send(self, code: int, body: Any, *, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._status = code

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        raise _Dropped

    def _route(self) -> _Route:
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path.rstrip("/") or "/"
        pinned = self.server.pinned
        if pinned is not None:
            name = pinned
        else:
            parts = path.split("/")
            if len(parts) < 3 or parts[1] != "clusters":
                raise ApiError(404, "NotFound", "localkube serves clusters under /clusters/<name>")
            name = parts[2]
            path = "/" + "/".join(parts[3:])
        cluster = self.owner.clusters.get(name)
        if cluster is None:
            raise ApiError(404, "NotFound", f"no cluster {name!r} on this localkube")
        return _Route(name, cluster.store, path.rstrip("/") or "/")

    def _serve(self) -> None:
        start = time.monotonic()
        self._status = 0
        self._record: Callable[[], None] | None = None
        cluster = verb = resource = ""

        def record() -> None:
            # Once per request: at its end, or when a watch starts streaming (a watch may
            # stay open for as long as the server runs; its time is time to first byte).
            if self._record is None:
                return
            self._record = None
            self.owner.record(
                cluster=cluster,
                verb=verb,
                resource=resource,
                code=self._status,
                method=self.command,
                path=self.path,
                ms=(time.monotonic() - start) * 1000,
            )

        self._record = record
        try:
            route = self._route()
            cluster = route.cluster
            if self.owner.clusters[cluster].down:
                self._drop()
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            verb, resource = self._classify(route, query)
            self.owner.apply_faults(self, cluster, verb, resource)
            self._authenticate()
            self._dispatch(route, query)
        except _Dropped:
            self._status = 0
        except ApiError as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
            self._send(e.code, e.status(), headers=headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        finally:
            record()

    def _authenticate(self) -> None:
        token = self.owner.token
        if token is None:
            return
        if self.headers.get("Authorization", "") != f"Bearer {token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    # -- routing -------------------------------------------------------------------------

    def _resource_parts(self, route: _Route) -> tuple[Kind, str, str, str] | None:
        """(kind, namespace, name, subresource) for a resource URL, None for discovery."""
        parts = [urllib.parse.unquote(p) for p in route.path.strip("/").split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        kind = route.store.kind(group, version, rest[0])
        if namespace and not kind.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (sub == "status" and kind.status_subresource) and sub != "finalize":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return kind, namespace, name, sub

    def _classify(self, route: _Route, query: dict[str, str]) -> tuple[str, str]:
        try:
            parts = self._resource_parts(route)
        except ApiError:
            return self.command.lower(), ""
        if parts is None:
            return "get", "discovery"
        kind, _, name, sub = parts
        resource = f"{kind.resource}/{sub}" if sub else kind.resource
        method = self.command
        if method == "GET":
            if name:
                return "get", resource
            return ("watch" if _flag(query.get("watch")) else "list"), resource
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
        if method == "DELETE":
            return ("delete" if name else "deletecollection"), resource
        return verbs.get(method, method.lower()), resource

    def _dispatch(self, route: _Route, query: dict[str, str]) -> None:
        store = route.store
        path = route.path
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok")
            return
        if path == "/version":
            self._send(200, VERSION)
            return
        if path == "/api":
            self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                    ],
                },
            )
            return
        if path == "/apis":
            self._send(200, kinds.group_list(store.served()))
            return
        if path == "/api/v1":
            self._send(200, kinds.resource_list("v1", [k for k in store.served() if not k.group]))
            return
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) in (2, 3):
            served = [k for k in store.served() if k.group == parts[1]]
            if len(parts) == 3:
                served = [k for k in served if k.version == parts[2]]
            if not served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if len(parts) == 3:
                self._send(200, kinds.resource_list(f"{parts[1]}/{parts[2]}", served))
            else:
                group = kinds.group_list(served)["groups"][0]
                self._send(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
            return
        resource = self._resource_parts(route)
        if resource is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind, namespace, name, sub = resource
        dry_run = query.get("dryRun") == "All"
        method = self.command
        if method == "GET" and not name:
            if _flag(query.get("watch")):
                self._watch(store, kind, namespace, query)
            else:
                listed = store.list(
                    kind,
                    namespace,
                    label_selector=query.get("labelSelector", ""),
                    field_selector=query.get("fieldSelector", ""),
                    limit=int(query.get("limit") or 0),
                    cont=query.get("continue", ""),
                )
                self._send(200, self._maybe_table(kind, listed["items"], listed["metadata"]))
        elif method == "GET":
            obj = store.get(kind, namespace, name)
            self._send(
                200,
                self._maybe_table(
                    kind, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, single=obj
                ),
            )
        elif method == "POST" and not name:
            self._send(201, store.create(kind, namespace, self._body(), dry_run=dry_run))
        elif method == "PUT" and name:
            self._send(
                200,
                store.update(kind, namespace, name, self._body(), subresource=sub, dry_run=dry_run),
            )
        elif method == "PATCH" and name:
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
            body = self._body()
            self._send(
                200,
                store.patch(kind, namespace, name, ctype, body, subresource=sub, dry_run=dry_run),
            )
        elif method == "DELETE" and name:
            options = self._body() or {}
            if "gracePeriodSeconds" in query:
                options.setdefault("gracePeriodSeconds", int(query["gracePeriodSeconds"]))
            body, _ = store.delete(kind, namespace, name, options, dry_run=dry_run)
            self._send(200, body)
        elif method == "DELETE":
            self._send(
                200,
                store.delete_collection(
                    kind,
                    namespace,
                    label_selector=query.get("labelSelector", ""),
                    field_selector=query.get("fieldSelector", ""),
                    dry_run=dry_run,
                ),
            )
        else:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )

    # -- tables --------------------------------------------------------------------------

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _maybe_table(
        self, kind: Kind, items: list[Obj], meta: Obj, single: Obj | None = None
    ) -> Obj:
        if not self._wants_table():
            if single is not None:
                return single
            return {
                "kind": f"{kind.list_kind or kind.kind + 'List'}",
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": items,
            }
        return _table(kind, items, meta)

    # -- watches -------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, store: Store, kind: Kind, namespace: str, query: dict[str, str]) -> None:
        try:
            labels = selectors.parse_labels(query.get("labelSelector", ""))
            fields = selectors.parse_fields(query.get("fieldSelector", ""))
        except selectors.SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}") from e
        rv_param = query.get("resourceVersion", "")
        timeout = min(float(query.get("timeoutSeconds") or 1800), 3600.0)
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        table = self._wants_table()

        def selected(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if namespace and meta.get("namespace") != namespace:
                return False
            return selectors.matches(labels, meta.get("labels")) and selectors.matches_fields(
                fields, obj
            )

        initial: list[tuple[str, Obj]] = []
        gone: int | None = None
        with store.lock:
            if rv_param in ("", "0"):
                listed = store.list(
                    kind,
                    namespace,
                    label_selector=query.get("labelSelector", ""),
                    field_selector=query.get("fieldSelector", ""),
                )
                initial = [
                    ("ADDED", store._out(kind, o) if not kind.custom else o)
                    for o in listed["items"]
                ]
                cursor = store.rv
            else:
                try:
                    cursor = int(rv_param)
                except ValueError as e:
                    raise bad_request(f"invalid resource version: {rv_param}") from e
                if cursor < store.oldest_replayable():
                    gone = store.oldest_replayable()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._status = 200
        if self._record is not None:
            self._record()

        def send(typ: str, obj: Obj) -> None:
            if table and typ in ("ADDED", "MODIFIED", "DELETED"):
                obj = _table(kind, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
            self._chunk(json.dumps({"type": typ, "object": obj}).encode() + b"\n")

        dropped = False
        try:
            if gone is not None:
                send(
                    "ERROR",
                    ApiError(
                        410, "Expired", f"too old resource version: {rv_param} ({gone})"
                    ).status(),
                )
                return
            for typ, obj in initial:
                send(typ, obj)
            deadline = time.monotonic() + timeout
            last_sent = time.monotonic()
            while not self.owner.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with store.changed:
                    if store.rv <= cursor:
                        store.changed.wait(min(left, self.owner.bookmark_interval))
                    if self.owner.clusters[store.name].down:
                        dropped = True
                        self._drop()  # an outage kills open connections too
                    if cursor < store.oldest_replayable():
                        gone = store.oldest_replayable()
                        events: list[Event] = []
                    else:
                        events = store.events_after(cursor)
                        cursor = store.rv
                if gone is not None:
                    send(
                        "ERROR",
                        ApiError(
                            410, "Expired", f"too old resource version: {cursor} ({gone})"
                        ).status(),
                    )
                    return
                for event in events:
                    if event.key != kind.key:
                        continue
                    typ, obj = _transition(event, selected)
                    if typ:
                        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
                        send(typ, obj)
                        last_sent = time.monotonic()
                if bookmarks and time.monotonic() - last_sent >= self.owner.bookmark_interval:
                    send(
                        "BOOKMARK",
                        {
                            "kind": kind.kind,
                            "apiVersion": kind.api_version,
                            "metadata": {"resourceVersion": str(cursor)},
                        },
                    )
                    last_sent = time.monotonic()
            if bookmarks:
                send(
                    "BOOKMARK",
                    {
                        "kind": kind.kind,
                        "apiVersion": kind.api_version,
                        "metadata": {"resourceVersion": str(cursor)},
                    },
                )
        finally:
            if not dropped:
                with contextlib.suppress(OSError):
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()


def _flag(value: str | None) -> bool:
    """A boolean query parameter as kube-apiserver reads one: present and not 0/false."""
    return value is not None and value.lower() not in ("0", "false")


def _transition(event: Event, selected: Any) -> tuple[str, Obj]:
    """The event a filtered watch sees: objects entering or leaving a selector are
    ADDED or DELETED, as the watch cache reports them."""
    now, before = selected(event.obj), selected(event.prev)
    if event.type == "DELETED":
        return ("DELETED", dict(event.obj)) if (now or before) else ("", {})
    if event.type == "ADDED":
        return ("ADDED", dict(event.obj)) if now else ("", {})
    if now and before:
        return "MODIFIED", dict(event.obj)
    if now:
        return "ADDED", dict(event.obj)
    if before and event.prev is not None:
        prev = json.loads(json.dumps(event.prev))
        prev["metadata"]["resourceVersion"] = str(event.rv)
        return "DELETED", prev
    return "", {}


def _age(created: str) -> str:
    try:
        then = time.mktime(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except (ValueError, TypeError):
        return "<unknown>"
    secs = max(0, int(time.time() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _columns(kind: Kind, obj: Obj) -> list[tuple[str, Any]]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind.kind == "Pod":
        ready = [c.get("ready") for c in status.get("containerStatuses", [])]
        total = len(spec.get("containers", []))
        return [
            ("Ready", f"{sum(1 for r in ready if r)}/{total}"),
            ("Status", status.get("phase", "")),
            ("IP", status.get("podIP", "<none>")),
        ]
    if kind.kind == "Service":
        ports = (
            ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports", []))
            or "<none>"
        )
        return [
            ("Type", spec.get("type", "")),
            ("Cluster-IP", spec.get("clusterIP", "")),
            ("Port(s)", ports),
        ]
    if kind.kind == "Endpoints":
        addrs = [
            f"{a['ip']}:{p['port']}"
            for s in obj.get("subsets", []) or []
            for a in s.get("addresses", [])
            for p in s.get("ports", [{"port": ""}])
        ]
        return [("Endpoints", ",".join(addrs) or "<none>")]
    if kind.kind == "Deployment":
        return [("Ready", f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}")]
    if kind.kind == "Namespace":
        return [("Status", status.get("phase", ""))]
    return []


def _table(kind: Kind, items: list[Obj], meta: Obj) -> Obj:
    extra = (
        [name for name, _ in _columns(kind, items[0])]
        if items
        else [name for name, _ in _columns(kind, {"metadata": {}})]
    )
    columns = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    columns += [
        {"name": n, "type": "string", "format": "", "priority": 0, "description": n} for n in extra
    ]
    columns.append(
        {
            "name": "Age",
            "type": "string",
            "format": "",
            "priority": 0,
            "description": "CreationTimestamp",
        }
    )
    rows = []
    for obj in items:
        m = obj["metadata"]
        cells = [
            m["name"],
            *[v for _, v in _columns(kind, obj)],
            _age(m.get("creationTimestamp", "")),
        ]
        rows.append(
            {
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": m,
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": meta.get("resourceVersion", "")},
        "columnDefinitions": columns,
        "rows": rows,
    }


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

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self.faults.clear()

    def apply_faults(self, handler: _Handler, cluster: str, verb: str, resource: str) -> None:
        """Called by the handler before serving a request. Each matching fault draws in
        turn (so five faults of 2% fail about 10% of requests); the first that fires acts."""
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
            return sum(
                n
                for (c, v, r, s), n in self.requests.items()
                if (cluster is None or c == cluster)
                and (verb is None or v == verb)
                and (resource is None or r == resource)
                and (code is None or s == code)
            )

    def reset_counts(self) -> None:
        """Forget the request counts."""
        with self._lock:
            self.requests.clear()

    # -- workloads -----------------------------------------------------------------------

    def simulate_workloads(self, name: str, *, delay: float = 0.05) -> None:
        """Make Deployments on cluster `name` report their replicas ready after `delay`."""
        cluster = self.clusters[name]
        cluster.workload_delay = delay
        store = cluster.store
        deploy = store.kind("apps", "v1", "deployments")

        def on_commit(event: Event) -> None:
            if event.key != deploy.key or event.type == "DELETED":
                return
            meta = event.obj["metadata"]
            spec = event.obj.get("spec", {})
            if event.obj.get("status", {}).get("observedGeneration") == meta.get(
                "generation"
            ) and event.obj.get("status", {}).get("readyReplicas", 0) == spec.get("replicas", 1):
                return

            def ready() -> None:
                with contextlib.suppress(ApiError):
                    current = store.get(deploy, meta["namespace"], meta["name"])
                    n = current.get("spec", {}).get("replicas", 1)
                    current["status"] = {
                        "observedGeneration": current["metadata"].get("generation", 1),
                        "replicas": n,
                        "readyReplicas": n,
                        "availableReplicas": n,
                        "updatedReplicas": n,
                        "conditions": [
                            {
                                "type": "Available",
                                "status": "True",
                                "reason": "MinimumReplicasAvailable",
                            }
                        ],
                    }
                    store.update(
                        deploy, meta["namespace"], meta["name"], current, subresource="status"
                    )

            timer = threading.Timer(delay, ready)
            timer.daemon = True
            cluster.timers.append(timer)
            timer.start()

        store.on_commit.append(on_commit)

    def add_pod(
        self,
        name: str,
        namespace: str,
        pod: str,
        *,
        labels: dict[str, str],
        ready: bool = True,
        ip: str | None = None,
        ports: list[int] | None = None,
    ) -> Obj:
        """Create a running pod with an IP (and ready, unless `ready=False`)."""
        cluster = self.clusters[name]
        store = cluster.store
        kind = store.kind("", "v1", "pods")
        containers = [
            {
                "name": "main",
                "image": "localkube/pause:1",
                "ports": [{"containerPort": p} for p in ports or []],
            }
        ]
        store.create(
            kind,
            namespace,
            {
                "metadata": {"name": pod, "labels": labels},
                "spec": {"containers": containers, "nodeName": "localkube"},
            },
        )
        obj = store.get(kind, namespace, pod)
        obj["status"] = _pod_status(ip or str(next(cluster.pod_ips)), ready)
        return store.update(kind, namespace, pod, obj, subresource="status")

    def set_pod(
        self,
        name: str,
        namespace: str,
        pod: str,
        *,
        ready: bool | None = None,
        ip: str | None = None,
    ) -> Obj:
        """Change a pod's readiness or IP (through its status subresource)."""
        store = self.clusters[name].store
        kind = store.kind("", "v1", "pods")
        obj = store.get(kind, namespace, pod)
        status = obj.get("status", {})
        obj["status"] = _pod_status(
            ip or status.get("podIP", ""), ready if ready is not None else _is_ready(obj)
        )
        return store.update(kind, namespace, pod, obj, subresource="status")


def _pod_status(ip: str, ready: bool) -> Obj:
    flag = "True" if ready else "False"
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "10.0.0.1",
        "qosClass": "BestEffort",
        "conditions": [
            {"type": "Ready", "status": flag},
            {"type": "ContainersReady", "status": flag},
        ],
        "containerStatuses": [
            {
                "name": "main",
                "ready": ready,
                "restartCount": 0,
                "image": "localkube/pause:1",
                "imageID": "",
                "state": {"running": {}},
                "started": True,
            }
        ],
    }


def _is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )
