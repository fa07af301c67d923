"""localkube's patch formats, pure: merge patch and strategic merge patch directives."""

from __future__ import annotations

from typing import Any

import pytest

from gitmesh.localkube import patches


def test_merge_patch_rfc7386() -> None:
    """Maps merge, null deletes, lists and scalars replace."""
    doc = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert patches.merge_patch(doc, {"a": {"b": None, "d": 3}, "l": [3]}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [
        # A new keyed element comes first, as kube-apiserver orders it (test_differential's
        # strategic-merge-new-keyed-order).
        (
            {"spec": {"ports": [{"port": 80, "name": "a"}]}},
            {"spec": {"ports": [{"port": 443, "name": "b"}]}},
            {"spec": {"ports": [{"port": 443, "name": "b"}, {"port": 80, "name": "a"}]}},
        ),
        (
            {"spec": {"ports": [{"port": 80, "name": "a"}]}},
            {"spec": {"ports": [{"port": 80, "$patch": "delete"}]}},
            {"spec": {"ports": []}},
        ),
        (
            {"metadata": {"finalizers": ["a"]}},
            {"metadata": {"finalizers": ["b", "a"]}},
            {"metadata": {"finalizers": ["a", "b"]}},
        ),
        (
            {"spec": {"x": {"y": 1}}},
            {"spec": {"x": {"$patch": "replace", "z": 2}}},
            {"spec": {"x": {"z": 2}}},
        ),
        (
            {"spec": {"ports": [{"port": 1}, {"port": 2}]}},
            {"spec": {"$setElementOrder/ports": [{"port": 2}, {"port": 1}]}},
            {"spec": {"ports": [{"port": 2}, {"port": 1}]}},
        ),
        (
            {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
            {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
            {"spec": {"strategy": {"type": "Recreate"}}},
        ),
    ],
)
def test_strategic_merge_on_service(
    doc: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Service ports merge by port; directives delete, replace, reorder and retain."""
    assert patches.strategic_merge_patch(doc, patch, kind="Service") == expected


def test_lists_without_merge_key_replace() -> None:
    """Endpoints subsets have no merge key: the patch replaces them whole."""
    doc = {"subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]}
    out = patches.strategic_merge_patch(
        doc, {"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]}, kind="Endpoints"
    )
    assert out == {"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]}


def test_json_patch_failed_test_is_422() -> None:
    """A failed test op is reported as unprocessable (422), not malformed (400)."""
    with pytest.raises(patches.PatchError) as e:
        patches.json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert e.value.code == 422


def test_json_patch_that_is_not_a_list_is_400() -> None:
    """A JSON patch must be a list of operations."""
    with pytest.raises(patches.PatchError) as e:
        patches.json_patch({"a": 1}, {"op": "add"})
    assert e.value.code == 400
