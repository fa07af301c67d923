"""The `gitmesh` command line: flags and environment become settings here, and only here.

Exit codes scripts can rely on: 0 success, 1 a failure the command found (invalid specs,
a remote not Available, an error), 2 a usage error (and, for `plan --exit-code`, changes
pending). Each sub-command lives in a small function that builds its collaborators and
calls into the library.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gitmesh.errors import Forbidden, GitmeshError, Problem
from gitmesh.settings import Settings
from gitmesh.specs import meshrepo, schema
from gitmesh.status.results import PassResult

if TYPE_CHECKING:
    from gitmesh.cluster import Cluster
    from gitmesh.source import Source

# Sub-commands import what they need when they run, so that `gitmesh validate` (a
# pull-request check) does not pay for loading the Kubernetes client.

Command = Callable[[argparse.Namespace], int]
# The distribution on the package index ("gitmesh" there is an unrelated 2016 project);
# the package and the command are `gitmesh`.
DISTRIBUTION = "gitmesh-istio"


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line (and exit 2), as kubectl's are; --help has the usage. No
    flag is guessed from a prefix (argparse's default): `plan --kubeconfig F` was taken
    as --kubeconfig-dir and ran against whatever $KUBECONFIG named."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"GITMESH_{name}", default)


def _default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "gitmesh")


def add_source_flags(p: argparse.ArgumentParser) -> None:
    """Flags that say where the mesh repository is and how to reach it."""
    g = p.add_argument_group("git source (each flag also from GITMESH_<FLAG>)")
    g.add_argument(
        "--repo",
        default=_env("REPO"),
        required=_env("REPO") is None,
        help="mesh repository: https, ssh, file URL or local path",
    )
    g.add_argument(
        "--revision",
        default=_env("REVISION", "main"),
        help="branch, tag or commit to reconcile (default: main)",
    )
    g.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(_env("CACHE_DIR") or _default_cache()),
        help="where gitmesh keeps its clone (default: ~/.cache/gitmesh)",
    )
    g.add_argument(
        "--git-token-env",
        default=_env("GIT_TOKEN_ENV", "GITMESH_GIT_TOKEN"),
        help="name of the environment variable holding an HTTPS token",
    )
    g.add_argument(
        "--git-token-file",
        type=Path,
        default=_env("GIT_TOKEN_FILE"),
        help="file holding an HTTPS token",
    )
    g.add_argument("--ssh-key", type=Path, default=_env("SSH_KEY"))
    g.add_argument("--known-hosts", type=Path, default=_env("KNOWN_HOSTS"))
    g.add_argument(
        "--insecure-ignore-host-key",
        action="store_true",
        default=_env("INSECURE_IGNORE_HOST_KEY", "") in ("1", "true"),
        help="do not check SSH host keys (not recommended)",
    )
    g.add_argument(
        "--status-branch",
        default=_env("STATUS_BRANCH"),
        help="status branch (default: mesh.yaml's statusBranch)",
    )


def make_source(args: argparse.Namespace) -> Source:
    """The git source the flags describe."""
    from gitmesh.source import Source
    from gitmesh.source.gitrepo import Auth

    auth = Auth.from_settings(
        token_env=args.git_token_env,
        token_file=args.git_token_file,
        ssh_key=args.ssh_key,
        known_hosts=args.known_hosts,
        insecure_ignore_host_key=args.insecure_ignore_host_key,
    )
    return Source(args.repo, revision=args.revision, cache_dir=args.cache_dir / "repos", auth=auth)


def _escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (`escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value, escaped as GitHub's toolkit does
    (`escapeProperty`): a file name can hold none of these unescaped."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _repo_prefix(root: Path) -> str:
    """Where `root` is inside the git work tree that holds it ('' at the top, or outside
    one), so that annotations name files as the diff does in a monorepo."""
    here = root.resolve()
    for top in (here, *here.parents):
        if (top / ".git").exists():
            rel = here.relative_to(top).as_posix()
            return "" if rel == "." else rel + "/"
    return ""


def _print_problems(problems: Sequence[Problem], fmt: str, *, prefix: str = "") -> None:
    if fmt == "json":
        rows = [
            {"file": p.file, "line": p.line, "col": p.col, "field": p.field, "message": p.message}
            for p in problems
        ]
        print(json.dumps({"valid": not problems, "problems": rows}, indent=2))
        return
    for p in problems:
        if fmt == "github":
            file, title = _escape_property(prefix + p.file), _escape_property(p.field or "gitmesh")
            message = _escape_data(p.message)
            print(f"::error file={file},line={p.line},col={p.col},title={title}::{message}")
        else:
            print(p)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a mesh repository directory."""
    root = Path(args.path)
    if not root.is_dir():
        print(f"gitmesh validate: {root}: not a directory", file=sys.stderr)
        return 2
    files, problems = meshrepo.read_dir(root)
    repo = meshrepo.parse(files, refused=problems)
    problems = list(repo.problems)
    _print_problems(problems, args.format, prefix=_repo_prefix(root))
    if repo.mesh is not None and not repo.remotes and not repo.invalid:
        print(
            f"{root}: warning: no remote files: a pass would remove every remote gitmesh "
            "applied to, and refuses to without --allow-mass-prune",
            file=sys.stderr,
        )
    if args.format == "text":
        state = "invalid" if problems else "valid"
        print(
            f"{state}: {len(repo.remotes)} remote(s) valid, {len(repo.invalid)} invalid, "
            f"{len(problems)} problem(s)",
            file=sys.stderr,
        )
    return 1 if problems else 0


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


def _duration(*, minimum: float) -> Callable[[str], float]:
    """An argparse type for durations (30s, 5m, or seconds)."""
    from gitmesh.cli import durations

    def parse(text: str) -> float:
        try:
            return durations.parse(text, minimum=minimum)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _size(text: str) -> int:
    """An argparse type for a byte size as a Kubernetes quantity (16Mi, 1G, 65536)."""
    from gitmesh import quantity

    try:
        value = quantity.parse(text)[0]
    except quantity.QuantityError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value < 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: a size of at least 1Ki")
    return int(value)


def _one_of(*choices: str) -> Callable[[str], str]:
    """An argparse type for a fixed set of words. Unlike `choices`, it also checks a
    default taken from a GITMESH_* variable (argparse converts string defaults by `type`)."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _latency(text: str) -> tuple[str | None, float]:
    """An argparse type for `[CLUSTER=]DURATION`."""
    from gitmesh.cli import durations

    cluster, _, duration = text.rpartition("=")
    try:
        return cluster or None, durations.parse(duration, minimum=0.0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    """An argparse type for counts of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """Flags that say how to reach the clusters and how a pass behaves."""
    g = p.add_argument_group("clusters (each flag also from GITMESH_<FLAG>)")
    g.add_argument(
        "--central-kubeconfig",
        type=Path,
        default=_env("CENTRAL_KUBECONFIG"),
        help="kubeconfig of the central cluster (default: as kubectl finds one: $KUBECONFIG, "
        "~/.kube/config, then in-cluster config)",
    )
    g.add_argument("--central-context", default=_env("CENTRAL_CONTEXT"))
    g.add_argument(
        "--kubeconfig-dir",
        type=Path,
        default=_env("KUBECONFIG_DIR"),
        help="directory with a kubeconfig file per remote, named after it "
        "(checked before the central Secrets)",
    )
    g.add_argument(
        "--namespace",
        default=_env("NAMESPACE"),
        help="central namespace of the remotes' kubeconfig Secrets "
        "(default: mesh.yaml's namespace)",
    )
    g.add_argument(
        "--concurrency",
        type=_positive_int,
        default=_env("CONCURRENCY") or "32",  # settings.DEFAULT_CONCURRENCY
        help="remotes reconciled in parallel, each with its reads at once (default: 32, "
        "for remotes a WAN away: the work is in waiting)",
    )
    g.add_argument(
        "--request-timeout",
        type=_duration(minimum=0.1),
        default=_env("REQUEST_TIMEOUT") or "30s",
        metavar="DURATION",
        help="limit of every Kubernetes request, as kubectl's flag: 30s, 1m (default: 30s)",
    )
    g.add_argument(
        "--max-response-size",
        type=_size,
        default=_env("MAX_RESPONSE_SIZE") or "16Mi",
        metavar="SIZE",
        help="largest answer read from an API server, as a quantity: 16Mi, 64Mi; past it "
        "that remote fails (default: 16Mi)",
    )
    g.add_argument(
        "--remote-timeout",
        type=_duration(minimum=1.0),
        default=_env("REMOTE_TIMEOUT") or "5m",
        metavar="DURATION",
        help="limit of all of one remote's work in a pass; past it the remote is "
        "ReconcileFailed and the others go on (default: 5m)",
    )
    g.add_argument(
        "--allow-exec",
        action="store_true",
        default=_env("ALLOW_EXEC", "") in ("1", "true"),
        help="allow exec credential plugins in remote kubeconfigs",
    )
    g.add_argument(
        "--allow-mass-prune",
        action="store_true",
        default=_env("ALLOW_MASS_PRUNE", "") in ("1", "true"),
        help="prune however many remotes a revision removes (otherwise more than mesh.yaml's "
        "massPruneThreshold, or all of them, is refused)",
    )
    g.add_argument(
        "--log-format",
        type=_one_of("json", "text"),
        default=_env("LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json"),
        metavar="{json,text}",
        help="log lines as JSON objects or text (default: text on a terminal, else JSON)",
    )
    g.add_argument(
        "--log-level",
        type=_one_of("debug", "info", "warning", "error"),
        default=_env("LOG_LEVEL", "info"),
        metavar="{debug,info,warning,error}",
    )


def add_lease_flags(g: argparse._ArgumentGroup) -> None:
    """The Lease `gitmesh run` and `reconcile --once` hold while they apply."""
    g.add_argument(
        "--identity",
        default=_env("IDENTITY"),
        help="leader election identity (default: hostname-pid)",
    )
    g.add_argument("--lease-name", default=_env("LEASE_NAME", "gitmesh"))
    g.add_argument(
        "--lease-namespace",
        default=_env("LEASE_NAMESPACE"),
        help="namespace of the Lease (default: the mesh namespace)",
    )
    g.add_argument(
        "--lease-duration",
        type=_duration(minimum=1.0),
        default=_env("LEASE_DURATION") or "15s",
        metavar="DURATION",
    )
    g.add_argument(
        "--retry-period",
        type=_duration(minimum=0.1),
        default=_env("RETRY_PERIOD") or "2s",
        metavar="DURATION",
    )


def _settings(args: argparse.Namespace, **overrides: bool) -> Settings:
    return Settings(
        concurrency=args.concurrency,
        allow_exec=args.allow_exec,
        allow_mass_prune=args.allow_mass_prune,
        forget=frozenset(getattr(args, "forget", ())),
        kubeconfig_dir=args.kubeconfig_dir,
        namespace=args.namespace,
        request_timeout=args.request_timeout,
        remote_timeout=args.remote_timeout,
        max_response=args.max_response_size,
        **overrides,
    )


def central_kubeconfig(explicit: Path | None) -> Path | None:
    """The central cluster's kubeconfig as kubectl finds one: the flag, else the first file
    of $KUBECONFIG, else ~/.kube/config; None means in-cluster config."""
    if explicit is not None:
        if not explicit.is_file():
            raise GitmeshError(f"--central-kubeconfig {explicit}: no such file")
        return explicit
    for raw in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if raw and Path(raw).expanduser().is_file():
            return Path(raw).expanduser()
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return default
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise GitmeshError(
            "no central kubeconfig: pass --central-kubeconfig, set KUBECONFIG, create "
            "~/.kube/config, or run inside the cluster"
        )
    return None


def _central(args: argparse.Namespace) -> Cluster:
    from gitmesh.cluster import Cluster

    return Cluster(
        "central",
        central_kubeconfig(args.central_kubeconfig),
        context=args.central_context,
        timeout=args.request_timeout,
    )


def _pass(
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
        with _central(args) as central:
            return passes.run_pass(
                repo,
                commit,
                central,
                connect=passes.default_connect,
                settings=settings,
                progress=_progress_line() if sys.stderr.isatty() else None,
            )

    done = cycle.once(make_source(args), run, branch=args.status_branch, before=before, write=write)
    return None if done is None else done[0]


def _progress_line() -> Callable[[int, int], None]:
    """`  12/1000 remotes` rewritten in place on a terminal, ended by a newline."""

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r  {done}/{total} remotes", end=end, file=sys.stderr, flush=True)

    return show


def color() -> bool:
    """Colour on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _summary(result: PassResult) -> None:
    """A short account of the pass on stdout: one line per remote, then the totals."""
    rows = []
    for name, res in sorted(result.remotes.items()):
        report = res.report
        counts = [
            sum(getattr(c, f) for c in report.components) for f in ("created", "patched", "deleted")
        ]
        done = ", ".join(
            f"{n} {w}" for n, w in zip(counts, ("created", "patched", "deleted"), strict=True) if n
        )
        if report.state in ("Removed",):
            done = f"{result.report.pruned.get(name, 0)} deleted"
        detail = report.message if report.state not in ("Available", "Removed") else done
        rows.append((name, report.state, detail or "no changes"))
    width = max((len(r[0]) for r in rows), default=0)
    for name, state, detail in rows:
        print(f"{name:<{width}}  {state:<16} {detail}")
    states: dict[str, int] = {}
    for _, state, _ in rows:
        states[state] = states.get(state, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no remotes"
    print(f"{len(rows)} remote(s): {tally}")


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what a pass would change, writing nothing."""
    from gitmesh.cli import planview

    if args.offline:
        from gitmesh import logs
        from gitmesh.reconcile import offline

        logs.setup(fmt=args.log_format, level=args.log_level)
        snapshot = make_source(args).fetch()
        result = offline.plan_repo(snapshot.parse(), snapshot.commit)
        note = offline.NOTE
    else:
        note = ""
        done = _pass(args, _settings(args, plan_only=True))
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
        return 1
    if args.exit_code and result.changes:
        return 2
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """One pass: apply, then commit the status (not with --dry-run). The pass holds the
    same Lease as `gitmesh run`: when another holder is active, it is skipped (exit 0)."""
    from gitmesh.cli import planview

    if not args.once:
        print("gitmesh reconcile: pass --once (the poller is `gitmesh run`)", file=sys.stderr)
        return 2
    settings = _settings(args, dry_run=args.dry_run)
    with contextlib.ExitStack() as held:
        result = _pass(
            args,
            settings,
            before=None if args.dry_run else lambda repo: _hold_lease(args, repo, held),
            write=not args.dry_run,
        )
        if result is None:
            return 0
        if not args.dry_run:
            _summary(result)
        else:
            print(planview.text(result, color=color()), end="")
    return 0 if result.all_available else 1


def _hold_lease(args: argparse.Namespace, repo: meshrepo.Repo, held: contextlib.ExitStack) -> bool:
    """Take the Lease for this pass (released when `held` closes); False, with a message,
    when another holder keeps it."""
    from gitmesh.run.leader import Elector

    central = held.enter_context(_central(args))
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


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host or "0.0.0.0", int(port)  # noqa: S104 - metrics are served to the cluster


def cmd_run(args: argparse.Namespace) -> int:
    """The poller: runs until SIGTERM/SIGINT, then exits 0."""
    from gitmesh import logs
    from gitmesh.run import runner

    logs.setup(fmt=args.log_format, level=args.log_level)
    secret_env = args.webhook_secret_env
    secret = os.environ.get(secret_env, "").encode() if secret_env else b""
    run_settings = runner.RunSettings(
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
        make_source(args), _central(args), settings=_settings(args), run=run_settings
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
    report = {"revision": snapshot.commit, "remotes": rows}
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "yaml":
        print(yaml.safe_dump(report, sort_keys=False), end="")
    else:
        _status_table(rows, snapshot.commit)
    healthy = all(r["state"] == "Available" and not r["outOfSync"] for r in rows)
    return 2 if args.exit_code and not healthy else 0


def _status_table(rows: list[dict[str, Any]], head: str) -> None:
    header = ("REMOTE", "STATE", "SINCE", "APPLIED", "SYNC", "ENDPOINTS")
    table = [header] + [
        (
            r["remote"],
            r["state"],
            r.get("since", ""),
            r["lastAppliedRevision"][:12] or "-",
            "OutOfSync" if r["outOfSync"] else "Synced",
            str(r.get("endpoints", "-")),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"\nsource revision {head[:12]}")
    for r in rows:
        if r.get("message") and r["state"] != "Available":
            print(f"{r['remote']}: {r['message']}")
        for warning in r.get("warnings") or ():
            print(f"{r['remote']}: warning: {warning}")


def cmd_join(args: argparse.Namespace) -> int:
    """Give gitmesh its own, least-privilege access to a remote (gitmesh.credentials.join)."""
    import datetime

    from gitmesh import kubeconfigs
    from gitmesh.cluster import Cluster
    from gitmesh.credentials import join

    path: Path = args.kubeconfig
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise GitmeshError(f"--kubeconfig {path}: {e.strerror or e}") from None
    config = kubeconfigs.parse(text, where=str(path))
    if args.context:
        if args.context not in {c.get("name") for c in config.get("contexts") or []}:
            raise GitmeshError(f"--kubeconfig {path} has no context {args.context!r}")
        config["current-context"] = args.context
    cluster, _ = kubeconfigs.current(config)
    remote = Cluster(args.name, config, timeout=args.request_timeout)
    central = _central(args)
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


def _remote_name(text: str) -> str:
    from gitmesh import specs

    try:
        return specs.dns_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_join(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "join",
        help="give gitmesh its own access to a remote: a ServiceAccount, least-privilege "
        "RBAC, a renewed token in the kubeconfig Secret on central",
    )
    p.add_argument("name", type=_remote_name, help="the remote's name (remotes/NAME.yaml)")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        required=True,
        help="an admin kubeconfig of the remote, used once and never stored",
    )
    p.add_argument("--context", help="the context of --kubeconfig (default: its current one)")
    p.add_argument(
        "--central-kubeconfig",
        type=Path,
        default=_env("CENTRAL_KUBECONFIG"),
        help="kubeconfig of the central cluster (default: as kubectl finds one)",
    )
    p.add_argument("--central-context", default=_env("CENTRAL_CONTEXT"))
    p.add_argument(
        "--namespace",
        default=_env("NAMESPACE") or "istio-system",
        help="central namespace of the kubeconfig Secret (default: istio-system)",
    )
    p.add_argument(
        "--istio-namespace",
        type=_remote_name,  # a namespace's name is a DNS label too
        default="istio-system",
        help="the remote's Istio namespace, where gitmesh's Role lets it write (default: "
        "istio-system; a remote file's metadata.namespace must name it)",
    )
    p.add_argument(
        "--token-ttl",
        type=_duration(minimum=600.0),
        default="720h",
        metavar="DURATION",
        help="lifetime of gitmesh's token; reconcile renews it when a third is left "
        "(default: 720h, at least 10m)",
    )
    p.add_argument(
        "--request-timeout",
        type=_duration(minimum=0.1),
        default=_env("REQUEST_TIMEOUT") or "30s",
        metavar="DURATION",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="send every write as a server-side dry run"
    )
    p.set_defaults(func=cmd_join)


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = _Parser(prog="gitmesh", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gitmesh {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a mesh repository (for pull requests)")
    p.add_argument("path", nargs="?", default=".", help="the mesh repository directory")
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=["text", "github", "json"],
        default="text",
        help="output format (default: text)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="write the JSON Schemas of the spec files")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory to write into (made if missing), e.g. schemas in your mesh repository",
    )
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plan", help="show what a pass would change, as JSON Patch")
    add_source_flags(p)
    add_cluster_flags(p)
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=["text", "json", "yaml", "markdown"],
        default="text",
        help="output format (default: text; markdown for a PR comment)",
    )
    p.add_argument(
        "--exit-code", action="store_true", help="exit 2 when there are changes (0: none, 1: error)"
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="no cluster: what each remote would have if it were new, with what a pass "
        "observes on central shown as placeholders (for PR jobs without credentials)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("reconcile", help="reconcile every remote once and commit the status")
    add_source_flags(p)
    add_cluster_flags(p)
    p.add_argument("--once", action="store_true", help="one pass, then exit (0: all Available)")
    p.add_argument_group("the pass (each flag also from GITMESH_<FLAG>)").add_argument(
        "--workers",
        type=_positive_int,
        default=_env("WORKERS") or "1",
        help="processes sharing the pass's remotes, for CPU-bound passes over many remotes; "
        "each costs about 100 MiB (default: 1)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="send every write as a server-side dry run; commit no status",
    )
    p.add_argument(
        "--forget",
        action="append",
        default=[],
        metavar="REMOTE",
        type=_remote_name,
        help="let go of a remote whose spec left the repository without pruning it (its "
        "cluster is gone): drop it from the inventory and the status branch; repeatable",
    )
    add_lease_flags(
        p.add_argument_group("the Lease held while applying (each flag also from GITMESH_<FLAG>)")
    )
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("run", help="poll the repository, follow central pods, reconcile")
    add_source_flags(p)
    add_cluster_flags(p)
    g = p.add_argument_group("poller (each flag also from GITMESH_<FLAG>)")
    g.add_argument(
        "--interval",
        type=_duration(minimum=1.0),
        default=_env("INTERVAL") or "60s",
        metavar="DURATION",
        help="time between polls of the repository: 30s, 5m... (default: 60s, at least 1s)",
    )
    g.add_argument(
        "--resync",
        type=_duration(minimum=10.0),
        default=_env("RESYNC") or "10m",
        metavar="DURATION",
        help="time between full passes that correct drift (default: 10m, at least 10s)",
    )
    g.add_argument(
        "--listen",
        type=_listen,
        default=_env("LISTEN") or "0.0.0.0:8080",
        help="HOST:PORT for /metrics, /healthz, /readyz (default: 0.0.0.0:8080)",
    )
    g.add_argument(
        "--probe-listen",
        type=_listen,
        default=_env("PROBE_LISTEN") or "0.0.0.0:8081",
        help="HOST:PORT serving only /healthz and /readyz, for the kubelet's probes: clients "
        "of the metrics port cannot starve them (default: 0.0.0.0:8081)",
    )
    add_lease_flags(g)
    g.add_argument(
        "--shard",
        action="store_true",
        default=_env("SHARD", "") in ("1", "true"),
        help="share the remotes with the other replicas of --lease-name, one Lease each, "
        "instead of electing one replica to apply to all",
    )
    g.add_argument(
        "--grace-period",
        type=_duration(minimum=0.0),
        default=_env("GRACE_PERIOD") or "20s",
        metavar="DURATION",
        help="on SIGTERM, how long to wait for the pass in flight before exiting anyway "
        "(default: 20s, inside Kubernetes' 30s termination grace period)",
    )
    g.add_argument(
        "--webhook-secret-env",
        default=_env("WEBHOOK_SECRET_ENV"),
        help="environment variable holding the HMAC secret that enables POST /hooks/git",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="show the remotes' state from the status branch")
    add_source_flags(p)
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=["text", "json", "yaml"],
        default="text",
        help="output format (default: text)",
    )
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 2 when a remote is not Available or not in sync with the source revision",
    )
    p.set_defaults(func=cmd_status)

    _add_join(sub)
    _add_localkube(sub)
    _add_demo(sub)

    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])

    def completion(args: argparse.Namespace) -> int:
        from gitmesh.cli import completion

        print(completion.script(parser, args.shell), end="")
        return 0

    p.set_defaults(func=completion)
    return parser


def _add_localkube(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("localkube", help="run the local Kubernetes API server emulator")
    p.add_argument(
        "--kubeconfig",
        required=True,
        type=Path,
        help="write a kubeconfig here, with a context per cluster",
    )
    p.add_argument(
        "--backend",
        choices=["localkube", "kube-apiserver"],
        default=_env("BACKEND", "localkube"),
        help="the emulator (default), or real kube-apiserver + etcd from $KUBEBUILDER_ASSETS "
        "(build them with tools/build-kube-assets.sh)",
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    p.add_argument(
        "--clusters", default="local", help="comma-separated cluster names (default: local)"
    )
    p.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a generated CA and a bearer token"
    )
    p.add_argument("--access-log", type=Path, help="append one JSON line per request here")
    p.add_argument(
        "--latency",
        action="append",
        default=[],
        type=_latency,
        metavar="[CLUSTER=]DURATION",
        help="delay every request to a cluster (repeatable): `50ms` for every cluster but the "
        "first (the WAN between central and its remotes), or `CLUSTER=50ms` (emulator only)",
    )
    p.add_argument(
        "--simulate-workloads",
        action="store_true",
        help="Deployments report their replicas ready shortly after each write",
    )
    p.add_argument(
        "--aggregator-routing",
        action="store_true",
        help="kube-apiserver only: call webhooks by Service at the Service's endpoints "
        "(--enable-aggregator-routing), so an IstiodRemote's istiod EndpointSlice is followed "
        "to the gateway IP; kube-apiserver then refuses ExternalName Services (gateway host "
        "names) for webhooks. Without it, webhooks go to ClusterIPs, which route off the "
        "machine: run it in a network namespace of its own",
    )

    def run(args: argparse.Namespace) -> int:
        from gitmesh.localkube import cli

        return cli.run(args)

    p.set_defaults(func=run)


def _add_demo(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "demo", help="run the seed's story on local clusters (no cluster or network needed)"
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the clusters up and print their kubeconfig for kubectl",
    )
    p.add_argument("--workdir", help="keep the demo's git repositories here")
    p.add_argument("--verbose", action="store_true", help="show gitmesh's log lines")
    p.add_argument(
        "--backend",
        choices=["localkube", "kube-apiserver"],
        default="localkube",
        help="the clusters: the emulator (default), or real kube-apiservers from "
        "$KUBEBUILDER_ASSETS",
    )

    def run(args: argparse.Namespace) -> int:
        from gitmesh.cli import demo

        return demo.run(args)

    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gitmesh` console script."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except GitmeshError as e:
        print(f"gitmesh {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
