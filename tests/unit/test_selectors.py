"""Label and field selector parsing and matching, as k8s.io/apimachinery has them."""

from __future__ import annotations

import pytest

from gitmesh import selectors


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("istio=pilot", {"istio": "pilot"}, True),
        ("istio==pilot", {"istio": "mixer"}, False),
        ("istio!=pilot", {}, True),
        ("istio in (pilot, mixer)", {"istio": "mixer"}, True),
        ("istio notin (pilot)", {"istio": "pilot"}, False),
        ("statsd-prom-bridge", {"statsd-prom-bridge": ""}, True),
        ("statsd-prom-bridge", {"istio": "statsd-prom-bridge"}, False),
        ("!canary", {"canary": "true"}, False),
        ("app=jaeger,tier in (a,b),!canary", {"app": "jaeger", "tier": "b"}, True),
        ("example.com/role=x", {"example.com/role": "x"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_matching(text: str, labels: dict[str, str], expected: bool) -> None:
    """Each operator matches what Kubernetes would."""
    assert selectors.matches(selectors.parse_labels(text), labels) is expected


@pytest.mark.parametrize(
    "text",
    [
        "istio in (pilot",
        "a=b,",
        "a b",
        "Bad Key=x",
        "a=" + "x" * 64,
        "a in ()",
        "=x",
    ],
)
def test_invalid(text: str) -> None:
    """Malformed selectors are errors, not match-nothing."""
    with pytest.raises(selectors.SelectorError):
        selectors.parse_labels(text)


def test_round_trip() -> None:
    """to_string gives a selector that parses to the same requirements."""
    reqs = selectors.parse_labels("b in (y,x),a=1,!c,d")
    assert selectors.parse_labels(selectors.to_string(reqs)) == reqs


def test_field_selectors() -> None:
    """Field selectors compare dotted paths as strings."""
    reqs = selectors.parse_fields("status.phase=Running,metadata.name!=x")
    assert selectors.matches_fields(
        reqs, {"metadata": {"name": "y"}, "status": {"phase": "Running"}}
    )
    assert not selectors.matches_fields(
        reqs, {"metadata": {"name": "x"}, "status": {"phase": "Running"}}
    )
