"""Kubernetes resource quantities in canonical form, as apimachinery serializes them. Pure.

The API server answers `cpu: 0.5` as `500m` and `memory: 1024Mi` as `1Gi`; gitmesh writes
the canonical form so what it reads back equals what it wrote (no drift on every pass),
and localkube stores the canonical form as kube-apiserver does. Canonical form: no
precision lost, no fractional digits, the largest exponent (or binary suffix) that allows
both; binary quantities below 1024, or not a whole number, are written in decimal.
Values finer than a nano-unit are rounded up, as Kubernetes does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BY_EXPONENT = {e: s for s, e in _DECIMAL.items()}
_BINARY_SUFFIXES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_RE = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exp>[+-]?\d+))?$"
)


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def parse(text: str | int | float) -> tuple[Fraction, str]:
    """The exact value and the format ("DecimalSI", "BinarySI" or "DecimalExponent")."""
    m = _RE.match(str(text).strip())
    if not m:
        raise QuantityError(
            f"{text!r} is not a resource quantity (examples: 100m, 0.5, 128Mi, 1Gi)"
        )
    value = Fraction(m["num"])
    if m["suffix"] in _BINARY:
        return value * (2 ** _BINARY[m["suffix"]]), "BinarySI"
    if m["exp"] is not None:
        return value * Fraction(10) ** int(m["exp"]), "DecimalExponent"
    return value * Fraction(10) ** _DECIMAL[m["suffix"] or ""], "DecimalSI"


def canonical(text: str | int | float) -> str:
    """The canonical form of a quantity."""
    value, fmt = parse(text)
    if fmt == "BinarySI" and value.denominator == 1 and abs(value) >= 1024:
        n, k = int(value), 0
        while n % 1024 == 0 and k < len(_BINARY_SUFFIXES) - 1:
            n //= 1024
            k += 1
        return f"{n}{_BINARY_SUFFIXES[k]}"
    nanos = math.ceil(value * 10**9)
    if nanos == 0:
        return "0"
    exponent = -9
    while nanos % 1000 == 0 and exponent < 18:
        nanos //= 1000
        exponent += 3
    if fmt == "DecimalExponent":
        return f"{nanos}e{exponent}" if exponent else str(nanos)
    return f"{nanos}{_BY_EXPONENT[exponent]}"
