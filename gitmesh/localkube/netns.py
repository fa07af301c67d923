"""A network namespace of the process's own, so that nothing it starts can reach off the
machine: the real tiers' isolation, by construction rather than by care.

A real kube-apiserver calls a webhook named by Service at the Service's ClusterIP (or,
with aggregator routing, at its endpoints' addresses), and istiod dials whatever its
remote Secrets name. Inside a fresh network namespace the only interface is `lo`: every
address but loopback and TEST-NET-1 (192.0.2.0/24, RFC 5737, made local on `lo` for the
east-west gateways and istiod's listeners) fails at once with "Network is unreachable".

`isolate()` moves the calling thread, and so every thread and process it starts later,
into such a namespace. It needs CAP_SYS_ADMIN (root); the test session calls it first
thing (tests/conftest.py), before any thread or server exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import subprocess
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
TEST_NET = "192.0.2.0/24"
# An address inside the namespace that routes nowhere: a ClusterIP of the real tier's
# --service-cluster-ip-range.
OUTSIDE = ("10.0.0.1", 443)
_state: dict[str, str | None] = {"isolated": None, "why_not": None}


def isolate() -> bool:
    """Enter a network namespace with only `lo` (and TEST-NET-1 on it); False, with
    `why_not()` saying why, where that cannot be done. Idempotent."""
    if _state["isolated"]:
        return True
    if threading.active_count() > 1:
        _state["why_not"] = "other threads are running (they would stay outside)"
        return False
    if os.geteuid() != 0:
        _state["why_not"] = "a network namespace of its own needs root (CAP_SYS_ADMIN)"
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        _state["why_not"] = f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
        return False
    try:
        for args in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", TEST_NET, "dev", "lo"],
        ):
            subprocess.run(args, check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        _state["why_not"] = f"cannot set up lo in the new namespace: {e}"
        return False
    if not unreachable():
        _state["why_not"] = f"{OUTSIDE[0]} is still reachable inside the namespace"
        return False
    _state["isolated"] = "yes"
    os.environ["GITMESH_NETNS_ISOLATED"] = "1"
    return True


def isolated() -> bool:
    """Whether this process runs in the namespace `isolate()` made (or inherited it)."""
    return bool(_state["isolated"]) or os.environ.get("GITMESH_NETNS_ISOLATED") == "1"


def confined() -> bool:
    """Whether this process's network namespace routes nowhere but `lo` (ours, or one made
    with `unshare -n`), read from its routing tables: no packet is sent to find out."""
    try:
        v4 = Path("/proc/net/route").read_text().splitlines()[1:]
        v6 = Path("/proc/net/ipv6_route").read_text().splitlines()
    except OSError:
        return False
    devices = [line.split()[0] for line in v4 if line.split()]
    devices += [line.split()[-1] for line in v6 if line.split()]
    return all(d == "lo" for d in devices)


def why_not() -> str:
    """Why `isolate()` could not isolate, or an empty string."""
    return _state["why_not"] or ""


def unreachable(address: tuple[str, int] = OUTSIDE, timeout: float = 1.0) -> bool:
    """Whether a connection to `address` fails at once as unroutable."""
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            s.connect(address)
        except OSError as e:
            return e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        with contextlib.suppress(OSError):
            s.close()
        return False
