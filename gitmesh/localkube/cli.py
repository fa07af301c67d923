"""`gitmesh localkube`: serve emulated clusters until SIGTERM/SIGINT, for kubectl and demos.

Its flags are declared in gitmesh.cli."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from gitmesh.localkube.server import Server


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
