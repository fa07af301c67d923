"""What a pass would change on a remote, object by object, as RFC 6902 operations. Pure.

Drift is computed over the fields gitmesh owns, never the whole object: the observed
object is projected onto the shape of what gitmesh wants now and of what it set last time
(the `gitmesh.io/owned-fields` annotation: that shape with every value blanked, like the
API server's managedFields, so it can be kept on a Secret without leaking it). Fields a
server defaults or other writers set are outside the projection and never drift; a field
gitmesh set before and no longer wants is inside it and is removed. Patches are computed
with `jsonpatch` and applied by the gateway behind a resourceVersion `test`.

Secret values never leave this module unmasked in `describe`/`as_dict`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from gitmesh import resources
from gitmesh.resources import Obj

MASK = "***"
SECRET_FIELDS = ("data", "stringData")


@dataclass(frozen=True, slots=True)
class Ref:
    """Which object: kind, namespace ('' when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Ref:
        """The reference of an object."""
        meta = obj["metadata"]
        return cls(obj["kind"], meta.get("namespace", "") or "", meta["name"])

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Item:
    """One planned change. `ops` is the JSON Patch (create: the body as one `add`)."""

    action: str  # create | patch | delete | unchanged
    component: str
    ref: Ref
    ops: tuple[Obj, ...] = ()
    body: Obj | None = None
    resource_version: str | None = None
    # For each op that replaces or removes a value: the value it had (for people to read).
    before: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        """Whether applying this item writes anything."""
        return self.action != "unchanged"


def shape(value: Any) -> Any:
    """The field structure of `value` with every leaf blanked (0)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return 0


def _project(observed: Any, desired: Any, owned: Any) -> Any:
    """`observed` restricted to the keys that `desired` or `owned` mention."""
    if (
        isinstance(observed, dict)
        and isinstance(desired, dict | None)
        and isinstance(owned, dict | None)
        and (desired is not None or owned is not None)
    ):
        d = desired or {}
        o = owned or {}
        return {
            k: _project(observed[k], d.get(k), o.get(k)) for k in (set(d) | set(o)) if k in observed
        }
    if isinstance(observed, list) and isinstance(desired, list) and len(observed) == len(desired):
        o_list = (
            owned
            if isinstance(owned, list) and len(owned) == len(desired)
            else [None] * len(desired)
        )
        return [_project(a, b, c) for a, b, c in zip(observed, desired, o_list, strict=True)]
    return observed


def _copy(value: Any) -> Any:
    """A copy of JSON-shaped data (faster than a JSON round trip or deepcopy)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def with_owned_fields(desired: Obj) -> Obj:
    """`desired` with its owned-fields annotation (the shape of everything else)."""
    body: Obj = _copy(desired)
    shaped = shape({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
    annotations = shaped["metadata"].get("annotations", {})
    annotations.pop(resources.OWNED_FIELDS, None)
    if not annotations:
        shaped["metadata"].pop("annotations", None)
    body["metadata"].setdefault("annotations", {})[resources.OWNED_FIELDS] = json.dumps(
        shaped, sort_keys=True, separators=(",", ":")
    )
    return body


def owned_fields(observed: Mapping[str, Any]) -> Obj:
    """What gitmesh set on `observed` last time (empty when unknown)."""
    raw = (observed.get("metadata", {}).get("annotations") or {}).get(resources.OWNED_FIELDS)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def diff(observed: Obj, desired: Obj) -> list[Obj]:
    """JSON Patch ops that make the owned fields of `observed` equal `desired`."""
    return _diff(observed, desired)[0]


def _diff(observed: Obj, desired: Obj) -> tuple[list[Obj], dict[str, Any]]:
    """The ops, and the values the replaced and removed paths hold now."""
    target = with_owned_fields(desired)
    owned = owned_fields(observed)
    target_body = {k: v for k, v in target.items() if k not in ("apiVersion", "kind")}
    current = _project(observed, target_body, owned)
    current.pop("apiVersion", None)
    current.pop("kind", None)
    if current == target_body:  # the no-op pass: nothing to diff
        return [], {}
    ops: list[Obj] = jsonpatch.make_patch(current, target_body).patch
    before = {}
    for op in ops:
        if op["op"] in ("replace", "remove"):
            try:
                before[op["path"]] = jsonpatch.JsonPointer(op["path"]).resolve(current)
            except jsonpatch.JsonPointerException:
                continue
    return ops, before


def component(name: str, desired: Sequence[Obj], observed: Iterable[Obj]) -> list[Item]:
    """Plan one component: create what is missing, patch what drifted, delete what gitmesh
    owns in this component but no longer wants."""
    have = {Ref.of(o): o for o in observed}
    items: list[Item] = []
    wanted = set()
    for obj in desired:
        ref = Ref.of(obj)
        wanted.add(ref)
        current = have.get(ref)
        if current is None:
            body = with_owned_fields(obj)
            items.append(
                Item("create", name, ref, ({"op": "add", "path": "", "value": body},), body=body)
            )
            continue
        rv = current["metadata"].get("resourceVersion")
        ops, before = _diff(current, obj)
        items.append(
            Item(
                "patch" if ops else "unchanged",
                name,
                ref,
                tuple(ops),
                resource_version=rv,
                before=before,
            )
        )
    for ref, current in sorted(
        have.items(), key=lambda kv: (kv[0].kind, kv[0].namespace, kv[0].name)
    ):
        if ref not in wanted:
            items.append(
                Item(
                    "delete", name, ref, resource_version=current["metadata"].get("resourceVersion")
                )
            )
    return items


def injection(namespaces: Sequence[str], observed: Iterable[Obj]) -> tuple[list[Item], list[str]]:
    """Label the listed namespaces for injection; unlabel the ones gitmesh labelled before
    that left the list. Namespaces labelled by hand are never touched. Returns the items
    and the listed namespaces that do not exist."""
    by_name = {o["metadata"]["name"]: o for o in observed}
    items: list[Item] = []
    wanted = set(namespaces)
    for name, ns in sorted(by_name.items()):
        labels = ns["metadata"].get("labels") or {}
        managed = labels.get(resources.MANAGED_INJECTION) == "enabled"
        by_hand = resources.INJECTION in labels and not managed
        ref = Ref("Namespace", "", name)
        rv = ns["metadata"].get("resourceVersion")
        if name in wanted and not by_hand:
            ops: list[Obj] = [
                {"op": "add", "path": f"/metadata/labels/{_escape(key)}", "value": "enabled"}
                for key in (resources.INJECTION, resources.MANAGED_INJECTION)
                if labels.get(key) != "enabled"
            ]
            if "labels" not in ns["metadata"]:
                ops = [
                    {
                        "op": "add",
                        "path": "/metadata/labels",
                        "value": {
                            resources.INJECTION: "enabled",
                            resources.MANAGED_INJECTION: "enabled",
                        },
                    }
                ]
            items.append(
                Item(
                    "patch" if ops else "unchanged",
                    "injection",
                    ref,
                    tuple(ops),
                    resource_version=rv,
                )
            )
        elif name not in wanted and managed:
            ops = [
                {"op": "remove", "path": f"/metadata/labels/{_escape(key)}"}
                for key in (resources.INJECTION, resources.MANAGED_INJECTION)
                if key in labels
            ]
            items.append(Item("patch", "injection", ref, tuple(ops), resource_version=rv))
    missing = sorted(wanted - set(by_name))
    return items, missing


# On a namespace gitmesh does not own, the label keys it set there (comma-separated), so
# that it can take back exactly those.
LABELS_ANNOTATION = "gitmesh.io/namespace-labels"
ANNOTATIONS_ANNOTATION = "gitmesh.io/namespace-annotations"


def _kept(current: Mapping[str, str], record: str, wanted: Mapping[str, str]) -> dict[str, str]:
    """`current` with the keys gitmesh recorded and no longer wants gone, and `wanted` set."""
    had = {k for k in record.split(",") if k}
    out = {k: v for k, v in current.items() if k not in had - set(wanted)}
    out.update(wanted)
    return out


def _map_ops(path: str, old: Mapping[str, str] | None, new: Mapping[str, str]) -> list[Obj]:
    """Ops taking the map at `path` from `old` (None: absent) to `new`: additions and
    changes first, removals after, each sorted by key."""
    if old is None:
        return [{"op": "add", "path": path, "value": dict(new)}] if new else []
    ops: list[Obj] = [
        {"op": "add", "path": f"{path}/{_escape(k)}", "value": v}
        for k, v in sorted(new.items())
        if old.get(k) != v
    ]
    ops += [{"op": "remove", "path": f"{path}/{_escape(k)}"} for k in sorted(set(old) - set(new))]
    return ops


def namespace_labels(
    component: str,
    ns: Obj,
    wanted: Mapping[str, str],
    wanted_annotations: Mapping[str, str] | None = None,
) -> Item:
    """Bring the labels (and annotations) gitmesh sets on a namespace it may not own to
    `wanted`: add or fix those, remove the ones it set before that are no longer wanted,
    and record the keys (gitmesh.io/namespace-labels, gitmesh.io/namespace-annotations)."""
    meta = ns["metadata"]
    labels = meta.get("labels")
    annotations = meta.get("annotations")
    current = annotations or {}
    new_labels = _kept(labels or {}, current.get(LABELS_ANNOTATION, ""), wanted)
    new_annotations = _kept(
        current, current.get(ANNOTATIONS_ANNOTATION, ""), wanted_annotations or {}
    )
    for record, keys in (
        (LABELS_ANNOTATION, wanted),
        (ANNOTATIONS_ANNOTATION, wanted_annotations or {}),
    ):
        new_annotations.pop(record, None)
        if keys:
            new_annotations[record] = ",".join(sorted(keys))
    ops = _map_ops("/metadata/labels", labels, new_labels) + _map_ops(
        "/metadata/annotations", annotations, new_annotations
    )
    return Item(
        "patch" if ops else "unchanged",
        component,
        Ref("Namespace", "", meta["name"]),
        tuple(ops),
        resource_version=meta.get("resourceVersion"),
    )


def new_namespace(
    component_name: str,
    ns: Obj,
    wanted: Mapping[str, str],
    wanted_annotations: Mapping[str, str] | None = None,
) -> Item:
    """Create a namespace gitmesh makes, with the keys it sets recorded as
    `namespace_labels` records them: the next pass finds nothing to change."""
    body: Obj = _copy(ns)
    annotations = body["metadata"].setdefault("annotations", {})
    for record, keys in (
        (LABELS_ANNOTATION, wanted),
        (ANNOTATIONS_ANNOTATION, wanted_annotations or {}),
    ):
        if keys:
            annotations[record] = ",".join(sorted(keys))
    if not annotations:
        del body["metadata"]["annotations"]
    return component(component_name, [body], [])[0]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# -- presenting plans (masked) --------------------------------------------------------------


def _mask_value(kind: str, path: str, value: Any) -> Any:
    if kind != "Secret":
        return value
    parts = path.split("/")
    if len(parts) >= 2 and parts[1] in SECRET_FIELDS:
        if len(parts) == 2 and isinstance(value, dict):
            return dict.fromkeys(value, MASK)
        return MASK
    if path == "" and isinstance(value, dict):
        masked = dict(value)
        for field in SECRET_FIELDS:
            if isinstance(masked.get(field), dict):
                masked[field] = dict.fromkeys(masked[field], MASK)
        return masked
    return value


def masked_ops(item: Item) -> list[Obj]:
    """The item's ops with Secret values replaced by `***`; a replaced or removed value's
    previous value is under `old` (masked alike)."""
    out = []
    for op in item.ops:
        shown = dict(op)
        path = str(op.get("path", ""))
        if "value" in shown:
            shown["value"] = _mask_value(item.ref.kind, path, shown["value"])
        if path in item.before:
            shown["old"] = _mask_value(item.ref.kind, path, item.before[path])
        out.append(shown)
    return out


def as_dict(item: Item) -> Obj:
    """A JSON-ready, masked form of an item."""
    out: Obj = {
        "action": item.action,
        "component": item.component,
        "kind": item.ref.kind,
        "name": item.ref.name,
    }
    if item.ref.namespace:
        out["namespace"] = item.ref.namespace
    if item.action in ("patch", "create"):
        out["patch"] = masked_ops(item)
    return out
