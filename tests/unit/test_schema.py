"""The committed JSON Schemas match the models, and the example files point editors at them."""

from __future__ import annotations

import shutil
from pathlib import Path

from gitmesh.specs import schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_are_current() -> None:
    """schemas/ is what `gitmesh schema --out schemas` writes now; regenerate when stale."""
    for name, text in schema.generate().items():
        committed = (ROOT / "schemas" / name).read_text(encoding="utf-8")
        assert committed == text, f"schemas/{name} is stale: run `gitmesh schema --out schemas`"


def test_schema_forbids_unknown_fields() -> None:
    """The RemoteIstio schema rejects extra properties, as the models do."""
    import json

    remote = json.loads(schema.generate()["remoteistio.schema.json"])
    assert remote["additionalProperties"] is False
    assert "enabledServices" in remote["$defs"]["RemoteIstioSpec"]["required"]


def test_example_files_carry_a_modeline() -> None:
    """Each example spec names its schema for yaml-language-server."""
    files = [
        *(ROOT / "example-repo").glob("**/mesh.yaml"),
        *(ROOT / "example-repo").glob("**/remotes/*.yaml"),
    ]
    assert len(files) == 5
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = first.split("=", 1)[1]
        assert (path.parent / target).resolve().is_file(), (path, target)


def test_modelines_still_resolve_in_a_copy_of_an_example(tmp_path: Path) -> None:
    """Copied as a repository of its own (`cp -rL example-repo my-mesh`), an example's
    modelines still find their schemas."""
    for example in ("example-repo", "example-repo/istiod"):
        copy = tmp_path / example.replace("/", "-")
        shutil.copytree(ROOT / example, copy, symlinks=False)
        for path in [copy / "mesh.yaml", *(copy / "remotes").glob("*.yaml")]:
            target = path.read_text(encoding="utf-8").splitlines()[0].split("=", 1)[1]
            assert (path.parent / target).resolve().is_file(), (path, target)
