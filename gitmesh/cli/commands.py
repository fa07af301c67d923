"""The sub-commands: each builds its collaborators from the flags and calls into the
library, returning the exit code."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from gitmesh.cli.flags import central_cluster, central_kubeconfig, make_source, pass_settings
from gitmesh.cli.views import (
    color,
    progress_line,
    repo_prefix,
    status_table,
    summary,
    validation,
)
from gitmesh.errors import Forbidden, GitmeshError
from gitmesh.settings import RunSettings, Settings
from gitmesh.specs import meshrepo, schema
from gitmesh.status.results import PassResult


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a mesh repository directory: the one given, or, as git finds its
    repository, the nearest one above it that has mesh.yaml."""
    given = Path(args.path)
    if not given.is_dir():
        print(f"gitmesh validate: {given}: not a directory", file=sys.stderr)
        return 2
    root = _mesh_root(given)
    if root != given:
        print(f"gitmesh validate: checking {root} (its {meshrepo.MESH_FILE})", file=sys.stderr)
    files, problems = meshrepo.read_dir(root)
    repo = meshrepo.parse(files, refused=problems)
    problems = list(repo.problems)
    warnings = []
    if repo.mesh is not None and not repo.remotes and not repo.invalid:
        warnings.append(
            f"{root}: warning: no remote files: a pass would remove every remote gitmesh "
            "applied to, and refuses to without --allow-mass-prune"
        )
    counts = (len(repo.remotes), len(repo.invalid))
    validation(problems, warnings, counts, args.format, prefix=repo_prefix(root))
    return 1 if problems else 0


def _mesh_root(path: Path) -> Path:
    """`path`, or the nearest directory above it holding mesh.yaml, not leaving the git
    work tree it is in; `path` when there is none (validate then says mesh.yaml is missing)."""
    here = path.resolve()
    for candidate in (here, *here.parents):
        if (candidate / meshrepo.MESH_FILE).is_file():
            return path if candidate == here else candidate
        if (candidate / ".git").exists():
            break
    return path


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the JSON Schemas into a directory."""
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in schema.generate().items():
            (out / name).write_text(text, encoding="utf-8")
            print(out / name)
    except OSError as e:
        raise GitmeshError(f"--out {out}: {e.strerror or e}") from None
    return 0


def one_cycle(
    args: argparse.Namespace,
    settings: Settings,
    *,
    before: Callable[[meshrepo.Repo], bool] | None = None,
    write: bool = False,
) -> PassResult | None:
    """One cycle (reconcile.cycle): fetch, parse, run one pass and, with `write`, commit
    its status; `before(repo)` may decline it (None)."""
    from gitmesh import logs
    from gitmesh.reconcile import cycle, passes

    logs.setup(fmt=args.log_format, level=args.log_level)
    workers = getattr(args, "workers", 1)  # gitmesh plan has no --workers

    def run(repo: meshrepo.Repo, commit: str) -> PassResult:
        if workers > 1:
            from gitmesh.reconcile import workers as pool

            return pool.run_pass(
                repo,
                commit,
                pool.Central(
                    central_kubeconfig(args.central_kubeconfig),
                    args.central_context,
                    args.request_timeout,
                ),
                workers=workers,
                settings=settings,
                log_format=args.log_format,
                log_level=args.log_level,
            )
        with central_cluster(args) as central:
            return passes.run_pass(
                repo,
                commit,
                central,
                connect=passes.default_connect,
                settings=settings,
                progress=progress_line() if sys.stderr.isatty() else None,
            )

    done = cycle.once(make_source(args), run, branch=args.status_branch, before=before, write=write)
    return None if done is None else done[0]


def _refuse_uncommitted(repo: str | None) -> None:
    """`plan --repo .` plans a commit: uncommitted spec edits would be left out without a
    word (flux diff reads the local files), so they are refused, named."""
    from gitmesh.source import uncommitted

    changed = uncommitted(repo or "")
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        raise GitmeshError(
            f"{repo} has uncommitted changes to {shown}: plan reads commits (--revision), "
            "not the work tree; commit or stash them first (validate checks the files as "
            "they are)"
        )


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what a pass would change, writing nothing."""
    from gitmesh.cli import planview

    _refuse_uncommitted(args.repo)
    if args.offline:
        from gitmesh import logs
        from gitmesh.reconcile import offline

        logs.setup(fmt=args.log_format, level=args.log_level)
        snapshot = make_source(args).fetch()
        result = offline.plan_repo(snapshot.parse(), snapshot.commit)
        note = offline.NOTE
    else:
        note = ""
        done = one_cycle(args, pass_settings(args, plan_only=True))
        if done is None:  # no `before`: never declined
            return 1
        result = done
    if args.format == "json":
        print(json.dumps(planview.as_json(result), indent=2))
    elif args.format == "yaml":
        import yaml

        print(yaml.safe_dump(planview.as_json(result), sort_keys=False), end="")
    elif args.format == "markdown":
        print(planview.markdown(result, note=note), end="")
    else:
        print(planview.text(result, color=color(), note=note), end="")
    failed = any(
        r.report.state in ("ReconcileFailed", "InvalidSpec") for r in result.remotes.values()
    )
    if failed:
        return 2 if args.exit_code else 1
    return 1 if args.exit_code and result.changes else 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """One pass: apply, then commit the status (not with --dry-run). The pass holds the
    same Lease as `gitmesh run`: when another holder is active, it is skipped (exit 0)."""
    from gitmesh.cli import planview

    if not args.once:
        print("gitmesh reconcile: pass --once (the poller is `gitmesh run`)", file=sys.stderr)
        return 2
    settings = pass_settings(args, dry_run=args.dry_run)
    with contextlib.ExitStack() as held:
        result = one_cycle(
            args,
            settings,
            before=None if args.dry_run else lambda repo: _hold_lease(args, repo, held),
            write=not args.dry_run,
        )
        if result is None:
            return 0
        if not args.dry_run:
            summary(result)
        else:
            print(planview.text(result, color=color()), end="")
    return 0 if (result.all_available if args.wait else result.all_applied) else 1


def _hold_lease(args: argparse.Namespace, repo: meshrepo.Repo, held: contextlib.ExitStack) -> bool:
    """Take the Lease for this pass (released when `held` closes); False, with a message,
    when another holder keeps it."""
    from gitmesh.run.leader import Elector

    central = held.enter_context(central_cluster(args))
    mesh_namespace = repo.mesh.namespace if repo.mesh else "istio-system"
    elector = Elector(
        central,
        namespace=args.lease_namespace or mesh_namespace,
        name=args.lease_name,
        identity=args.identity or f"{socket.gethostname()}-{os.getpid()}-once",
        lease_duration=args.lease_duration,
        retry_period=args.retry_period,
    )
    elector.start()
    held.callback(elector.stop, release=True)
    # A holder that stopped renewing is taken over after one lease duration.
    try:
        if elector.wait_for_leadership(args.lease_duration + 2 * args.retry_period):
            return True
    except Forbidden as e:
        raise GitmeshError(
            f"cannot take the Lease {elector.namespace}/{elector.name} (get, create and "
            f"update on leases.coordination.k8s.io are needed): {e}"
        ) from None
    print(
        f"gitmesh reconcile: another gitmesh holds the Lease {elector.namespace}/"
        f"{elector.name}; skipping this pass",
        file=sys.stderr,
    )
    return False


def cmd_run(args: argparse.Namespace) -> int:
    """The poller: runs until SIGTERM/SIGINT, then exits 0."""
    from gitmesh import logs
    from gitmesh.run import runner

    logs.setup(fmt=args.log_format, level=args.log_level)
    secret_env = args.webhook_secret_env
    secret = os.environ.get(secret_env, "").encode() if secret_env else b""
    run_settings = RunSettings(
        interval=args.interval,
        resync=args.resync,
        listen=args.listen,
        probe_listen=args.probe_listen,
        identity=args.identity or f"{socket.gethostname()}-{os.getpid()}",
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        lease_duration=args.lease_duration,
        retry_period=args.retry_period,
        status_branch=args.status_branch,
        hook_secret=secret or None,
        grace=args.grace_period,
        shard=args.shard,
    )
    the_runner = runner.Runner(
        make_source(args), central_cluster(args), settings=pass_settings(args), run=run_settings
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        the_runner.start()  # serving comes first: nothing else has started when it fails
    except OSError as e:
        flag, (host, port) = (
            ("--listen", args.listen)
            if the_runner.http is None
            else ("--probe-listen", args.probe_listen)
        )
        raise GitmeshError(f"{flag} {host}:{port}: {e.strerror or e}") from None
    logs.get().info(
        "gitmesh running",
        extra={"identity": run_settings.identity, "listen": f"{args.listen[0]}:{args.listen[1]}"},
    )
    # Wait with a timeout: a signal that lands on a worker thread only runs its Python
    # handler when the main thread next runs bytecode, which a bare wait() never does.
    while not stop.wait(0.5):
        pass
    logs.get().info("shutting down")
    finished = the_runner.shutdown()
    logs.get().info("stopped")
    if not finished:
        # A worker is stuck in a remote's request past the grace period: exit anyway (its
        # thread would hold the interpreter open), as a pod's termination would.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show each remote's state from the status branch, and whether it is in sync with the
    source revision; with --exit-code, exit 2 when any remote is not Available or not in
    sync."""
    import yaml

    from gitmesh.reconcile import cycle
    from gitmesh.status import reports

    source = make_source(args)
    snapshot = source.fetch()
    repo = snapshot.parse()
    branch = cycle.status_branch(source, repo, args.status_branch)
    name = branch.branch
    files = branch.read_existing()
    if files is None:
        raise GitmeshError(
            f"the status branch {name!r} does not exist in {source.display}: no pass "
            "has committed to it yet, or --status-branch names another branch"
        )
    rows = reports.read_status(files)
    for row in rows:
        row["outOfSync"] = row["lastAppliedRevision"] != snapshot.commit
    known = {r["remote"] for r in rows}
    rows += [
        {"remote": n, "state": "NotReconciled", "outOfSync": True, "lastAppliedRevision": ""}
        for n in sorted(set(repo.remotes) - known)
    ]
    missing = [n for n in args.remotes if n not in {r["remote"] for r in rows}]
    if args.remotes:  # as kubectl get NAME...: those asked for, then an error for the rest
        rows = [r for r in rows if r["remote"] in args.remotes]
    report = {"revision": snapshot.commit, "remotes": rows}
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "yaml":
        print(yaml.safe_dump(report, sort_keys=False), end="")
    elif rows:
        status_table(rows, snapshot.commit, wide=args.format == "wide")
    for n in missing:
        where = "neither in the repository nor on the status branch"
        print(f"gitmesh status: remote {n!r} is {where}", file=sys.stderr)
    if missing:
        return 1
    healthy = all(r["state"] == "Available" and not r["outOfSync"] for r in rows)
    return 2 if args.exit_code and not healthy else 0


def cmd_join(args: argparse.Namespace) -> int:
    """Give gitmesh its own, least-privilege access to a remote (gitmesh.credentials.join)."""
    import datetime

    from gitmesh import kubeconfigs
    from gitmesh.cluster import Cluster
    from gitmesh.credentials import join

    path: Path = args.remote_kubeconfig
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise GitmeshError(f"--remote-kubeconfig {path}: {e.strerror or e}") from None
    config = kubeconfigs.parse(text, where=str(path))
    if args.remote_context:
        if args.remote_context not in {c.get("name") for c in config.get("contexts") or []}:
            raise GitmeshError(
                f'--remote-context: context "{args.remote_context}" does not exist in {path}'
            )
        config["current-context"] = args.remote_context
    cluster, _ = kubeconfigs.current(config)
    remote = Cluster(args.name, config, timeout=args.request_timeout)
    central = central_cluster(args)
    if remote.server == central.server:
        raise GitmeshError(
            f"{args.name}: the remote's server is the central cluster's ({central.server})"
        )
    with remote, central:
        # The same cluster under another address (localhost, 127.1, a DNS name) too.
        mine = central.identity()
        if mine is not None and remote.identity() == mine:
            raise GitmeshError(
                f"{args.name}: the remote at {remote.server} is the central cluster (its "
                "kube-system namespace is central's); refusing to join central to itself"
            )
        done = join.join(
            args.name,
            remote,
            cluster,
            central,
            args.namespace,
            istio_namespace=args.istio_namespace,
            lifetime=datetime.timedelta(seconds=args.token_ttl),
            dry_run=args.dry_run,
        )
    for line in done:
        print(line)
    return 0
