"""The inventory on central: which remotes gitmesh has applied to, in the ConfigMap
`gitmesh-inventory` of the mesh namespace (as kubectl's ApplySet and kpt keep one).

It survives what the status branch does not (someone deleting or rewriting it), so a
remote removed from the repository is still pruned; anyone who can push to the status
branch could forge it, so it never decides who is known. Besides the applied remotes
(`remotes`) it keeps those whose spec left the repository in an earlier pass and whose
prune is not done (`pruning`: their cluster unreachable, or gone): a later revision is not
counted as removing them again, and `reconcile --forget` lets go of one without pruning.
Names read back are validated like spec names before anything uses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gitmesh import errors, logs, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.resources import Obj

NAME = "gitmesh-inventory"
_CONFIGMAP = resources.BY_KIND["ConfigMap"]
ATTEMPTS = 5


class Inventory(NamedTuple):
    applied: frozenset[str]  # every remote gitmesh has applied to and not yet pruned
    pruning: frozenset[str]  # of those, the ones whose prune an earlier pass began


def _names(obj: Obj, key: str) -> frozenset[str]:
    names = set()
    for name in str((obj.get("data") or {}).get(key, "")).split():
        try:
            names.add(specs.dns_subdomain(name))
        except ValueError:
            logs.get().warning("ignoring an invalid name in the inventory", extra={"remote": name})
    return frozenset(names)


def read(central: Cluster, namespace: str) -> tuple[Inventory, Obj | None]:
    """What gitmesh has applied to, from central (valid names only), and the ConfigMap it
    came from (None when it does not exist yet)."""
    try:
        obj = central.get(_CONFIGMAP, namespace, NAME)
    except errors.NotFound:
        return Inventory(frozenset(), frozenset()), None
    applied = _names(obj, "remotes")
    return Inventory(applied, _names(obj, "pruning") & applied), obj


def update(
    central: Cluster,
    namespace: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    pruning: Iterable[str] = (),
) -> None:
    """Add and remove names, and mark `pruning` the ones whose prune begins (a name added
    again is no longer pruning). Replicas of a shard group update it at once: a write that
    lost the race (resourceVersion) is retried on a fresh read."""
    add, remove, marked = set(add), set(remove), set(pruning)
    for attempt in range(ATTEMPTS):
        found, current = read(central, namespace)
        applied = (found.applied | add) - remove
        try:
            _write(central, namespace, applied, ((found.pruning - add) | marked) & applied, current)
            return
        except errors.Conflict:  # another replica wrote first (or created it)
            if attempt == ATTEMPTS - 1:
                raise


def _write(
    central: Cluster,
    namespace: str,
    names: Iterable[str],
    pruning: Iterable[str],
    current: Obj | None,
) -> None:
    """Make the inventory hold exactly `names` and `pruning`, if it is still `current`."""
    data = {"remotes": "\n".join(sorted(set(names)))}
    if pruning:
        data["pruning"] = "\n".join(sorted(set(pruning)))
    if current is not None and (current.get("data") or {}) == data:
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
            "data": data,
        }
        central.create(_CONFIGMAP, body)
        return
    central.patch(
        _CONFIGMAP,
        namespace,
        NAME,
        [{"op": "add", "path": "/data", "value": data}],
        resource_version=current["metadata"].get("resourceVersion"),
    )
