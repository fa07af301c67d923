"""Remote kubeconfigs: where they come from and what is refused in them. Pure.

Everything here runs before gitmesh sends a byte to the remote:
- a kubeconfig that runs a program (an `exec` plugin) or hands authentication to an
  `auth-provider` (oidc, gcp, azure: they refresh tokens over the network, from URLs the
  kubeconfig names, and the gcp one runs `gcloud`) is refused unless `--allow-exec`
  (Flux CVE-2022-24817);
- one read from a Secret may not point at local files (a token file or certificate path
  would read gitmesh's own credentials);
- a malformed kubeconfig (wrong shapes, a context naming a missing cluster or user, a
  server that is not an http(s) URL) is a clear error, not a traceback;
- TLS as kubectl takes it: `insecure-skip-tls-verify` with a certificate authority is
  refused (kubectl refuses it too), insecure alone is a warning (`warnings`); `proxy-url`
  is refused, since gitmesh connects to API servers directly;
- tokens lose surrounding whitespace (`kubectl create secret --from-file` of a token
  ending in a newline is common); a control character left inside one is refused, since
  it would end up in an HTTP header;
- YAML aliases and deep nesting are refused, as in spec files.
Messages never include the kubeconfig's contents; `secrets` lists what must be scrubbed.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping
from typing import Any

import yaml

from gitmesh.errors import CredentialsError
from gitmesh.specs import yamlload

# libyaml when PyYAML has it: kubeconfigs are read for every remote on every pass.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FILE_FIELDS = ("tokenFile", "client-certificate", "client-key", "certificate-authority")
SECRET_FIELDS = ("token", "password", "client-key-data")
MAX_BYTES = 1024 * 1024


def from_secret(secret: Mapping[str, Any], remote: str) -> dict[str, Any]:
    """The kubeconfig in a Secret: its only data key, or the key named after the remote."""
    data = secret.get("data") or {}
    where = f"Secret {secret.get('metadata', {}).get('namespace', '')}/{remote}"
    if not isinstance(data, Mapping):
        raise CredentialsError(f"{where}: data is not a map")
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
    except (ValueError, TypeError, UnicodeDecodeError):
        raise CredentialsError(f"{where} does not hold base64 UTF-8 text") from None
    return parse(text, where=where, from_secret=True)


def _entries(config: Mapping[str, Any], section: str, key: str, where: str) -> dict[str, Any]:
    entries = config.get(section) or []
    if not isinstance(entries, list):
        raise CredentialsError(f"{where}: {section} must be a list")
    out: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CredentialsError(f"{where}: {section}[{i}] must be a map with a name")
        body = entry.get(key)
        if body is None:
            body = entry[key] = {}
        if not isinstance(body, dict):
            raise CredentialsError(f"{where}: {section}[{i}].{key} must be a map")
        out[entry["name"]] = body
    return out


def parse(text: str, *, where: str, from_secret: bool = False) -> dict[str, Any]:
    """Parse and check a kubeconfig; returns it with tokens stripped of whitespace."""
    if len(text) > MAX_BYTES:
        raise CredentialsError(f"{where}: a kubeconfig of {len(text)} bytes is too large")
    try:
        yamlload.check_events(text, file=where)
        config = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yamlload.LoadError as e:
        raise CredentialsError(f"{where} is not a usable kubeconfig: {e.problem.message}") from None
    except yaml.YAMLError:
        raise CredentialsError(f"{where} is not a valid kubeconfig (YAML does not parse)") from None
    if not isinstance(config, dict) or not config.get("clusters") or not config.get("contexts"):
        raise CredentialsError(f"{where} is not a kubeconfig (no clusters or contexts)")
    clusters = _entries(config, "clusters", "cluster", where)
    users = _entries(config, "users", "user", where)
    contexts = _entries(config, "contexts", "context", where)
    current = config.get("current-context") or (next(iter(contexts)) if len(contexts) == 1 else "")
    if current not in contexts:
        raise CredentialsError(
            f"{where}: current-context {current!r} is not one of its contexts "
            f"({', '.join(sorted(contexts)) or 'none'})"
        )
    context = contexts[current]
    if context.get("cluster") not in clusters:
        raise CredentialsError(f"{where}: context {current!r} names no cluster of the kubeconfig")
    if context.get("user") and context["user"] not in users:
        raise CredentialsError(f"{where}: context {current!r} names no user of the kubeconfig")
    _check_cluster(clusters[context["cluster"]], context["cluster"], where)
    _check_tokens(users, where)
    if from_secret:
        _check_embedded(users, clusters, where)
    return config


def _check_cluster(cluster: dict[str, Any], name: str, where: str) -> None:
    """The current context's cluster: an http(s) server, reached directly, verified."""
    server = cluster.get("server")
    if not isinstance(server, str) or urllib.parse.urlsplit(server).scheme not in (
        "http",
        "https",
    ):
        raise CredentialsError(f"{where}: cluster {name!r} has no http(s) server URL")
    if cluster.get("insecure-skip-tls-verify") is True and (
        cluster.get("certificate-authority-data") or cluster.get("certificate-authority")
    ):
        raise CredentialsError(
            f"{where}: cluster {name!r} has insecure-skip-tls-verify and a "
            "certificate authority: drop one (kubectl refuses the pair too)"
        )
    if cluster.get("proxy-url"):
        raise CredentialsError(
            f"{where}: cluster {name!r} has a proxy-url; gitmesh connects to "
            "API servers directly and does not use proxies: remove it"
        )


def _check_tokens(users: dict[str, dict[str, Any]], where: str) -> None:
    """Tokens and passwords are strings without control characters (stripped in place)."""
    for name, user in users.items():
        for field in SECRET_FIELDS[:2]:
            value = user.get(field)
            if value is None:
                continue
            if not isinstance(value, str):
                raise CredentialsError(f"{where}: user {name!r}: {field} must be a string")
            user[field] = value = value.strip()
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise CredentialsError(
                    f"{where}: user {name!r}: {field} contains control characters"
                )


def _check_embedded(
    users: dict[str, dict[str, Any]], clusters: dict[str, dict[str, Any]], where: str
) -> None:
    """A kubeconfig from a Secret names no local files: whoever writes the Secret must not
    make gitmesh read files of its own machine."""
    for section, entries in (("users", users), ("clusters", clusters)):
        for name, fields in entries.items():
            found = [f for f in FILE_FIELDS if fields.get(f)]
            if found:
                raise CredentialsError(
                    f"{where}: {section} entry {name!r} refers to local files "
                    f"({', '.join(found)}); embed the data instead (*-data fields)"
                )


def check_exec(config: Mapping[str, Any], *, where: str, allow_exec: bool) -> None:
    """Refuse kubeconfigs that would run a command or an auth-provider, unless allowed."""
    if allow_exec:
        return
    for entry in config.get("users") or []:
        user = (entry or {}).get("user") or {}
        if user.get("exec"):
            raise CredentialsError(
                f"{where}: user {entry.get('name')!r} runs a command to get credentials "
                "(exec plugin); refused unless gitmesh runs with --allow-exec"
            )
        if user.get("auth-provider"):
            provider = (user["auth-provider"] or {}).get("name", "?")
            raise CredentialsError(
                f"{where}: user {entry.get('name')!r} uses the {provider!r} auth-provider, "
                "which reaches the network or runs commands for tokens; refused unless "
                "gitmesh runs with --allow-exec (or use a ServiceAccount token)"
            )


def warnings(config: Mapping[str, Any], name: str) -> list[str]:
    """What is allowed but unsafe in a kubeconfig (after `parse`)."""
    cluster, _ = current(config)
    if cluster.get("insecure-skip-tls-verify") is True:
        return [
            f"the kubeconfig of {name} skips TLS verification (insecure-skip-tls-verify): "
            "anyone on the path to its API server can read and change what gitmesh sends, "
            "its token included; give it certificate-authority-data instead"
        ]
    return []


def current(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user entries the current context selects (after `parse`)."""
    contexts = {e["name"]: e["context"] for e in config["contexts"]}
    name = config.get("current-context") or next(iter(contexts))
    context = contexts[name]
    clusters = {e["name"]: e["cluster"] for e in config["clusters"]}
    users = {e["name"]: e["user"] for e in config.get("users") or []}
    return clusters[context["cluster"]], users.get(context.get("user", ""), {})


def endpoint(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """The server the kubeconfig talks to, normalised, and its CA (the
    certificate-authority-data text, if any)."""
    cluster, _ = current(config)
    return normalise_server(cluster["server"]), cluster.get("certificate-authority-data")


def normalise_server(url: str) -> str:
    """scheme://host:port/path: lower-case host, default port filled in, no trailing /."""
    parts = urllib.parse.urlsplit(url.strip())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


def secrets(config: Mapping[str, Any]) -> list[str]:
    """The credential strings of a kubeconfig, for scrubbing messages."""
    out = []
    for entry in config.get("users") or []:
        user = (entry or {}).get("user") or {}
        out += [str(user[f]) for f in SECRET_FIELDS if user.get(f)]
    return out
