"""The listener of `gitmesh run`: /metrics, /healthz, /readyz and the git webhook, over
a small Protocol the runner fulfils. A bounded number of connections at once, each with a
socket timeout and a total time (gitmesh.deadlines shuts a request's socket when it is
up); malformed or oversize requests are refused with one log line each."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST

from gitmesh import deadlines, errors, logs


class App(Protocol):
    """What the listener asks of `gitmesh run`."""

    @property
    def hook_secret(self) -> bytes | None: ...

    def metrics_text(self) -> bytes: ...

    def unhealthy(self) -> str | None: ...

    def wedged(self) -> str | None: ...

    def is_ready(self) -> bool: ...

    def trigger_poll(self) -> None: ...


MAX_HOOK_BODY = 1 << 20


class _Request:
    """One connection to the listener, shut when its time is up (the handler's socket
    timeout bounds each read; a client sending a byte a second would hold a worker)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock: socket.socket | None = sock
        self.deadline = deadline
        self._lock = threading.Lock()

    def expire(self) -> None:
        with self._lock:
            deadlines.shut(self.sock)

    def finish(self) -> None:
        with self._lock:
            self.sock = None


class BoundedHTTPServer(HTTPServer):
    """At most `workers` connections served at once, each for at most `limit` seconds in
    all; more wait in the listen backlog."""

    def __init__(
        self,
        addr: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        workers: int,
        limit: float,
    ) -> None:
        # Before binding: a failed bind calls server_close().
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http")
        self._slots = threading.BoundedSemaphore(workers)
        self._limit = limit
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        bound = _Request(request, time.monotonic() + self._limit)
        deadlines.WATCHDOG.watch(bound)
        try:
            self.finish_request(request, client_address)
        except Exception as e:  # a client's bad request must not reach stderr as a traceback
            logs.get().warning("bad request", extra={"error": errors.cut(repr(e), 200)})
        finally:
            bound.finish()
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Handler(BaseHTTPRequestHandler):
    """One request to the listener; `serve` makes a subclass bound to its app."""

    app: App
    probes_only = False
    disable_nagle_algorithm = True  # see gitmesh.localkube.server._Handler

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        logs.get().warning(
            "bad request",
            extra={"status": code, "error": errors.cut(str(message or ""), 200)},
        )
        super().send_error(code, message, explain)

    def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.probes_only and self.path not in ("/healthz", "/readyz"):
            self._reply(404, b"not found\n")
        elif self.path == "/metrics":
            self._reply(200, self.app.metrics_text(), CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            sick = self.app.unhealthy()
            self._reply(503 if sick else 200, f"{sick}\n".encode() if sick else b"ok\n")
        elif self.path == "/readyz":
            ok = self.app.is_ready()
            wedged = self.app.wedged()
            if wedged:
                self._reply(503, f"wedged: {wedged}\n".encode())
            else:
                self._reply(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        if self.probes_only or self.path != "/hooks/git" or self.app.hook_secret is None:
            self._reply(404, b"not found\n")
            return
        raw = self.headers.get("Content-Length") or "0"
        if not raw.isdigit():
            self.close_connection = True
            self.send_error(400, f"invalid Content-Length {raw[:20]!r}")
            return
        if int(raw) > MAX_HOOK_BODY:
            self.close_connection = True
            self.send_error(413, f"body over {MAX_HOOK_BODY} bytes")
            return
        body = self.rfile.read(int(raw))
        sent = self.headers.get("X-Hub-Signature-256", "")
        secret = self.app.hook_secret or b""
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sent, want):
            self._reply(401, b"bad signature\n")
            return
        self.app.trigger_poll()
        self._reply(202, b"poll scheduled\n")


def serve(
    app: App, listen: tuple[str, int], *, workers: int, timeout: float, probes_only: bool = False
) -> BoundedHTTPServer:
    """Serve `app` at `listen` from a thread: /metrics, /healthz, /readyz and (with a hook
    secret) POST /hooks/git; with `probes_only`, the probes alone. `timeout` is each read's
    (a socket timeout: slow clients go) and each request's total time."""
    handler = type(
        "Handler", (_Handler,), {"app": app, "timeout": timeout, "probes_only": probes_only}
    )
    server = BoundedHTTPServer(listen, handler, workers=workers, limit=timeout)
    name = "http-probes" if probes_only else "http"
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
