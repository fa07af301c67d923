"""Passes side by side on disjoint remotes: which remotes are in a pass (busy), which a
pass had to leave out (behind), and the passes in flight. When the work on a remote that
is behind ends, `on_free` is told to run a catch-up pass for it (for everything, when a
full pass left some out). Plain bookkeeping under one condition variable; the runner owns
the locks, the scheduling and the passes themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

# Told when a catch-up pass is due (`Busy.catch_up` says over which remotes).
OnFree = Callable[[], None]


class Busy:
    """The remotes in a pass and the passes in flight (numbered, newest last)."""

    def __init__(self, on_free: OnFree) -> None:
        self._on_free = on_free
        self._state = threading.Condition()
        self._busy: set[str] = set()
        self._behind: set[str] = set()
        self._behind_all = False  # a full pass left some out: one more when they are free
        self._catching_up: set[str] = set()  # "" stands for a full pass
        self._inflight: dict[int, float] = {}  # pass -> time.monotonic() it started
        self._passes = 0
        self._handled = 0  # the newest pass whose revision the runner holds

    @contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """`name` is busy meanwhile; if a pass wanted it, a catch-up is due at the end."""
        with self._state:
            self._busy.add(name)
        try:
            yield
        finally:
            with self._state:
                self._busy.discard(name)
                again = name in self._behind
                self._behind.discard(name)
                full = self._behind_all and not self._busy
                if full:
                    self._behind_all = False
                if again or full:
                    self._catching_up.add("" if full else name)
            if again or full:
                self._on_free()

    def catch_up(self) -> tuple[bool, set[str] | None]:
        """Whether a catch-up is due, and over which remotes (None: a full pass)."""
        with self._state:
            names, self._catching_up = self._catching_up, set()
        return bool(names), None if "" in names else names

    def begin(self, wanted: Collection[str], *, full: bool) -> tuple[int, set[str]] | None:
        """Start a pass over `wanted` (`full`: every remote, with pruning): its number and
        the remotes it takes, the busy ones left behind; None when all are busy."""
        with self._state:
            busy = set(wanted) & self._busy
            if busy:
                self._behind |= busy
                self._behind_all |= full
                if not set(wanted) - busy:
                    return None
            self._passes += 1
            self._inflight[self._passes] = time.monotonic()
            return self._passes, set(wanted) - busy

    def end(self, number: int) -> None:
        """Pass `number` is over."""
        with self._state:
            del self._inflight[number]
            self._state.notify_all()

    def newest(self, number: int) -> bool:
        """Whether pass `number` is newer than every pass handled so far (then it is
        handled): a pass that ends after a newer one does not take its revision back."""
        with self._state:
            if number <= self._handled:
                return False
            self._handled = number
            return True

    def started(self) -> float | None:
        """When the oldest pass in flight started (time.monotonic()), None when none is."""
        with self._state:
            return min(self._inflight.values(), default=None)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no pass is in flight, at most `timeout` seconds; whether none is."""
        with self._state:
            return self._state.wait_for(lambda: not self._inflight, timeout=timeout)
