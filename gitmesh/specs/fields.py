"""The field types people's files are checked with: Kubernetes names (DNS labels and
subdomains), label selectors, IP ranges, quantities, images, owned labels and git ref
names, each a validator whose message names what is wrong; and `Strict`, the base model
that refuses unknown fields. Pure."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic.alias_generators import to_camel

from gitmesh import quantity as quantities
from gitmesh import selectors

OWNED_LABEL_PREFIXES = ("gitmesh.io/", "app.kubernetes.io/managed-by")
# Full matches only: `$` would also match before a trailing newline ("x\n").
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
IANA_SVC_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
_IMAGE = re.compile(r"\S+")


def dns_label(value: str) -> str:
    """Accept an RFC 1123 label (what Kubernetes requires of namespace and service names)."""
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters (RFC 1123 label)"
        )
    return value


def dns_subdomain(value: str) -> str:
    """Accept an RFC 1123 subdomain (what Kubernetes requires of most object names)."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: lower-case letters, digits, '-' and '.', at most "
            "253 characters (RFC 1123 subdomain)"
        )
    return value


def ip_ranges(value: str) -> str:
    """Accept `*`, the empty string, or comma-separated CIDRs."""
    if value.strip() in ("", "*"):
        return value.strip()
    parts = [p.strip() for p in value.split(",")]
    for part in parts:
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(
                f"{part!r} is not a CIDR; use '*' or comma-separated CIDRs like "
                "'10.0.0.0/8,172.16.0.0/12'"
            ) from None
    return ",".join(parts)


def label_selector(value: str) -> str:
    """Accept a Kubernetes label selector string; return its canonical form."""
    try:
        reqs = selectors.parse_labels(value)
    except selectors.SelectorError as e:
        raise ValueError(f"invalid label selector: {e}") from None
    if not reqs:
        raise ValueError("an empty selector would select every pod; name the pods' labels")
    return value.strip()


def ip_address(value: str) -> str:
    """Accept an IPv4 or IPv6 address; return its canonical form."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def quantity(value: str | int | float) -> str:
    """Accept a Kubernetes resource quantity (`100m`, `128Mi`, `2`); return it in the
    canonical form the API server answers with (`0.5` -> `500m`), so it never drifts."""
    try:
        return quantities.canonical(value)
    except quantities.QuantityError as e:
        raise ValueError(str(e)) from None


def image(value: str) -> str:
    """Accept a container image reference (no whitespace)."""
    if not value or not _IMAGE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an image reference (example: docker.io/istio/citadel:1.0.5)"
        )
    return value


def owned_label_keys(labels: dict[str, str]) -> dict[str, str]:
    """Accept labels whose keys and values are valid and not gitmesh's own."""
    for key, value in labels.items():
        if not selectors.valid_label_key(key):
            raise ValueError(f"invalid label key {key!r}")
        if not selectors.valid_label_value(str(value)):
            raise ValueError(f"invalid value {value!r} for label {key!r}")
        if key.startswith(OWNED_LABEL_PREFIXES):
            raise ValueError(f"label {key!r} is reserved: gitmesh sets it on what it manages")
    return labels


DnsLabel = Annotated[str, AfterValidator(dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(dns_subdomain)]
Quantity = Annotated[str | int | float, AfterValidator(quantity)]
Image = Annotated[str, AfterValidator(image)]
Replicas = Annotated[int, Field(ge=0, le=1000)]
LabelSelector = Annotated[str, AfterValidator(label_selector)]
IPAddress = Annotated[str, AfterValidator(ip_address)]
IPRanges = Annotated[str, AfterValidator(ip_ranges)]
Labels = Annotated[dict[str, str], AfterValidator(owned_label_keys)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Base: unknown fields are errors; camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )
    # Upstream fields that gitmesh rejects on purpose, with the reason people are told.
    unsupported: ClassVar[dict[str, str]] = {}


def network_name(value: str) -> str:
    """Accept an Istio network name (it becomes a label value, `topology.istio.io/network`,
    and a path segment of the injection URL)."""
    if not value or not selectors.valid_label_value(value) or "." in value:
        raise ValueError(
            f"{value!r} is not a network name: letters, digits, '-' and '_', at most 63 "
            "characters, starting and ending with a letter or digit"
        )
    return value


NetworkName = Annotated[str, AfterValidator(network_name)]


def ref_name_ok(name: str) -> bool:
    """Whether `name` is a branch, tag or commit name gitmesh accepts: git's rules, and
    nothing git could read as an option or a revision expression."""
    return bool(
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", name)
        and ".." not in name
        and "//" not in name
        and not name.endswith((".lock", "/", "."))
    )
