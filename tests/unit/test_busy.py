"""gitmesh.run.busy: passes side by side on disjoint remotes. A pass takes the remotes
that are free and leaves the busy ones behind; when the work on one ends, a catch-up is
due for it (for everything, when a full pass left some out)."""

from __future__ import annotations

import threading

from gitmesh.run.busy import Busy


class Told:
    """Counts how often a catch-up was said to be due."""

    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


def test_a_pass_takes_the_free_remotes_and_leaves_the_busy_behind() -> None:
    told = Told()
    busy = Busy(told)
    with busy.holding("a"):
        begun = busy.begin({"a", "b"}, full=False)
        assert begun is not None
        number, taken = begun
        assert taken == {"b"}
        busy.end(number)
        assert told.times == 0
    # "a" is free again: a catch-up is due, for "a" alone.
    assert told.times == 1
    assert busy.catch_up() == (True, {"a"})
    assert busy.catch_up()[0] is False  # said once


def test_a_full_pass_that_left_some_out_runs_again_in_full() -> None:
    told = Told()
    busy = Busy(told)
    with busy.holding("a"), busy.holding("b"):
        begun = busy.begin({"a", "b", "c"}, full=True)
        assert begun is not None and begun[1] == {"c"}
        busy.end(begun[0])
    assert busy.catch_up() == (True, None)  # None: every remote, with pruning


def test_a_pass_over_busy_remotes_only_does_not_start() -> None:
    busy = Busy(Told())
    with busy.holding("a"):
        assert busy.begin({"a"}, full=False) is None
        assert busy.started() is None


def test_an_older_pass_that_ends_last_does_not_take_the_revision_back() -> None:
    busy = Busy(Told())
    first = busy.begin({"a"}, full=False)
    second = busy.begin({"b"}, full=False)
    assert first is not None and second is not None
    assert busy.newest(second[0])
    assert not busy.newest(first[0])


def test_shutdown_waits_for_the_passes_in_flight_and_no_longer() -> None:
    busy = Busy(Told())
    begun = busy.begin({"a"}, full=False)
    assert begun is not None
    assert busy.started() is not None
    assert not busy.wait_idle(0.05)
    threading.Timer(0.05, busy.end, args=(begun[0],)).start()
    assert busy.wait_idle(5)
    assert busy.started() is None
