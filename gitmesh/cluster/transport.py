"""The transport under the Kubernetes client: every request an `Exchange` with a
deadline on the whole of it (a watchdog thread shuts its sockets when its time is up) and
a bound on its answer (counted as it arrives, cut past `max_response` bytes before the
client buffers the rest), over urllib3 connection classes that register their sockets;
and the one-word name of a transport failure (refused, reset, DNS, TLS, timeout)."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from gitmesh import deadlines, errors


class TooLarge(OSError):
    """An answer past the size bound (an OSError, so the client reports it as a broken
    connection and drops the connection)."""


class Exchange:
    """One request: its deadline, its size bound, the connections it used; `expire` (the
    watchdog calls it at the deadline) shuts their sockets, what a blocked read needs to
    return."""

    def __init__(self, deadline: float, cap: int | None) -> None:
        self.deadline = deadline
        self.cap = cap
        self.expired = False
        self.too_large = False
        self.done = False
        self._conns: list[HTTPConnection] = []
        self._lock = threading.Lock()

    def attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            if conn not in self._conns:
                self._conns.append(conn)
            if self.expired:
                deadlines.shut(conn.sock)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            for conn in self._conns:
                deadlines.shut(conn.sock)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            self._conns.clear()


current = threading.local()  # the exchange this thread's request belongs to


class CappedBody:
    """A response's socket file that fails a read past the exchange's size bound."""

    def __init__(self, fp: Any, exchange: Exchange) -> None:
        self._fp = fp
        self._exchange = exchange
        self._left = exchange.cap or 0

    def _allow(self, n: int | None) -> int:
        if self._left < 0:
            raise TooLarge("the answer is too large")
        return self._left + 1 if n is None or n < 0 or n > self._left else n

    def _count(self, data: bytes | int) -> None:
        self._left -= data if isinstance(data, int) else len(data)
        if self._left < 0:
            self._exchange.too_large = True
            raise TooLarge("the answer is too large")

    def read(self, n: int | None = -1) -> bytes:
        data: bytes = self._fp.read(self._allow(n))
        self._count(data)
        return data

    def read1(self, n: int = -1) -> bytes:
        data: bytes = self._fp.read1(self._allow(n))
        self._count(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        data: bytes = self._fp.readline(self._allow(limit))
        self._count(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        got: int = self._fp.readinto(view[: self._allow(len(view))])
        self._count(got)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class Bounded(HTTPConnection):
    """A connection that joins the calling thread's exchange and reads bounded bodies."""

    def _join(self) -> Exchange | None:
        exchange: Exchange | None = getattr(current, "exchange", None)
        if exchange is not None:
            exchange.attach(self)
        return exchange

    def connect(self) -> None:
        self._join()
        super().connect()
        self._join()  # now with a socket to shut

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._join()
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        resp = super().getresponse()
        exchange = self._join()
        if exchange is not None and exchange.cap is not None:
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > exchange.cap:
                exchange.too_large = True
                self.close()
                raise urllib3.exceptions.ProtocolError("the answer is too large")
            original = resp._original_response  # the only handle on the body's file
            if original is not None and original.fp is not None:
                original.fp = CappedBody(original.fp, exchange)  # type: ignore[assignment]
        return resp


class BoundedHTTPS(Bounded, HTTPSConnection):
    pass


class HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = Bounded


class HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = BoundedHTTPS


def size_text(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def causes(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo += [cur.__cause__, cur.__context__]
        todo += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]


def failure(e: BaseException, exchange: Exchange) -> tuple[str, str]:
    """What went wrong with an exchange: (kind, words), kind one of timeout, too-large,
    dns, refused, reset, unreachable, tls, other."""
    if exchange.too_large:
        return "too-large", ""
    if exchange.expired:
        return "timeout", ""
    chain = list(causes(e))
    if any(isinstance(c, urllib3.exceptions.NameResolutionError | socket.gaierror) for c in chain):
        return "dns", "its API server's host name does not resolve"
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return "refused", "connection refused (nothing listens at its API server's address)"
    if any(isinstance(c, ssl.SSLError | urllib3.exceptions.SSLError) for c in chain):
        reason = next((str(c) for c in chain if isinstance(c, ssl.SSLError)), "")
        return "tls", f"TLS failure: {errors.cut(errors.scrub(reason), 160) or 'handshake failed'}"
    if any(
        isinstance(c, urllib3.exceptions.ReadTimeoutError | TimeoutError | socket.timeout)
        or type(c) is urllib3.exceptions.ConnectTimeoutError
        for c in chain
    ):
        return "timeout", ""
    if any(isinstance(c, ConnectionResetError | BrokenPipeError) for c in chain):
        return "reset", "the connection was reset"
    if any(
        isinstance(c, OSError) and c.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) for c in chain
    ):
        return "unreachable", "network is unreachable (no route to its API server)"
    return "other", f"{type(e).__name__}: {errors.cut(errors.scrub(str(e)), 160)}"
