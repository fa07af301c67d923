"""Durations as people write them on a command line: kubectl's and Go's syntax; and ages
as kubectl prints them.

Pure. `30s`, `5m`, `1h30m`, `250ms`, `1.5s`, or a bare number of seconds (as kubectl's
`--request-timeout` takes both). Used by every flag that takes a time. `age` is kubectl's
AGE column (k8s.io/apimachinery pkg/util/duration HumanDuration).
"""

from __future__ import annotations

import math
import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse(text: str, *, minimum: float = 0.0) -> float:
    """Seconds in `text`; ValueError naming what would be valid."""
    value = text.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(value):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not value or pos != len(value):
            raise ValueError(
                f"{text!r} is not a duration: write e.g. 30s, 5m, 1h30m, 500ms, or seconds"
            ) from None
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration: write e.g. 30s, 5m, or seconds")
    if seconds < minimum:
        raise ValueError(f"{text!r} is too short: at least {format_seconds(minimum)}")
    return seconds


def format_seconds(seconds: float) -> str:
    """A short form for messages: 5s, 1.5s, 2m, 1h."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def age(seconds: float) -> str:
    """How long ago, as kubectl's AGE column says it: 95s, 5m3s, 42m, 3h20m, 20h, 5d4h,
    300d, 2y30d (k8s.io/apimachinery@v0.36.3 pkg/util/duration/duration.go lines 48-93)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    steps = [
        (minutes < 10, minutes, "m", s % 60, "s"),
        (minutes < 180, minutes, "m", 0, ""),
        (hours < 8, hours, "h", minutes % 60, "m"),
        (hours < 48, hours, "h", 0, ""),
        (hours < 24 * 8, days, "d", hours % 24, "h"),
        (hours < 24 * 365 * 2, days, "d", 0, ""),
        (hours < 24 * 365 * 8, days // 365, "y", days % 365, "d"),
    ]
    for below, big, unit, small, small_unit in steps:
        if below:
            return f"{big}{unit}{small}{small_unit}" if small else f"{big}{unit}"
    return f"{days // 365}y"
