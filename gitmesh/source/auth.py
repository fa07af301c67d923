"""How gitmesh authenticates to a git remote, and what it lets reach git: `Auth` (an HTTPS
token or an SSH key, handed to git through its environment, never a command line), URLs
checked against the supported schemes and shown without credentials, ref names checked
before they reach an argv, and `scrub` for every error text."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shlex
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from gitmesh.errors import SourceError, redact_url
from gitmesh.specs import ref_name_ok


@dataclass(frozen=True, slots=True)
class Auth:
    """How to authenticate to the git remote. Never printed (repr hides the token)."""

    token: str | None = field(default=None, repr=False)
    token_user: str = "x-access-token"  # noqa: S105 - the user name GitHub expects with a token
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    strict_host_key_checking: bool = True

    @classmethod
    def from_settings(
        cls,
        *,
        token_env: str | None,
        token_file: Path | None,
        ssh_key: Path | None = None,
        known_hosts: Path | None = None,
        insecure_ignore_host_key: bool = False,
    ) -> Auth:
        """Read a token from an environment variable or a file (never a flag's value)."""
        token = None
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip() or None
            except OSError as e:
                raise SourceError(
                    f"cannot read the git token file {token_file}: {e.strerror}"
                ) from None
        elif token_env:
            token = os.environ.get(token_env) or None
        return cls(
            token=token,
            ssh_key=ssh_key,
            known_hosts=known_hosts,
            strict_host_key_checking=not insecure_ignore_host_key,
        )

    def env(self) -> dict[str, str]:
        """Environment variables that make git use these credentials."""
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
        if self.token:
            basic = base64.b64encode(f"{self.token_user}:{self.token}".encode()).decode()
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )
        ssh = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=" + ("yes" if self.strict_host_key_checking else "no"),
        ]
        if self.ssh_key:
            ssh += ["-i", str(self.ssh_key), "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            ssh += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        return env

    def secrets(self) -> list[str]:
        """Strings that must never appear in output."""
        if not self.token:
            return []
        basic = base64.b64encode(f"{self.token_user}:{self.token}".encode()).decode()
        return [self.token, basic]


def scrub(text: str, auth: Auth | None = None) -> str:
    """Remove URL credentials and known secrets from a message."""
    text = redact_url(text)
    for secret in auth.secrets() if auth else []:
        text = text.replace(secret, "***")
    return re.sub(r"(Authorization: \w+ )\S+", r"\1***", text)


def display_url(url: str) -> str:
    """The repository URL as it may be shown: no credentials."""
    return redact_url(url)


_SCHEMES = ("https", "http", "ssh", "git", "file")


_SCP_LIKE = re.compile(
    r"(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9._-]+:(?!//)[^:].*|(?:[A-Za-z0-9._~-]+@)?\[[0-9A-Fa-f:.]+\]:.+"
)


# Names reserved for examples and never anyone's server (RFC 2606, RFC 6761): a URL on one
# is a placeholder left unchanged, as in deploy/base/config.yaml.
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
_EXAMPLE_TLDS = (".example", ".invalid")


def _refuse_placeholder(url: str, shown: str) -> None:
    try:
        host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return
    placeholder = host in _EXAMPLE_DOMAINS or host.endswith(
        tuple(f".{d}" for d in _EXAMPLE_DOMAINS) + _EXAMPLE_TLDS
    )
    if placeholder:
        raise SourceError(
            f"repository URL {shown!r} is a placeholder ({host} is reserved for examples): "
            "set --repo (GITMESH_REPO; in the deploy ConfigMap gitmesh) to your mesh "
            "repository"
        )


def check_url(url: str) -> str:
    """`url` if it names a repository the way gitmesh supports (https, http, ssh, git or
    file URLs, scp-like `user@host:path`, a local path), else a SourceError. git itself
    reads more: an argument starting with `-` as an option (`--upload-pack=<command>`),
    `<transport>::<address>` as a helper to run (`ext::<command>`)."""
    shown = display_url(url)
    if not url or url != url.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise SourceError(
            f"repository URL {shown!r} is empty or holds whitespace or control characters"
        )
    if url.startswith("-"):
        raise SourceError(
            f"repository URL {shown!r} starts with '-' (git would read it as an option)"
        )
    if "::" in url:
        raise SourceError(
            f"repository URL {shown!r}: git remote helpers (<transport>::<address>) "
            "are not supported"
        )
    scheme = urllib.parse.urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme:
        if scheme not in _SCHEMES or not url.split("://", 1)[1]:
            raise SourceError(
                f"repository URL {shown!r}: scheme {scheme!r} is not supported "
                f"(use one of {', '.join(_SCHEMES)}, user@host:path, or a local path)"
            )
        _refuse_placeholder(url, shown)
        return url
    if ":" in url.split("/", 1)[0] and not _SCP_LIKE.fullmatch(url):
        raise SourceError(f"repository URL {shown!r} is neither a URL, user@host:path nor a path")
    return url


def check_ref(name: str, what: str) -> str:
    """`name` if it is a ref name gitmesh accepts (see `specs.ref_name_ok`), else a
    SourceError naming `what` it is."""
    if not ref_name_ok(name):
        raise SourceError(f"{what} {name!r} is not a valid git branch, tag or commit name")
    return name


def split_credentials(url: str, auth: Auth | None) -> tuple[str, Auth | None]:
    """An http(s) URL without its `user:password@`, and the credentials moved into `auth`
    (unless a token was given anyway, which wins)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return url, auth
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    if auth is not None and auth.token:
        return bare, auth
    user = urllib.parse.unquote(parts.username or "") or "git"
    password = urllib.parse.unquote(parts.password)
    return bare, dataclasses.replace(auth or Auth(), token=password, token_user=user)
