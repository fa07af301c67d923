"""localkube's HTTP layer: routing, discovery, the verbs, watches, auth and faults.

The handler turns a request into a call on a cluster's `Store` and the store's `ApiError`
into a `Status` body; `Server` (gitmesh.localkube.server) owns the listeners and clusters.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import yaml

from gitmesh import selectors
from gitmesh.localkube import kinds, protobuf, tables
from gitmesh.localkube.kinds import Kind
from gitmesh.localkube.store import ApiError, Event, Obj, Store, bad_request

_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")

if TYPE_CHECKING:
    from gitmesh.localkube.server import Server

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
class _Route:
    cluster: str
    store: Store
    path: str


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

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answers http.server gives on its own (a malformed request line or header) are
        counted and logged like every other answer."""
        self.owner.record(
            cluster="",
            verb="",
            resource="",
            code=code,
            method=str(getattr(self, "command", "") or ""),
            path=str(getattr(self, "path", "") or ""),
            ms=0.0,
        )
        super().send_error(code, message, explain)

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

    def _read_body(self) -> bytes:
        """The request's body, read whole before anything can answer: a reply sent before
        the body is read would leave it on a kept-alive connection, where it would be
        taken for the next request. A body that cannot be read whole closes the
        connection."""
        try:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
                    if len(data) > MAX_BODY:
                        break
            else:
                length = int(self.headers.get("Content-Length") or 0)
                if 0 <= length <= MAX_BODY:
                    return self.rfile.read(length) if length else b""
                if length < 0:
                    self.close_connection = True
                    raise bad_request(f"invalid Content-Length {length}")
        except ValueError:
            self.close_connection = True
            raise bad_request("invalid Content-Length or chunk size") from None
        self.close_connection = True
        raise ApiError(413, "RequestEntityTooLarge", "request entity too large")

    def _body(self) -> Any:
        data = self._raw_body
        if not data:
            return None
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if "protobuf" in ctype:
            try:
                return protobuf.decode(data)
            except protobuf.ProtobufError as e:
                raise ApiError(415, "UnsupportedMediaType", str(e)) from e
        if "cbor" in ctype:
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
        # Count the request before the client can read the answer, so that a client that
        # has its response also sees it counted.
        self._status = code
        if self._record is not None:
            self._record()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

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
            # Once per request: when its answer starts (so a client holding a response sees
            # it counted), or when a watch starts streaming; `ms` is the time to first byte.
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
                agent=self.headers.get("User-Agent", ""),
            )

        self._record = record
        self._raw_body = b""
        try:
            self._raw_body = self._read_body()
            route = self._route()
            cluster = route.cluster
            if self.owner.clusters[cluster].down:
                self._drop()
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            verb, resource = self._classify(route, query)
            self.owner.apply_faults(self, cluster, verb, resource)
            self._authenticate(route.store)
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

    def _authenticate(self, store: Store) -> None:
        """The server's token, or one the target cluster issued (TokenRequest) that has
        not expired. Authenticated is authorized: localkube has no RBAC."""
        token = self.owner.token
        if token is None:
            return
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not (given == token or store.token_subject(given)):
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
        token = sub == "token" and kind.resource == "serviceaccounts"
        if (
            sub
            and not (sub == "status" and kind.status_subresource)
            and sub != "finalize"
            and not token
        ):
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
        for param, allowed in (("dryRun", ("All",)), ("fieldValidation", _FIELD_VALIDATION)):
            value = query.get(param)
            if value is not None and value not in allowed:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Invalid value: "{value}": {param} must be one of {", ".join(allowed)}',
                )
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
        elif method == "POST" and sub == "token":
            self._send(201, store.request_token(namespace, name, self._body(), dry_run=dry_run))
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
        return tables.table(kind, items, meta)

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
                obj = tables.table(
                    kind, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}
                )
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
