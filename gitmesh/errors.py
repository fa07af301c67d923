"""The one error tree of gitmesh. Third-party errors are mapped where they enter.

    GitmeshError
    ├── SpecError            a mesh repository file is invalid (carries Problems)
    ├── SourceError          the git source could not be fetched or read
    ├── CredentialsError     a kubeconfig is missing, malformed or refused (exec plugins)
    ├── ClusterError         the Kubernetes API said no, or could not be reached
    │   ├── NotFound         404
    │   ├── Conflict         409, or a failed resourceVersion `test` (422 from the server)
    │   ├── Invalid          422
    │   ├── Forbidden        401/403
    │   └── Unavailable      connection errors, 429 and 5xx after retries
    └── StatusWriteError     the status branch could not be written or pushed

Messages never carry credentials: callers pass URLs through `redact_url` and server
bodies through `cut`.
"""

from __future__ import annotations

import re
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


class SourceError(GitmeshError):
    """The git source could not be fetched or read."""


class CredentialsError(GitmeshError):
    """A remote's kubeconfig is missing, malformed, or refused."""


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
