"""Kubernetes label and field selectors: parse the string syntax, match plain dicts.

Pure and shared: specs validate `labelSelector` with it, localkube filters LIST and WATCH
with it, the reconciler matches central pods with it. The grammar is the one
`k8s.io/apimachinery/pkg/labels` accepts: requirements separated by commas, each
`key=value`, `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`, `key`
(exists) or `!key` (does not exist).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY_RE = re.compile(rf"({_PREFIX}/)?{_NAME}")
_VALUE_RE = re.compile(rf"({_NAME})?")

OPERATORS = ("=", "==", "!=", "in", "notin", "exists", "!")


class SelectorError(ValueError):
    """The selector string is not valid Kubernetes selector syntax."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a label selector: `key op values`."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this requirement."""
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" also match objects without the key, as in Kubernetes.
        return not present or labels[self.key] not in self.values


def valid_label_key(key: str) -> bool:
    """Whether `key` is a valid label key (optional DNS prefix, then a name)."""
    prefix, _, name = key.rpartition("/")
    if prefix and len(prefix) > 253:
        return False
    return bool(_KEY_RE.fullmatch(key)) and len(name) <= 63


def valid_label_value(value: str) -> bool:
    """Whether `value` is a valid label value (empty, or up to 63 name characters)."""
    return len(value) <= 63 and bool(_VALUE_RE.fullmatch(value))


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SelectorError("unbalanced '('")
    parts.append("".join(cur))
    return parts


_SET_RE = re.compile(r"^\s*(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)\s*$")


def _check_key(key: str) -> str:
    if not valid_label_key(key):
        raise SelectorError(
            f"invalid label key {key!r}: a name of up to 63 alphanumeric characters, "
            "'-', '_' or '.', with an optional DNS subdomain prefix and '/'"
        )
    return key


def _check_value(value: str) -> str:
    if not valid_label_value(value):
        raise SelectorError(
            f"invalid label value {value!r}: empty or up to 63 alphanumeric characters, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )
    return value


def parse_labels(text: str) -> tuple[Requirement, ...]:
    """Parse a label selector string; the empty string selects everything."""
    if not text.strip():
        return ()
    reqs: list[Requirement] = []
    for raw in _split_top(text):
        part = raw.strip()
        if not part:
            raise SelectorError("empty requirement (a stray ',')")
        if m := _SET_RE.fullmatch(part):
            values = tuple(_check_value(v.strip()) for v in m["values"].split(","))
            if m["op"] == "in" and values == ("",):
                raise SelectorError(f"{part!r}: 'in' needs at least one value")
            reqs.append(Requirement(_check_key(m["key"]), m["op"], tuple(sorted(values))))
        elif m := _EQ_RE.fullmatch(part):
            op = "=" if m["op"] == "==" else m["op"]
            reqs.append(Requirement(_check_key(m["key"]), op, (_check_value(m["value"]),)))
        elif part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip()), "!"))
        elif " " not in part and "(" not in part:
            reqs.append(Requirement(_check_key(part), "exists"))
        else:
            raise SelectorError(
                f"cannot parse {part!r}: expected key=value, key!=value, key in (...), "
                "key notin (...), key or !key"
            )
    return tuple(reqs)


def matches(reqs: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    """Whether `labels` satisfy every requirement."""
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def to_string(reqs: tuple[Requirement, ...]) -> str:
    """The canonical string form of parsed requirements."""
    out = []
    for r in reqs:
        if r.op == "exists":
            out.append(r.key)
        elif r.op == "!":
            out.append(f"!{r.key}")
        elif r.op in ("in", "notin"):
            out.append(f"{r.key} {r.op} ({','.join(r.values)})")
        else:
            out.append(f"{r.key}{r.op}{r.values[0]}")
    return ",".join(out)


def from_match_labels(match_labels: Mapping[str, str]) -> tuple[Requirement, ...]:
    """Requirements equivalent to a `matchLabels` map (a Service's selector)."""
    return tuple(Requirement(k, "=", (v,)) for k, v in sorted(match_labels.items()))


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One requirement of a field selector: `path op value`."""

    path: str
    negate: bool
    value: str


def parse_fields(text: str) -> tuple[FieldRequirement, ...]:
    """Parse a field selector (`a=b,c!=d`)."""
    if not text.strip():
        return ()
    out = []
    for raw in text.split(","):
        m = _EQ_RE.fullmatch(raw)
        if not m:
            raise SelectorError(f"invalid field selector {raw!r}: expected field=value")
        out.append(FieldRequirement(m["key"], m["op"] == "!=", m["value"]))
    return tuple(out)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value at a dotted path of `obj` (empty when absent)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def matches_fields(reqs: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    """Whether `obj` satisfies every field requirement."""
    return all((field_value(obj, r.path) == r.value) != r.negate for r in reqs)
