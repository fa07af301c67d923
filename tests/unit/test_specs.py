"""Spec validation: what people write is accepted exactly when it is right, and every
mistake is reported with file, line and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from gitmesh import cli, specs
from gitmesh.specs import meshrepo

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
MESH = b"apiVersion: gitmesh.io/v1alpha1\nkind: Mesh\n"

SEED_SAMPLE = """\
apiVersion: istio.banzaicloud.io/v1beta1
kind: RemoteIstio
metadata:
  labels:
    controller-tools.k8s.io: "1.0"
  name: remoteistio-sample
spec:
  autoInjectionNamespaces:
  - "default"
  includeIPRanges: "*"
  excludeIPRanges: ""
  enabledServices:
  - name: "istio-pilot"
    labelSelector: "istio=pilot"
  - name: "istio-policy"
    labelSelector: "istio-mixer-type=policy"
  - name: "istio-statsd"
    labelSelector: "statsd-prom-bridge"
  - name: "istio-telemetry"
    labelSelector: "istio-mixer-type=telemetry"
  - name: "zipkin"
    labelSelector: "app=jaeger"
  controlPlaneSecurityEnabled: false
  citadel:
    replicaCount: 1
  sidecarInjector:
    replicaCount: 1
"""


def make_repo(root: Path, remotes: dict[str, str | bytes], mesh: bytes = MESH) -> Path:
    (root / "remotes").mkdir(parents=True)
    (root / "mesh.yaml").write_bytes(mesh)
    for name, text in remotes.items():
        data = text.encode() if isinstance(text, str) else text
        (root / "remotes" / name).write_bytes(data)
    return root


@pytest.mark.parametrize(("where", "remotes"), [("example-repo", 2), ("example-repo/istiod", 1)])
def test_example_repo_validates(
    where: str, remotes: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gitmesh validate example-repo` (RemoteIstio) and `example-repo/istiod`
    (IstiodRemote) exit 0, the summary on stdout (before: on stderr)."""
    assert cli.main(["validate", str(ROOT / where)]) == 0
    out = capsys.readouterr()
    assert out.out == f"valid: {remotes} remote(s) valid, 0 invalid, 0 problem(s)\n"
    assert out.err == ""


def test_validate_from_inside_the_repository_finds_it_as_git_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: run from remotes/ it said `mesh.yaml is missing`. Git and kustomize users
    expect the repository found from a directory inside it."""
    repo = make_repo(tmp_path, {"remoteistio-sample.yaml": SEED_SAMPLE})
    monkeypatch.chdir(repo / "remotes")
    assert cli.main(["validate"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("valid: 1 remote(s) valid")
    assert f"checking {repo.resolve()} (its mesh.yaml)" in out.err


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_validate_for_machines_has_counts_and_severities(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `-o json` had no counts or severities and `-o yaml` was refused."""
    bad = (ROOT / "tests/data/invalid/port-protocol.yaml").read_text()
    repo = make_repo(tmp_path, {"bad.yaml": bad, "remoteistio-sample.yaml": SEED_SAMPLE})
    assert cli.main(["validate", str(repo), "-o", fmt]) == 1
    text = capsys.readouterr().out
    doc = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert doc["valid"] is False
    assert doc["remotes"] == {"valid": 1, "invalid": 1}
    assert (doc["errors"], doc["warnings"]) == (1, 0)
    assert doc["problems"][0]["severity"] == "error"
    assert doc["problems"][0]["file"] == "remotes/bad.yaml"


def test_seed_sample_validates_verbatim(tmp_path: Path) -> None:
    """The seed's RemoteIstio, exactly as the blog applied it, is valid; each field is read."""
    repo = make_repo(tmp_path, {"remoteistio-sample.yaml": SEED_SAMPLE})
    assert cli.main(["validate", str(repo)]) == 0
    remote = meshrepo.parse(meshrepo.read_dir(repo)[0]).remotes["remoteistio-sample"]
    assert remote.metadata.labels == {"controller-tools.k8s.io": "1.0"}
    assert remote.spec.citadel.replica_count == 1
    assert remote.spec.sidecar_injector.replica_count == 1
    assert remote.spec.control_plane_security_enabled is False
    assert [s.label_selector for s in remote.spec.enabled_services] == [
        "istio=pilot",
        "istio-mixer-type=policy",
        "statsd-prom-bridge",
        "istio-mixer-type=telemetry",
        "app=jaeger",
    ]


@pytest.mark.parametrize("case", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec_reports_file_line_and_field(
    case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each kind of mistake exits 1 naming the file, the line, the field and the reason."""
    text = case.read_text()
    m = re.match(r"# expect: (\d+) (\S*) *\| (.+)\n", text)
    assert m, f"{case.name} has no '# expect:' header"
    line, field, message = int(m[1]), m[2], m[3]
    repo = make_repo(tmp_path, {"bad.yaml": text})
    assert cli.main(["validate", str(repo), "--format", "json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any(
        p["file"] == "remotes/bad.yaml"
        and p["line"] == line
        and p["field"] == field
        and message in p["message"]
        for p in problems
    ), problems


def test_every_problem_in_every_file_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One run reports all problems of all files, one `FILE:LINE:COL: field: msg` line each."""
    bad = (ROOT / "tests/data/invalid/port-protocol.yaml").read_text()
    worse = bad.replace("name: bad", "name: worse").replace("port: 80", "port: 0")
    repo = make_repo(tmp_path, {"bad.yaml": bad, "worse.yaml": worse})
    assert cli.main(["validate", str(repo)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "remotes/bad.yaml:11:21: spec.enabledServices[0].ports[0].protocol: Input should be "
        "'TCP', 'UDP' or 'SCTP', got 'HTTP'",
        "remotes/worse.yaml:10:17: spec.enabledServices[0].ports[0].port: Input should be "
        "greater than or equal to 1",
        "remotes/worse.yaml:11:21: spec.enabledServices[0].ports[0].protocol: Input should be "
        "'TCP', 'UDP' or 'SCTP', got 'HTTP'",
        "invalid: 0 remote(s) valid, 2 invalid, 3 problem(s)",
    ]


def test_github_format_is_workflow_annotations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format github prints ::error annotations a workflow shows on the diff."""
    repo = make_repo(tmp_path, {"bad.yaml": (ROOT / "tests/data/invalid/pod-ip.yaml").read_text()})
    assert cli.main(["validate", str(repo), "--format", "github"]) == 1
    out = capsys.readouterr().out.strip()
    assert out == (
        "::error file=remotes/bad.yaml,line=11,col=11,"
        "title=spec.enabledServices[0].podIPs[1]::'10.0.0.300' is not an IP address"
    )


def test_oversize_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file over the size cap is a problem naming it, never read."""
    big = SEED_SAMPLE.replace("remoteistio-sample", "big") + "#" * 300_000 + "\n"
    repo = make_repo(tmp_path, {"big.yaml": big})
    assert cli.main(["validate", str(repo)]) == 1
    assert "remotes/big.yaml:1:1: file is" in capsys.readouterr().out


def test_symlink_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A symlinked spec is refused, naming the path."""
    outside = tmp_path / "outside.yaml"
    outside.write_text(SEED_SAMPLE)
    repo = make_repo(tmp_path / "repo", {})
    (repo / "remotes" / "remoteistio-sample.yaml").symlink_to(outside)
    assert cli.main(["validate", str(repo)]) == 1
    assert "remotes/remoteistio-sample.yaml:1:1: is a symlink" in capsys.readouterr().out


def test_two_files_for_one_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """a.yaml and a.yml would define the same remote twice."""
    spec = SEED_SAMPLE.replace("remoteistio-sample", "a")
    repo = make_repo(tmp_path, {"a.yaml": spec, "a.yml": spec})
    assert cli.main(["validate", str(repo)]) == 1
    assert "already defined in remotes/a.yaml" in capsys.readouterr().out


def test_invalid_mesh_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mesh.yaml is validated too, with suggestions for misspelt fields."""
    repo = make_repo(tmp_path, {}, mesh=MESH + b"statusbranch: x\n")
    assert cli.main(["validate", str(repo)]) == 1
    assert "mesh.yaml:3:1: statusbranch: unknown field; did you mean 'statusBranch'?" in (
        capsys.readouterr().out
    )


def test_missing_directory_is_usage_error() -> None:
    """A path that is not a directory is a usage error (exit 2)."""
    assert cli.main(["validate", "/nonexistent/repo"]) == 2


def test_invalid_remote_is_kept_apart_not_dropped(tmp_path: Path) -> None:
    """A broken remote is listed as invalid (so nothing of it is pruned), not as absent."""
    repo = make_repo(
        tmp_path,
        {
            "remoteistio-sample.yaml": SEED_SAMPLE,
            "bad.yaml": (ROOT / "tests/data/invalid/pod-ip.yaml").read_text(),
        },
    )
    parsed = meshrepo.parse(meshrepo.read_dir(repo)[0])
    assert list(parsed.remotes) == ["remoteistio-sample"]
    assert list(parsed.invalid) == ["bad"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("*", True),
        ("", True),
        ("10.0.0.0/8", True),
        ("10.0.0.0/8, 192.168.0.0/16", True),
        ("fd00::/8", True),
        ("10.0.0.0/33", False),
        ("everything", False),
        ("10.0.0.0/8,", False),
    ],
)
def test_ip_ranges(value: str, ok: bool) -> None:
    """IP ranges are `*`, empty, or comma-separated CIDRs."""
    if ok:
        specs.ip_ranges(value)
    else:
        with pytest.raises(ValueError, match="CIDR"):
            specs.ip_ranges(value)


def test_github_annotations_name_files_from_the_git_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a monorepo (the mesh in a subdirectory), annotations name the file as the pull
    request's diff does: from the top of the work tree."""
    (tmp_path / ".git").mkdir()  # the top of a work tree
    mesh = tmp_path / "platform" / "mesh"
    mesh.mkdir(parents=True)
    repo = make_repo(mesh, {"bad.yaml": (ROOT / "tests/data/invalid/pod-ip.yaml").read_text()})
    assert cli.main(["validate", str(repo), "--format", "github"]) == 1
    out = capsys.readouterr().out.strip()
    prefix = repo.relative_to(tmp_path).as_posix()
    assert out.startswith(f"::error file={prefix}/remotes/bad.yaml,line=11,col=11,")


@pytest.mark.parametrize(
    ("server", "ok"),
    [
        ("https://api.west.example.com:6443", True),
        ("https://192.0.2.1", True),
        ("https://[2001:db8::1]:443/k8s", True),
        ("http://api.west.example.com", False),
        ("https://user:pw@api.west.example.com", False),
        ("https://api.west.example.com:99999", False),
        ("https://api.west.example.com/?x=1", False),
        ("https:// api", False),
        ("--upload-pack=x", False),
    ],
)
def test_istiod_remote_server_is_an_https_url(server: str, ok: bool) -> None:
    """spec.server is an https:// API server URL and nothing else."""
    doc = {
        "apiVersion": "gitmesh.io/v1alpha1",
        "kind": "IstiodRemote",
        "metadata": {"name": "w"},
        "spec": {"server": server},
    }
    try:
        specs.IstiodRemote.model_validate(doc)
    except ValueError:
        assert not ok
    else:
        assert ok
