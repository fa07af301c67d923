"""Tables for `kubectl get`: the server-side printing kube-apiserver does when a client
asks for `as=Table` (name, a few columns per kind, age)."""

from __future__ import annotations

import time
from typing import Any

from gitmesh.localkube.kinds import Kind
from gitmesh.localkube.store import Obj


def _age(created: str) -> str:
    try:
        then = time.mktime(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except (ValueError, TypeError):
        return "<unknown>"
    secs = max(0, int(time.time() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _columns(kind: Kind, obj: Obj) -> list[tuple[str, Any]]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind.kind == "Pod":
        ready = [c.get("ready") for c in status.get("containerStatuses", [])]
        total = len(spec.get("containers", []))
        return [
            ("Ready", f"{sum(1 for r in ready if r)}/{total}"),
            ("Status", status.get("phase", "")),
            ("IP", status.get("podIP", "<none>")),
        ]
    if kind.kind == "Service":
        ports = (
            ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports", []))
            or "<none>"
        )
        return [
            ("Type", spec.get("type", "")),
            ("Cluster-IP", spec.get("clusterIP", "")),
            ("Port(s)", ports),
        ]
    if kind.kind == "Endpoints":
        addrs = [
            f"{a['ip']}:{p['port']}"
            for s in obj.get("subsets", []) or []
            for a in s.get("addresses", [])
            for p in s.get("ports", [{"port": ""}])
        ]
        return [("Endpoints", ",".join(addrs) or "<none>")]
    if kind.kind == "Deployment":
        return [("Ready", f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}")]
    if kind.kind == "Namespace":
        return [("Status", status.get("phase", ""))]
    return []


def table(kind: Kind, items: list[Obj], meta: Obj) -> Obj:
    extra = (
        [name for name, _ in _columns(kind, items[0])]
        if items
        else [name for name, _ in _columns(kind, {"metadata": {}})]
    )
    columns = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    columns += [
        {"name": n, "type": "string", "format": "", "priority": 0, "description": n} for n in extra
    ]
    columns.append(
        {
            "name": "Age",
            "type": "string",
            "format": "",
            "priority": 0,
            "description": "CreationTimestamp",
        }
    )
    rows = []
    for obj in items:
        m = obj["metadata"]
        cells = [
            m["name"],
            *[v for _, v in _columns(kind, obj)],
            _age(m.get("creationTimestamp", "")),
        ]
        rows.append(
            {
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": m,
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in meta.items() if k in ("resourceVersion", "continue") and v}
        or {"resourceVersion": ""},
        "columnDefinitions": columns,
        "rows": rows,
    }
