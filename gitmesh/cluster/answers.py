"""What reaches the client from a kubeconfig and from an API server's answers: the
client's configuration (a malformed kubeconfig is a CredentialsError holding no secret),
decoded JSON, and a Status as the `ClusterError` tree, its message cut before it travels."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from gitmesh import errors


def status_error(e: kubernetes.client.ApiException, what: str) -> errors.ClusterError:
    reason, message = "", str(e.reason or "")
    causes = ""
    try:
        body = json.loads(e.body or "{}")
        reason = body.get("reason", "")
        message = body.get("message", message)
        causes = " ".join(
            c.get("message", "") for c in (body.get("details") or {}).get("causes") or []
        )
    except (ValueError, AttributeError):
        pass
    text = f"{what}: {message}"
    code = int(e.status or 0)
    if code == 404:
        return errors.NotFound(text, status=code, reason=reason)
    if code == 409:
        return errors.Conflict(text, status=code, reason=reason or "Conflict")
    if code == 422:
        return errors.Invalid(f"{text} {causes}".strip(), status=code, reason=reason)
    if code in (401, 403):
        return errors.Forbidden(text, status=code, reason=reason)
    if code == 429 or code >= 500:
        return errors.Unavailable(text, status=code, reason=reason)
    return errors.ClusterError(text, status=code, reason=reason)


def decode(resp: Any, what: str) -> Any:
    data = resp.data
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        ctype = resp.headers.get("Content-Type", "no content type") if resp.headers else ""
        raise errors.ClusterError(
            f"{what}: the server answered {resp.status} with a body that is not JSON ({ctype}); "
            "is this a Kubernetes API server?"
        ) from None


def configuration(
    name: str, kubeconfig: Mapping[str, Any] | Path | None, context: str | None
) -> kubernetes.client.Configuration:
    """The client's configuration from a kubeconfig (a dict, a file, or None: in-cluster);
    whatever the loader raises becomes a CredentialsError holding no secret."""
    config = kubernetes.client.Configuration()
    _check_context(name, kubeconfig, context)
    try:
        if kubeconfig is None:
            kubernetes.config.load_incluster_config(client_configuration=config)
        elif isinstance(kubeconfig, Path):
            kubernetes.config.load_kube_config(
                config_file=str(kubeconfig), context=context, client_configuration=config
            )
        else:
            kubernetes.config.load_kube_config_from_dict(
                dict(kubeconfig), context=context, client_configuration=config
            )
    except Exception as e:  # the loader raises whatever a malformed kubeconfig triggers
        kind = "" if isinstance(e, kubernetes.config.ConfigException) else f"{type(e).__name__}: "
        raise errors.CredentialsError(
            f"cannot use the kubeconfig of {name}: {kind}{errors.cut(errors.scrub(str(e)), 160)}"
        ) from None
    return config


def _check_context(
    name: str, kubeconfig: Mapping[str, Any] | Path | None, context: str | None
) -> None:
    """A context the kubeconfig lacks, said as kubectl says it (with the ones it has)."""
    if context is None or kubeconfig is None:
        return
    doc: Any = kubeconfig
    if isinstance(kubeconfig, Path):
        try:
            doc = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return  # the loader says what is wrong with the file
    if not isinstance(doc, Mapping):
        return
    names = [str(c.get("name")) for c in doc.get("contexts") or () if isinstance(c, Mapping)]
    if context not in names:
        where = f" ({kubeconfig})" if isinstance(kubeconfig, Path) else ""
        raise errors.CredentialsError(
            f'context "{errors.cut(context, 80)}" does not exist in the kubeconfig of '
            f"{name}{where}; it has: {errors.cut(', '.join(names), 200) or 'none'}"
        )
