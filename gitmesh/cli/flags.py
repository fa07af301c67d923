"""Flags and environment, read here and only here: the parser that guesses no flag, the
value types (durations, sizes, names), the flag groups the commands share, and the
settings, source and central cluster they describe."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from gitmesh.errors import GitmeshError
from gitmesh.settings import DEFAULT_CONCURRENCY, Settings

if TYPE_CHECKING:
    from gitmesh.cluster import Cluster
    from gitmesh.source import Source


Command = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """Usage errors are one line (and exit 2), as kubectl's are; --help has the usage. No
    flag is guessed from a prefix (argparse's default): `plan --kubeconfig F` was taken
    as --kubeconfig-dir and ran against whatever $KUBECONFIG named."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


T = TypeVar("T")


class FromEnv(str):
    """A flag's value taken from its GITMESH_* variable: a bad one is named by the variable
    (the user never typed the flag)."""

    variable: str

    def __new__(cls, value: str, variable: str) -> FromEnv:
        out = super().__new__(cls, value)
        out.variable = variable
        return out


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"GITMESH_{name}")
    return default if value is None else FromEnv(value, f"GITMESH_{name}")


def _says_where(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type whose error names the variable a value came from, if it did."""

    @functools.wraps(parse)
    def checked(text: str) -> T:
        try:
            return parse(text)
        except argparse.ArgumentTypeError as e:
            if isinstance(text, FromEnv):
                raise argparse.ArgumentTypeError(f"from ${text.variable}: {e}") from None
            raise

    return checked


def _default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "gitmesh")


def add_source_flags(p: argparse.ArgumentParser) -> None:
    """Flags that say where the mesh repository is and how to reach it."""
    g = p.add_argument_group("git source (each flag also from GITMESH_<FLAG>)")
    g.add_argument(
        "--repo",
        default=env("REPO"),
        required=env("REPO") is None,
        help="mesh repository: https, ssh, file URL or local path (or $GITMESH_REPO)",
    )
    g.add_argument(
        "--revision",
        default=env("REVISION", "main"),
        help="branch, tag or commit to reconcile (default: main)",
    )
    g.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(env("CACHE_DIR") or _default_cache()),
        help="where gitmesh keeps its clone (default: ~/.cache/gitmesh)",
    )
    g.add_argument(
        "--git-token-env",
        default=env("GIT_TOKEN_ENV", "GITMESH_GIT_TOKEN"),
        help="name of the environment variable holding an HTTPS token",
    )
    g.add_argument(
        "--git-token-file",
        type=Path,
        default=env("GIT_TOKEN_FILE"),
        help="file holding an HTTPS token",
    )
    g.add_argument(
        "--ssh-key", type=Path, default=env("SSH_KEY"), help="private key for ssh:// repositories"
    )
    g.add_argument(
        "--known-hosts",
        type=Path,
        default=env("KNOWN_HOSTS"),
        help="known_hosts file for ssh:// repositories; host keys are checked strictly",
    )
    g.add_argument(
        "--insecure-ignore-host-key",
        action="store_true",
        default=env("INSECURE_IGNORE_HOST_KEY", "") in ("1", "true"),
        help="do not check SSH host keys (not recommended)",
    )
    g.add_argument(
        "--status-branch",
        default=env("STATUS_BRANCH"),
        help="status branch (default: mesh.yaml's statusBranch)",
    )


def make_source(args: argparse.Namespace) -> Source:
    """The git source the flags describe."""
    from gitmesh.source import Source
    from gitmesh.source.auth import Auth

    auth = Auth.from_settings(
        token_env=args.git_token_env,
        token_file=args.git_token_file,
        ssh_key=args.ssh_key,
        known_hosts=args.known_hosts,
        insecure_ignore_host_key=args.insecure_ignore_host_key,
    )
    return Source(args.repo, revision=args.revision, cache_dir=args.cache_dir / "repos", auth=auth)


def duration_arg(*, minimum: float) -> Callable[[str], float]:
    """An argparse type for durations (30s, 5m, or seconds)."""
    from gitmesh.cli import durations

    def parse(text: str) -> float:
        try:
            return durations.parse(text, minimum=minimum)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return _says_where(parse)


@_says_where
def size_arg(text: str) -> int:
    """An argparse type for a byte size as a Kubernetes quantity (16Mi, 1G, 65536)."""
    from gitmesh import quantity

    try:
        value = quantity.parse(text)[0]
    except quantity.QuantityError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value < 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: a size of at least 1Ki")
    return int(value)


def one_of(*choices: str) -> Callable[[str], str]:
    """An argparse type for a fixed set of words. Unlike `choices`, it also checks a
    default taken from a GITMESH_* variable (argparse converts string defaults by `type`)."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    setattr(parse, "choices", choices)  # noqa: B010 - for completion (gitmesh.cli.completion)
    return _says_where(parse)


def latency_arg(text: str) -> tuple[str | None, float]:
    """An argparse type for `[CLUSTER=]DURATION`."""
    from gitmesh.cli import durations

    cluster, _, duration = text.rpartition("=")
    try:
        return cluster or None, durations.parse(duration, minimum=0.0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@_says_where
def positive_int(text: str) -> int:
    """An argparse type for counts of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


@_says_where
def listen_arg(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host or "0.0.0.0", int(port)  # noqa: S104 - metrics are served to the cluster


def remote_name_arg(text: str) -> str:
    from gitmesh import specs

    try:
        return specs.dns_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """Flags that say how to reach the clusters and how a pass behaves."""
    g = p.add_argument_group("clusters (each flag also from GITMESH_<FLAG>)")
    g.add_argument(
        "--central-kubeconfig",
        "--kubeconfig",
        type=Path,
        default=env("CENTRAL_KUBECONFIG"),
        help="kubeconfig of the central cluster (default: as kubectl finds one: $KUBECONFIG, "
        "~/.kube/config, then in-cluster config)",
    )
    g.add_argument(
        "--central-context",
        "--context",
        default=env("CENTRAL_CONTEXT"),
        help="context of the central kubeconfig (default: its current context)",
    )
    g.add_argument(
        "--kubeconfig-dir",
        type=Path,
        default=env("KUBECONFIG_DIR"),
        help="directory with a kubeconfig file per remote, named after it "
        "(checked before the central Secrets)",
    )
    g.add_argument(
        "--namespace",
        default=env("NAMESPACE"),
        help="central namespace of the remotes' kubeconfig Secrets "
        "(default: mesh.yaml's namespace)",
    )
    _pass_flags(g)
    _log_flags(g)


def _pass_flags(g: argparse._ArgumentGroup) -> None:
    """How a pass behaves: its parallelism, time and size limits, what it may do."""
    g.add_argument(
        "--concurrency",
        type=positive_int,
        default=env("CONCURRENCY") or str(DEFAULT_CONCURRENCY),
        help="remotes reconciled in parallel, each with its reads at once (default: "
        f"{DEFAULT_CONCURRENCY}, "
        "for remotes a WAN away: the work is in waiting)",
    )
    g.add_argument(
        "--request-timeout",
        type=duration_arg(minimum=0.1),
        default=env("REQUEST_TIMEOUT") or "30s",
        metavar="DURATION",
        help="limit of every Kubernetes request, as kubectl's flag: 30s, 1m (default: 30s)",
    )
    g.add_argument(
        "--max-response-size",
        type=size_arg,
        default=env("MAX_RESPONSE_SIZE") or "16Mi",
        metavar="SIZE",
        help="largest answer read from an API server, as a quantity: 16Mi, 64Mi; past it "
        "that remote fails (default: 16Mi)",
    )
    g.add_argument(
        "--remote-timeout",
        type=duration_arg(minimum=1.0),
        default=env("REMOTE_TIMEOUT") or "5m",
        metavar="DURATION",
        help="limit of all of one remote's work in a pass; past it the remote is "
        "ReconcileFailed and the others go on (default: 5m)",
    )
    g.add_argument(
        "--health-timeout",
        type=duration_arg(minimum=0.0),
        default=env("HEALTH_TIMEOUT") or "5m",
        metavar="DURATION",
        help="how long a remote whose Deployments have not rolled out stays Progressing "
        "before it is Degraded (default: 5m)",
    )
    g.add_argument(
        "--allow-exec",
        action="store_true",
        default=env("ALLOW_EXEC", "") in ("1", "true"),
        help="allow exec credential plugins in remote kubeconfigs",
    )
    g.add_argument(
        "--allow-mass-prune",
        action="store_true",
        default=env("ALLOW_MASS_PRUNE", "") in ("1", "true"),
        help="prune however many remotes a revision removes (otherwise more than mesh.yaml's "
        "massPruneThreshold, or all of them, is refused)",
    )


def _log_flags(g: argparse._ArgumentGroup) -> None:
    """How gitmesh logs."""
    g.add_argument(
        "--log-format",
        type=one_of("json", "text"),
        default=env("LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json"),
        metavar="{json,text}",
        help="log lines as JSON objects or text (default: text on a terminal, else JSON)",
    )
    g.add_argument(
        "--log-level",
        type=one_of("debug", "info", "warning", "error"),
        default=env("LOG_LEVEL", "info"),
        metavar="{debug,info,warning,error}",
        help="the least severe lines logged (default: info)",
    )


def add_lease_flags(g: argparse._ArgumentGroup) -> None:
    """The Lease `gitmesh run` and `reconcile --once` hold while they apply."""
    g.add_argument(
        "--identity",
        default=env("IDENTITY"),
        help="leader election identity (default: hostname-pid)",
    )
    g.add_argument(
        "--lease-name",
        default=env("LEASE_NAME", "gitmesh"),
        help="name of the Lease on central (default: gitmesh)",
    )
    g.add_argument(
        "--lease-namespace",
        default=env("LEASE_NAMESPACE"),
        help="namespace of the Lease (default: the mesh namespace)",
    )
    g.add_argument(
        "--lease-duration",
        type=duration_arg(minimum=1.0),
        default=env("LEASE_DURATION") or "15s",
        metavar="DURATION",
        help="how long a holder that stops renewing keeps the Lease (default: 15s)",
    )
    g.add_argument(
        "--retry-period",
        type=duration_arg(minimum=0.1),
        default=env("RETRY_PERIOD") or "2s",
        metavar="DURATION",
        help="how often the Lease is renewed or tried for (default: 2s)",
    )


def pass_settings(args: argparse.Namespace, **overrides: bool) -> Settings:
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
        health_timeout=args.health_timeout,
        wait=getattr(args, "wait", False),
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
        named = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        if named:  # kubectl: the files $KUBECONFIG names, none of which exists
            raise GitmeshError(
                f"no central kubeconfig: KUBECONFIG names {', '.join(named)}, and no such "
                "file exists; fix KUBECONFIG or pass --central-kubeconfig"
            )
        raise GitmeshError(
            "no central kubeconfig: pass --central-kubeconfig, set KUBECONFIG, create "
            "~/.kube/config, or run inside the cluster"
        )
    return None


def central_cluster(args: argparse.Namespace) -> Cluster:
    from gitmesh.cluster import Cluster

    return Cluster(
        "central",
        central_kubeconfig(args.central_kubeconfig),
        context=args.central_context,
        timeout=args.request_timeout,
    )
