"""The argument parser: one function per sub-command adds its flags."""

from __future__ import annotations

import argparse
import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING

from gitmesh.cli.commands import (
    cmd_join,
    cmd_plan,
    cmd_reconcile,
    cmd_run,
    cmd_schema,
    cmd_status,
    cmd_validate,
)
from gitmesh.cli.examples import EXAMPLES
from gitmesh.cli.flags import (
    Parser,
    add_cluster_flags,
    add_lease_flags,
    add_source_flags,
    duration_arg,
    env,
    latency_arg,
    listen_arg,
    positive_int,
    remote_name_arg,
)

# The distribution on the package index ("gitmesh" there is an unrelated 2016 project);
# the package and the command are `gitmesh`.
DISTRIBUTION = "gitmesh-istio"

DESCRIPTION = (
    "The `gitmesh` command line: flags and environment become settings here, and only here."
)
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[Parser]


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = Parser(prog="gitmesh", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gitmesh {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_validate, _add_schema, _add_plan, _add_reconcile, _add_run, _add_status):
        add(sub)
    _add_join(sub)
    _add_localkube(sub)
    _add_demo(sub)
    _add_completion(sub, parser)
    for name, command in sub.choices.items():
        command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _add_validate(sub: Subparsers) -> None:
    """`gitmesh validate`: the pull-request check."""
    p = sub.add_parser("validate", help="check a mesh repository (for pull requests)")
    p.add_argument(
        "path",
        nargs="?",
        default=".",
        help="the mesh repository directory, or one inside it (default: .)",
    )
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=["text", "github", "json", "yaml"],
        default="text",
        help="output format (default: text)",
    )
    p.set_defaults(func=cmd_validate)


def _add_schema(sub: Subparsers) -> None:
    """`gitmesh schema`: the spec files' JSON Schemas."""
    p = sub.add_parser("schema", help="write the JSON Schemas of the spec files")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory to write into (made if missing), e.g. schemas in your mesh repository",
    )
    p.set_defaults(func=cmd_schema)


def _add_plan(sub: Subparsers) -> None:
    """`gitmesh plan`: what a pass would change."""
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
        "--exit-code",
        action="store_true",
        help="exit 1 when there are changes, as kubectl diff (0: none, 2: error)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="no cluster: what each remote would have if it were new, with what a pass "
        "observes on central shown as placeholders (for PR jobs without credentials)",
    )
    p.set_defaults(func=cmd_plan)


def _add_reconcile(sub: Subparsers) -> None:
    """`gitmesh reconcile --once`: one pass."""
    p = sub.add_parser("reconcile", help="reconcile every remote once and commit the status")
    add_source_flags(p)
    add_cluster_flags(p)
    p.add_argument(
        "--once",
        action="store_true",
        help="one pass, then exit (0: every remote applied; with --wait, all Available)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait, up to --health-timeout, for each remote's Deployments to roll out "
        "(as `kubectl rollout status`); a remote still rolling out then is Degraded",
    )
    p.add_argument_group("the pass (each flag also from GITMESH_<FLAG>)").add_argument(
        "--workers",
        type=positive_int,
        default=env("WORKERS") or "1",
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
        type=remote_name_arg,
        help="let go of a remote whose spec left the repository without pruning it (its "
        "cluster is gone): drop it from the inventory and the status branch; repeatable",
    )
    add_lease_flags(
        p.add_argument_group("the Lease held while applying (each flag also from GITMESH_<FLAG>)")
    )
    p.set_defaults(func=cmd_reconcile)


def _add_run(sub: Subparsers) -> None:
    """`gitmesh run`: the poller."""
    p = sub.add_parser("run", help="poll the repository, follow central pods, reconcile")
    add_source_flags(p)
    add_cluster_flags(p)
    g = p.add_argument_group("poller (each flag also from GITMESH_<FLAG>)")
    g.add_argument(
        "--interval",
        type=duration_arg(minimum=1.0),
        default=env("INTERVAL") or "60s",
        metavar="DURATION",
        help="time between polls of the repository: 30s, 5m... (default: 60s, at least 1s)",
    )
    g.add_argument(
        "--resync",
        type=duration_arg(minimum=10.0),
        default=env("RESYNC") or "10m",
        metavar="DURATION",
        help="time between full passes that correct drift (default: 10m, at least 10s)",
    )
    g.add_argument(
        "--listen",
        type=listen_arg,
        default=env("LISTEN") or "0.0.0.0:8080",
        help="HOST:PORT for /metrics, /healthz, /readyz (default: 0.0.0.0:8080)",
    )
    g.add_argument(
        "--probe-listen",
        type=listen_arg,
        default=env("PROBE_LISTEN") or "0.0.0.0:8081",
        help="HOST:PORT serving only /healthz and /readyz, for the kubelet's probes: clients "
        "of the metrics port cannot starve them (default: 0.0.0.0:8081)",
    )
    add_lease_flags(g)
    g.add_argument(
        "--shard",
        action="store_true",
        default=env("SHARD", "") in ("1", "true"),
        help="share the remotes with the other replicas of --lease-name, one Lease each, "
        "instead of electing one replica to apply to all",
    )
    g.add_argument(
        "--grace-period",
        type=duration_arg(minimum=0.0),
        default=env("GRACE_PERIOD") or "20s",
        metavar="DURATION",
        help="on SIGTERM, how long to wait for the pass in flight before exiting anyway "
        "(default: 20s, inside Kubernetes' 30s termination grace period)",
    )
    g.add_argument(
        "--webhook-secret-env",
        default=env("WEBHOOK_SECRET_ENV"),
        help="environment variable holding the HMAC secret that enables POST /hooks/git",
    )
    p.set_defaults(func=cmd_run)


def _add_status(sub: Subparsers) -> None:
    """`gitmesh status`: the remotes' state from the status branch."""
    p = sub.add_parser("status", help="show the remotes' state from the status branch")
    p.add_argument(
        "remotes",
        nargs="*",
        metavar="REMOTE",
        type=remote_name_arg,
        help="only these remotes (default: all)",
    )
    add_source_flags(p)
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=["text", "wide", "json", "yaml"],
        default="text",
        help="output format (default: text)",
    )
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 2 when a remote is not Available or not in sync with the source revision",
    )
    p.set_defaults(func=cmd_status)


def _add_completion(sub: Subparsers, parser: argparse.ArgumentParser) -> None:
    """`gitmesh completion SHELL`: a completion script generated from `parser`."""
    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete for")

    def completion(args: argparse.Namespace) -> int:
        from gitmesh.cli import completion

        print(completion.script(parser, args.shell), end="")
        return 0

    p.set_defaults(func=completion)


def _add_join(sub: Subparsers) -> None:
    p = sub.add_parser(
        "join",
        help="give gitmesh its own access to a remote: a ServiceAccount, least-privilege "
        "RBAC, a renewed token in the kubeconfig Secret on central",
    )
    p.add_argument("name", type=remote_name_arg, help="the remote's name (remotes/NAME.yaml)")
    # --kubeconfig and --context mean the central cluster's, as on every other command.
    p.add_argument(
        "--remote-kubeconfig",
        type=Path,
        required=True,
        help="an admin kubeconfig of the remote, used once and never stored",
    )
    p.add_argument("--remote-context", help="the context of --remote-kubeconfig")
    p.add_argument(
        "--central-kubeconfig",
        "--kubeconfig",
        type=Path,
        default=env("CENTRAL_KUBECONFIG"),
        help="kubeconfig of the central cluster (default: as kubectl finds one)",
    )
    p.add_argument(
        "--central-context",
        "--context",
        default=env("CENTRAL_CONTEXT"),
        help="context of the central kubeconfig (default: its current context)",
    )
    p.add_argument(
        "--namespace",
        default=env("NAMESPACE") or "istio-system",
        help="central namespace of the kubeconfig Secret (default: istio-system)",
    )
    p.add_argument(
        "--istio-namespace",
        type=remote_name_arg,  # a namespace's name is a DNS label too
        default="istio-system",
        help="the remote's Istio namespace, where gitmesh's Role lets it write (default: "
        "istio-system; a remote file's metadata.namespace must name it)",
    )
    p.add_argument(
        "--token-ttl",
        type=duration_arg(minimum=600.0),
        default="720h",
        metavar="DURATION",
        help="lifetime of gitmesh's token; reconcile renews it when a third is left "
        "(default: 720h, at least 10m)",
    )
    p.add_argument(
        "--request-timeout",
        type=duration_arg(minimum=0.1),
        default=env("REQUEST_TIMEOUT") or "30s",
        metavar="DURATION",
        help="limit of every Kubernetes request, as kubectl's flag (default: 30s)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="send every write as a server-side dry run"
    )
    p.set_defaults(func=cmd_join)


def _add_localkube(sub: Subparsers) -> None:
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
        default=env("BACKEND", "localkube"),
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
        type=latency_arg,
        metavar="[CLUSTER=]DURATION",
        help="delay every request to a cluster (repeatable): `50ms` for every cluster but the "
        "first (the WAN between central and its remotes), or `CLUSTER=50ms` (emulator only)",
    )
    p.add_argument(
        "--simulate-workloads",
        action="store_true",
        help="Deployments roll out shortly after each write (the emulator fills in their "
        "status; kube-apiserver runs its controllers with a simulated kubelet, only inside "
        "a network namespace of its own)",
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


def _add_demo(sub: Subparsers) -> None:
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
