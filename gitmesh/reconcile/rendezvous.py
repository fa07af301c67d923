"""Rendezvous (highest random weight) hashing: which member a remote belongs to. Shared by
the worker processes of one pass (`reconcile --once --workers N`) and by the replicas of a
shard group (`gitmesh run --shard`), so both split remotes the same way. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def owner(name: str, members: Iterable[str]) -> str | None:
    """The member a remote belongs to: the one with the highest hash of (member, name)."""
    best: tuple[bytes, str] | None = None
    for member in members:
        weight = hashlib.sha256(f"{member}\n{name}".encode()).digest()
        if best is None or (weight, member) > best:
            best = (weight, member)
    return best[1] if best else None
