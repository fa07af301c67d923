"""The three patch formats kube-apiserver accepts for JSON clients. Pure.

- JSON Patch (RFC 6902) through the `jsonpatch` library;
- JSON merge patch (RFC 7386);
- strategic merge patch, for built-in kinds only: lists are merged by the patch merge keys
  of the Kubernetes API types (containers and env by `name`, container ports by
  `containerPort`, service ports by `port`, ...), with the `$patch`, `$retainKeys`,
  `$setElementOrder/` and `$deleteFromPrimitiveList/` directives that kubectl sends.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch


class PatchError(Exception):
    """The patch could not be decoded (`code` 400) or applied (`code` 422)."""

    def __init__(self, message: str, code: int) -> None:
        self.code = code
        super().__init__(message)


def json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch; a failed `test` or a bad path is a 422, as in kube."""
    if not isinstance(ops, list) or not all(isinstance(o, dict) and "op" in o for o in ops):
        raise PatchError("json: cannot unmarshal into Go value of type jsonpatch.Patch", 400)
    try:
        patch = jsonpatch.JsonPatch(ops)
    except (jsonpatch.InvalidJsonPatch, TypeError) as e:
        raise PatchError(str(e), 400) from e
    try:
        result: dict[str, Any] = patch.apply(doc)
    except jsonpatch.JsonPatchTestFailed as e:
        path = next((o.get("path") for o in ops if o.get("op") == "test"), "")
        raise PatchError(f"testing value {path} failed: test failed", 422) from e
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
    ) as e:
        raise PatchError(f"jsonpatch could not be applied: {e}", 422) from e
    return result


def merge_patch(doc: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# Patch merge keys of the Kubernetes API types, by field name (and parent where it matters).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "webhooks": "name",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_CONTAINER_FIELDS = {"containers", "initContainers", "ephemeralContainers"}
# Lists of scalars merged as sets.
_PRIMITIVE_MERGE = {"finalizers"}
_DELETE = object()


def _merge_key(path: tuple[str, ...], kind: str) -> str | None:
    field = path[-1]
    if field == "ports":
        if len(path) > 1 and path[-2] in _CONTAINER_FIELDS:
            return "containerPort"
        if kind == "Service" and path == ("spec", "ports"):
            return "port"
        return None
    if field == "conditions" and path[0] != "status":
        return None
    return _MERGE_KEYS.get(field)


def strategic_merge_patch(doc: dict[str, Any], patch: Any, *, kind: str) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of a built-in `kind`."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object", 400)
    result = _merge_map(doc, patch, (), kind)
    return {} if result is _DELETE else result


def _merge_map(orig: Any, patch: dict[str, Any], path: tuple[str, ...], kind: str) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip(patch)
    out = dict(orig) if isinstance(orig, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = (*path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(out.get(key), value, sub, kind)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, sub, kind)
        else:
            out[key] = value
    for field, order in orders.items():
        out[field] = _reorder(out.get(field), order, _merge_key((*path, field), kind))
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _merge_list(orig: Any, patch: list[Any], path: tuple[str, ...], kind: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    orig_list = list(orig) if isinstance(orig, list) else []
    if path[-1] in _PRIMITIVE_MERGE:
        return orig_list + [v for v in patch if v not in orig_list]
    key = _merge_key(path, kind)
    if key is None:
        return _strip(patch)  # type: ignore[no-any-return]
    out = list(orig_list)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {key}", 400)
        idx = next(
            (i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip(item))
        else:
            out[idx] = _merge_map(out[idx], item, path, kind)
    return _patch_order(out, patch, orig_list, key)


def _patch_order(merged: list[Any], patch: list[Any], orig: list[Any], key: str) -> list[Any]:
    """apimachinery's element order after a strategic merge (normalizeElementOrder): the
    patch's elements in the patch's order, the server's others in theirs, interleaved by
    the live object's order where both are in it; so new elements come before the old
    ones they are not ordered against."""

    def key_of(item: Any) -> Any:
        return item.get(key) if isinstance(item, dict) else None

    in_patch = [key_of(i) for i in patch if isinstance(i, dict) and i.get("$patch") != "delete"]
    by_key = {key_of(i): i for i in merged}
    right = [by_key[k] for k in in_patch if k in by_key]
    left = [i for i in merged if key_of(i) not in in_patch]
    server = {key_of(i): n for n, i in enumerate(orig)}
    out: list[Any] = []
    while left or right:
        if left and right:
            li, ri = server.get(key_of(left[0])), server.get(key_of(right[0]))
            take_left = li is not None and ri is not None and li < ri
        else:
            take_left = bool(left)
        out.append(left.pop(0) if take_left else right.pop(0))
    return out


def _reorder(items: Any, order: list[Any], key: str | None) -> Any:
    if not isinstance(items, list):
        return items
    if key is None:
        ranks = {v: i for i, v in enumerate(order) if not isinstance(v, dict)}
        return sorted(items, key=lambda v: ranks.get(v, len(ranks)))
    ranks = {o.get(key): i for i, o in enumerate(order) if isinstance(o, dict)}
    return sorted(
        items, key=lambda o: ranks.get(o.get(key) if isinstance(o, dict) else None, len(ranks))
    )
