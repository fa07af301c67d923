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

Authentication and what may reach git's argv are `auth`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from gitmesh.errors import SourceError
from gitmesh.source.auth import Auth, check_url, display_url, scrub, split_credentials

DEFAULT_TIMEOUT = 120.0


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
