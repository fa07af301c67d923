"""gitmesh.plan, table by table: which op each kind of change comes to, that drift is
computed over the fields gitmesh owns only, and that Secret values never leave unmasked."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import pytest

from gitmesh import plan, resources
from gitmesh.resources import Obj


def cm(data: dict[str, Any] | None = None, **meta: Any) -> Obj:
    """A ConfigMap gitmesh would render (or a server would hold, with `meta`)."""
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "istio-system", **meta},
    }
    if data is not None:
        obj["data"] = data
    return obj


def applied(desired: Obj) -> Obj:
    """What a server holds after gitmesh created `desired`: its owned-fields annotation,
    and the server's own metadata."""
    obj = plan.with_owned_fields(desired)
    obj["metadata"].update({"resourceVersion": "7", "uid": "u-1"})
    return obj


def patched(observed: Obj, ops: list[Obj]) -> Obj:
    out: Obj = jsonpatch.apply_patch(observed, ops)
    return out


# (why; the data gitmesh created; the data it wants now; the ops on /data; whether the
# owned-fields record changes, i.e. the set of fields gitmesh owns)
CASES = [
    ("a value changed", {"k": "old"}, {"k": "new"}, {("replace", "/data/k")}, False),
    ("a key added", {"k": "v"}, {"k": "v", "l": "w"}, {("add", "/data/l")}, True),
    ("a key no longer wanted", {"k": "v", "l": "w"}, {"k": "v"}, {("remove", "/data/l")}, True),
    ("nothing", {"k": "v"}, {"k": "v"}, set(), False),
]


@pytest.mark.parametrize(
    ("why", "before", "want", "ops", "record"), CASES, ids=[c[0] for c in CASES]
)
def test_each_change_is_the_op_it_needs(
    why: str, before: dict[str, str], want: dict[str, str], ops: set[tuple[str, str]], record: bool
) -> None:
    observed = applied(cm(before))
    found = plan.diff(observed, cm(want))
    assert {(op["op"], op["path"]) for op in found if op["path"].startswith("/data")} == ops, why
    annotation = "/metadata/annotations/" + resources.OWNED_FIELDS.replace("/", "~1")
    assert any(op["path"] == annotation for op in found) == record, why
    after = patched(observed, found)
    assert after["data"] == want
    assert plan.diff(after, cm(want)) == []  # converged


def test_fields_gitmesh_does_not_own_never_drift() -> None:
    """What the server defaults and other writers set is outside the projection."""
    observed = applied(cm({"k": "v"}))
    observed["metadata"]["labels"] = {"team": "payments"}  # another writer's label
    observed["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    observed["binaryData"] = {"x": "eA=="}  # a field gitmesh never set
    assert plan.diff(observed, cm({"k": "v"})) == []


def test_an_object_gitmesh_never_annotated_is_taken_as_far_as_it_wants() -> None:
    """No owned-fields record (an object from before the annotation): only what gitmesh
    wants now is compared, and the record is added."""
    observed = cm({"k": "v", "other": "x"}, resourceVersion="3")
    ops = plan.diff(observed, cm({"k": "v"}))
    assert ops and all(op["path"].startswith("/metadata/annotations") for op in ops)
    after = patched(observed, ops)
    assert after["data"] == {"k": "v", "other": "x"}
    assert plan.owned_fields(after) == {"data": {"k": 0}, "metadata": {"name": 0, "namespace": 0}}


def test_the_owned_fields_record_blanks_every_value() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "data": {"token": "c2VjcmV0"},
    }
    record = plan.with_owned_fields(secret)["metadata"]["annotations"][resources.OWNED_FIELDS]
    assert json.loads(record) == {"data": {"token": 0}, "metadata": {"name": 0, "namespace": 0}}
    assert "c2VjcmV0" not in record


def test_component_creates_patches_keeps_and_deletes() -> None:
    keep = cm({"k": "v"})
    change = {**cm({"k": "v"}), "metadata": {"name": "d", "namespace": "istio-system"}}
    new = {**cm({"k": "v"}), "metadata": {"name": "e", "namespace": "istio-system"}}
    gone = {**cm({"k": "v"}), "metadata": {"name": "f", "namespace": "istio-system"}}
    observed = [applied(keep), applied({**change, "data": {"k": "old"}}), applied(gone)]
    items = plan.component("common", [keep, change, new], observed)
    by_name = {i.ref.name: i for i in items}
    assert {n: i.action for n, i in by_name.items()} == {
        "c": "unchanged",
        "d": "patch",
        "e": "create",
        "f": "delete",
    }
    assert by_name["d"].resource_version == "7" and by_name["f"].resource_version == "7"
    assert by_name["d"].before == {"/data/k": "old"}
    assert by_name["e"].ops[0]["op"] == "add" and by_name["e"].ops[0]["path"] == ""
    assert [i.changes for i in items].count(False) == 1


SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "s", "namespace": "n"},
    "data": {"token": "c2VjcmV0", "ca": "Y2E="},
}


@pytest.mark.parametrize(
    ("observed", "want"),
    [
        (None, SECRET),  # a create: the body
        (applied({**SECRET, "data": {"token": "b2xk", "ca": "Y2E="}}), SECRET),  # a replace
        (applied({**SECRET, "data": {"ca": "Y2E="}}), SECRET),  # an add of one key
    ],
    ids=["create", "replace", "add"],
)
def test_secret_values_never_leave_unmasked(observed: Obj | None, want: Obj) -> None:
    (item,) = plan.component("citadel", [want], [] if observed is None else [observed])
    shown = json.dumps(plan.as_dict(item))
    for value in ("c2VjcmV0", "b2xk", "Y2E="):
        assert value not in shown
    assert plan.MASK in shown


def test_a_configmap_is_shown_as_it_is() -> None:
    (item,) = plan.component("common", [cm({"mesh": "x"})], [applied(cm({"mesh": "y"}))])
    assert plan.masked_ops(item) == [
        {"op": "replace", "path": "/data/mesh", "value": "x", "old": "y"}
    ]


@pytest.mark.parametrize(
    ("obj", "text"),
    [
        (cm(), "ConfigMap istio-system/c"),
        ({"kind": "Namespace", "metadata": {"name": "payments"}}, "Namespace payments"),
    ],
)
def test_a_ref_reads_as_kubectl_names_it(obj: Obj, text: str) -> None:
    assert str(plan.Ref.of(obj)) == text


def test_a_namespace_gitmesh_creates_needs_nothing_next_pass() -> None:
    """Created with its records, the namespace is what `namespace_labels` wants."""
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "istio-system", "labels": {"net": "n2"}, "annotations": {"cp": "c"}},
    }
    created = plan.new_namespace("common", ns, {"net": "n2"}, {"cp": "c"})
    assert created.action == "create" and created.body is not None
    held = applied(created.body)
    again = plan.namespace_labels("common", held, {"net": "n2"}, {"cp": "c"})
    assert again.action == "unchanged", again.ops
    # Without the records (what gitmesh created before), the next pass patched it.
    bare = applied(plan.component("common", [ns], [])[0].body or {})
    assert plan.namespace_labels("common", bare, {"net": "n2"}, {"cp": "c"}).action == "patch"
