"""`gitmesh localkube`: serve emulated clusters until SIGTERM/SIGINT, for kubectl and demos."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from gitmesh.localkube.server import Server


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `localkube` sub-command."""
    p = sub.add_parser("localkube", help="run the local Kubernetes API server emulator")
    p.add_argument(
        "--kubeconfig",
        required=True,
        type=Path,
        help="write a kubeconfig here, with a context per cluster",
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
        "--simulate-workloads",
        action="store_true",
        help="Deployments report their replicas ready shortly after each write",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT."""
    names = [n.strip() for n in args.clusters.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        print("gitmesh localkube: --clusters needs distinct, non-empty names", file=sys.stderr)
        return 2
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    with Server(clusters=names, port=args.port, tls=args.tls, access_log=args.access_log) as server:
        if args.simulate_workloads:
            for name in names:
                server.simulate_workloads(name)
        server.write_kubeconfig(args.kubeconfig)
        print(
            f"localkube serving {', '.join(names)} on 127.0.0.1:{server.port}; "
            f"kubeconfig: {args.kubeconfig}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    return 0
