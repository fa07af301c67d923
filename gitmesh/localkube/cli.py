"""`gitmesh localkube`: serve local clusters until SIGTERM/SIGINT, for kubectl and demos —
the emulator (`--backend localkube`, the default) or real kube-apiservers
(`--backend kube-apiserver`, binaries from `$KUBEBUILDER_ASSETS`). Same kubeconfig, same
context names, same `serving` line, same access log lines.

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
    unknown = {c for c, _ in args.latency if c is not None} - set(names)
    if unknown:
        print(f"gitmesh localkube: --latency names no cluster {sorted(unknown)}", file=sys.stderr)
        return 2
    if args.aggregator_routing and args.backend != "kube-apiserver":
        print(
            "gitmesh localkube: --aggregator-routing needs --backend kube-apiserver",
            file=sys.stderr,
        )
        return 2
    if args.backend == "kube-apiserver":
        if args.latency:
            print("gitmesh localkube: --latency needs the emulator backend", file=sys.stderr)
            return 2
        return _run_real(args, names, stop)
    with Server(clusters=names, port=args.port, tls=args.tls, access_log=args.access_log) as server:
        if args.simulate_workloads:
            for name in names:
                server.simulate_workloads(name)
        named = {c: s for c, s in args.latency if c is not None}
        everywhere = [s for c, s in args.latency if c is None]
        for name in names:
            seconds = named.get(name, everywhere[-1] if everywhere and name != names[0] else 0)
            if seconds:
                server.set_latency(name, seconds)
        server.write_kubeconfig(args.kubeconfig)
        print(
            f"localkube serving {', '.join(names)} on 127.0.0.1:{server.port}; "
            f"kubeconfig: {args.kubeconfig}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    return 0


def _run_real(args: argparse.Namespace, names: list[str], stop: threading.Event) -> int:
    from gitmesh.localkube import netns  # noqa: PLC0415 - only when chosen
    from gitmesh.localkube.apiserver import KubeAPIServer  # noqa: PLC0415

    if args.simulate_workloads and not (netns.isolated() or netns.confined()):
        print(
            "gitmesh localkube: --simulate-workloads with --backend kube-apiserver runs only "
            "in a network namespace of its own (a Ready pod's Service routes webhook calls "
            "off the machine): run it, and kubectl, under `unshare -n` as root",
            file=sys.stderr,
        )
        return 2
    with KubeAPIServer(
        clusters=names, access_log=args.access_log, aggregator_routing=args.aggregator_routing
    ) as server:
        if args.simulate_workloads:
            for name in names:
                server.simulate_workloads(name)
        server.write_kubeconfig(args.kubeconfig)
        ports = ", ".join(f"{n}=127.0.0.1:{c.port}" for n, c in server.clusters.items())
        print(
            f"localkube serving {', '.join(names)} on {ports} (kube-apiserver); "
            f"kubeconfig: {args.kubeconfig}",
            flush=True,
        )
        server.follow_access_log(stop)
    return 0
