"""gitmesh.cli.durations.age: ages as kubectl prints them."""

from __future__ import annotations

import pytest

from gitmesh.cli import durations


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (95, "95s"),
        (120, "2m"),
        (303, "5m3s"),
        (42 * 60 + 7, "42m"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (5 * 3600, "5h"),
        (20 * 3600 + 59, "20h"),
        (5 * 86400 + 4 * 3600, "5d4h"),
        (7 * 86400, "7d"),
        (300 * 86400, "300d"),
        (2 * 365 * 86400 + 30 * 86400, "2y30d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    """kubectl's AGE column: k8s.io/apimachinery@v0.36.3 pkg/util/duration/duration.go
    HumanDuration, lines 48-93 (each branch of it here once)."""
    assert durations.age(seconds) == shown
