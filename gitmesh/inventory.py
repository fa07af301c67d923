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
ATTEMPTS = 5


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


def update(
    central: Cluster, namespace: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
) -> None:
    """Add and remove names. Replicas of a shard group update it at once: a write that lost
    the race (resourceVersion) is retried on a fresh read."""
    add, remove = set(add), set(remove)
    for attempt in range(ATTEMPTS):
        names, current = read(central, namespace)
        try:
            _write(central, namespace, (names | add) - remove, current)
            return
        except errors.Conflict:  # another replica wrote first (or created it)
            if attempt == ATTEMPTS - 1:
                raise


def _write(central: Cluster, namespace: str, names: Iterable[str], current: Obj | None) -> None:
    """Make the inventory hold exactly `names`, if it is still `current`."""
    text = "\n".join(sorted(set(names)))
    if current is not None and (current.get("data") or {}).get("remotes", "") == text:
        return
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
        central.create(_CONFIGMAP, body)
        return
    central.patch(
        _CONFIGMAP,
        namespace,
        NAME,
        [{"op": "add", "path": "/data", "value": {"remotes": text}}],
        resource_version=current["metadata"].get("resourceVersion"),
    )
