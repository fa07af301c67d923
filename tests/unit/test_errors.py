"""The error tree: its drawing in gitmesh.errors is the tree the classes make, and the
helpers that keep credentials and long server text out of messages."""

from __future__ import annotations

import inspect
import re

import pytest

from gitmesh import errors


def drawn() -> dict[str, int]:
    """Each class in the module docstring's drawing, by its depth (GitmeshError is 0)."""
    out = {}
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"(    [│├└─ ]*)([A-Z][A-Za-z]+)(\s|$)", line)
        if found:
            out[found.group(2)] = (len(found.group(1)) - 4) // 4
    return out


def test_the_drawing_is_the_tree() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.GitmeshError)
    }
    tree = drawn()
    assert set(tree) == set(classes)
    for name, cls in classes.items():
        parents = [c.__name__ for c in cls.__mro__[1:] if c.__name__ in classes]
        assert tree[name] == len(parents), name


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fetch https://user:hunter2@git.example/mesh.git failed", "https://***@git.example"),
        ("ssh://git@host/x and http://a:b@c/d", "ssh://***@host/x and http://***@c/d"),
        ("no credentials in https://git.example/x", "https://git.example/x"),
    ],
)
def test_urls_lose_their_userinfo(text: str, shown: str) -> None:
    out = errors.redact_url(text)
    assert shown in out and "hunter2" not in out and ":b@" not in out


def test_server_text_is_one_bounded_line() -> None:
    assert errors.cut("a\n  b\tc") == "a b c"
    long = errors.cut("x" * 1000, 50)
    assert len(long) == 50 and long.endswith("…")
