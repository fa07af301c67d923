"""Logging setup: one JSON object per line (`msg` plus remote, component, revision...),
like the operator's lines in the seed, or plain text for people: a timestamp, the level
(coloured on a terminal unless NO_COLOR is set), the message and its fields. On a terminal
a progress line (`status_line`) is cleared before a log line and drawn again after it."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, ClassVar

from gitmesh.errors import redact_url

LOGGER = "gitmesh"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def timestamp(created: float) -> str:
    """RFC 3339 in UTC, to the millisecond."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """`{"level": ..., "time": ..., "msg": ..., <extra fields>}` per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": record.levelname.lower(),
            "time": timestamp(record.created),
            "msg": redact_url(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = redact_url(str(record.exc_info[1]))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL msg key=value ...` for people; the level coloured when `color`."""

    COLORS: ClassVar[dict[str, str]] = {
        "DEBUG": "\033[2m",
        "WARNING": "\033[33m",
        "ERROR": "\033[31m",
        "CRITICAL": "\033[31m",
    }

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        level = f"{record.levelname:<7}"
        if self.color and record.levelname in self.COLORS:
            level = f"{self.COLORS[record.levelname]}{level}\033[0m"
        line = f"{timestamp(record.created)} {level} {redact_url(record.getMessage())}"
        return f"{line}  {extras}" if extras else line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records; on a terminal, clears the progress line first and redraws it."""

    status = ""
    shared = threading.Lock()  # the progress line and log lines, one at a time

    def emit(self, record: logging.LogRecord) -> None:
        with _Handler.shared:
            if _Handler.status:
                self.stream.write("\r\033[K")
            super().emit(record)
            if _Handler.status:
                self.stream.write(_Handler.status)
                self.stream.flush()


def status_line(text: str, *, done: bool = False, stream: Any = None) -> None:
    """Show `text` as the terminal's progress line (rewritten in place); `done` ends it."""
    out = stream or sys.stderr
    with _Handler.shared:
        _Handler.status = "" if done else text
        out.write(f"\r\033[K{text}" + ("\n" if done else ""))
        out.flush()


def setup(*, fmt: str = "json", level: str = "info", stream: Any = None) -> logging.Logger:
    """Configure the gitmesh logger (idempotent)."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    out = stream or sys.stderr
    handler = _Handler(out)
    color = out.isatty() and not os.environ.get("NO_COLOR")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(color=color))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get() -> logging.Logger:
    """The gitmesh logger."""
    return logging.getLogger(LOGGER)
