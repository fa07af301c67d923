"""The short soak that CI runs (the long one: python -m tests.soak --passes 60)."""

from __future__ import annotations

from pathlib import Path

from tests.soak.soak import soak, summary


def test_short_soak_converges_and_loses_nothing(tmp_path: Path) -> None:
    """6 passes over 20 remotes with 10% of requests failing, then a clean final pass."""
    outcome = soak(tmp_path, passes=6, remotes=20)
    figures = summary(outcome)
    # The faults really happened, at about the rate asked for.
    assert 0.05 * outcome.requests < outcome.fault_hits < 0.15 * outcome.requests, figures
    assert outcome.ok, "\n".join(outcome.problems)
    assert len(outcome.history) >= 2
