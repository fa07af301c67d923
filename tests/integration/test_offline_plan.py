"""`gitmesh plan --offline`: a pull-request job with no cluster credentials still sees what
each remote would get, from a real repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitmesh import cli
from tests.gitutil import ROOT, MeshRemote


@pytest.fixture
def no_clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig anywhere kubectl would look, and not in a cluster."""
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "GITMESH_CENTRAL_KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.usefixtures("no_clusters")
def test_offline_plan_needs_no_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "git").mkdir()
    remote = MeshRemote(tmp_path / "git")
    args = ["plan", "--offline", "--repo", remote.url, "--cache-dir", str(tmp_path / "c")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "Offline plan" in out and "+ [citadel] Deployment istio-system/istio-citadel" in out
    assert cli.main([*args, "-o", "json", "--exit-code"]) == 1
    plan = json.loads(capsys.readouterr().out)
    eu = next(r for r in plan["remotes"] if r["name"] == "remote-eu")
    secret = next(c for c in eu["changes"] if c["kind"] == "Secret")
    assert set(secret["patch"][0]["value"]["data"].values()) == {"***"}
    assert cli.main([*args, "-o", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("<!-- gitmesh-plan -->")
    # Without --offline the same job needs the central cluster, and says so.
    assert cli.main(args[:1] + args[2:]) == 1
    assert "no central kubeconfig" in capsys.readouterr().err


@pytest.mark.usefixtures("no_clusters")
def test_offline_plan_of_an_istiod_remote_shows_placeholders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "git").mkdir()
    remote = MeshRemote(tmp_path / "git", seed=ROOT / "example-repo" / "istiod")
    args = ["plan", "--offline", "--repo", remote.url, "--cache-dir", str(tmp_path / "c")]
    assert cli.main([*args, "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    (west,) = plan["remotes"]
    service = next(c for c in west["changes"] if (c["kind"], c["name"]) == ("Service", "istiod"))
    assert service["patch"][0]["value"]["spec"]["externalName"] == "<east-west gateway address>"


@pytest.mark.usefixtures("no_clusters")
def test_plan_of_a_work_tree_with_uncommitted_edits_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `plan --repo .` planned the last commit and left uncommitted edits out
    without a word. After: refused, naming the files; committed, they are planned."""
    (tmp_path / "git").mkdir()
    remote = MeshRemote(tmp_path / "git")
    spec = remote.work / "remotes" / "remote-eu.yaml"
    spec.write_text(spec.read_text().replace("replicaCount: 1", "replicaCount: 2"))
    (remote.work / "remotes" / "new.yaml").write_text(spec.read_text())
    args = ["plan", "--offline", "--repo", str(remote.work), "--cache-dir", str(tmp_path / "c")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "has uncommitted changes to remotes/new.yaml, remotes/remote-eu.yaml" in err
    assert cli.main([*args, "--exit-code"]) == 2
    (remote.work / "remotes" / "new.yaml").unlink()
    remote.commit({"remotes/remote-eu.yaml": spec.read_text()}, "two citadels")
    assert cli.main(args) == 0
