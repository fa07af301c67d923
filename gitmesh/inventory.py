"""The inventory on central: which remotes gitmesh has applied to, in the ConfigMap
`gitmesh-inventory` of the mesh namespace (as kubectl's ApplySet and kpt keep one).

It survives what the status branch does not (someone deleting or rewriting it), so a
remote removed from the repository is still pruned. Names read back are validated like spec
names before anything uses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gitmesh import errors, logs, resources, specs
from gitmesh.cluster import Cluster

Obj = dict[str, Any]


NAME = "gitmesh-inventory"
_CONFIGMAP = resources.BY_KIND["ConfigMap"]


def read(central: Cluster, namespace: str) -> tuple[set[str], Obj | None]:
    """The remotes gitmesh has applied to, from central (valid names only), and the
    ConfigMap they came from (None when it does not exist yet)."""
    try:
        obj = central.get(_CONFIGMAP, namespace, NAME)
    except errors.NotFound:
        return set(), None
    names = set()
    for name in str((obj.get("data") or {}).get("remotes", "")).split():
        try:
            names.add(specs.dns_subdomain(name))
        except ValueError:
            logs.get().warning("ignoring an invalid name in the inventory", extra={"remote": name})
    return names, obj


def write(
    central: Cluster, namespace: str, names: Iterable[str], current: Obj | None
) -> Obj | None:
    """Make the inventory hold exactly `names`; returns it as written (or as it was)."""
    text = "\n".join(sorted(set(names)))
    if current is not None and (current.get("data") or {}).get("remotes", "") == text:
        return current
    if current is None:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": NAME,
                "namespace": namespace,
                "labels": {resources.MANAGED_BY: "gitmesh"},
            },
            "data": {"remotes": text},
        }
        return central.create(_CONFIGMAP, body)
    return central.patch(
        _CONFIGMAP,
        namespace,
        NAME,
        [{"op": "add", "path": "/data", "value": {"remotes": text}}],
        resource_version=current["metadata"].get("resourceVersion"),
    )
