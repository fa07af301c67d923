"""`gitmesh run` for the integration tests: as a process (`Proc`, with its log and HTTP
port) and in-process (`started_runner`), and a polling helper."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gitmesh.cluster import Cluster
from gitmesh.localkube.apiserver import free_port
from gitmesh.run.runner import Runner
from gitmesh.settings import RunSettings, Settings
from gitmesh.source import Source
from gitmesh.source.auth import Auth
from tests.integration.conftest import World


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


class Proc:
    """A `gitmesh run` process with its log file and HTTP port."""

    def __init__(self, world: World, name: str, *extra: str) -> None:
        self.port = free_port()
        self.probe_port = free_port()
        self.log = world.tmp / f"{name}.log"
        self.identity = name
        env = {**os.environ, "GITMESH_HOOK_SECRET": "s3cret-hook"}
        args = [
            sys.executable,
            "-m",
            "gitmesh",
            "run",
            *world.args,
            "--cache-dir",
            str(world.tmp / f"cache-{name}"),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--probe-listen",
            f"127.0.0.1:{self.probe_port}",
            "--identity",
            name,
            "--lease-duration",
            "3",
            "--retry-period",
            "0.3",
            "--webhook-secret-env",
            "GITMESH_HOOK_SECRET",
            *extra,
        ]
        self.handle = self.log.open("w")
        self.proc = subprocess.Popen(args, stdout=self.handle, stderr=subprocess.STDOUT, env=env)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def said(self, msg: str) -> bool:
        return any(line.get("msg", "").startswith(msg) for line in self.lines())

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.handle.close()
        return code


@contextlib.contextmanager
def started_runner(
    world: World, cache: Path, *, central: Cluster | None = None, **run: Any
) -> Iterator[Runner]:
    """A Runner in this process, started, leading, and past its first pass; shut down
    afterwards."""
    settings = RunSettings(
        **{"interval": 3600, "resync": 3600, "listen": ("127.0.0.1", 0), "retry_period": 0.2, **run}
    )
    runner = Runner(
        Source(world.repo.url, cache_dir=cache, auth=Auth()),
        central or Cluster("central", world.server.kubeconfig("central")),
        settings=Settings(),
        run=settings,
    )
    runner.start()
    try:
        wait_for(runner.ready.is_set, what="the first pass")
        yield runner
    finally:
        runner.shutdown()
