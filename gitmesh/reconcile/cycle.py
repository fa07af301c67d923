"""The cycle: fetch the source → run a pass → commit the status. The one place these are
put in order; `gitmesh reconcile --once` and `plan`, the poller (`gitmesh run`, which
fetches and chooses remotes its own way, then commits here) and the demo call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gitmesh import logs, specs
from gitmesh.source import Source
from gitmesh.specs import meshrepo
from gitmesh.status import reports
from gitmesh.status.branch import StatusBranch
from gitmesh.status.reports import PassReport
from gitmesh.status.results import PassResult, now_utc

# A pass over one revision of the repository: (repo, commit) -> what it did.
Pass = Callable[[meshrepo.Repo, str], PassResult]


def status_branch(source: Source, repo: meshrepo.Repo | None, name: str | None) -> StatusBranch:
    """The status branch: `name` (--status-branch), else mesh.yaml's, else the default."""
    if name is None and repo is not None and repo.mesh is not None:
        name = repo.mesh.status_branch
    return StatusBranch(source.cache, name or specs.STATUS_BRANCH)


def commit(branch: StatusBranch, report: PassReport) -> str | None:
    """Commit a pass's report to the status branch: the commit, or None when the status
    did not change."""
    sha = branch.write(
        lambda current: reports.render(report, current, now_utc()),
        lambda changes: reports.message(report, changes),
    )
    revision = {"revision": report.revision[:12]}
    if sha:
        logs.get().info("status committed", extra={**revision, "commit": sha})
    else:
        logs.get().info("status unchanged", extra=revision)
    return sha


def commit_endpoints(
    branch: StatusBranch, snapshots: Mapping[str, Mapping[str, tuple[str, ...]]], revision: str
) -> str | None:
    """Commit endpoint snapshots the hot path took since the last commit (by remote)."""
    return branch.write(
        lambda current: reports.render_endpoints(snapshots, current),
        lambda changes: (
            f"gitmesh endpoints at {revision[:12]}: "
            + ", ".join(sorted({p.split("/", 1)[1].rsplit(".", 1)[0] for p in changes}))
            + "\n"
        ),
    )


def once(
    source: Source,
    run: Pass,
    *,
    branch: str | None = None,
    before: Callable[[meshrepo.Repo], bool] | None = None,
    write: bool = True,
) -> tuple[PassResult, StatusBranch] | None:
    """Fetch, parse, run one pass and (with `write`) commit its status. `before(repo)`,
    asked once the revision is parsed, may decline the pass (None: nothing ran)."""
    snapshot = source.fetch()
    repo = snapshot.parse()
    if before is not None and not before(repo):
        source.cache.repo.close()  # its git cat-file processes
        return None
    status = status_branch(source, repo, branch)
    result = run(repo, snapshot.commit)
    if write:
        commit(status, result.report)
    return result, status
