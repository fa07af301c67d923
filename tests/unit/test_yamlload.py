"""gitmesh.specs.yamlload: every way a file can be unreadable is one Problem naming its
file, line and column (and the field, when there is one), and a readable file keeps the
place of every value for the problems found later."""

from __future__ import annotations

import pytest

from gitmesh.specs import yamlload

F = "remotes/a.yaml"

# (why, the file, the problem as `gitmesh validate` prints it)
UNREADABLE = [
    ("empty", b"", f"{F}:1:1: the file is empty"),
    ("comments only", b"# nothing\n", f"{F}:1:1: the file is empty"),
    ("not UTF-8", b"a: \xff\n", f"{F}:1:1: not UTF-8 text: invalid start byte"),
    ("a NUL byte", b"a: b\nc: \x00\n", f"{F}:2:4: character 0x00 is not allowed in YAML"),
    ("an ESC byte", b"a: \x1b[31mred\n", f"{F}:1:4: character 0x1b is not allowed in YAML"),
    (
        "two documents",
        b"a: 1\n---\nb: 2\n",
        f"{F}:2:1: several YAML documents in one file; put one RemoteIstio per file",
    ),
    (
        "a duplicate key",
        b"a: 1\nb: 2\na: 3\n",
        f"{F}:3:1: a: duplicate key 'a' (first defined on line 1)",
    ),
    (
        "an alias",
        b"a: &x 1\nb: *x\n",
        f"{F}:2:4: YAML aliases (*x) are not allowed; write the value out",
    ),
    ("a tag", b"a: !!binary aGk=\n", f"{F}:1:4: a: tag 'tag:yaml.org,2002:binary' is not allowed"),
    ("bad syntax", b"a: [1, 2\n", f"{F}:2:1: YAML syntax error"),
]


@pytest.mark.parametrize(("why", "data", "shown"), UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_an_unreadable_file_is_one_placed_problem(why: str, data: bytes, shown: str) -> None:
    with pytest.raises(yamlload.LoadError) as caught:
        yamlload.load(data, file=F)
    assert str(caught.value.problem).startswith(shown), why


def test_too_deep_and_too_large_are_refused_before_parsing() -> None:
    deep = b"a: " + b"[" * (yamlload.MAX_DEPTH + 1) + b"]" * (yamlload.MAX_DEPTH + 1) + b"\n"
    with pytest.raises(yamlload.LoadError, match="nested deeper than"):
        yamlload.load(deep, file=F)
    with pytest.raises(yamlload.LoadError, match="the limit is 10 bytes"):
        yamlload.load(b"a: 1234567890\n", file=F, max_bytes=10)


def test_a_readable_file_keeps_every_value_in_its_place() -> None:
    loaded = yamlload.load(b"spec:\n  items:\n    - name: x\n      port: 80\n", file=F)
    assert loaded.value == {"spec": {"items": [{"name": "x", "port": 80}]}}
    assert loaded.positions.values[("spec", "items", 0, "port")] == (4, 13)
    assert loaded.positions.values[("spec",)] == (2, 3)  # where its value starts
