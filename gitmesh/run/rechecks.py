"""Remotes still rolling out get another look soon, as Flux requeues a Kustomization whose
health checks wait: a pass over just them every few seconds while they are Progressing, for
as long as the health timeout; after that only the resync looks again (the status branch
says Degraded)."""

from __future__ import annotations

import threading
import time

from gitmesh import health
from gitmesh.status.reports import PassReport

RECHECK = 2.0  # seconds from a pass that left remotes Progressing to the next look


class Rechecks:
    """Which remotes are rolling out, since when, and which are due another look."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._since: dict[str, float] = {}
        self._due: set[str] = set()
        self._lock = threading.Lock()

    def after(self, report: PassReport) -> bool:
        """Note a pass's outcome; whether some remote is now due another look."""
        now = time.monotonic()
        with self._lock:
            for name, remote in report.remotes.items():
                if remote.state != health.PROGRESSING:
                    self._since.pop(name, None)
                    self._due.discard(name)
                elif now - self._since.setdefault(name, now) <= self.timeout:
                    self._due.add(name)
            return bool(self._due)

    def take(self) -> set[str]:
        """The remotes due a look (then none are, until the next `after`)."""
        with self._lock:
            due, self._due = self._due, set()
            return due
