"""The git source: fetch the mesh repository and read its specs at one commit.

Reads `mesh.yaml` and `remotes/*.yaml` from the commit's tree (no working tree, so two
readers never share a checkout and a half-written file is never seen). Symlinks and
oversize files are refused by path. A failed fetch raises `SourceError` naming the
repository without credentials; `last_good` keeps the last snapshot that was read whole,
and nothing downstream ever sees a partial one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import git

from gitmesh.errors import Problem, SourceError
from gitmesh.source.auth import Auth, check_ref, check_url, display_url
from gitmesh.source.gitrepo import Cache, GitFailure, cat_blobs, ls_tree
from gitmesh.specs import meshrepo, yamlload

SYMLINK_MODE = 0o120000
_SHA = re.compile(r"[0-9a-f]{7,40}")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^[^/]+@[^/]+:")


def local_path_url(url: str) -> str:
    """An existing local path as an absolute path (git runs inside the cache clone, where a
    relative path would mean something else); URLs unchanged."""
    if _URL.match(url):
        return url
    path = Path(url).expanduser()
    return str(path.resolve()) if path.exists() else url


def uncommitted(url: str) -> list[str]:
    """The spec files (mesh.yaml, remotes/) a local work tree at `url` has changed and not
    committed, untracked ones too; [] for a URL, a bare repository or a clean tree."""
    if _URL.match(url) or not Path(url).expanduser().is_dir():
        return []
    try:
        repo = git.Repo(Path(url).expanduser())
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return []
    try:
        if repo.bare:
            return []
        out = repo.git.status("--porcelain", "--untracked-files=all", "--", "mesh.yaml", "remotes")
    except git.GitCommandError:
        return []
    finally:
        repo.close()
    return sorted(line[3:].strip() for line in out.splitlines() if line.strip())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The spec files of one commit, and what changed since the last one handled."""

    commit: str
    author: str
    message: str
    files: Mapping[str, bytes]
    refused: tuple[Problem, ...] = ()
    # Spec paths changed since the previous snapshot (all of them for the first one).
    changed: tuple[str, ...] = field(default=())

    def parse(self) -> meshrepo.Repo:
        """Validate the snapshot's files."""
        return meshrepo.parse(self.files, refused=self.refused)


class Source:
    """A mesh repository at a branch, tag or commit."""

    def __init__(
        self,
        url: str,
        *,
        revision: str = "main",
        cache_dir: Path,
        auth: Auth | None = None,
        timeout: float = 120.0,
        max_file_bytes: int = yamlload.MAX_FILE_BYTES,
    ) -> None:
        self.url = local_path_url(check_url(url))
        local = Path(self.url)
        if local.is_dir() and not ((local / ".git").exists() or (local / "HEAD").is_file()):
            raise SourceError(
                f"{self.url} is a directory but not a git repository; `gitmesh validate "
                f"{url}` checks a directory's files"
            )
        self.revision = check_ref(revision, "revision")
        self.max_file_bytes = max_file_bytes
        self.cache = Cache(self.url, cache_dir=cache_dir, auth=auth, timeout=timeout)
        self.last_good: Snapshot | None = None

    @property
    def display(self) -> str:
        """The repository URL without credentials."""
        return display_url(self.url)

    def fetch(self) -> Snapshot:
        """Fetch, resolve the revision, and read the specs at it."""
        self.cache.fetch("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        commit = self._resolve()
        files, refused = self._read(commit)
        previous = self.last_good
        changed = self._changed(previous.commit if previous else None, commit, files)
        snapshot = Snapshot(
            commit=commit.hexsha,
            author=f"{commit.author.name} <{commit.author.email}>",
            message=str(commit.message).strip(),
            files=files,
            refused=tuple(refused),
            changed=changed,
        )
        self.last_good = snapshot
        return snapshot

    def _resolve(self, *, fetch_by_id: bool = True) -> git.Commit:
        repo = self.cache.repo
        for ref in (
            f"refs/remotes/origin/{self.revision}",
            f"refs/tags/{self.revision}",
            self.revision,
        ):
            try:
                sha = self.cache.run(
                    "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
                )
            except GitFailure:
                continue
            if sha:
                return repo.commit(sha.strip())
        if fetch_by_id and _SHA.fullmatch(self.revision):
            # A commit no branch points at (a pull request's merge commit): fetch it by id.
            try:
                self.cache.run("fetch", "--no-tags", "--", self.url, self.revision)
            except GitFailure:
                pass
            else:
                return self._resolve(fetch_by_id=False)
        raise SourceError(
            f"revision {self.revision!r} not found in {self.display} "
            "(not a branch, tag or fetched commit)"
        )

    def _read(self, commit: git.Commit) -> tuple[dict[str, bytes], list[Problem]]:
        refused: list[Problem] = []
        wanted = []
        for entry in ls_tree(self.cache, commit.hexsha, meshrepo.MESH_FILE, meshrepo.REMOTES_DIR):
            parts = entry.path.split("/")
            if entry.path == meshrepo.REMOTES_DIR or (
                parts[0] == meshrepo.MESH_FILE and len(parts) > 1
            ):
                # `remotes` as a symlink or submodule would read as "no remotes" and prune
                # every one; `mesh.yaml` as a directory as "no mesh". The whole pass stops.
                if entry.mode == SYMLINK_MODE:
                    what = "a symlink"
                else:
                    what = "not a directory" if parts[0] == meshrepo.REMOTES_DIR else "not a file"
                raise SourceError(
                    f"{parts[0]} at {commit.hexsha[:12]} is {what}; gitmesh refuses to read "
                    "the repository (nothing is reconciled or pruned)"
                )
            if (
                len(parts) > 2
                and parts[0] == meshrepo.REMOTES_DIR
                and PurePosixPath(parts[1]).suffix in meshrepo.SPEC_SUFFIXES
            ):
                # A directory where a remote's file should be: that remote is invalid,
                # never absent (which would prune it).
                path = f"{parts[0]}/{parts[1]}"
                if not any(p.file == path for p in refused):
                    refused.append(Problem(path, 1, 1, "", "is not a regular file"))
                continue
            if not meshrepo.is_spec_path(entry.path):
                continue
            if entry.mode == SYMLINK_MODE:
                refused.append(
                    Problem(
                        entry.path,
                        1,
                        1,
                        "",
                        "is a symlink; gitmesh refuses symlinks in the mesh repository",
                    )
                )
            elif entry.type != "blob":
                refused.append(Problem(entry.path, 1, 1, "", "is not a regular file"))
            elif entry.size > self.max_file_bytes:
                refused.append(
                    Problem(
                        entry.path,
                        1,
                        1,
                        "",
                        f"file is {entry.size} bytes; the limit is {self.max_file_bytes} bytes",
                    )
                )
            else:
                wanted.append(entry)
        blobs = cat_blobs(self.cache, sorted({e.sha for e in wanted}))
        return {e.path: blobs[e.sha] for e in wanted}, refused

    def changed_between(self, before: str | None, snapshot: Snapshot) -> tuple[str, ...]:
        """Spec paths that differ between commit `before` and `snapshot` (all of them when
        `before` is unknown or gone)."""
        return self._changed(before, self.cache.repo.commit(snapshot.commit), snapshot.files)

    def _changed(
        self, before: str | None, after: git.Commit, files: Mapping[str, bytes]
    ) -> tuple[str, ...]:
        if before is None:
            return tuple(sorted(files))
        if before == after.hexsha:
            return ()
        try:
            diffs = self.cache.repo.commit(before).diff(after)
        except (ValueError, git.BadName, GitFailure):
            return tuple(sorted(files))  # the old commit is gone (force-push and gc)
        paths = {p for d in diffs for p in (d.a_path, d.b_path) if p}
        return tuple(sorted(p for p in paths if meshrepo.is_spec_path(p)))
