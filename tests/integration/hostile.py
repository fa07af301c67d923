"""Misbehaving peers on loopback for the hardening tests: a server that accepts and never
answers, one that answers every request with a fixed reply, one that trickles its answer
a byte a second, one that floods an endless body, helpers that point a remote's kubeconfig
Secret at them, and a status branch commit forged by hand."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from gitmesh.localkube import Server
from gitmesh.testing import sandbox
from tests.gitutil import git
from tests.integration.conftest import World


@contextmanager
def _listening(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP listener handing each accepted connection to `handle` (in one
    thread); yields its http URL, and closes everything afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            handle(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        sock.close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never says a word; yields its URL."""
    held: list[socket.socket] = []
    try:
        with _listening(held.append) as url:
            yield url
    finally:
        for conn in held:
            conn.close()


@contextmanager
def fixed_reply_server(
    status: str, content_type: str, body: bytes
) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every request with the same reply; yields its URL and the
    request lines it received."""
    seen: list[str] = []
    reply = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                data = conn.recv(65536)
                seen.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                conn.sendall(reply)
            except OSError:
                pass

    with _listening(answer) as url:
        yield url, seen


def _each_in_a_thread(handle: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
    def start(conn: socket.socket) -> None:
        threading.Thread(target=handle, args=(conn,), daemon=True).start()

    return start


@contextmanager
def trickle_server(head: bytes, *, slow_head: bool) -> Iterator[str]:
    """An HTTP server that sends `head` (a byte a second if `slow_head`, else at once),
    then a space a second forever: every read a client makes succeeds, however short its
    read timeout."""

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for i in range(len(head)) if slow_head else ():
                    conn.sendall(head[i : i + 1])
                    time.sleep(1)
                conn.sendall(b"" if slow_head else head)
                while True:
                    conn.sendall(b" ")
                    time.sleep(1)
            except OSError:
                pass

    with _listening(_each_in_a_thread(answer)) as url:
        yield url


@contextmanager
def flood_server(status: str = "200 OK") -> Iterator[str]:
    """An HTTP server answering with a valid, endless JSON list, as fast as it is read."""
    item = b'{"metadata":{"name":"x"}},' * 4096

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode()
                )
                conn.sendall(b'11\r\n{"items":[       \r\n')
                while True:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(item), item))
            except OSError:
                pass

    with _listening(_each_in_a_thread(answer)) as url:
        yield url


def _pid_of_peer(port: int) -> int | None:
    """The process holding the loopback TCP socket bound to `port` (from /proc)."""
    inodes = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


@contextmanager
def killing_server() -> Iterator[tuple[str, list[int]]]:
    """A server that SIGKILLs the process that connects to it (never this one), as the
    OOM killer would a worker; yields its URL and the PIDs it killed."""
    killed: list[int] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            pid = _pid_of_peer(conn.getpeername()[1])
            if pid is not None and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with _listening(answer) as url:
        yield url, killed


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


def git_in(world: World, data: bytes, *args: str) -> str:
    """Run git in the bare repository with `data` on stdin; its output, stripped."""
    proc = subprocess.run(
        ["git", *args], cwd=world.repo.bare, input=data, capture_output=True, check=True
    )
    return proc.stdout.decode().strip()


def forge_status(world: World, files: dict[str, bytes]) -> None:
    """Push a status branch commit made by hand (anyone with push access can)."""
    by_dir: dict[str, list[tuple[str, str]]] = {}
    for path, data in files.items():
        d, name = path.split("/", 1)
        by_dir.setdefault(d, []).append((name, git_in(world, data, "hash-object", "-w", "--stdin")))
    top = []
    for d, items in by_dir.items():
        listing = b"".join(f"100644 blob {b}\t{n}".encode() + b"\0" for n, b in items)
        top.append(f"040000 tree {git_in(world, listing, 'mktree', '-z')}\t{d}".encode() + b"\0")
    tree = git_in(world, b"".join(top), "mktree", "-z")
    commit = git(world.repo.bare, "commit-tree", tree, "-m", "forged")
    git(world.repo.bare, "update-ref", "refs/heads/gitmesh/status", commit)
