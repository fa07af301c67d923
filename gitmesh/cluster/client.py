"""The Kubernetes API gateway: the only module that imports `kubernetes`.

A `Cluster` wraps one `kubernetes.client.ApiClient` built from a kubeconfig dict and
speaks plain dicts over the generic REST calls (`call_api`), so one code path serves every
kind and every patch carries an explicit content type. Errors become the `ClusterError`
tree at this boundary; 429 and 5xx and dropped connections are retried with backoff that
honours Retry-After, bounded; server messages are cut before they travel.

Every request has a deadline on the whole exchange, and every answer a size bound. The
client's timeouts are per socket operation (a server sending a byte a second never times
out), so each request is an `_Exchange`: the connections it uses are known to a watchdog
thread that shuts their sockets when its time is up, and its body is read through a
counter that fails it past `max_response` bytes, before the client buffers the rest (it
reads error bodies whole, too). A `Cluster` can carry an absolute `deadline` (the
remote's share of a pass) that caps each exchange and refuses to start one once it has
passed. Whatever the transport raises, even what the client does not expect (a 200 that is
HTML, a header it cannot send), leaves this module as a `ClusterError` that names what
happened (refused, reset, DNS, TLS, timeout, too large) and holds no credentials.
"""

from __future__ import annotations

import builtins
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

from gitmesh import __version__, deadlines, errors, kubeconfigs
from gitmesh.cluster.answers import configuration, decode, status_error
from gitmesh.cluster.transport import (
    Exchange,
    HTTPPool,
    HTTPSPool,
    current,
    failure,
    size_text,
)
from gitmesh.resources import Obj, Resource

CONNECT_TIMEOUT = 10.0
USER_AGENT = f"gitmesh/{__version__}"
POOL_SIZE = 16
# The largest answer read: a page of 500 of gitmesh's objects, or of namespaces, is far
# below it (an object is at most 1.5 MiB in etcd, and gitmesh's are a few KiB).
MAX_RESPONSE = 16 * 1024 * 1024
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
DISCOVERY_TTL = 600.0  # seconds a connection keeps what an API group's discovery said


class _Retriable(Exception):
    """A failed attempt that may be tried again: `error` is raised once `attempts` are
    spent; `delay` is what the server asked to wait (None: the backoff)."""

    def __init__(self, error: errors.ClusterError, attempts: int, delay: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts
        self.delay = delay


class Cluster:
    """One cluster's API, with bounded retries. Thread-safe (urllib3 pools are)."""

    def __init__(
        self,
        name: str,
        kubeconfig: Mapping[str, Any] | Path | None,
        *,
        context: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        observer: Callable[[str, str, int], None] | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.name = name
        self.observer = observer
        # A shared Cluster outlives `with` blocks; its owner closes it (gitmesh run keeps
        # one per remote so endpoint updates reuse connections).
        self.shared = False
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.requests: dict[tuple[str, int], int] = {}
        # time.monotonic() after which no request starts (None: only per-request timeouts).
        self.deadline: float | None = None
        self._lock = threading.Lock()
        self._identity: str | None = None
        self._discovered: dict[str, tuple[float, builtins.list[str]]] = {}
        config = configuration(name, kubeconfig, context)
        config.retries = False  # retries are ours, counted and bounded
        if not config.verify_ssl:
            # The pass warns of it in the log and the remote's status, once, by name;
            # urllib3's own warning, on every request, names neither.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # A remote's reads go out at once (gitmesh.reconcile.observe): keep a
        # connection for each, rather than the default of five per core.
        config.connection_pool_maxsize = POOL_SIZE
        self.api = kubernetes.client.ApiClient(config)
        # Connections that join each request's exchange (its deadline and size bound).
        self.api.rest_client.pool_manager.pool_classes_by_scheme = {
            "http": HTTPPool,
            "https": HTTPSPool,
        }
        self.max_response = MAX_RESPONSE
        # What audit logs attribute the requests to (kubectl sends kubectl/<version>).
        self.api.user_agent = user_agent or USER_AGENT

    @property
    def user_agent(self) -> str:
        """The User-Agent of every request (what audit logs attribute them to)."""
        return str(self.api.user_agent)

    @user_agent.setter
    def user_agent(self, value: str) -> None:
        self.api.user_agent = value

    @property
    def server(self) -> str:
        """The API server's URL, normalised as `kubeconfigs.normalise_server` does."""
        return kubeconfigs.normalise_server(str(self.api.configuration.host))

    def close(self) -> None:
        """Release the connection pool."""
        self.api.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.shared:
            self.close()

    # -- transport ----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """One request, retried as the answer allows. With `stream`, the open response and
        its exchange (the caller finishes it); else the decoded body."""
        attempt = 0
        while True:
            limit = self._time_left(what, timeout or self.timeout)
            request = (method, path, query, body, content_type)
            try:
                return self._attempt(request, what=what, stream=stream, limit=limit)
            except _Retriable as r:
                if attempt >= r.attempts:
                    raise r.error from None
                delay = r.delay or self.backoff * (2**attempt)
            attempt += 1
            self.sleep(min(delay, 10.0) * random.uniform(0.8, 1.2))  # noqa: S311 - jitter

    def _attempt(
        self,
        request: tuple[str, str, Mapping[str, Any] | None, Any, str],
        *,
        what: str,
        stream: bool,
        limit: float,
    ) -> Any:
        """One attempt, as one exchange: the answer, or the ClusterError it comes to
        (as `_Retriable` when another attempt may go better)."""
        method, path, query, body, content_type = request
        exchange = Exchange(time.monotonic() + limit, None if stream else self.max_response)
        deadlines.WATCHDOG.watch(exchange)
        current.exchange = exchange
        handed = False
        try:
            resp = self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=(min(limit, CONNECT_TIMEOUT), limit),
            )
            if stream:
                self._count(method, 200)
                handed = True
                return resp, exchange
            decoded = decode(resp, what)
            self._count(method, 200)
            return decoded
        except kubernetes.client.ApiException as e:
            self._count(method, int(e.status or 0))
            if not e.status:  # the client's SSLError, as ApiException(status=0)
                tls = str(e.reason or "").partition("\n")[2]
                raise errors.Unavailable(
                    f"{what}: TLS failure: {errors.cut(errors.scrub(tls), 160)}"
                ) from None
            err = status_error(e, what)
            if not isinstance(err, errors.Unavailable):
                raise err from None
            raise _Retriable(err, self.retries, self._retry_after(e)) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            self._count(method, 0)
            raise self._transport_error(e, exchange, what, limit) from None
        except (ValueError, TypeError, LookupError) as e:
            # The client could not even send the request (a header value it refuses...):
            # the message may quote the header, so only its type travels.
            raise errors.ClusterError(
                f"{what}: the request could not be sent ({type(e).__name__})"
            ) from None
        finally:
            current.exchange = None
            if not handed:
                exchange.finish()

    def _transport_error(
        self, e: BaseException, exchange: Exchange, what: str, limit: float
    ) -> errors.ClusterError | _Retriable:
        """What a failure below HTTP comes to: too large (final), else worth another
        attempt (a timeout once, others up to `retries`)."""
        kind, words = failure(e, exchange)
        if kind == "too-large":
            return errors.ClusterError(
                f"{what}: {self.name} answered more than "
                f"{size_text(self.max_response)} (--max-response-size)"
            )
        if kind == "timeout":
            # A server that let a request time out is retried once, not `retries` times.
            words = f"timed out: {self.name} did not answer within {limit:g}s"
            attempts = min(self.retries, 1)
        else:
            words = f"cannot reach {self.name} ({self.server}): {words}"
            # Nothing listening, no such host, no route: once more (an API server that is
            # restarting), not the whole backoff that dropped connections get.
            persistent = kind in ("refused", "dns", "unreachable", "tls")
            attempts = min(self.retries, 1) if persistent else self.retries
        return _Retriable(errors.Unavailable(f"{what}: {words}"), attempts, None)

    def _time_left(self, what: str, limit: float) -> float:
        """The read timeout for the next request: `limit`, capped by the deadline."""
        if self.deadline is None:
            return limit
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise errors.Unavailable(f"{what}: timed out: {self.name}'s time in this pass ran out")
        return min(limit, max(left, 0.1))

    @staticmethod
    def _retry_after(e: kubernetes.client.ApiException) -> float | None:
        value = (e.headers or {}).get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def _count(self, method: str, code: int) -> None:
        with self._lock:
            self.requests[(method, code)] = self.requests.get((method, code), 0) + 1
        if self.observer is not None:
            self.observer(self.name, method, code)

    # -- verbs --------------------------------------------------------------------------

    def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        """All objects of a kind (paged), with each item's kind filled in; and the list's
        resourceVersion."""
        query: dict[str, Any] = {"limit": 500}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items: list[Obj] = []
        while True:
            page = self._call(
                "GET", res.path(namespace), query=query, what=f"list {res.plural} on {self.name}"
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                items.append(item)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items, str((page.get("metadata") or {}).get("resourceVersion", ""))
            query["continue"] = cont

    def namespaced_resources(self) -> builtins.list[Resource]:
        """Every namespaced kind the server serves and can list, from discovery (the
        preferred version of each group)."""
        versions = ["v1"]
        groups = self._call("GET", "/apis", what=f"discover API groups on {self.name}")
        for group in groups.get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            if preferred:
                versions.append(preferred)
        out = []
        for gv in versions:
            path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
            doc = self._call("GET", path, what=f"discover {gv} on {self.name}")
            for r in doc.get("resources") or []:
                if r.get("namespaced") and "/" not in r["name"] and "list" in r.get("verbs", []):
                    out.append(Resource(gv, r["kind"], r["name"], True))
        return out

    def request_token(
        self, namespace: str, account: str, seconds: int, *, dry_run: bool = False
    ) -> Obj:
        """A TokenRequest for a ServiceAccount (authentication.k8s.io/v1)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        out: Obj = self._call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            body=body,
            query={"dryRun": "All"} if dry_run else None,
            what=f"request a token for {namespace}/{account} on {self.name}",
        )
        return out

    def served_versions(self, group: str) -> builtins.list[str]:
        """The versions of an API group the server serves (discovery: /apis/GROUP), asked
        again after DISCOVERY_TTL (they change when the cluster is upgraded; a pooled
        connection in `gitmesh run` need not ask every pass)."""
        at, versions = self._discovered.get(group, (-DISCOVERY_TTL, []))
        if time.monotonic() - at < DISCOVERY_TTL:
            return versions
        doc = self._call("GET", f"/apis/{group}", what=f"discover {group} on {self.name}")
        versions = [str(v.get("version")) for v in doc.get("versions") or []]
        self._discovered[group] = (time.monotonic(), versions)
        return versions

    def server_version(self) -> str:
        """The server's Kubernetes version (its /version gitVersion, "" when it has none)."""
        doc = self._call("GET", "/version", what=f"get the version of {self.name}")
        return str(doc.get("gitVersion") or "") if isinstance(doc, dict) else ""

    def identity(self) -> str | None:
        """What only this cluster has: the UID of its `kube-system` namespace (None when
        it cannot be read). Read once, then cached: it lives as long as the cluster."""
        if self._identity is None:
            try:
                obj = self._call(
                    "GET", "/api/v1/namespaces/kube-system", what=f"get kube-system on {self.name}"
                )
            except (errors.Forbidden, errors.NotFound):
                self._identity = ""  # not to be known: not asked again
            else:
                self._identity = str((obj.get("metadata") or {}).get("uid") or "")
        return self._identity or None

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        """One object (NotFound when missing)."""
        obj: Obj = self._call(
            "GET", res.path(namespace, name), what=f"get {res.kind} {name} on {self.name}"
        )
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        return obj

    def create(self, res: Resource, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Create an object (Conflict when the name is taken)."""
        ns = obj["metadata"].get("namespace")
        query = {"dryRun": "All"} if dry_run else None
        out: Obj = self._call(
            "POST",
            res.path(ns),
            body=obj,
            query=query,
            what=f"create {res.kind} {obj['metadata']['name']} on {self.name}",
        )
        return out

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        ops: builtins.list[Obj],
        *,
        resource_version: str | None,
        dry_run: bool = False,
    ) -> Obj:
        """Apply a JSON Patch, guarded by a `test` of the resourceVersion we planned from."""
        guarded: builtins.list[Obj] = list(ops)
        if resource_version:
            guarded.insert(
                0, {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
            )
        query = {"dryRun": "All"} if dry_run else None
        what = f"patch {res.kind} {name} on {self.name}"
        try:
            out: Obj = self._call(
                "PATCH",
                res.path(namespace, name),
                body=guarded,
                content_type=JSON_PATCH,
                query=query,
                what=what,
            )
        except errors.Invalid:
            # kube-apiserver answers a failed `test` with a bare 422 that does not say which
            # op failed: the object having moved on from our resourceVersion is a conflict.
            if (
                resource_version
                and self.get(res, namespace, name)["metadata"].get("resourceVersion")
                != resource_version
            ):
                raise errors.Conflict(
                    f"{what}: the object changed since it was read", status=409, reason="Conflict"
                ) from None
            raise
        return out

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        resource_version: str | None,
        dry_run: bool = False,
    ) -> None:
        """Delete, only if the object is still the one we planned from."""
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        if dry_run:
            body["dryRun"] = ["All"]
        self._call(
            "DELETE",
            res.path(namespace, name),
            body=body,
            what=f"delete {res.kind} {name} on {self.name}",
        )

    def watch(
        self,
        res: Resource,
        *,
        namespace: str | None,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[Obj]:
        """Watch events ({type, object}) from a resourceVersion until the server ends the
        stream. A 410 arrives as an `errors.Gone`-style ClusterError with status 410."""
        query: dict[str, Any] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        resp, exchange = self._call(
            "GET",
            res.path(namespace),
            query=query,
            stream=True,
            what=f"watch {res.plural} on {self.name}",
            timeout=timeout_seconds + 10.0,
        )
        try:
            buffer = b""
            for chunk in resp.stream(4096, decode_content=False):
                buffer += chunk
                if len(buffer) > self.max_response:
                    raise errors.ClusterError(
                        f"watch {res.plural} on {self.name}: an event of more than "
                        f"{size_text(self.max_response)} (--max-response-size)"
                    )
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise errors.ClusterError(
                            f"watch {res.plural} on {self.name}: {status.get('message', '')}",
                            status=int(status.get("code", 0)),
                            reason=status.get("reason", ""),
                        )
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if exchange.expired:
                raise errors.Unavailable(
                    f"watch {res.plural} on {self.name}: timed out after {timeout_seconds + 10}s"
                ) from None
            raise errors.Unavailable(
                f"watch {res.plural} on {self.name} broke: {type(e).__name__}"
            ) from None
        finally:
            exchange.finish()
            resp.release_conn()
