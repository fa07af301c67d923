"""Rendezvous hashing: every remote has one owner, every replica computes the same one,
and a member joining or leaving moves only its own share."""

from __future__ import annotations

from collections import Counter

import pytest

from gitmesh.errors import GitmeshError
from gitmesh.reconcile.rendezvous import owner
from gitmesh.run.shards import Membership

REMOTES = [f"remote-{i:04d}" for i in range(1000)]


def assignment(members: list[str]) -> dict[str, str | None]:
    return {r: owner(r, members) for r in REMOTES}


def test_the_owner_is_a_member_and_does_not_depend_on_order() -> None:
    members = ["gitmesh-0", "gitmesh-1", "gitmesh-2"]
    forward = assignment(members)
    assert forward == assignment(list(reversed(members)))
    assert set(forward.values()) == set(members)
    assert owner("remote-0001", []) is None


def test_the_share_is_even() -> None:
    counts = Counter(assignment([f"gitmesh-{i}" for i in range(4)]).values())
    assert all(200 <= n <= 300 for n in counts.values()), counts


def test_a_joining_member_takes_only_what_it_gains() -> None:
    before = assignment(["a", "b", "c"])
    after = assignment(["a", "b", "c", "d"])
    moved = {r for r in REMOTES if before[r] != after[r]}
    assert moved and all(after[r] == "d" for r in moved)


def test_a_leaving_member_gives_away_only_its_own() -> None:
    before = assignment(["a", "b", "c"])
    after = assignment(["a", "c"])
    moved = {r for r in REMOTES if before[r] != after[r]}
    assert moved == {r for r in REMOTES if before[r] == "b"}


def test_an_identity_that_makes_no_lease_name_is_a_clear_error() -> None:
    """Identities become Lease names (`<group>-<identity>`): refused before any request."""
    with pytest.raises(GitmeshError, match="valid Lease name"):
        Membership(None, namespace="ns", group="gitmesh", identity="Pod_A")  # type: ignore[arg-type]
