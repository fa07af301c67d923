"""Apply: a component's planned items sent to one remote, each re-planned after a
conflict, and the component's report."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from gitmesh import errors, logs, plan, render, resources
from gitmesh.cluster import Cluster
from gitmesh.reconcile.observe import Observed
from gitmesh.resources import Obj, Resource
from gitmesh.settings import Settings
from gitmesh.status.reports import ComponentReport


class Applier:
    """Applies planned items to one remote, re-planning an object after a conflict."""

    def __init__(
        self, remote: Cluster, name: str, settings: Settings, kinds: Mapping[str, Resource]
    ) -> None:
        self.remote = remote
        self.name = name
        self.settings = settings
        self.kinds = kinds
        # Namespaces a dry run created only in pretence: what goes into them is not sent
        # (the server would answer NotFound), it is counted as created.
        self.pretended: set[str] = set()
        # The server's answer to each Deployment written: its generation and status are
        # the freshest there are, for readiness (gitmesh.health).
        self.written: dict[plan.Ref, Obj] = {}

    def apply(self, item: plan.Item, desired: Obj | None) -> str:
        """Apply one item; returns what was done: created, patched, deleted or unchanged."""
        for _ in range(self.settings.conflict_retries + 1):
            try:
                return self._once(item)
            except errors.Conflict:
                item = self._replan(item, desired)
            except errors.NotFound:
                if item.action == "delete":
                    return "unchanged"
                item = self._replan(item, desired)
        raise errors.Conflict(
            f"{item.ref} on {self.name} kept changing under gitmesh; gave up "
            f"after {self.settings.conflict_retries} re-plans"
        )

    def _create_role(self, res: Resource, body: Obj, *, dry: bool) -> None:
        """A ClusterRole is created empty, then given its rules: RBAC lets gitmesh grant
        what it does not hold only through `escalate` on roles it names, and a create
        names none (gitmesh.credentials.join)."""
        self.remote.create(res, {**body, "rules": []}, dry_run=dry)
        if not dry:
            self.remote.patch(
                res,
                None,
                body["metadata"]["name"],
                [{"op": "add", "path": "/rules", "value": body["rules"]}],
                resource_version=None,
            )

    def _once(self, item: plan.Item) -> str:
        res = self.kinds[item.ref.kind]
        ns = item.ref.namespace or None
        dry = self.settings.dry_run
        if item.action == "create" and item.body is not None:
            if dry and item.ref.namespace in self.pretended:
                return "created"
            if item.ref.kind == "ClusterRole" and item.body.get("rules"):
                self._create_role(res, item.body, dry=dry)
            else:
                self._keep(item, self.remote.create(res, item.body, dry_run=dry))
            if dry and item.ref.kind == "Namespace":
                self.pretended.add(item.ref.name)
            return "created"
        if item.action == "patch":
            answer = self.remote.patch(
                res,
                ns,
                item.ref.name,
                list(item.ops),
                resource_version=item.resource_version,
                dry_run=dry,
            )
            self._keep(item, answer)
            return "patched"
        if item.action == "delete":
            self.remote.delete(
                res, ns, item.ref.name, resource_version=item.resource_version, dry_run=dry
            )
            return "deleted"
        return "unchanged"

    def _keep(self, item: plan.Item, answer: Obj) -> None:
        if item.ref.kind == "Deployment" and not self.settings.dry_run:
            self.written[item.ref] = answer

    def _replan(self, item: plan.Item, desired: Obj | None) -> plan.Item:
        res = self.kinds[item.ref.kind]
        try:
            current = self.remote.get(res, item.ref.namespace or None, item.ref.name)
        except errors.NotFound:
            if desired is None:
                return plan.Item("unchanged", item.component, item.ref)
            return plan.component(item.component, [desired], [])[0]
        if item.component == "injection":
            wanted = [item.ref.name] if any(op.get("op") == "add" for op in item.ops) else []
            found = plan.injection(wanted, [current])[0]
            return found[0] if found else plan.Item("unchanged", item.component, item.ref)
        if not resources.owned_by(current, self.name):
            if item.action == "delete":
                return plan.Item("unchanged", item.component, item.ref)
            raise errors.Conflict(
                f"{item.ref} exists on {self.name} and is not managed by "
                "gitmesh; refusing to take it over"
            )
        return plan.component(item.component, [desired] if desired else [], [current])[0]


def component_items(comp: render.Component, observed: Observed, namespace: str) -> list[plan.Item]:
    if comp.name == "injection":
        return plan.injection(comp.namespaces, observed.namespaces)[0]
    current = observed.by_component.get(comp.name, [])
    desired = [o for o in comp.objects if o["kind"] != "Namespace"]
    items = plan.component(comp.name, desired, current)
    if comp.name == "common":
        existing = next(
            (n for n in observed.namespaces if n["metadata"]["name"] == namespace), None
        )
        if existing is None:
            ns = next(o for o in comp.objects if o["kind"] == "Namespace")
            created = plan.new_namespace(
                "common", ns, comp.namespace_labels, comp.namespace_annotations
            )
            items.insert(0, created)
        elif comp.namespace_labels or comp.namespace_annotations or records(existing):
            items.append(
                plan.namespace_labels(
                    "common", existing, comp.namespace_labels, comp.namespace_annotations
                )
            )
    return items


def records(ns: Obj) -> bool:
    """Whether gitmesh recorded labels or annotations it set on a namespace."""
    annotations = ns["metadata"].get("annotations") or {}
    return plan.LABELS_ANNOTATION in annotations or plan.ANNOTATIONS_ANNOTATION in annotations


def apply_component(
    applier: Applier, comp: render.Component, items: Sequence[plan.Item]
) -> ComponentReport:
    started = time.monotonic()
    desired = {plan.Ref.of(o): o for o in comp.objects}
    counts = {"created": 0, "patched": 0, "deleted": 0}
    log = logs.get()
    for item in items:
        if not item.changes or applier.settings.plan_only:
            continue
        done = applier.apply(item, desired.get(item.ref))
        if done in counts:
            counts[done] += 1
            log.info(
                "%s %s%s",
                done,
                item.ref,
                " (server dry run)" if applier.settings.dry_run else "",
                extra={"remote": applier.name, "component": comp.name},
            )
    objects = len(comp.namespaces) if comp.name == "injection" else len(comp.objects)
    for warning in comp.warnings:
        log.warning(warning, extra={"remote": applier.name, "component": comp.name})
    return ComponentReport(
        comp.name,
        "Ready",
        warnings=comp.warnings,
        objects=objects,
        created=counts["created"],
        patched=counts["patched"],
        deleted=counts["deleted"],
        seconds=time.monotonic() - started,
    )
