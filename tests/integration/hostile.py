"""Misbehaving peers on loopback for the hardening tests: a server that accepts and never
answers, one that answers every request with a fixed reply, and helpers that point a
remote's kubeconfig Secret at them."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from gitmesh import sandbox
from gitmesh.localkube import Server


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never says a word; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


@contextmanager
def fixed_reply_server(
    status: str, content_type: str, body: bytes
) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every request with the same reply; yields its URL and the
    request lines it received."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    seen: list[str] = []
    stop = threading.Event()
    reply = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(65536)
                    seen.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                    conn.sendall(reply)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join()
        sock.close()


def set_kubeconfig(server: Server, remote: str, config: dict[str, Any] | str) -> None:
    """Replace the kubeconfig in the remote's Secret on central (as a person would with
    `kubectl create secret generic --dry-run=client -o yaml | kubectl apply -f -`)."""
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    store = server.store("central")
    kind = store.kind("", "v1", "secrets")
    store.delete(kind, sandbox.NAMESPACE, remote)
    store.create(
        kind,
        sandbox.NAMESPACE,
        {"metadata": {"name": remote}, "data": {remote: base64.b64encode(text.encode()).decode()}},
    )


def pointing_at(server: Server, remote: str, url: str) -> dict[str, Any]:
    """The remote's kubeconfig with its server replaced by `url`."""
    config = server.kubeconfig(remote)
    config["clusters"][0]["cluster"]["server"] = url
    return config
