"""The one error tree of gitmesh. Third-party errors are mapped where they enter.

    GitmeshError
    ├── SpecError            a mesh repository file is invalid (carries Problems)
    ├── MassPruneRefused     a revision removes more remotes than the mesh allows at once
    ├── SourceError          the git source could not be fetched or read
    ├── CredentialsError     a kubeconfig is malformed or refused (exec plugins, central)
    │   └── MissingCredentials  there is no kubeconfig for the remote at all
    ├── ClusterError         the Kubernetes API said no, or could not be reached
    │   ├── NotFound         404
    │   ├── Conflict         409, or a failed resourceVersion `test` (422 from the server)
    │   ├── Invalid          422
    │   ├── Forbidden        401/403
    │   └── Unavailable      connection errors, 429 and 5xx after retries
    └── StatusWriteError     the status branch could not be written or pushed

Messages never carry credentials: callers pass URLs through `redact_url`, anything a
third party wrote through `scrub`, and server bodies through `cut` (one line, bounded).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_SERVER_MESSAGE = 300


def cut(text: str, limit: int = MAX_SERVER_MESSAGE) -> str:
    """Shorten a server-provided message to a sane length for logs and errors."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def redact_url(text: str) -> str:
    """Remove `user:password@` parts from every URL in `text`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[^\s'\"]+")
_SECRET_FIELD = re.compile(
    r"(?i)\b(token|password|passwd|secret|client-key-data)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL passwords, Authorization values, `token: ...`-style fields, and
    the given secret strings."""
    text = redact_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _AUTH_HEADER.sub(r"\1 ***", text)
    return _SECRET_FIELD.sub(r"\1\2***", text)


def one_line(text: str, secrets: Iterable[str] = (), limit: int = MAX_SERVER_MESSAGE) -> str:
    """A scrubbed, single-line, bounded message: what may go into logs and the status."""
    return cut(scrub(text, secrets), limit)


class GitmeshError(Exception):
    """Root of every error gitmesh raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a mesh repository file, in `file:line:col: field: message` form."""

    file: str
    line: int
    col: int
    field: str
    message: str

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        return f"{self.file}:{self.line}:{self.col}:{field} {self.message}"


class SpecError(GitmeshError):
    """A spec file is invalid; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class MassPruneRefused(GitmeshError):
    """A revision removes more remotes than a pass prunes without being told to."""


class SourceError(GitmeshError):
    """The git source could not be fetched or read."""


class CredentialsError(GitmeshError):
    """A remote's kubeconfig is missing, malformed, or refused."""


class MissingCredentials(CredentialsError):
    """There is no kubeconfig for a remote (no Secret, no file)."""


class StatusWriteError(GitmeshError):
    """The status branch could not be written or pushed."""


class ClusterError(GitmeshError):
    """The Kubernetes API refused a request or could not be reached."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(cut(message))


class NotFound(ClusterError):
    """The object does not exist (404)."""


class Conflict(ClusterError):
    """A write lost a race: 409, or our resourceVersion `test` failed."""


class Invalid(ClusterError):
    """The server rejected the object as invalid (422)."""


class Forbidden(ClusterError):
    """Authentication or authorization failed (401/403)."""


class Unavailable(ClusterError):
    """The server could not be reached, or kept answering 429/5xx."""
