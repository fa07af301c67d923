"""The layering STYLE.md promises, checked by walking the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gitmesh"
KUBERNETES_GATEWAY = {"gitmesh.cluster"}
GIT_MODULES = {"gitmesh.source", "gitmesh.status.branch", "gitmesh.source.gitrepo"}
PURE = {
    "gitmesh.specs",
    "gitmesh.selectors",
    "gitmesh.quantity",
    "gitmesh.specs.yamlload",
    "gitmesh.specs.meshrepo",
    "gitmesh.render",
    "gitmesh.render.base",
    "gitmesh.render.remoteistio",
    "gitmesh.render.istiodremote",
    "gitmesh.specs.profiles",
    "gitmesh.plan",
    "gitmesh.status.reports",
    "gitmesh.specs.schema",
}
IO_MODULES = {
    "socket",
    "subprocess",
    "requests",
    "urllib3",
    "http",
    "threading",
    "git",
    "kubernetes",
}


def modules() -> dict[str, set[str]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
        out[name] = imported
    return out


MODULES = modules()


def roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_gateway_imports_kubernetes(module: str) -> None:
    """Only gitmesh.cluster talks to the Kubernetes API."""
    if module not in KUBERNETES_GATEWAY:
        assert "kubernetes" not in roots(MODULES[module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_git_modules_import_git(module: str) -> None:
    """Only the source and the status branch modules import GitPython."""
    if module not in GIT_MODULES:
        assert "git" not in roots(MODULES[module])


@pytest.mark.parametrize("module", sorted(PURE & set(MODULES)))
def test_the_functional_core_does_no_io(module: str) -> None:
    """The pure modules import no I/O library and no impure gitmesh module."""
    imported = MODULES[module]
    assert not roots(imported) & IO_MODULES
    gitmesh_deps = {n for n in imported if n.startswith("gitmesh.")}
    assert gitmesh_deps <= PURE | {"gitmesh.errors", "gitmesh"}, gitmesh_deps


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_docstring(module: str) -> None:
    """Every module starts with a docstring saying what it is for."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
