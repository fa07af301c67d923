"""Safe YAML loading that remembers where every value came from.

Pure: bytes in, plain values and a position map out. It refuses what a spec file must
never contain — object-constructing tags, duplicate keys, several documents, oversize
input, aliases (a 500-byte "billion laughs" expands to gigabytes), nesting deeper than
`MAX_DEPTH` — with a `Problem` naming line and column. Aliases and depth are checked on
the parser's event stream, in linear time, before anything is composed. pydantic errors
are later mapped back to lines through `Positions`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from gitmesh.errors import Problem

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 64
# libyaml's parser when PyYAML has it (10x faster); both compose nodes with marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path = tuple[str | int, ...]


@dataclass(slots=True)
class Positions:
    """1-based (line, column) of each key and value, by path from the document root."""

    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    containers: set[Path] = field(default_factory=set)

    def of(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where the value at `path` is written (its key, with `key=True` or when the value
        is a list or map); for a missing path, where its nearest parent's key is."""
        key = key or path in self.containers
        if path in self.values and not (key and path in self.keys):
            return self.values[path]
        for cut in range(len(path), -1, -1):
            sub = path[:cut]
            if sub in self.keys:
                return self.keys[sub]
        return (1, 1)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A loaded document: its value, and where each part of it is."""

    value: Any
    positions: Positions


class LoadError(Exception):
    """The file cannot be loaded; `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map")
}


def _scalar(loader: Any, node: yaml.ScalarNode) -> Any:
    tag = node.tag.rsplit(":", 1)[-1]
    if tag == "str":
        return node.value
    if tag == "null":
        return None
    return getattr(loader, f"construct_yaml_{tag}")(node)


def _walk(loader: Any, node: yaml.Node, path: Path, pos: Positions, file: str) -> Any:
    """Record where everything is, refuse what specs may not hold, and build the value."""
    pos.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _PLAIN_TAGS:
        what = (
            "YAML merge keys (<<) are not supported; write the fields out"
            if node.tag.endswith(":merge")
            else f"tag {node.tag!r} is not allowed: specs hold plain strings, numbers, "
            "booleans, lists and maps"
        )
        raise LoadError(Problem(file, *pos.values[path], _dotted(path), what))
    if isinstance(node, yaml.ScalarNode):
        return _scalar(loader, node)
    pos.containers.add(path)
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, (*path, i), pos, file) for i, item in enumerate(node.value)]
    out: dict[str, Any] = {}
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            raise LoadError(
                Problem(
                    file, line, col, _dotted(path), "keys must be plain strings (no merge keys)"
                )
            )
        key = key_node.value
        if key in seen:
            raise LoadError(
                Problem(
                    file,
                    line,
                    col,
                    _dotted((*path, key)),
                    f"duplicate key {key!r} (first defined on line {seen[key]})",
                )
            )
        seen[key] = line
        sub = (*path, key)
        pos.keys[sub] = (line, col)
        out[key] = _walk(loader, value_node, sub, pos, file)
    return out


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


dotted = _dotted


def _place(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def check_events(text: str, *, file: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse aliases and nesting deeper than `max_depth`, reading only parser events."""
    depth = 0
    loader = _Loader(text)
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    message = f"nested deeper than {max_depth} levels"
                    raise LoadError(Problem(file, *_place(event), "", message))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                message = f"YAML aliases (*{event.anchor}) are not allowed; write the value out"
                raise LoadError(Problem(file, *_place(event), "", message))
    finally:
        loader.dispose()


def _unprintable(file: str, text: str, e: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not allow (NUL, ESC from a pasted colour code), at its place."""
    before = text[: e.position]
    line = before.count("\n") + 1
    col = e.position - (before.rfind("\n") + 1) + 1
    char = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
    return Problem(file, line, col, "", f"character {char:#04x} is not allowed in YAML")


def load(data: bytes, *, file: str, max_bytes: int = MAX_FILE_BYTES) -> Loaded:
    """Load one YAML document safely, or raise `LoadError` naming the place."""
    if len(data) > max_bytes:
        raise LoadError(
            Problem(file, 1, 1, "", f"file is {len(data)} bytes; the limit is {max_bytes} bytes")
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LoadError(Problem(file, 1, 1, "", f"not UTF-8 text: {e.reason}")) from e
    # A syntax error is left to the composer below, which reports it with its place.
    try:
        with contextlib.suppress(yaml.MarkedYAMLError):
            check_events(text, file=file)
    except yaml.reader.ReaderError as e:
        raise LoadError(_unprintable(file, text, e)) from e
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as e:
            if "single document" in f"{e.context} {e.problem}":
                mark = e.problem_mark
                line = mark.line + 1 if mark else 1
                raise LoadError(
                    Problem(
                        file,
                        line,
                        1,
                        "",
                        "several YAML documents in one file; put one RemoteIstio per file",
                    )
                ) from e
            raise
        if node is None:
            raise LoadError(Problem(file, 1, 1, "", "the file is empty"))
        pos = Positions()
        value = _walk(loader, node, (), pos, file)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = " ".join(p for p in (e.context, e.problem) if p)
        raise LoadError(Problem(file, line, col, "", f"YAML syntax error: {msg}")) from e
    except yaml.YAMLError as e:
        raise LoadError(Problem(file, 1, 1, "", f"YAML error: {e}")) from e
    finally:
        loader.dispose()
    return Loaded(value, pos)
