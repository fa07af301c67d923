"""The cluster side of the benchmarks, in a process of its own: a central cluster running
simulated Istio and N remotes, an access log, and kubeconfigs in a directory; on the
emulator (default) or on real kube-apiservers (`--backend kube-apiserver`, one per
cluster, binaries from $KUBEBUILDER_ASSETS). Serves until SIGTERM.

    python -m tests.bench.emulator --remotes 100 --dir /tmp/bench
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from gitmesh.localkube import Server
from gitmesh.localkube.apiserver import KubeAPIServer
from gitmesh.testing import sandbox


def remote_names(n: int, prefix: str = "remote") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--remotes", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--prefix", default="remote")
    p.add_argument("--pods", type=int, default=2, help="pods per central Istio service")
    p.add_argument("--backend", choices=["localkube", "kube-apiserver"], default="localkube")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per remote request")
    args = p.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    remotes = remote_names(args.remotes, args.prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = args.dir / "access.jsonl"
    clusters = ["central", *remotes]
    server = (
        Server(clusters=clusters, access_log=log, history=200_000)
        if args.backend == "localkube"
        else KubeAPIServer(clusters=clusters, access_log=log, controllers=False)
    )
    with server:
        sandbox.start(server, remotes=remotes, pods_per_service=args.pods)
        if args.latency:
            if not isinstance(server, Server):
                raise SystemExit("--latency needs the localkube backend")
            for name in remotes:  # after seeding: the WAN is between gitmesh and remotes
                server.set_latency(name, args.latency)
        server.reset_counts()
        server.write_kubeconfig(args.dir / "central.kubeconfig", "central")
        server.write_kubeconfig(args.dir / "all.kubeconfig")
        print("ready", flush=True)
        if isinstance(server, KubeAPIServer):
            server.follow_access_log(stop, interval=0.1)
        else:
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
