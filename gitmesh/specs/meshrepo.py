"""A mesh repository's files turned into specs, or into precise problems.

Pure: a mapping of repository paths to bytes goes in (read from a directory by `read_dir`,
or from a git commit by `gitmesh.source`); `Repo` comes out. A broken remote file makes
that remote invalid — it is reported and kept apart, never treated as absent, so nothing
of it is pruned. A broken `mesh.yaml` makes the whole repository unusable.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pydantic

from gitmesh import specs
from gitmesh.errors import Problem
from gitmesh.specs import profiles, yamlload

MESH_FILE = "mesh.yaml"
_REMOTE_KINDS: Mapping[str, type[specs.Remote]] = specs.REMOTE_KINDS
REMOTES_DIR = "remotes"
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Repo:
    """What a mesh repository says, and what is wrong with it."""

    mesh: specs.Mesh | None
    remotes: Mapping[str, specs.Remote]
    # Remotes whose file exists but does not validate: name (the file stem) -> problems.
    invalid: Mapping[str, tuple[Problem, ...]]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every file validated."""
        return not self.problems


def is_spec_path(path: str) -> bool:
    """Whether a repository path is one gitmesh reads."""
    p = PurePosixPath(path)
    if path == MESH_FILE:
        return True
    return len(p.parts) == 2 and p.parts[0] == REMOTES_DIR and p.suffix in SPEC_SUFFIXES


def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional/list/dict/Annotated, if any."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel):
                return inner
        return None
    if origin in (list, dict):
        return _unwrap(typing.get_args(annotation)[-1])
    return annotation


def _model_at(model: type[pydantic.BaseModel], loc: tuple[str | int, ...]) -> Any:
    """The model class that holds the last element of `loc`."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, pydantic.BaseModel)
        ):
            continue
        for name, info in current.model_fields.items():
            if part in (name, info.alias):
                current = _unwrap(info.annotation)
                break
        else:
            # A dict key (free-form map); the model stays the same shape below it.
            continue
    return current


def _wire_names(model: type[pydantic.BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _message(model: type[pydantic.BaseModel], err: Any) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc)
        key = str(loc[-1])
        if isinstance(holder, type) and issubclass(holder, specs.Strict):
            if key in holder.unsupported:
                return f"not supported: {holder.unsupported[key]}"
            valid = _wire_names(holder)
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}? " if near else ""
            return f"unknown field; {hint}valid fields: {', '.join(valid)}"
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{err['msg']}, got {err['input']!r}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _problems(
    model: type[pydantic.BaseModel],
    error: pydantic.ValidationError,
    loaded: yamlload.Loaded,
    file: str,
) -> list[Problem]:
    out = []
    for err in error.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        line, col = loaded.positions.of(loc, key=err["type"] == "extra_forbidden")
        out.append(Problem(file, line, col, yamlload.dotted(loc), _message(model, err)))
    return out


M = typing.TypeVar("M", bound=pydantic.BaseModel)


def _parse(
    model: type[M], data: bytes, file: str, *, by_kind: Mapping[str, type[M]] | None = None
) -> tuple[M | None, list[Problem]]:
    """Validate one file against `model`, or, with `by_kind`, against the model its `kind`
    names (an unknown kind is validated against `model`, which then names the field)."""
    try:
        loaded = yamlload.load(data, file=file)
    except yamlload.LoadError as e:
        return None, [e.problem]
    if not isinstance(loaded.value, dict):
        return None, [Problem(file, 1, 1, "", "the document must be a map of fields")]
    if by_kind is not None:
        model = by_kind.get(str(loaded.value.get("kind")), model)
    try:
        return model.model_validate(loaded.value), []
    except pydantic.ValidationError as e:
        return None, _problems(model, e, loaded, file)


def parse(files: Mapping[str, bytes], *, refused: Sequence[Problem] = ()) -> Repo:
    """Validate every spec file in `files` (repository path -> content). `refused` are
    problems with files that were not read (symlinks, oversize): a refused remote file
    makes that remote invalid, never absent."""
    problems: list[Problem] = list(refused)
    mesh: specs.Mesh | None = None
    refused_remotes = {
        PurePosixPath(p.file).stem: p
        for p in refused
        if is_spec_path(p.file) and p.file != MESH_FILE
    }
    if MESH_FILE in files:
        mesh, found = _parse(specs.Mesh, files[MESH_FILE], MESH_FILE)
        problems += sorted(found, key=lambda p: (p.line, p.col))
    elif not any(p.file == MESH_FILE for p in refused):
        problems.append(Problem(MESH_FILE, 1, 1, "", "mesh.yaml is missing at the repository root"))

    remotes: dict[str, specs.Remote] = {}
    invalid: dict[str, tuple[Problem, ...]] = {
        stem: (problem,) for stem, problem in refused_remotes.items()
    }
    seen: dict[str, str] = {}
    for path in sorted(p for p in files if is_spec_path(p) and p != MESH_FILE):
        stem = PurePosixPath(path).stem
        remote, found = _parse(specs.RemoteIstio, files[path], path, by_kind=_REMOTE_KINDS)
        if remote is not None:
            name = remote.metadata.name
            if name != stem:
                found.append(
                    Problem(
                        path,
                        *_position(files[path], ("metadata", "name")),
                        "metadata.name",
                        f"{name!r} must equal the file name {stem!r}",
                    )
                )
        if stem in seen:
            found.append(
                Problem(
                    path,
                    1,
                    1,
                    "metadata.name",
                    f"remote {stem!r} is already defined in {seen[stem]}",
                )
            )
        seen.setdefault(stem, path)
        if isinstance(remote, specs.RemoteIstio) and mesh is not None:
            found += [
                Problem(path, *_position(files[path], loc), ".".join(loc), why)
                for loc, why in profiles.refusals(remote, mesh)
            ]
        if found:
            invalid[stem] = tuple(found)
            remotes.pop(stem, None)
            problems += sorted(found, key=lambda p: (p.line, p.col))
        elif remote is not None and stem not in invalid:
            remotes[stem] = remote
    return Repo(mesh=mesh, remotes=remotes, invalid=invalid, problems=tuple(problems))


def _position(data: bytes, loc: tuple[str, ...]) -> tuple[int, int]:
    return yamlload.load(data, file="").positions.of(loc)


def read_dir(
    root: Path, *, max_bytes: int = yamlload.MAX_FILE_BYTES
) -> tuple[dict[str, bytes], list[Problem]]:
    """Read the spec files of a working directory; symlinks and oversize files are problems."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    candidates = [root / MESH_FILE]
    remotes = root / REMOTES_DIR
    if remotes.is_dir() and not remotes.is_symlink():
        candidates += sorted(p for p in remotes.iterdir() if p.suffix in SPEC_SUFFIXES)
    elif remotes.is_symlink():
        problems.append(Problem(REMOTES_DIR, 1, 1, "", "is a symlink; gitmesh refuses symlinks"))
    for path in candidates:
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            problems.append(Problem(rel, 1, 1, "", "is a symlink; gitmesh refuses symlinks"))
            continue
        if not path.is_file():
            continue
        size = path.stat().st_size
        if size > max_bytes:
            problems.append(
                Problem(rel, 1, 1, "", f"file is {size} bytes; the limit is {max_bytes} bytes")
            )
            continue
        files[rel] = path.read_bytes()
    return files, problems
