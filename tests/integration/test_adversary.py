"""Hostile peers and inputs, round three (issue 21): each case is what an adversary or a
careless hand did on loopback, driven through the CLI, and what gitmesh must do instead
of hanging, crashing the pass, borrowing its own rights or running a command."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import cli, errors, resources
from gitmesh.cluster import Cluster
from gitmesh.localkube import tlsgen
from gitmesh.run import leader, shards
from gitmesh.testing import sandbox
from tests.gitutil import git
from tests.integration.conftest import World
from tests.integration.hostile import (
    flood_server,
    forge_status,
    killing_server,
    pointing_at,
    set_kubeconfig,
    silent_server,
    trickle_server,
)
from tests.integration.running import Proc, wait_for
from tests.integration.test_istiod_remote import GATEWAY, join_primary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


# -- git arguments ---------------------------------------------------------------------

HOSTILE_URLS = {
    "option": "--upload-pack=touch {marker};",
    "helper": "ext::sh -c touch% {marker}",
    "helper-https": "https::ext::sh -c touch% {marker}",
    "newline": "mesh.git\n--upload-pack=touch {marker}",
    "scheme": "gopher://localhost/{marker}",
}


def _gitmesh(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GITMESH_")}
    return subprocess.run(
        [sys.executable, "-m", "gitmesh", *args],
        env={**full, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _repo_by(entry: str, url: str, world: World) -> tuple[list[str], dict[str, str]]:
    """The CLI arguments and environment that hand `url` to gitmesh through `entry`: the
    --repo flag, GITMESH_REPO, or the deploy ConfigMap's data (as the Job's envFrom)."""
    args = world.args
    at = args.index("--repo")
    rest = args[:at] + args[at + 2 :]
    if entry == "flag":
        return ["--repo", url, *rest], {}
    if entry == "env":
        return rest, {"GITMESH_REPO": url}
    config = yaml.safe_load((DEPLOY / "base" / "config.yaml").read_text())
    data = {**config["data"], "GITMESH_REPO": url, "GITMESH_CACHE_DIR": str(world.tmp / "c")}
    data.pop("GITMESH_GIT_TOKEN_FILE")
    return rest, data


@pytest.mark.localkube_only  # refused before any cluster is asked: one backend is enough
@pytest.mark.parametrize("entry", ["flag", "env", "configmap"])
@pytest.mark.parametrize("kind", sorted(HOSTILE_URLS))
def test_a_repository_url_never_becomes_a_git_option_or_command(
    world: World, tmp_path: Path, entry: str, kind: str
) -> None:
    """Before: `--repo '--upload-pack=touch pwned;'` reached `git fetch` as an option and
    ran the command. After: refused with the reason, exit 1, no git process started."""
    marker = tmp_path / "pwned"
    args, env = _repo_by(entry, HOSTILE_URLS[kind].format(marker=marker), world)
    done = _gitmesh(["plan", *args], env)
    assert done.returncode == 1, done.stderr
    assert "repository URL" in done.stderr, done.stderr
    assert not marker.exists()


@pytest.mark.localkube_only  # refused before any cluster is asked: one backend is enough
@pytest.mark.parametrize(
    "url",
    [
        None,  # the deploy ConfigMap's, as shipped
        "https://github.example.com/acme/mesh.git",
        "ssh://git@git.example/mesh.git",
        "https://example.org/mesh",
    ],
)
def test_a_placeholder_repository_is_refused_before_anything_starts(
    world: World, url: str | None
) -> None:
    """Before: the deploy ConfigMap shipped https://github.com/example/mesh.git, the steps
    never said to change it, and gitmesh started with it. After: the ConfigMap's URL is on
    a name reserved for examples (RFC 2606), as any such URL is refused: exit 1, saying
    what to set."""
    shipped = yaml.safe_load((DEPLOY / "base" / "config.yaml").read_text())["data"]
    args, env = _repo_by("configmap", url or shipped["GITMESH_REPO"], world)
    done = _gitmesh(["reconcile", "--once", *args], env)
    assert done.returncode == 1, done.stderr
    assert "is a placeholder" in done.stderr and "GITMESH_REPO" in done.stderr, done.stderr
    assert world.writes() == 0


@pytest.mark.localkube_only  # refused before any cluster is asked: one backend is enough
@pytest.mark.parametrize("flag", ["--revision", "--status-branch"])
def test_a_revision_or_branch_never_becomes_a_git_option(world: World, flag: str) -> None:
    done = _gitmesh(["reconcile", "--once", *world.args, f"{flag}=--output=x"])
    assert done.returncode == 1, done.stderr
    assert "'--output=x' is not a valid git branch, tag or commit name" in done.stderr


# -- bad bytes and names ---------------------------------------------------------------

EU = "remote-eu"
SAMPLE = "remoteistio-sample"


@pytest.mark.parametrize("char", ["\x00", "\x1b"])
def test_a_control_byte_in_one_file_is_that_files_problem(
    world: World, capsys: pytest.CaptureFixture[str], char: str
) -> None:
    """Before: one NUL or ESC byte (a pasted colour code) crashed validate, plan,
    reconcile and status with a yaml ReaderError traceback. After: a file:line:col
    problem; the other remote is reconciled and its status committed."""
    path = world.repo.work / "remotes" / f"{EU}.yaml"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(1, f"# pasted {char}[31mred\n")
    world.repo.commit({f"remotes/{EU}.yaml": "".join(lines)}, "A pasted colour code")
    assert cli.main(["validate", str(world.repo.work)]) == 1
    where = f"remotes/{EU}.yaml:2:10: character {ord(char):#04x} is not allowed in YAML"
    assert where in capsys.readouterr().out
    assert world.plan() == 1
    assert world.reconcile() == 1
    assert where in capsys.readouterr().err
    status = world.status()
    assert status[f"status/{SAMPLE}.yaml"]["state"] == "Available"
    assert status[f"status/{EU}.yaml"]["state"] == "InvalidSpec"
    status_args = ["status", "--repo", world.repo.url, "--cache-dir", str(world.tmp / "c")]
    assert cli.main([*status_args, "--format", "json"]) == 0
    rows = {r["remote"]: r for r in json.loads(capsys.readouterr().out)["remotes"]}
    assert rows[EU]["state"] == "InvalidSpec"


@pytest.mark.parametrize("name", ["remote-eu (copy)", "remote\nnewline"])
def test_a_file_name_that_cannot_be_a_status_path_freezes_nothing(
    world: World, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Before: `remotes/remote-eu (copy).yaml` (a file manager's duplicate) or a newline
    in a file name made the whole status commit refused, for every remote. After: that
    file is reported under a safe key, named in the file and the commit message, and the
    branch moves for the others."""
    copy = (world.repo.work / "remotes" / f"{EU}.yaml").read_bytes()
    world.repo.commit({f"remotes/{name}.yaml": copy}, "A duplicate")
    world.edit_remote_spec(SAMPLE, lambda d: d["spec"].update(autoInjectionNamespaces=["x"]), "x")
    assert world.reconcile() == 1
    status = world.status()
    assert status[f"status/{SAMPLE}.yaml"]["state"] == "Available"
    assert status[f"status/{EU}.yaml"]["state"] == "Available"
    (key,) = (p for p in status if p.startswith("status/Invalid-"))
    assert status[key]["state"] == "InvalidSpec"
    assert status[key]["specFile"] == f"remotes/{name}.yaml"
    subject = git(world.repo.bare, "log", "-1", "--format=%B", "gitmesh/status")
    assert f"{key[7:-5]} (the file remotes/{name!r}.yaml): InvalidSpec" in subject
    capsys.readouterr()
    status_args = ["status", "--repo", world.repo.url, "--cache-dir", str(world.tmp / "c")]
    assert cli.main([*status_args, "--format", "json"]) == 0
    rows = {r["remote"]: r for r in json.loads(capsys.readouterr().out)["remotes"]}
    assert rows[key[7:-5]]["state"] == "InvalidSpec"


# -- who is known, who is removed ------------------------------------------------------


def test_forged_status_files_are_no_remotes(world: World) -> None:
    """Before: six forged `status/ghost-*.yaml` pushed to the status branch made every pass
    a refused "mass prune". After: known remotes come from the inventory on central; the
    pass applies the change."""
    assert world.reconcile() == 0
    forge_status(world, {f"status/ghost-{i}.yaml": b"state: Available\n" for i in range(6)})
    world.edit_remote_spec(EU, lambda d: d["spec"].update(autoInjectionNamespaces=["x"]), "x")
    assert world.reconcile() == 0
    assert world.status()[f"status/{EU}.yaml"]["lastAppliedRevision"] == world.repo.head


def test_a_pending_prune_is_not_counted_again_and_can_be_let_go(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a remote removed earlier whose prune was pending (its cluster unreachable)
    made the next single removal "2 of 2 remotes ... all of them", and nothing let go of
    a cluster that no longer exists. After: the pending prune is reported as such and not
    counted; `reconcile --once --forget` drops it without pruning."""
    assert world.reconcile() == 0
    set_kubeconfig(world.server, EU, pointing_at(world.server, EU, "http://127.0.0.1:9"))
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu is decommissioned")
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed"
    assert "spec removed; pruning is pending" in eu["message"]
    assert f"--forget {EU}" in eu["message"]
    world.repo.commit({f"remotes/{SAMPLE}.yaml": None}, "the sample leaves too")
    capsys.readouterr()
    assert world.reconcile() == 1  # remote-eu is still pending
    assert "massPruneThreshold" not in capsys.readouterr().err
    assert world.names(SAMPLE, "deployments", "istio-system", group="apps") == []
    assert f"status/{SAMPLE}.yaml" not in world.status()
    assert world.reconcile("--forget", SAMPLE) == 1
    assert "--forget remoteistio-sample: not a remote gitmesh applied to" in (
        capsys.readouterr().err
    )
    assert world.reconcile("--forget", EU) == 0
    assert f"status/{EU}.yaml" not in world.status()
    data = world.get("central", "configmaps", "istio-system", "gitmesh-inventory")["data"]
    assert data == {"remotes": ""}
    assert world.reconcile() == 0


# -- identity and rights ---------------------------------------------------------------


@pytest.mark.localkube_only  # the emulator answers 403 on demand
def test_a_forbidden_lease_is_an_error_not_someone_elses_turn(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: with the Lease forbidden (RBAC misconfigured), `reconcile --once` said
    "another gitmesh holds the Lease ...; skipping this pass" and exited 0: a CronJob that
    never reconciles and always succeeds. After: exit 1, naming the verbs and resource."""
    world.server.inject(cluster="central", verb="get", resource="leases", status=403, count=None)
    before = world.writes()
    assert world.reconcile("--lease-duration", "2s", "--retry-period", "1s") == 1
    err = capsys.readouterr().err
    assert "cannot take the Lease istio-system/gitmesh" in err
    assert "leases.coordination.k8s.io" in err and "another gitmesh holds" not in err
    assert world.writes() == before


# -- total deadlines, bounded answers, true names ---------------------------------------

TRICKLES = {
    # Headers at once, then a byte of body a second.
    "body": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n"),
    # The status line and headers themselves a byte a second.
    "headers": b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200,
}


@pytest.mark.localkube_only  # the remote is a hostile loopback server; central does not matter
@pytest.mark.parametrize("where", sorted(TRICKLES))
def test_a_remote_trickling_its_answer_is_cut_at_the_deadline(world: World, where: str) -> None:
    """Before: a remote sending a byte a second kept `reconcile --once` running forever
    (the read timeout is per recv). After: every exchange has a total deadline; that remote
    is ReconcileFailed "timed out" and the other reconciled and committed."""
    with trickle_server(TRICKLES[where], slow_head=where == "headers") as url:
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        started = time.monotonic()
        code = world.reconcile("--request-timeout", "2s", "--remote-timeout", "15s")
        took = time.monotonic() - started
    assert code == 1
    assert took < 60, took
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed"
    assert "timed out" in eu["message"], eu["message"]
    assert world.status()[f"status/{SAMPLE}.yaml"]["state"] == "Available"


@pytest.mark.localkube_only  # as above
@pytest.mark.parametrize("status", ["200 OK", "500 Internal Server Error"])
def test_a_remote_flooding_an_endless_answer_fails_at_the_size_bound(
    world: World, status: str
) -> None:
    """Before: a remote answering LISTs with huge valid JSON was buffered whole (128 MiB
    bodies, 2 GiB of memory); an error answer was read whole too. After: reading stops at
    --max-response-size and that remote alone fails, saying so."""
    with flood_server(status) as url:
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        code = world.reconcile("--max-response-size", "1Mi")
    assert code == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed"
    assert "answered more than 1 MiB (--max-response-size)" in eu["message"], eu["message"]
    assert world.status()[f"status/{SAMPLE}.yaml"]["state"] == "Available"


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.localkube_only  # as above
@pytest.mark.parametrize(
    ("server", "words"),
    [
        (_closed_port, "connection refused"),
        (lambda: "http://gitmesh-test.invalid:6443", "host name does not resolve"),
        (lambda: "http://198.51.100.1:6443", "network is unreachable"),
    ],
    ids=["refused", "dns", "unreachable"],
)
def test_a_connection_error_is_named_for_what_it_is(
    world: World, server: Callable[[], str], words: str
) -> None:
    """Before: a refused connection (and every other failure to connect: urllib3's
    NewConnectionError is a TimeoutError) was reported as "timed out … within 30s". After:
    refused, an unknown host and an unreachable network are named so."""
    set_kubeconfig(world.server, EU, pointing_at(world.server, EU, server()))
    assert world.reconcile("--remote-timeout", "20s") == 1
    message = world.status()[f"status/{EU}.yaml"]["message"]
    assert words in message, message
    assert "timed out" not in message, message


@pytest.mark.parametrize("server", [_closed_port, lambda: "http://gitmesh-test.invalid:6443"])
def test_a_server_that_is_not_there_is_tried_twice_not_six_times(server: Callable[[], str]) -> None:
    """Before: a refused connection got the whole backoff of a dropped one (five retries,
    ~6 s a request: `plan` against a wrong central port took 27 s). kubectl gives up at
    once; gitmesh tries once more (an API server restarting), then says what it is."""
    config = {
        "clusters": [{"name": "c", "cluster": {"server": server()}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    waits: list[float] = []
    with Cluster("x", config, sleep=waits.append) as cluster, pytest.raises(errors.Unavailable):
        cluster.get(resources.NAMESPACE, None, "default")
    assert len(waits) == 1


# -- TLS and proxies as kubectl takes them ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("insecure-with-ca", "has insecure-skip-tls-verify and a certificate authority"),
        ("proxy-url", "has a proxy-url; gitmesh connects to API servers directly"),
    ],
    ids=["insecure-with-ca", "proxy-url"],
)
def test_a_kubeconfig_kubectl_would_refuse_is_refused(world: World, field: str, words: str) -> None:
    """Before: insecure-skip-tls-verify with a CA was accepted (kubectl refuses it) and a
    proxy-url silently ignored (gitmesh went direct). After: that remote is refused before
    any request, saying why; the others go on."""
    config = world.server.kubeconfig(EU)
    cluster = config["clusters"][0]["cluster"]
    if field == "proxy-url":
        cluster["proxy-url"] = "http://127.0.0.1:3128"
    else:
        cluster["insecure-skip-tls-verify"] = True
        cluster.setdefault(
            "certificate-authority-data", base64.b64encode(tlsgen.generate().ca_pem).decode()
        )
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed"
    assert words in eu["message"], eu["message"]
    assert world.status()[f"status/{SAMPLE}.yaml"]["state"] == "Available"


@pytest.mark.kube_apiserver_only  # TLS: localkube's test clusters speak plain HTTP
def test_insecure_tls_works_with_a_warning_in_the_log_and_the_status(
    world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    """Before: insecure-skip-tls-verify gave only urllib3's raw warning on stderr, on
    every request, naming no remote. After: the remote is reconciled, and warned of once in
    the log and in its status."""
    config = world.server.kubeconfig(EU)
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile() == 0
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] == "Available"
    assert any("skips TLS verification" in w for w in eu["warnings"]), eu
    err = capfd.readouterr().err
    assert "InsecureRequestWarning" not in err
    assert "skips TLS verification" in err


@pytest.mark.kube_apiserver_only  # as above
def test_a_certificate_from_another_authority_is_a_tls_failure(world: World) -> None:
    """A remote whose API server's certificate does not chain to the kubeconfig's CA fails
    as a TLS failure naming the reason, not as a generic error."""
    config = world.server.kubeconfig(EU)
    cluster = config["clusters"][0]["cluster"]
    cluster["certificate-authority-data"] = base64.b64encode(tlsgen.generate().ca_pem).decode()
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile() == 1
    message = world.status()[f"status/{EU}.yaml"]["message"]
    assert "TLS failure" in message, message
    assert "certificate verify failed" in message, message


# -- gateway addresses -----------------------------------------------------------------

PORTS_ONLY = {"ports": [{"port": 15012, "protocol": "TCP"}]}


def _gateway_ingress(world: World, ingress: list[dict[str, Any]]) -> None:
    store = world.store("central")
    store.patch(
        store.kind("", "v1", "services"),
        sandbox.NAMESPACE,
        GATEWAY,
        "application/merge-patch+json",
        {"status": {"loadBalancer": {"ingress": ingress}}},
        subresource="status",
    )


def _istiod_service(world: World) -> str:
    """The remote's istiod Service as JSON text ("" when there is none)."""
    if "istiod" not in world.names(EU, "services", sandbox.NAMESPACE):
        return ""
    return json.dumps(world.get(EU, "services", sandbox.NAMESPACE, "istiod"))


def test_a_gateway_ingress_without_an_address_is_a_clear_status(world: World) -> None:
    """Before: an ingress entry with only `ports` (a real API server takes it) made the
    remote's istiod Service `ExternalName: "None"`, and the remote Available. After: the
    IstiodRemote says the gateway has no usable address, and its istiod Service is left
    as it was, nothing named "None"."""
    join_primary(world)
    assert world.reconcile() == 0
    _gateway_ingress(world, [PORTS_ONLY])
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert eu["state"] != "Available"
    assert "has no usable load-balancer address" in eu["message"], eu["message"]
    assert '"externalName": "None"' not in _istiod_service(world)


@pytest.mark.localkube_only  # kube-apiserver itself refuses these addresses in a status
@pytest.mark.parametrize(
    "entry",
    [{"ip": "1.2.3.4; rm -rf /"}, {"hostname": "a.example\r\nX-Evil: 1"}, {"hostname": "a" * 5000}],
    ids=["shell", "crlf", "long"],
)
def test_a_gateway_address_that_is_no_ip_or_dns_name_is_never_rendered(
    world: World, entry: dict[str, str]
) -> None:
    """Before: any string in the gateway's status became the remotes' ExternalName,
    unchecked. After: IPs are parsed and host names checked as DNS names; the IstiodRemote
    reports no usable address."""
    join_primary(world)
    assert world.reconcile() == 0
    _gateway_ingress(world, [entry])
    assert world.reconcile() == 1
    assert "has no usable load-balancer address" in world.status()[f"status/{EU}.yaml"]["message"]
    assert next(iter(entry.values()))[:20] not in _istiod_service(world)


# -- worker processes --------------------------------------------------------------------


@pytest.mark.localkube_only  # the remote is a loopback server killing its client
def test_a_dead_worker_loses_its_remotes_reports_not_the_status_commit(world: World) -> None:
    """Before: `reconcile --once --workers 2` with one worker killed applied the other
    worker's changes, then died of BrokenProcessPool with no status committed. After: the
    dead worker's remotes are ReconcileFailed with the reason, the other worker's stand,
    and the status is committed."""
    members = ("worker-0", "worker-1")
    with killing_server() as (url, killed):
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        assert world.reconcile("--workers", "2") == 1
    assert killed
    status = world.status()
    eu = status[f"status/{EU}.yaml"]
    assert eu["state"] == "ReconcileFailed"
    assert "worker process worker-" in eu["message"] and "died" in eu["message"], eu
    sample = status[f"status/{SAMPLE}.yaml"]["state"]
    same_worker = shards.owner(SAMPLE, members) == shards.owner(EU, members)
    assert sample == ("ReconcileFailed" if same_worker else "Available")
    assert world.status_commits() == 1


# -- central by identity ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.1"])
def test_central_spelled_differently_is_still_central(world: World, host: str) -> None:
    """Before: central's address spelled differently in a remote's kubeconfig
    (`localhost` for 127.0.0.1, `127.1`) passed "refuse central", and gitmesh installed
    citadel, the injector, the webhook and a `cacerts` with a CA key on central. After:
    the remote is compared by identity (central's kube-system UID), refused, central
    untouched, the other remote reconciled."""
    if world.real and host == "127.1":
        pytest.skip("kube-apiserver's serving certificate names 127.0.0.1 and localhost")
    config = world.server.kubeconfig("central")
    server = config["clusters"][0]["cluster"]["server"]
    config["clusters"][0]["cluster"]["server"] = server.replace("127.0.0.1", host, 1)
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile() == 1
    eu = world.status()[f"status/{EU}.yaml"]
    assert "reaches the central cluster" in eu["message"]
    assert world.status()[f"status/{SAMPLE}.yaml"]["state"] == "Available"
    assert world.names("central", "deployments", "istio-system", group="apps") == []
    assert "cacerts" not in world.names("central", "secrets", "istio-system")


# -- gitmesh run's own listener ------------------------------------------------------------


@pytest.mark.localkube_only  # about gitmesh's own HTTP listener: one backend is enough
def test_slow_clients_of_the_metrics_port_never_starve_the_probes(
    world: World, procs: list[Proc]
) -> None:
    """Before: 16 clients trickling a header byte every 3 s held every worker of the one
    listener (each read within its timeout) and 0 of 8 /healthz probes were answered in
    45 s. After: the probes have a listener of their own and answer at once, and a
    trickling client is cut at the request's total time (10 s) though every read is in
    time."""
    proc = Proc(world, "probed")
    procs.append(proc)
    wait_for(lambda: proc.get("/healthz")[0] == 200, timeout=30, what="gitmesh run to serve")
    stop = threading.Event()
    closed: list[float] = []

    def trickle() -> None:
        try:  # past the workers and the listen backlog, a connect may time out
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        except OSError:
            return
        started = time.monotonic()
        with s:
            try:
                for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                    if stop.is_set():
                        return
                    s.sendall(bytes([byte]))
                    stop.wait(3)
            except OSError:
                closed.append(time.monotonic() - started)

    clients = [threading.Thread(target=trickle, daemon=True) for _ in range(16)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)
        answered = 0
        for _ in range(8):
            url = f"http://127.0.0.1:{proc.probe_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                answered += r.status == 200
        assert answered == 8
        wait_for(lambda: len(closed) >= 8, timeout=40, what="trickling clients to be cut")
        assert all(t < 30 for t in closed), closed
    finally:
        stop.set()
        for client in clients:
            client.join()


# -- the leader Lease ------------------------------------------------------------------------


COORDINATION = "coordination.k8s.io"


def _forge_leader_lease(world: World, duration: object) -> None:
    store = world.store("central")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {"holderIdentity": "forger", "leaseDurationSeconds": duration, "renewTime": now}
    store.create(
        store.kind("coordination.k8s.io", "v1", "leases"),
        sandbox.NAMESPACE,
        {"metadata": {"name": "gitmesh"}, "spec": spec},
    )


@pytest.mark.localkube_only  # kube-apiserver refuses a Lease whose duration is a string
def test_a_leader_lease_with_a_malformed_duration_is_taken_over(world: World) -> None:
    """Before: `leaseDurationSeconds: "abc"` on the leader Lease killed the election
    thread (ValueError) and no pass ever ran. After: a malformed duration counts as
    gitmesh's own, and the stale holder is taken over after it."""
    _forge_leader_lease(world, "abc")
    assert world.reconcile("--lease-duration", "1s", "--retry-period", "0.2s") == 0
    assert world.status_commits() == 1
    lease = world.get(
        "central", "leases", sandbox.NAMESPACE, "gitmesh", group="coordination.k8s.io"
    )
    assert lease["spec"]["holderIdentity"] != "forger"


def test_a_declared_lease_duration_is_believed_within_an_hour() -> None:
    """A forged `leaseDurationSeconds: 2147483647` held the leader Lease for 68 years; it
    is believed for MAX_DECLARED (an hour) at most, a shorter one as declared."""
    assert leader.declared_duration({"leaseDurationSeconds": 2147483647}, 15.0) == 3600.0
    assert leader.declared_duration({"leaseDurationSeconds": 120}, 15.0) == 120.0
    for bad in ("abc", -5, 0, True, None, 1.5):
        assert leader.declared_duration({"leaseDurationSeconds": bad}, 15.0) == 15.0


def test_join_refuses_central_under_another_address(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `gitmesh join` compared server URLs, so an admin kubeconfig of central
    written with `localhost` installed gitmesh's account and roles on central and stored
    a remote Secret for it. After: refused by identity (central's kube-system UID), exit
    1, nothing written on central."""
    config = world.server.kubeconfig("central")
    server = config["clusters"][0]["cluster"]["server"]
    config["clusters"][0]["cluster"]["server"] = server.replace("127.0.0.1", "localhost", 1)
    admin = world.tmp / "central-as-localhost.kubeconfig"
    admin.write_text(yaml.safe_dump(config))
    central = world.args[world.args.index("--central-kubeconfig") + 1]
    before = world.writes()
    code = cli.main(
        [
            "join",
            "central-again",
            "--remote-kubeconfig",
            str(admin),
            "--central-kubeconfig",
            central,
        ]
    )
    assert code == 1
    assert "is the central cluster" in capsys.readouterr().err
    assert world.writes() == before
    assert "gitmesh" not in world.names("central", "serviceaccounts", "gitmesh")


# -- gitmesh run: one remote's progress never waits on another's ----------------------------


@pytest.mark.localkube_only  # the slow remote is a silent loopback server
def test_a_silent_remote_does_not_hold_a_healthy_remotes_change(
    world: World, procs: list[Proc]
) -> None:
    """Before: `gitmesh run` ran one pass at a time, so while a pass waited on a silent
    remote (two 30 s requests), a commit changing a healthy remote was applied only after
    it. After: passes run side by side on the remotes that are free; the healthy remote's
    change is applied within seconds while the silent one still hangs, and the silent one
    is caught up when it is done."""
    with silent_server() as url:
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        proc = Proc(world, "busy", "--request-timeout", "30s", "--interval", "1s")
        procs.append(proc)

        def citadel_replicas() -> int | None:
            names = world.names(SAMPLE, "deployments", "istio-system", group="apps")
            if "istio-citadel" not in names:
                return None
            dep = world.get(SAMPLE, "deployments", "istio-system", "istio-citadel", group="apps")
            return int(dep["spec"]["replicas"])

        wait_for(citadel_replicas, timeout=30, what="the first pass to reach the healthy remote")
        started = time.monotonic()
        world.edit_remote_spec(
            SAMPLE, lambda d: d["spec"]["citadel"].update(replicaCount=3), "Three citadels"
        )
        wait_for(lambda: citadel_replicas() == 3, timeout=20, what="the healthy remote's change")
        assert time.monotonic() - started < 20
