"""A remote's credentials in a pass: its kubeconfig (a file of --kubeconfig-dir or a Secret
on central, re-read every pass), the refusal of kubeconfigs that reach central (by
address, then by identity), the connection bounded by the remote's deadline, the token
renewal and the `istio/multiCluster` label, and failure messages scrubbed of secrets."""

from __future__ import annotations

import datetime
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from gitmesh import errors, kubeconfigs, logs, resources, specs
from gitmesh.cluster import Cluster
from gitmesh.credentials import join
from gitmesh.resources import Obj
from gitmesh.settings import Settings

Connect = Callable[[str, Mapping[str, Any]], Cluster]


def credentials(
    name: str, central: Cluster, namespace: str, settings: Settings
) -> tuple[dict[str, Any], Obj | None]:
    """The remote's kubeconfig (re-read every pass) and the Secret it came from."""
    check_name(name)
    if settings.kubeconfig_dir is not None:
        path = settings.kubeconfig_dir / name
        if path.is_symlink():
            raise errors.CredentialsError(f"{path} is a symlink; gitmesh refuses symlinks")
        if path.is_file():
            config = kubeconfigs.parse(path.read_text(encoding="utf-8"), where=str(path))
            kubeconfigs.check_exec(config, where=str(path), allow_exec=settings.allow_exec)
            return config, None
    try:
        secret = central.get(resources.SECRET, namespace, name)
    except errors.NotFound:
        where = f"{settings.kubeconfig_dir}/{name} or " if settings.kubeconfig_dir else ""
        raise errors.MissingCredentials(
            f"no kubeconfig for remote {name!r}: create {where}the Secret {namespace}/{name} "
            f"(kubectl create secret generic {name} -n {namespace} --from-file=<kubeconfig>)"
        ) from None
    config = kubeconfigs.from_secret(secret, name)
    kubeconfigs.check_exec(
        config, where=f"Secret {namespace}/{name}", allow_exec=settings.allow_exec
    )
    return config, secret


def check_name(name: str) -> None:
    """Names reach API paths, file paths and git trees: only valid object names do."""
    try:
        specs.dns_subdomain(name)
    except ValueError as e:
        raise errors.CredentialsError(f"refusing remote {name!r}: {e}") from None


def refuse_central(name: str, config: Mapping[str, Any], central: Cluster) -> None:
    """A remote kubeconfig that names the central cluster's server would make gitmesh
    install a remote's objects on central: refused before any request is sent."""
    server, _ = kubeconfigs.endpoint(config)
    if server == central.server:
        raise errors.CredentialsError(
            f"the kubeconfig of remote {name!r} points at the central cluster ({server}); "
            "refusing to install a remote's objects on central"
        )


def failed(name: str, e: BaseException, config: Mapping[str, Any] | None = None) -> str:
    """A one-line, scrubbed message for a remote's failure; the traceback goes to the
    debug log, scrubbed as well."""
    secrets = kubeconfigs.secrets(config) if config else []
    if isinstance(e, errors.GitmeshError):
        message = errors.one_line(str(e), secrets)
    else:
        message = errors.one_line(f"unexpected {type(e).__name__}: {e}", secrets)
        logs.get().debug(
            "traceback",
            extra={
                "remote": name,
                "error": errors.scrub("".join(traceback.format_exception(e)), secrets),
            },
        )
    return message


# A remote server's identity, by address, for a while: a no-op pass sends no extra read,
# and an address that comes to reach central is caught within IDENTITY_TTL.
IDENTITY_TTL = 300.0
_identities: dict[str, tuple[float, str | None]] = {}
_identities_lock = threading.Lock()


def _identity(remote: Cluster) -> str | None:
    now = time.monotonic()
    with _identities_lock:
        found = _identities.get(remote.server)
    if found is not None and now - found[0] < IDENTITY_TTL:
        return found[1]
    uid = remote.identity()
    with _identities_lock:
        _identities[remote.server] = (now, uid)
    return uid


@cache
def _unknown_central() -> None:
    """Said once a process: without central's identity, the check by address is all."""
    logs.get().warning(
        "cannot read the central cluster's kube-system namespace (get on that namespace is "
        "needed): a remote whose kubeconfig reaches central under another address is not "
        "detected"
    )


@contextmanager
def connected(
    connect: Connect, name: str, config: Mapping[str, Any], settings: Settings, central: Cluster
) -> Iterator[Cluster]:
    """A connection to the remote whose requests end by the remote's deadline; refused
    when it is central, by the server's address (before any request) or by identity (the
    same server spelled differently: `localhost`, `127.1`, a DNS name for the IP)."""
    refuse_central(name, config, central)
    with connect(name, config) as remote:
        remote.timeout = settings.request_timeout
        remote.max_response = settings.max_response
        remote.deadline = time.monotonic() + settings.remote_timeout
        mine = central.identity()
        if mine is None:
            _unknown_central()
        elif _identity(remote) == mine:
            raise errors.CredentialsError(
                f"the kubeconfig of remote {name!r} reaches the central cluster (its "
                f"kube-system namespace is central's, at {remote.server}); refusing to "
                "install a remote's objects on central"
            )
        try:
            yield remote
        finally:
            remote.deadline = None


def renewed(
    name: str, remote: Cluster, config: Mapping[str, Any], central: Cluster, secret: Obj
) -> Obj:
    """The kubeconfig Secret, its token renewed when `gitmesh join` wrote it and it is due
    (gitmesh.credentials.join). Best effort: the old token still works until it expires."""
    try:
        now = datetime.datetime.now(datetime.UTC)
        renewed = join.renew(
            name, remote=remote, config=config, central=central, current=secret, now=now
        )
    except errors.ClusterError as e:
        logs.get().warning("cannot renew gitmesh's token", extra={"remote": name, "error": str(e)})
        return secret
    return renewed or secret


def set_multicluster(central: Cluster, secret: Obj, on: bool) -> None:
    """Label the kubeconfig Secret so the central pilot discovers the remote registry
    (on), or remove the label when the remote leaves the mesh (off). Best effort: a
    failure is a warning, the remote's own state is what the pass reports."""
    meta = secret["metadata"]
    labels = meta.get("labels") or {}
    if (labels.get(resources.MULTICLUSTER) == "true") == on:
        return
    key = resources.MULTICLUSTER.replace("/", "~1")
    if on and labels:
        ops: list[Obj] = [{"op": "add", "path": f"/metadata/labels/{key}", "value": "true"}]
    elif on:
        ops = [{"op": "add", "path": "/metadata/labels", "value": {resources.MULTICLUSTER: "true"}}]
    else:
        ops = [{"op": "remove", "path": f"/metadata/labels/{key}"}]
    try:
        central.patch(
            resources.SECRET,
            meta["namespace"],
            meta["name"],
            ops,
            resource_version=meta.get("resourceVersion"),
        )
    except errors.ClusterError as e:
        logs.get().warning(
            "cannot label the kubeconfig secret",
            extra={"remote": meta["name"], "error": str(e)},
        )
