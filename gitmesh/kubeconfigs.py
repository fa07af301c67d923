"""Remote kubeconfigs: where they come from and what is refused in them. Pure.

A kubeconfig that runs a program (an `exec` plugin, or an `auth-provider` with a command)
could run anything on gitmesh's host: refused unless `--allow-exec` (Flux CVE-2022-24817).
One read from a Secret may not point at local files either (a token file or certificate
path would read gitmesh's own credentials). Messages never include the kubeconfig's
contents.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import yaml

from gitmesh.errors import CredentialsError

# libyaml when PyYAML has it: kubeconfigs are read for every remote on every pass.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FILE_FIELDS = ("tokenFile", "client-certificate", "client-key", "certificate-authority")


def from_secret(secret: Mapping[str, Any], remote: str) -> dict[str, Any]:
    """The kubeconfig in a Secret: its only data key, or the key named after the remote."""
    data = secret.get("data") or {}
    where = f"Secret {secret.get('metadata', {}).get('namespace', '')}/{remote}"
    if remote in data:
        raw = data[remote]
    elif len(data) == 1:
        raw = next(iter(data.values()))
    elif not data:
        raise CredentialsError(f"{where} has no data; it must hold the remote's kubeconfig")
    else:
        raise CredentialsError(
            f"{where} has keys {', '.join(sorted(data))}: it must have one "
            f"key, or a key named {remote!r}"
        )
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise CredentialsError(f"{where} does not hold base64 UTF-8 text") from None
    return parse(text, where=where, from_secret=True)


def parse(text: str, *, where: str, from_secret: bool = False) -> dict[str, Any]:
    """Parse and check a kubeconfig."""
    try:
        config = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        raise CredentialsError(f"{where} is not a valid kubeconfig (YAML does not parse)") from None
    if not isinstance(config, dict) or not config.get("clusters") or not config.get("contexts"):
        raise CredentialsError(f"{where} is not a kubeconfig (no clusters or contexts)")
    if from_secret:
        for section, key in (("users", "user"), ("clusters", "cluster")):
            for entry in config.get(section) or []:
                fields = (entry or {}).get(key) or {}
                found = [f for f in FILE_FIELDS if fields.get(f)]
                if found:
                    raise CredentialsError(
                        f"{where}: {section} entry {entry.get('name')!r} refers to local files "
                        f"({', '.join(found)}); embed the data instead (*-data fields)"
                    )
    return config


def check_exec(config: Mapping[str, Any], *, where: str, allow_exec: bool) -> None:
    """Refuse kubeconfigs that would run a command, unless allowed."""
    if allow_exec:
        return
    for entry in config.get("users") or []:
        user = (entry or {}).get("user") or {}
        provider = user.get("auth-provider") or {}
        if user.get("exec") or (provider.get("config") or {}).get("cmd-path"):
            raise CredentialsError(
                f"{where}: user {entry.get('name')!r} runs a command to get credentials "
                "(exec plugin); refused unless gitmesh runs with --allow-exec"
            )
