"""The local cache clone of a mesh repository, and how gitmesh talks to its remote.

One bare repository per remote URL under the cache directory; fetched, never checked out.
Credentials never reach a command line or a message: an HTTPS token goes to git through
`GIT_CONFIG_*` environment variables (an `http.extraHeader`), and so does a
`user:password@` written into an https URL (it is taken out of the URL, which is what
`ps` shows while git runs); an SSH key goes through `GIT_SSH_COMMAND` with strict host key
checking by default, and every error text is passed through `scrub` before it leaves
this module.

Processes sharing a cache directory take turns: every git command in a cache runs under
an exclusive `flock` of the cache's lock file, so a `*.lock` that git left behind (a
process killed mid-write) is known to be stale and is removed before the next command.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shlex
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from gitmesh.errors import SourceError, redact_url
from gitmesh.specs import ref_name_ok

DEFAULT_TIMEOUT = 120.0


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


class Cache:
    """A bare clone of one remote repository, under `cache_dir`."""

    def __init__(
        self,
        url: str,
        *,
        cache_dir: Path,
        auth: Auth | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        url, with_credentials = split_credentials(check_url(url), auth)
        self.url = url
        self.auth = with_credentials or Auth()
        self.timeout = timeout
        key = hashlib.sha256(display_url(url).encode()).hexdigest()[:16]
        self.path = cache_dir / key
        self.path.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()
        self._lock_file = self.path.parent / f"{key}.flock"
        with self._locked():
            if (self.path / "HEAD").exists():
                self.repo = git.Repo(self.path)
            else:
                self.repo = git.Repo.init(self.path, bare=True)
                with self.repo.config_writer() as cw:
                    cw.set_value("gc", "auto", "0")
                    cw.set_value("core", "logAllRefUpdates", "false")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the cache: one git command at a time across threads and processes."""
        with self._thread_lock, self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _remove_stale_locks(self) -> None:
        """Under `_locked`, no other gitmesh is in this cache: any git lock file left in it
        belongs to a process that died."""
        for lock in [*self.path.glob("*.lock"), *(self.path / "refs").rglob("*.lock")]:
            with contextlib.suppress(OSError):
                lock.unlink()

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, input_path: Path | None = None
    ) -> str:
        """Run a git command in the cache with the credentials' environment."""
        return str(self._execute(args, env=env, input_path=input_path, as_bytes=False))

    def run_bytes(self, *args: str, input_path: Path | None = None) -> bytes:
        """Run a git command and return its raw output (newlines kept)."""
        out = self._execute(args, env=None, input_path=input_path, as_bytes=True)
        return out if isinstance(out, bytes) else str(out).encode()

    def _execute(
        self,
        args: tuple[str, ...],
        *,
        env: Mapping[str, str] | None,
        input_path: Path | None,
        as_bytes: bool,
    ) -> str | bytes:
        full_env = {**self.auth.env(), **(env or {})}
        options: dict[str, Any] = {"env": full_env, "kill_after_timeout": self.timeout}
        if as_bytes:
            options.update(stdout_as_string=False, strip_newline_in_stdout=False)
        try:
            with self._locked():
                self._remove_stale_locks()
                if input_path is not None:
                    with input_path.open("rb") as stdin:
                        out = self.repo.git.execute(["git", *args], istream=stdin, **options)
                else:
                    out = self.repo.git.execute(["git", *args], **options)
        except git.GitCommandError as e:
            parts = [str(s).strip() for s in (e.stdout, e.stderr) if s]
            detail = "\n".join(p.removeprefix("stdout: ").removeprefix("stderr: ") for p in parts)
            raise GitFailure(
                scrub(detail or f"git {args[0]} failed", self.auth),
                status=e.status if isinstance(e.status, int | str) else None,
            ) from None
        return out if isinstance(out, bytes) else str(out)

    def fetch(self, *refspecs: str) -> None:
        """Fetch refspecs from the remote (pruning what it deleted)."""
        try:
            self.run("fetch", "--prune", "--no-tags", "--force", "--", self.url, *refspecs)
        except GitFailure as e:
            # git's first line says why; the rest is advice about access rights.
            lines = str(e).strip().strip("'").splitlines()
            why = lines[0].strip("'") if lines else "git fetch failed"
            raise SourceError(f"cannot fetch {display_url(self.url)}: {why}") from None


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a commit's tree."""

    mode: int
    type: str
    sha: str
    size: int
    path: str


def ls_tree(cache: Cache, commit: str, *paths: str) -> list[Entry]:
    """Every file under `paths` (the whole tree when none) at `commit`: one git process."""
    out = cache.run("ls-tree", "-r", "-l", "-z", "--full-tree", commit, "--", *paths)
    entries = []
    for record in out.split("\0"):
        if not record:
            continue
        meta, path = record.split("\t", 1)
        mode, typ, sha, size = meta.split()
        entries.append(Entry(int(mode, 8), typ, sha, int(size) if size != "-" else 0, path))
    return entries


def cat_blobs(cache: Cache, shas: list[str]) -> dict[str, bytes]:
    """The contents of blobs, by sha: one `git cat-file --batch` process for all of them."""
    if not shas:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".shas", delete=False) as f:
        f.write("\n".join(shas) + "\n")
        listing = Path(f.name)
    try:
        raw = cache.run_bytes("cat-file", "--batch", input_path=listing)
    finally:
        listing.unlink()
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(raw):
        end = raw.index(b"\n", pos)
        sha, _, size = raw[pos:end].decode().split(" ")
        start = end + 1
        out[sha] = raw[start : start + int(size)]
        pos = start + int(size) + 1
    return out


# What a path may look like in a fast-import stream: gitmesh writes only status/<name>.yaml
# and endpoints/<name>.yaml with valid object names. Anything else (a newline would start a
# new fast-import command, a quote changes how the path is read) is refused, not quoted.
_SAFE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_SAFE_AUTHOR = re.compile(r"[^<>\n\r\0]+ <[^<>\n\r\0]*>")


def commit_files(
    run: Callable[..., str],
    ref: str,
    parent: str | None,
    changes: Mapping[str, bytes | None],
    message: str,
    *,
    author: str,
) -> str:
    """Commit file writes (bytes) and deletions (None) on top of `parent` (or as a root
    commit) to `ref` with `git fast-import`, without a working tree; returns the sha."""
    for path in changes:
        if not _SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
            raise GitFailure(f"refusing to commit the path {path!r}", status=None)
    if not _SAFE_AUTHOR.fullmatch(author):
        raise GitFailure(f"refusing the commit author {author!r}", status=None)
    stamp = f"{int(time.time())} +0000"
    msg = message.encode()
    # Without a parent, `reset` first so that the commit is a root commit.
    parts = [
        b"" if parent else f"reset {ref}\n".encode(),
        f"commit {ref}\n".encode(),
        f"author {author} {stamp}\ncommitter {author} {stamp}\n".encode(),
        b"data %d\n%s\n" % (len(msg), msg),
        f"from {parent}\n".encode() if parent else b"",
    ]
    for path, data in sorted(changes.items()):
        if data is None:
            parts.append(f"D {path}\n".encode())
        else:
            parts.append(f"M 100644 inline {path}\n".encode())
            parts.append(b"data %d\n%s\n" % (len(data), data))
    with tempfile.NamedTemporaryFile("wb", suffix=".fi", delete=False) as f:
        f.write(b"".join(parts))
        stream = Path(f.name)
    try:
        run("fast-import", "--quiet", "--force", input_path=stream)
    finally:
        stream.unlink()
    return run("rev-parse", ref).strip()


class Bare:
    """A bare repository on this machine, written directly (the demo's and the tests'
    stand-in for a hosted mesh repository)."""

    def __init__(self, path: Path, *, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        self.repo = (
            git.Repo.init(path, bare=True, initial_branch=branch)
            if not (path / "HEAD").exists()
            else git.Repo(path)
        )

    @property
    def url(self) -> str:
        """A file URL for the repository."""
        return self.path.resolve().as_uri()

    def run(self, *args: str, input_path: Path | None = None) -> str:
        """Run git in the repository."""
        if input_path is not None:
            with input_path.open("rb") as stdin:
                return str(self.repo.git.execute(["git", *args], istream=stdin))
        return str(self.repo.git.execute(["git", *args]))

    def commit(
        self,
        changes: Mapping[str, bytes | None],
        message: str,
        *,
        author: str = "gitmesh demo <demo@gitmesh.invalid>",
    ) -> str:
        """Commit to the branch and return the sha."""
        ref = f"refs/heads/{self.branch}"
        try:
            parent: str | None = self.run("rev-parse", "--verify", "--quiet", ref).strip()
        except git.GitCommandError:
            parent = None
        return commit_files(self.run, ref, parent or None, changes, message, author=author)

    def log(self, ref: str, *args: str) -> str:
        """`git log` of a ref."""
        return self.run("log", *args, ref)


class GitFailure(Exception):
    """A git command failed; the message is already scrubbed."""

    def __init__(self, message: str, *, status: int | str | None) -> None:
        self.status = status
        super().__init__(message)
