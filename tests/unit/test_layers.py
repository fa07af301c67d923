"""The layering STYLE.md promises, held by import-linter (the contracts are in
pyproject.toml): stages in layers, a functional core that imports no I/O even indirectly,
only `gitmesh.cluster` importing the Kubernetes client, only the source and the status
branch importing GitPython. Plus what a pull request's CI pays: `validate` and
`plan --offline` load no Kubernetes client."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitutil import ROOT, MeshRemote

PACKAGE = ROOT / "gitmesh"
PYPROJECT = ROOT / "pyproject.toml"
NO_CLUSTER = {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "GITMESH_CENTRAL_KUBECONFIG"}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the `gitmesh` package found first on the path from `cwd`."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter import cli; sys.exit(cli.lint_imports())",
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def test_a_crossed_layer_breaks_a_contract(tmp_path: Path) -> None:
    """The same contracts over a copy of the package in which the pure spec layer imports
    the Kubernetes gateway: import-linter fails, naming the import and the chain that
    brings the client into the pure modules."""
    shutil.copytree(PACKAGE, tmp_path / "gitmesh", ignore=shutil.ignore_patterns("embedded"))
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    profiles = tmp_path / "gitmesh" / "specs" / "profiles.py"
    text = profiles.read_text(encoding="utf-8")
    profiles.write_text(
        text.replace("from gitmesh import specs\n", "from gitmesh import cluster, specs\n", 1),
        encoding="utf-8",
    )
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "gitmesh.specs is not allowed to import gitmesh.cluster" in done.stdout
    assert "gitmesh.cli.planview is not allowed to import gitmesh.cluster" in done.stdout
    assert "2 kept, 2 broken" in done.stdout


def loaded_after(home: Path, *argv: str) -> tuple[int, bool]:
    """Run `gitmesh ARGV` in a fresh interpreter: its exit code and whether the Kubernetes
    client was loaded."""
    script = (
        "import sys\nfrom gitmesh import cli\ncode = cli.main(sys.argv[1:])\n"
        "print('KUBERNETES' if 'kubernetes' in sys.modules else 'NONE')\nsys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if k not in NO_CLUSTER},
            "HOME": str(home),
        },
    )
    return done.returncode, done.stdout.strip().splitlines()[-1] == "KUBERNETES"


def test_pull_request_checks_load_no_kubernetes_client(tmp_path: Path) -> None:
    code, loaded = loaded_after(tmp_path, "validate", str(ROOT / "example-repo"))
    assert (code, loaded) == (0, False)
    (tmp_path / "git").mkdir()
    remote = MeshRemote(tmp_path / "git")
    offline = ["plan", "--offline", "--repo", remote.url, "--cache-dir", str(tmp_path / "c")]
    code, loaded = loaded_after(tmp_path, *offline, "-o", "json")
    assert (code, loaded) == (0, False)
    # The check can see the client: `plan` without --offline loads it (and fails here,
    # with no central cluster).
    code, loaded = loaded_after(tmp_path, *offline[:1], *offline[2:])
    assert (code, loaded) == (1, True)


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")), ids=str
)
def test_every_module_has_a_docstring(path: str) -> None:
    """Every module starts with a docstring saying what it is for."""
    assert ast.get_docstring(ast.parse((ROOT / path).read_text(encoding="utf-8")))


# Small rooms: a module reads in one sitting, a function on one screen. The exceptions,
# each with its reason (the emulator, localkube/, is a program of its own and exempt).
MODULE_LINES = 420
FUNCTION_BODY_LINES = 60
LONGER_MODULES = {
    # One class holding the poller's state (its jobs, watches, leases and shutdown share
    # it); the listener, the pass bookkeeping, connections and metrics are out already.
    "gitmesh/run/runner.py": 520,
    # The Cluster class: one method per API verb gitmesh uses, over one `_call`.
    "gitmesh/cluster/client.py": 520,
}
LONGER_FUNCTIONS = {
    # The metric declarations, one after the other.
    "gitmesh/run/metrics.py::__init__": 70,
}


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines after its signature and docstring."""
    body = node.body
    first = body[0]
    if (
        len(body) > 1
        and isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        first = body[1]
    return (node.end_lineno or node.lineno) - first.lineno + 1


OUR_MODULES = sorted(
    p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py") if "localkube" not in p.parts
)


@pytest.mark.parametrize("path", OUR_MODULES, ids=str)
def test_modules_and_functions_stay_small(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    assert len(text.splitlines()) <= LONGER_MODULES.get(path, MODULE_LINES)
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit = LONGER_FUNCTIONS.get(f"{path}::{node.name}", FUNCTION_BODY_LINES)
            assert body_lines(node) <= limit, f"{path}::{node.name}"
