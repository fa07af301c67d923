"""The status branch: an orphan branch of the mesh repository that only gitmesh writes.

Commits are built with `git fast-import` in the cache clone on top of the branch tip (or
as a root commit, so the branch never shares history with main) and pushed without
force. A push rejected because another writer got there first is retried: fetch the new
tip, replay our change on it (recompute the files from our report and the new tip's
files), push again — bounded, so two writers never lose each other's commits. Any other
rejection (a protected branch, no permission) fails loudly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gitmesh.errors import StatusWriteError
from gitmesh.source.auth import check_ref, display_url
from gitmesh.source.gitrepo import Cache, GitFailure, cat_blobs, commit_files, ls_tree

Changes = dict[str, bytes | None]
_RETRYABLE = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "cannot lock ref",
    "failed to lock",
    "stale info",
    "failed to update ref",
    "incorrect old value",
)
PENDING_REF = "refs/gitmesh/pending"


@dataclass(frozen=True, slots=True)
class Author:
    """Who the status commits are by."""

    name: str = "gitmesh"
    email: str = "gitmesh@localhost"


class StatusBranch:
    """Read and write the status branch of the repository behind `cache`."""

    def __init__(
        self, cache: Cache, branch: str, *, author: Author | None = None, attempts: int = 30
    ) -> None:
        self.cache = cache
        self.branch = check_ref(branch, "status branch")
        self.author = author or Author()
        self.attempts = attempts
        self.tracking = f"refs/gitmesh/status/{branch}"

    def _fetch_tip(self) -> str | None:
        try:
            self.cache.run(
                "fetch",
                "--no-tags",
                "--force",
                "--",
                self.cache.url,
                f"+refs/heads/{self.branch}:{self.tracking}",
            )
        except GitFailure as e:
            if "couldn't find remote ref" in str(e):
                return None
            raise StatusWriteError(
                f"cannot fetch {self.branch} from {display_url(self.cache.url)}: {e}"
            ) from None
        return self.cache.run("rev-parse", "--verify", "--end-of-options", self.tracking).strip()

    def _files(self, tip: str | None) -> dict[str, bytes]:
        if tip is None:
            return {}
        entries = [e for e in ls_tree(self.cache, tip) if e.type == "blob"]
        blobs = cat_blobs(self.cache, sorted({e.sha for e in entries}))
        return {e.path: blobs[e.sha] for e in entries}

    def read(self) -> dict[str, bytes]:
        """The files at the branch tip (empty when the branch does not exist yet)."""
        return self._files(self._fetch_tip())

    def read_existing(self) -> dict[str, bytes] | None:
        """The files at the branch tip; None when the branch does not exist."""
        tip = self._fetch_tip()
        return None if tip is None else self._files(tip)

    def write(
        self,
        changes_for: Callable[[Mapping[str, bytes]], Changes],
        message_for: Callable[[Changes], str],
    ) -> str | None:
        """Commit `changes_for(files at tip)` and push; None when there is nothing to change.

        `changes_for` is called again on the new tip after a lost race, so timestamps and
        deletions are worked out against what the other writer left.
        """
        for attempt in range(self.attempts):
            tip = self._fetch_tip()
            current = self._files(tip)
            changes = {
                p: d
                for p, d in changes_for(current).items()
                if (d is None and p in current) or (d is not None and current.get(p) != d)
            }
            if not changes:
                return None
            try:
                commit = self._commit(tip, changes, message_for(changes))
            except GitFailure as e:
                raise StatusWriteError(f"cannot commit to {self.branch}: {e}") from None
            try:
                self.cache.run(
                    "push",
                    "--porcelain",
                    "--",
                    self.cache.url,
                    f"{commit}:refs/heads/{self.branch}",
                )
                return commit
            except GitFailure as e:
                text = str(e)
                if not any(marker in text for marker in _RETRYABLE):
                    raise StatusWriteError(
                        f"cannot push {self.branch} to {display_url(self.cache.url)}: {text}"
                    ) from None
            time.sleep(random.uniform(0.01, 0.05) * (1 + attempt))  # noqa: S311 - jitter
        raise StatusWriteError(
            f"gave up pushing {self.branch} after {self.attempts} attempts lost to other writers"
        )

    def _commit(self, parent: str | None, changes: Changes, message: str) -> str:
        return commit_files(
            self.cache.run,
            PENDING_REF,
            parent,
            changes,
            message,
            author=f"{self.author.name} <{self.author.email}>",
        )
