"""Resource quantities in the canonical form kube-apiserver answers with."""

from __future__ import annotations

import pytest

from gitmesh import quantity


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("0.5", "500m"),
        ("1.5", "1500m"),
        ("1000m", "1"),
        ("100m", "100m"),
        ("2000", "2k"),
        ("1500", "1500"),
        ("128Mi", "128Mi"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("0.1Ki", "102400m"),
        ("1e3", "1e3"),
        ("0", "0"),
        (2, "2"),
        (0.25, "250m"),
        ("0.0000000001", "1n"),
    ],
)
def test_canonical(given: str | int | float, canonical: str) -> None:
    """Largest exponent without fractional digits; binary under 1024 goes decimal."""
    assert quantity.canonical(given) == canonical


@pytest.mark.parametrize("bad", ["lots", "1.2.3", "10 Mi", "Mi", ""])
def test_invalid(bad: str) -> None:
    """Anything else is an error."""
    with pytest.raises(quantity.QuantityError):
        quantity.canonical(bad)
