"""plan.namespace_labels: the labels and annotations gitmesh sets on a namespace it may not
own, recorded so that it takes back only its own (pure)."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from gitmesh import plan

NET = "topology.istio.io/network"
CPC = "topology.istio.io/controlPlaneClusters"


def ns(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Any:
    meta: dict[str, Any] = {"name": "istio-system", "resourceVersion": "7"}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def applied(obj: Any, item: plan.Item) -> Any:
    return jsonpatch.apply_patch(obj, list(item.ops))["metadata"]


@pytest.mark.parametrize(
    ("before", "labels", "annotations", "after_labels", "after_annotations"),
    [
        # bare namespace: both maps added whole, with the records
        (
            ns(),
            {NET: "n2"},
            {CPC: "*"},
            {NET: "n2"},
            {CPC: "*", plan.LABELS_ANNOTATION: NET, plan.ANNOTATIONS_ANNOTATION: CPC},
        ),
        # someone else's keys stay
        (
            ns({"team": "x"}, {"note": "y"}),
            {NET: "n2"},
            {CPC: "c1"},
            {"team": "x", NET: "n2"},
            {"note": "y", CPC: "c1", plan.LABELS_ANNOTATION: NET, plan.ANNOTATIONS_ANNOTATION: CPC},
        ),
        # no longer wanted: only what gitmesh recorded goes, and the records with it
        (
            ns(
                {"team": "x", NET: "n2"},
                {
                    "note": "y",
                    CPC: "*",
                    plan.LABELS_ANNOTATION: NET,
                    plan.ANNOTATIONS_ANNOTATION: CPC,
                },
            ),
            {},
            {},
            {"team": "x"},
            {"note": "y"},
        ),
        # a key a person set, not recorded: not taken back
        (ns({NET: "theirs"}, {CPC: "theirs"}), {}, {}, {NET: "theirs"}, {CPC: "theirs"}),
    ],
)
def test_namespace_keys_are_set_and_taken_back_by_record(
    before: Any,
    labels: dict[str, str],
    annotations: dict[str, str],
    after_labels: dict[str, str],
    after_annotations: dict[str, str],
) -> None:
    """Each shape ends where it should; applying the result again plans nothing."""
    item = plan.namespace_labels("common", before, labels, annotations)
    meta = applied(before, item)
    assert meta.get("labels", {}) == after_labels
    assert meta.get("annotations", {}) == after_annotations
    again = plan.namespace_labels("common", {"metadata": meta}, labels, annotations)
    assert again.action == "unchanged" and again.ops == ()
    assert item.resource_version == "7"
