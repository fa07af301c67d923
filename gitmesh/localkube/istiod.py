"""A real istiod (pilot-discovery) as the primary of a primary-remote install, for the
real-Istio tier: built from source by `tools/build-istiod.sh`, found through
`$GITMESH_ISTIOD` (the directory that script prints).

istiod runs as it does in a pod, from a working directory holding what the chart mounts:
`etc/istio/config/{mesh,meshNetworks}` (the `istio` ConfigMap) and
`var/lib/istio/inject/{config,values}` (the `istio-sidecar-injector` ConfigMap, made here
from the chart's `files/` and `values.yaml` as templates/istiod-injector-configmap.yaml
makes it), with the Deployment's environment (templates/deployment.yaml:
`REVISION`, `PILOT_CERT_PROVIDER=istiod`, `POD_NAME`, `POD_NAMESPACE`, `CLUSTER_ID`, and
`EXTERNAL_ISTIOD=true` for `global.externalIstiod`, what a primary of remotes sets).

Only ever start it inside the session's network namespace (gitmesh.localkube.netns): it
dials whatever the remote Secrets name and binds its webhook and xDS ports on every
address. `stop()` ends it by PID: SIGTERM, a grace period, then SIGKILL, as a pod's
termination does (istiod managing remotes may take longer than 30 s to exit on SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gitmesh.errors import GitmeshError
from gitmesh.localkube.apiserver import _die_with_parent, free_port
from gitmesh.localkube.apistore import ApiStore

ISTIOD_ENV = "GITMESH_ISTIOD"
BUILD_SCRIPT = "tools/build-istiod.sh"
START_TIMEOUT = 90.0
STOP_GRACE = 5.0
# templates/istiod-injector-configmap.yaml: the templates the chart ships, by name.
_TEMPLATES = {
    "sidecar": "injection-template.yaml",
    "gateway": "gateway-injection-template.yaml",
    "grpc-simple": "grpc-simple.yaml",
    "grpc-agent": "grpc-agent.yaml",
    "waypoint": "waypoint.yaml",
    "kube-gateway": "kube-gateway.yaml",
}


class IstiodMissing(GitmeshError):
    """pilot-discovery is not where `$GITMESH_ISTIOD` says."""


def assets_dir(explicit: Path | None = None) -> Path:
    """The directory `tools/build-istiod.sh` printed, or a clear error naming it."""
    raw = explicit or (Path(os.environ[ISTIOD_ENV]) if os.environ.get(ISTIOD_ENV) else None)
    if raw is None:
        raise IstiodMissing(
            f"${ISTIOD_ENV} is unset: build istiod with `bash {BUILD_SCRIPT}` and export "
            f"{ISTIOD_ENV}=<the directory it prints>"
        )
    if not (raw / "pilot-discovery").is_file() or not (raw / "charts").is_dir():
        raise IstiodMissing(f"{raw} lacks pilot-discovery or charts/: run `bash {BUILD_SCRIPT}`")
    return raw


def chart_values(assets: Path) -> dict[str, Any]:
    """The istio-discovery chart's default values (its `_internal_defaults_do_not_set`)."""
    raw = yaml.safe_load((assets / "charts/istio-discovery/values.yaml").read_text())
    return dict(raw.get("_internal_defaults_do_not_set", raw))


def injector_files(assets: Path, *, cluster_id: str, network: str = "") -> dict[str, str]:
    """`config` and `values` of the `istio-sidecar-injector` ConfigMap, as the chart makes
    them with its defaults (global.multiCluster.clusterName and global.network set)."""
    chart = assets / "charts/istio-discovery"
    values = chart_values(assets)
    values["global"]["multiCluster"]["clusterName"] = cluster_id
    values["global"]["network"] = network
    picked: dict[str, Any] = {
        k: values[k] for k in ("global", "sidecarInjectorWebhook", "revision") if k in values
    }
    picked["pilot"] = {k: values[k] for k in ("cni", "env") if k in values}
    picked["gateways"] = {
        k: (values.get("gateways") or {})[k]
        for k in ("securityContext", "seccompProfile")
        if k in (values.get("gateways") or {})
    }
    hook = values["sidecarInjectorWebhook"]
    config = {
        "defaultTemplates": hook.get("defaultTemplates") or ["sidecar"],
        "policy": values["global"]["proxy"]["autoInject"],
        "alwaysInjectSelector": hook.get("alwaysInjectSelector") or [],
        "neverInjectSelector": hook.get("neverInjectSelector") or [],
        "injectedAnnotations": hook.get("injectedAnnotations") or {},
        "template": "{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}",
        "templates": {
            name: (chart / "files" / file).read_text()
            for name, file in _TEMPLATES.items()
            if (chart / "files" / file).is_file()
        },
    }
    return {"config": yaml.safe_dump(config), "values": json.dumps(picked, indent=2)}


def install_crds(store: ApiStore, assets: Path) -> None:
    """Istio's CRDs (manifests/charts/base/files/crd-all.gen.yaml) on a cluster."""
    for doc in yaml.safe_load_all((assets / "charts/crd-all.gen.yaml").read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            with contextlib.suppress(Exception):  # already there: a second istiod
                store.request(
                    "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc
                )


class Istiod:
    """One istiod process reading `kubeconfig` (its own cluster's).

    >>> with Istiod(kubeconfig, cluster_id="central") as istiod:
    ...     istiod.debug("clusterz")
    """

    def __init__(
        self,
        kubeconfig: dict[str, Any],
        *,
        cluster_id: str,
        namespace: str = "istio-system",
        network: str = "",
        webhook_port: int = 15017,
        xds_port: int = 15012,
        external: bool = True,
        assets: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.assets = assets_dir(assets)
        self.cluster_id = cluster_id
        self.namespace = namespace
        self.network = network
        self.webhook_port = webhook_port
        self.xds_port = xds_port
        self.external = external
        self.extra_env = dict(env or {})
        self._tmp = tempfile.TemporaryDirectory(prefix="istiod-")
        self.dir = Path(self._tmp.name)
        (self.dir / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._prepare()

    def __enter__(self) -> Istiod:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()

    def _prepare(self) -> None:
        config = self.dir / "etc/istio/config"
        config.mkdir(parents=True)
        # templates/configmap.yaml's mesh: the defaults, with istiod's discovery address.
        mesh = {
            "defaultConfig": {
                "discoveryAddress": f"istiod.{self.namespace}.svc:15012",
                "meshId": "gitmesh",
            },
            "rootNamespace": self.namespace,
            "trustDomain": "cluster.local",
        }
        (config / "mesh").write_text(yaml.safe_dump(mesh))
        (config / "meshNetworks").write_text("networks: {}\n")
        inject = self.dir / "var/lib/istio/inject"
        inject.mkdir(parents=True)
        for name, text in injector_files(
            self.assets, cluster_id=self.cluster_id, network=self.network
        ).items():
            (inject / name).write_text(text)

    @property
    def log(self) -> Path:
        return self.dir / "istiod.log"

    def start(self) -> None:
        """Start istiod; returns once `/ready` answers 200."""
        self.http_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "REVISION": "default",
            "PILOT_CERT_PROVIDER": "istiod",
            "POD_NAME": f"istiod-{self.cluster_id}",
            "POD_NAMESPACE": self.namespace,
            "SERVICE_ACCOUNT": "istiod",
            "CLUSTER_ID": self.cluster_id,
            "ISTIOD_CUSTOM_HOST": f"istiod.{self.namespace}.svc",
            **({"EXTERNAL_ISTIOD": "true"} if self.external else {}),
            **self.extra_env,
        }
        args = [
            str(self.assets / "pilot-discovery"),
            "discovery",
            "--kubeconfig", str(self.dir / "kubeconfig"),
            "--namespace", self.namespace,
            "--clusterID", self.cluster_id,
            "--httpAddr", f"127.0.0.1:{self.http_port}",
            # On every address of the namespace: whichever TEST-NET-1 address the
            # east-west gateway has, and loopback for the gateway-hostname path.
            "--httpsAddr", f":{self.webhook_port}",
            "--grpcAddr", f"127.0.0.1:{free_port()}",
            "--secureGRPCAddr", f":{self.xds_port}",
            "--monitoringAddr", f"127.0.0.1:{free_port()}",
            "--ctrlz_port", str(free_port()),
            "--ctrlz_address", "127.0.0.1",
            "--keepaliveMaxServerConnectionAge", "30m",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.dir,
                env=env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
            )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GitmeshError(f"istiod exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if self._get("/ready").status == 200:
                    return
            time.sleep(0.2)
        raise GitmeshError(f"istiod was not ready after {START_TIMEOUT:g}s: {self.tail()}")

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, `grace` seconds, then SIGKILL (the process group)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        return urllib.request.urlopen(url, timeout=10)

    def debug(self, view: str) -> Any:
        """A `/debug/<view>` of istiod, decoded from JSON."""
        with self._get(f"/debug/{view}") as resp:
            return json.loads(resp.read())

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def logged(self, text: str) -> bool:
        with contextlib.suppress(OSError):
            return text in self.log.read_text(errors="replace")
        return False
