"""Real git repositories for tests: a bare remote and a working clone in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` and return its output."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **IDENTITY},
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {proc.stderr}")
    return proc.stdout.strip()


class MeshRemote:
    """A bare repository seeded from a directory, and a clone to make commits in."""

    def __init__(self, tmp: Path, seed: Path = ROOT / "example-repo") -> None:
        self.bare = tmp / "remote.git"
        self.work = tmp / "work"
        git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(tmp, "clone", "--quiet", str(self.bare), str(self.work))
        git(self.work, "checkout", "--quiet", "-B", "main")
        shutil.copytree(seed, self.work, dirs_exist_ok=True)
        self.head = self.commit({}, "Seed the mesh repository")

    @property
    def url(self) -> str:
        """A file URL for the bare remote."""
        return self.bare.as_uri()

    def commit(self, files: dict[str, str | bytes | None], message: str) -> str:
        """Write (or, for None, delete) files, commit and push to main; returns the sha."""
        for path, content in files.items():
            target = self.work / path
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.work, "push", "--quiet", "origin", "main")
        self.head = git(self.work, "rev-parse", "HEAD")
        return self.head
