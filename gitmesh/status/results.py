"""What a pass returns, as plain values: each remote's report and the items planned
for it, and the pass's report with what it saw on central; and the status clock."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from gitmesh import plan, render
from gitmesh.status.reports import TIME_FORMAT, PassReport, RemoteReport


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """A remote's report and the items planned (and, unless dry run, applied) for it."""

    report: RemoteReport
    items: tuple[plan.Item, ...] = ()
    # A digest of each desired object (by plan.Ref): a patch to an object whose desired
    # state did not change since the last pass undid an out-of-band edit (drift).
    desired: Mapping[plan.Ref, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What a pass did."""

    report: PassReport
    remotes: Mapping[str, RemoteResult] = field(default_factory=dict)
    central: render.Central | None = None  # what the pass saw on the central cluster

    @property
    def changes(self) -> int:
        """How many planned items write something."""
        return sum(1 for r in self.remotes.values() for i in r.items if i.changes)

    @property
    def all_available(self) -> bool:
        """Whether every remote is Available."""
        return all(r.state == "Available" for r in self.report.remotes.values())

    @property
    def all_applied(self) -> bool:
        """Whether every remote applied: Available, or Progressing (rolling out)."""
        return all(r.state in ("Available", "Progressing") for r in self.report.remotes.values())


def now_utc() -> str:
    """The current time, as the status branch writes it."""
    return time.strftime(TIME_FORMAT, time.gmtime())
