"""Deadlines on blocking I/O: one daemon thread calls `expire()` on what outlives its time.

A socket timeout bounds each read, not an exchange: a peer sending a byte a second never
times out. What must end by a deadline (a Kubernetes request, a request to gitmesh's own
HTTP listener) registers with `WATCHDOG`, and its `expire` shuts the sockets involved, which
is what a thread blocked in a read needs to return. Expiring something already finished
must do nothing: entries are never removed, only passed over when due.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import Protocol


class Expiring(Protocol):
    """Something with a deadline (time.monotonic()) and what to do when it passes."""

    @property
    def deadline(self) -> float: ...

    def expire(self) -> None: ...


class Watchdog:
    """One daemon thread expiring registered things at their deadlines."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Expiring]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, item: Expiring) -> None:
        with self._cond:
            heapq.heappush(self._due, (item.deadline, next(self._seq), item))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gitmesh-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    heapq.heappop(self._due)[2].expire()
                self._cond.wait(self._due[0][0] - now if self._due else None)


WATCHDOG = Watchdog()


def shut(sock: socket.socket | None) -> None:
    """Shut a socket both ways, so a thread blocked on it returns (socket.socket's
    shutdown, not SSLSocket's, which drops its TLS state under a reader)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
