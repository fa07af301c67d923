"""Logging setup: one JSON object per line (`msg` plus remote, component, revision...),
like the operator's lines in the seed, or plain text for people."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, ClassVar

from gitmesh.errors import redact_url

LOGGER = "gitmesh"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"level": ..., "time": ..., "msg": ..., <extra fields>}` per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": record.levelname.lower(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "msg": redact_url(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = redact_url(str(record.exc_info[1]))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """`LEVEL msg key=value ...` for people."""

    COLORS: ClassVar[dict[str, str]] = {"WARNING": "\033[33m", "ERROR": "\033[31m"}

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{record.levelname:<7} {redact_url(record.getMessage())}"
        return f"{line}  {extras}" if extras else line


def setup(*, fmt: str = "json", level: str = "info", stream: Any = None) -> logging.Logger:
    """Configure the gitmesh logger (idempotent)."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get() -> logging.Logger:
    """The gitmesh logger."""
    return logging.getLogger(LOGGER)
