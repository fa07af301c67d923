"""The git source against real repositories: clone, fetch, pin, force-push, refuse."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from gitmesh import cli
from gitmesh.errors import SourceError
from gitmesh.source import Source
from gitmesh.source.auth import Auth
from tests.gitutil import MeshRemote, git

TOKEN = "ghp_s3cr3tTokenValue0123456789"


@pytest.fixture
def remote(tmp_path: Path) -> MeshRemote:
    return MeshRemote(tmp_path)


def source(remote: MeshRemote, tmp_path: Path, **kw: object) -> Source:
    return Source(remote.url, cache_dir=tmp_path / "cache", **kw)  # type: ignore[arg-type]


def test_first_clone_reads_every_spec(remote: MeshRemote, tmp_path: Path) -> None:
    """The first fetch clones and reads mesh.yaml and every remote at the branch tip."""
    snap = source(remote, tmp_path).fetch()
    assert snap.commit == remote.head
    assert snap.author == "Ada <ada@example.com>"
    assert snap.message == "Seed the mesh repository"
    assert sorted(snap.files) == [
        "mesh.yaml",
        "remotes/remote-eu.yaml",
        "remotes/remoteistio-sample.yaml",
    ]
    assert snap.changed == tuple(sorted(snap.files))
    assert sorted(snap.parse().remotes) == ["remote-eu", "remoteistio-sample"]


def test_incremental_fetch_reports_changed_files(remote: MeshRemote, tmp_path: Path) -> None:
    """A later fetch sees the new commit and only the spec files it changed."""
    src = source(remote, tmp_path)
    src.fetch()
    text = (remote.work / "remotes/remote-eu.yaml").read_text()
    remote.commit(
        {"remotes/remote-eu.yaml": text.replace("- payments\n", ""), "README.md": "not a spec\n"},
        "Stop injecting payments",
    )
    snap = src.fetch()
    assert snap.commit == remote.head
    assert snap.changed == ("remotes/remote-eu.yaml",)
    assert src.fetch().changed == ()


def test_revision_pinning_to_commit_and_tag(remote: MeshRemote, tmp_path: Path) -> None:
    """A commit or tag revision stays put while main moves on."""
    first = remote.head
    git(remote.work, "tag", "v1")
    git(remote.work, "push", "--quiet", "origin", "v1")
    remote.commit({"remotes/remote-eu.yaml": None}, "Remove remote-eu")
    assert source(remote, tmp_path, revision=first).fetch().commit == first
    tagged = Source(remote.url, revision="v1", cache_dir=tmp_path / "c2").fetch()
    assert tagged.commit == first and "remotes/remote-eu.yaml" in tagged.files
    assert source(remote, tmp_path / "c3").fetch().commit == remote.head


def test_unknown_revision_is_a_clear_error(remote: MeshRemote, tmp_path: Path) -> None:
    """A revision that is not a branch, tag or commit names itself and the repository."""
    with pytest.raises(SourceError, match="revision 'nope' not found in file://"):
        source(remote, tmp_path, revision="nope").fetch()


def test_force_pushed_main(remote: MeshRemote, tmp_path: Path) -> None:
    """After a force-push, the fetch follows the rewritten branch."""
    src = source(remote, tmp_path)
    src.fetch()
    git(remote.work, "reset", "--quiet", "--hard", "HEAD")
    (remote.work / "remotes/remote-eu.yaml").unlink()
    git(remote.work, "add", "-A")
    git(remote.work, "commit", "--quiet", "--amend", "-m", "Rewritten history")
    git(remote.work, "push", "--quiet", "--force", "origin", "main")
    snap = src.fetch()
    assert snap.message == "Rewritten history"
    assert "remotes/remote-eu.yaml" not in snap.files
    assert "remotes/remote-eu.yaml" in snap.changed


def test_unreachable_remote_keeps_last_good(remote: MeshRemote, tmp_path: Path) -> None:
    """An unreachable remote is a SourceError naming it; the last good snapshot stays."""
    src = source(remote, tmp_path)
    good = src.fetch()
    remote.bare.rename(tmp_path / "moved.git")
    with pytest.raises(SourceError, match=r"cannot fetch file://.*remote\.git"):
        src.fetch()
    assert src.last_good == good


def test_credentials_never_in_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither a URL's password nor a token reaches an exception or a log line."""
    caplog.set_level(logging.DEBUG)
    os.environ["GITMESH_TEST_TOKEN"] = TOKEN
    try:
        auth = Auth.from_settings(token_env="GITMESH_TEST_TOKEN", token_file=None)
    finally:
        del os.environ["GITMESH_TEST_TOKEN"]
    assert TOKEN not in repr(auth)
    for url in ("https://ada:hunter2pass@127.0.0.1:9/mesh.git", "http://127.0.0.1:9/mesh.git"):
        src = Source(url, cache_dir=tmp_path / "cache", auth=auth, timeout=20)
        with pytest.raises(SourceError) as e:
            src.fetch()
        text = f"{e.value} {e.value!r} {e.value.__cause__!r} {e.value.__context__!r}"
        assert "127.0.0.1:9" in text
        for secret in (TOKEN, "hunter2pass"):
            assert secret not in text
            assert secret not in caplog.text
    config = (tmp_path / "cache").rglob("config")
    assert not any(TOKEN in p.read_text() or "hunter2" in p.read_text() for p in config)


def test_token_from_file(tmp_path: Path) -> None:
    """A token can come from a file; a missing file is a clear error without the token."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    auth = Auth.from_settings(token_env=None, token_file=tmp_path / "token")
    assert auth.token == TOKEN
    assert "Authorization: Basic" in auth.env()["GIT_CONFIG_VALUE_0"]
    with pytest.raises(SourceError, match="cannot read the git token file"):
        Auth.from_settings(token_env=None, token_file=tmp_path / "missing")


def test_ssh_host_keys_are_checked_strictly_by_default() -> None:
    """The SSH command refuses unknown host keys unless told otherwise."""
    assert "StrictHostKeyChecking=yes" in Auth().env()["GIT_SSH_COMMAND"]
    loose = Auth.from_settings(token_env=None, token_file=None, insecure_ignore_host_key=True)
    assert "StrictHostKeyChecking=no" in loose.env()["GIT_SSH_COMMAND"]


def test_symlink_escaping_the_repository_is_refused(remote: MeshRemote, tmp_path: Path) -> None:
    """A symlinked spec is refused by path; its remote is invalid, not absent."""
    (remote.work / "remotes/evil.yaml").symlink_to("../../../../etc/passwd")
    remote.commit({}, "Add a symlink")
    snap = source(remote, tmp_path).fetch()
    assert "remotes/evil.yaml" not in snap.files
    assert [str(p) for p in snap.refused] == [
        "remotes/evil.yaml:1:1: is a symlink; gitmesh refuses symlinks in the mesh repository"
    ]
    parsed = snap.parse()
    assert "evil" in parsed.invalid and "evil" not in parsed.remotes


def test_oversize_file_is_refused(remote: MeshRemote, tmp_path: Path) -> None:
    """A spec over the size cap is refused by path and never read."""
    remote.commit({"remotes/huge.yaml": "#" * 2048}, "Add a big file")
    snap = source(remote, tmp_path, max_file_bytes=1024).fetch()
    assert "remotes/huge.yaml" not in snap.files
    assert "file is 2048 bytes; the limit is 1024 bytes" in str(snap.refused[0])


def test_local_path_and_a_commit_no_branch_points_at(
    remote: MeshRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--repo .` in a pull request's checkout, at its detached merge commit, works."""
    git(remote.work, "checkout", "--quiet", "--detach")
    (remote.work / "remotes/remote-eu.yaml").unlink()
    git(remote.work, "add", "-A")
    git(remote.work, "commit", "--quiet", "-m", "PR merge commit")
    sha = git(remote.work, "rev-parse", "HEAD")
    monkeypatch.chdir(remote.work)
    snap = Source(".", revision=sha, cache_dir=tmp_path / "cache").fetch()
    assert snap.commit == sha and "remotes/remote-eu.yaml" not in snap.files


def test_a_plain_directory_as_repo_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --repo DIR` on a directory that is not a git repository says so in one line,
    pointing at `validate`; a missing path gives git's reason, not its advice."""
    plain = tmp_path / "plain"
    plain.mkdir()
    args = ["--cache-dir", str(tmp_path / "c"), "--central-kubeconfig", "/dev/null"]
    assert cli.main(["plan", "--repo", str(plain), *args]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"gitmesh plan: {plain} is a directory but not a git repository; "
        f"`gitmesh validate {plain}` checks a directory's files\n"
    )
    assert cli.main(["plan", "--repo", str(tmp_path / "nowhere"), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not appear to be a git repository" in err
