"""Hostile input and silent remotes (issue 11): each case drives the real CLI or the real
pass against localkube and real git repositories, and checks that gitmesh neither hangs,
nor crashes the pass, nor deletes what isn't its own, nor leaks a credential."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitmesh import cli
from gitmesh.cluster import Cluster
from gitmesh.errors import SourceError
from gitmesh.run.http import serve
from gitmesh.run.runner import Runner
from gitmesh.settings import RunSettings, Settings
from gitmesh.source import Source
from gitmesh.source.auth import Auth
from gitmesh.source.gitrepo import Cache
from gitmesh.testing import sandbox
from tests.gitutil import git
from tests.integration.conftest import TOKEN, World
from tests.integration.hostile import (
    fixed_reply_server,
    forge_status,
    pointing_at,
    set_kubeconfig,
    silent_server,
)
from tests.integration.running import Proc, started_runner, wait_for

EU = "remote-eu"
SAMPLE = "remoteistio-sample"
NS = sandbox.NAMESPACE

# A 496-byte "billion laughs": 9^8 strings once its aliases are expanded.
ALIAS_BOMB = "\n".join(
    [
        "apiVersion: istio.banzaicloud.io/v1beta1",
        "kind: RemoteIstio",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]"
            for p, n in zip("abcdefg", "bcdefgh", strict=True)
        ),
    ]
)


def state(world: World, remote: str) -> dict[str, Any]:
    return dict(world.status()[f"status/{remote}.yaml"])


# -- deadlines -------------------------------------------------------------------------


def test_a_silent_remote_fails_alone_within_the_deadline(world: World) -> None:
    """A remote that accepts TCP and never answers: `--request-timeout 5s` ends the pass
    well within 90 s, that remote ReconcileFailed "timed out", the other Available, and
    the status committed."""
    with silent_server() as url:
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        started = time.monotonic()
        code = world.reconcile("--request-timeout", "5s")
        took = time.monotonic() - started
    assert code == 1
    assert took < 90, took
    assert state(world, EU)["state"] == "ReconcileFailed"
    assert "timed out" in state(world, EU)["message"]
    assert state(world, SAMPLE)["state"] == "Available"
    assert world.status_commits() == 1


@pytest.mark.localkube_only
def test_the_remote_deadline_bounds_all_of_a_remotes_work(world: World) -> None:
    """`--remote-timeout` caps a remote's whole share of the pass, however many requests
    it would still make (a first pass: its reads go out at once, its writes in turn)."""
    world.server.inject(cluster=EU, latency=0.4, count=None)
    started = time.monotonic()
    code = world.reconcile("--remote-timeout", "1s", "--request-timeout", "30s")
    took = time.monotonic() - started
    assert code == 1
    assert took < 10, took
    assert "time in this pass ran out" in state(world, EU)["message"]
    assert state(world, SAMPLE)["state"] == "Available"


@pytest.mark.parametrize(
    "flag", ["--request-timeout=abc", "--request-timeout=0s", "--remote-timeout=-1"]
)
def test_timeouts_are_durations(world: World, flag: str) -> None:
    """Durations as kubectl writes them; anything else is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as e:
        world.reconcile(flag)
    assert e.value.code == 2


def test_gitmesh_run_stops_on_sigterm_with_a_hung_remote(world: World, procs: list[Proc]) -> None:
    """SIGTERM ends `gitmesh run` within its grace period even while a pass is stuck on a
    silent remote."""
    with silent_server() as url:
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        proc = Proc(world, "hung", "--request-timeout", "60s", "--grace-period", "2s")
        procs.append(proc)

        def healthy_remote_done() -> bool:
            labels = world.get("central", "secrets", NS, SAMPLE)["metadata"].get("labels")
            return (labels or {}).get("istio/multiCluster") == "true"

        wait_for(healthy_remote_done, timeout=30, what="the pass to reach the healthy remote")
        started = time.monotonic()
        assert proc.stop(signal.SIGTERM) == 0
        took = time.monotonic() - started
    assert took < 10, took
    assert proc.said("a pass is still running after the grace period")


# -- per-remote isolation ----------------------------------------------------------------


def test_a_token_with_a_trailing_newline_works(world: World) -> None:
    """`kubectl create secret --from-file` of a token file keeps its newline: stripped."""
    config = world.server.kubeconfig(EU)
    config["users"][0]["user"]["token"] = TOKEN + "\n"
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile() == 0


def test_a_control_character_in_a_token_fails_that_remote_only(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token that would break an HTTP header: that remote fails with a clear message,
    the token appears nowhere, the pass goes on and commits."""
    config = world.server.kubeconfig(EU)
    config["users"][0]["user"]["token"] = TOKEN + "\x01evil"
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile("--log-level", "debug") == 1
    assert "control characters" in state(world, EU)["message"]
    assert state(world, SAMPLE)["state"] == "Available"
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert TOKEN not in json.dumps(world.status())


@pytest.mark.parametrize(
    ("status", "ctype", "body", "expected"),
    [
        ("200 OK", "text/html", b"<html>captive portal</html>", "not JSON"),
        (
            "500 Internal Server Error",
            "application/json",
            json.dumps(
                {
                    "kind": "Status",
                    "status": "Failure",
                    "code": 500,
                    "message": "line one\nline two " + "x" * 5000 + f" Bearer {TOKEN}",
                }
            ).encode(),
            "line one line two",
        ),
    ],
)
def test_a_remote_answering_garbage_fails_alone_with_a_bounded_message(
    world: World, status: str, ctype: str, body: bytes, expected: str
) -> None:
    """A 200 that is HTML, or a 500 whose body is long, multi-line and carries a token:
    that remote's status says so in one bounded line; the other remote is Available."""
    with fixed_reply_server(status, ctype, body) as (url, _):
        set_kubeconfig(world.server, EU, pointing_at(world.server, EU, url))
        assert world.reconcile() == 1
    found = state(world, EU)
    assert found["state"] == "ReconcileFailed"
    assert expected in found["message"]
    text = found["message"]
    assert "\n" not in text
    assert len(text) <= 300
    assert TOKEN not in text
    assert state(world, SAMPLE)["state"] == "Available"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "users: not-a-list\nclusters: [{name: a, cluster: {server: 'https://x'}}]\n"
            "contexts: [{name: a, context: {cluster: a, user: a}}]\n",
            "users must be a list",
        ),
        (
            "clusters: [{name: a, cluster: 7}]\ncontexts: [{name: a, context: {cluster: a}}]\n",
            "clusters[0].cluster must be a map",
        ),
        (
            "clusters: [{name: a, cluster: {server: 'https://x'}}]\n"
            "contexts: [{name: a, context: {cluster: b}}]\n",
            "names no cluster",
        ),
        (
            "clusters: [{name: a, cluster: {server: 'ftp://x'}}]\n"
            "contexts: [{name: a, context: {cluster: a}}]\n",
            "no http(s) server URL",
        ),
    ],
)
def test_malformed_kubeconfigs_are_clear_errors(world: World, config: str, expected: str) -> None:
    """Malformed `users`/`clusters`/`contexts`: a clear message, not a traceback."""
    set_kubeconfig(world.server, EU, config)
    assert world.reconcile() == 1
    assert expected in state(world, EU)["message"]
    assert state(world, SAMPLE)["state"] == "Available"


@pytest.mark.parametrize("provider", ["oidc", "gcp", "azure"])
def test_auth_providers_are_refused_before_any_network_use(world: World, provider: str) -> None:
    """An auth-provider would fetch tokens from URLs the kubeconfig names (oidc's
    discovery document) or run commands: refused without --allow-exec, nothing fetched."""
    with fixed_reply_server("200 OK", "application/json", b"{}") as (url, seen):
        config = pointing_at(world.server, EU, url)
        config["users"][0]["user"] = {
            "auth-provider": {
                "name": provider,
                "config": {
                    "idp-issuer-url": url,
                    "client-id": "x",
                    "id-token": "expired.expired.expired",
                    "refresh-token": "r",
                },
            }
        }
        set_kubeconfig(world.server, EU, config)
        assert world.reconcile() == 1
    assert seen == []
    assert "--allow-exec" in state(world, EU)["message"]
    assert state(world, SAMPLE)["state"] == "Available"


def test_a_kubeconfig_naming_the_central_cluster_is_refused(world: World) -> None:
    """A remote's kubeconfig pointing at central would install a remote's objects there:
    refused before any request, central untouched."""
    set_kubeconfig(world.server, EU, world.server.kubeconfig("central"))
    world.server.reset_counts()
    assert world.reconcile() == 1
    assert "points at the central cluster" in state(world, EU)["message"]
    assert world.names("central", "deployments", NS, group="apps") == []
    assert (
        world.names(
            "central", "mutatingwebhookconfigurations", group="admissionregistration.k8s.io"
        )
        == []
    )


# -- YAML --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ALIAS_BOMB, "remotes/remote-eu.yaml:4:8: YAML aliases (*a) are not allowed"),
        ("a: " + "[" * 900 + "]" * 900 + "\n", "nested deeper than 64 levels"),
    ],
)
def test_yaml_bombs_are_refused_fast(
    world: World, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """An alias bomb or 900-level nesting: a FILE:LINE:COL error in milliseconds, in
    validate and in a pass (InvalidSpec, never pruned)."""
    world.reconcile()
    spec = world.repo.work / "remotes" / f"{EU}.yaml"
    spec.write_text(text)
    started = time.monotonic()
    assert cli.main(["validate", str(world.repo.work)]) == 1
    assert time.monotonic() - started < 2
    assert expected in capsys.readouterr().out
    world.repo.commit({}, "a bomb")
    writes = world.writes(EU)
    assert world.plan() == 1
    assert world.reconcile() == 1
    assert state(world, EU)["state"] == "InvalidSpec"
    assert world.writes(EU) == writes


def test_a_name_with_a_trailing_newline_is_invalid(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`metadata.name: "x\\n"` is not a valid name (`$` matched before the newline)."""
    spec = world.repo.work / "remotes" / f"{EU}.yaml"
    doc = yaml.safe_load(spec.read_text())
    doc["metadata"]["name"] = f"{EU}\n"
    spec.write_text(yaml.safe_dump(doc))
    assert cli.main(["validate", str(world.repo.work)]) == 1
    assert "metadata.name" in capsys.readouterr().out


# -- trees and names ---------------------------------------------------------------------


def test_a_symlinked_remotes_directory_prunes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`remotes` committed as a symlink read as an empty repository and pruned every
    remote; now the whole pass stops with a clear error and deletes nothing."""
    assert world.reconcile() == 0
    git(world.repo.work, "mv", "remotes", "elsewhere")
    (world.repo.work / "remotes").symlink_to("elsewhere")
    world.repo.commit({}, "remotes is a symlink now")
    writes = world.writes()
    capsys.readouterr()
    assert world.reconcile() == 1
    assert "remotes at" in capsys.readouterr().err
    assert world.writes() == writes
    assert world.names(EU, "deployments", NS, group="apps")


def test_a_directory_where_a_remote_file_should_be_is_invalid_not_absent(world: World) -> None:
    """`remotes/<name>.yaml/` as a directory makes that remote invalid, never pruned."""
    assert world.reconcile() == 0
    world.repo.commit({f"remotes/{EU}.yaml": None}, "file goes")
    world.repo.commit({f"remotes/{EU}.yaml/x": "a: b\n"}, "a directory comes")
    writes = world.writes(EU)
    assert world.reconcile() == 1
    assert state(world, EU)["state"] == "InvalidSpec"
    assert world.writes(EU) == writes


def test_forged_status_branch_names_reach_no_path(world: World, tmp_path: Path) -> None:
    """Names read back from the status branch are validated like spec names: a forged
    `name: ../../kube-system/secrets/victim` or a file name carrying a fast-import command
    reaches no API path, no file path and no git tree."""
    forge_status(
        world,
        {
            "status/ghost.yaml": b"name: ../../kube-system/secrets/victim\nstate: Available\n",
            "status/evil\nM 100644 inline forged.yaml": b"state: Available\n",
        },
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x").write_text("not read")
    kubeconfigs = tmp_path / "kubeconfigs"
    kubeconfigs.mkdir()
    log = tmp_path / "access.log"
    world.server.set_access_log(log)
    world.reconcile("--kubeconfig-dir", str(kubeconfigs))
    paths = [json.loads(line)["path"] for line in log.read_text().splitlines()]
    assert not [p for p in paths if ".." in p or "victim" in p]
    tree = git(world.repo.bare, "ls-tree", "-r", "--name-only", "gitmesh/status")
    assert "forged.yaml" not in tree.splitlines()
    assert ".." not in tree


def test_github_annotations_cannot_inject_workflow_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with a newline cannot print its own workflow command: `%`, CR, LF, `:`
    and `,` are escaped as GitHub's toolkit escapes them."""
    repo = tmp_path / "mesh"
    (repo / "remotes").mkdir(parents=True)
    (repo / "mesh.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "example-repo" / "mesh.yaml").read_text()
    )
    (repo / "remotes" / "a\n::set-output name=x::pwned,b.yaml").write_text("kind: 5%\n")
    assert cli.main(["validate", str(repo), "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines
    assert all(line.startswith("::error file=") for line in lines)
    assert "%0A%3A%3Aset-output name=x%3A%3Apwned%2Cb.yaml" in lines[0]


# -- prune -------------------------------------------------------------------------------


@pytest.mark.parametrize("foreign", [None, "jobs", "roles", "leases"])
def test_a_namespace_gitmesh_made_is_kept_while_it_holds_foreign_objects(
    world: World, foreign: str | None
) -> None:
    """Pruning a removed remote deletes the namespace gitmesh created only when nothing
    foreign is in it, over every namespaced kind the server serves."""
    store = world.store(EU)
    world.delete_namespace(EU, NS)
    assert world.reconcile() == 0
    groups = {
        "jobs": ("batch", "v1"),
        "roles": ("rbac.authorization.k8s.io", "v1"),
        "leases": ("coordination.k8s.io", "v1"),
    }
    if foreign is not None:
        group, version = groups[foreign]
        body: dict[str, Any] = {"metadata": {"name": "someone-elses"}}
        if foreign == "jobs":
            body["spec"] = {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            }
        store.create(store.kind(group, version, foreign), NS, body)
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves")
    assert world.reconcile() == 0
    assert world.names(EU, "deployments", NS, group="apps") == []
    # On a real cluster a deleted namespace is Terminating while it empties.
    kept = (
        NS in world.names(EU, "namespaces")
        and "deletionTimestamp" not in (world.get(EU, "namespaces", "", NS)["metadata"])
    )
    assert kept == (foreign is not None)


def test_prune_survives_a_deleted_status_branch(world: World) -> None:
    """The inventory on central remembers which remotes gitmesh applied to: deleting the
    status branch no longer orphans a removed remote's objects."""
    assert world.reconcile() == 0
    git(world.repo.bare, "update-ref", "-d", "refs/heads/gitmesh/status")
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves")
    assert world.reconcile() == 0
    assert world.names(EU, "deployments", NS, group="apps") == []
    labels = world.get("central", "secrets", NS, EU)["metadata"].get("labels") or {}
    assert "istio/multiCluster" not in labels


def test_a_removed_remote_without_credentials_is_dropped_not_retried(world: World) -> None:
    """Its Secret gone, a removed remote cannot be pruned: reported once, then dropped, so
    later passes succeed."""
    assert world.reconcile() == 0
    store = world.store("central")
    store.delete(store.kind("", "v1", "secrets"), NS, EU)
    world.repo.commit({f"remotes/{EU}.yaml": None}, "remote-eu leaves")
    assert world.reconcile() == 0
    assert f"status/{EU}.yaml" not in world.status()
    assert world.reconcile() == 0


# -- the HTTP server of gitmesh run ------------------------------------------------------


@pytest.fixture
def http_server(world: World, tmp_path: Path) -> Any:
    runner = Runner(
        Source(world.repo.url, cache_dir=tmp_path / "c", auth=Auth()),
        Cluster("central", world.server.kubeconfig("central")),
        settings=Settings(),
        run=RunSettings(
            listen=("127.0.0.1", 0), hook_secret=b"s", http_timeout=1.0, http_workers=4
        ),
    )
    server = serve(
        runner,
        ("127.0.0.1", 0),
        workers=runner.run_settings.http_workers,
        timeout=runner.run_settings.http_timeout,
    )
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.localkube_only  # touches no cluster: one backend is enough
def test_readyz_reports_a_wedged_worker(world: World, tmp_path: Path) -> None:
    """A pass running past the longest any pass can take (every remote's deadline, twice,
    plus a minute) makes /readyz answer 503 with the reason; a normal one does not."""
    runner = Runner(
        Source(world.repo.url, cache_dir=tmp_path / "c", auth=Auth()),
        Cluster("central", world.server.kubeconfig("central")),
        settings=Settings(remote_timeout=1.0),
        run=RunSettings(listen=("127.0.0.1", 0)),
    )
    server = serve(
        runner,
        ("127.0.0.1", 0),
        workers=runner.run_settings.http_workers,
        timeout=runner.run_settings.http_timeout,
    )
    try:
        runner.pass_started = time.monotonic() - 10.0  # a pass in flight for 10 s: fine
        assert runner.wedged() is None
        runner.pass_started = time.monotonic() - 120.0  # past 2 x 1 s + 60 s
        conn = http.client.HTTPConnection(*server.server_address, timeout=5)
        conn.request("GET", "/readyz")
        answer = conn.getresponse()
        assert answer.status == 503
        assert answer.read().startswith(b"wedged: a pass has run for 120s")
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.localkube_only  # the probe is about the process, not the cluster
def test_healthz_fails_when_the_worker_is_wedged_or_the_scheduler_stopped(
    world: World, tmp_path: Path
) -> None:
    """The liveness probe checks something: 200 while gitmesh run works, 503 (with the
    reason) when a pass is wedged or the scheduler is gone."""

    def healthz(runner: Runner) -> tuple[int, bytes]:
        assert runner.http is not None
        conn = http.client.HTTPConnection(*runner.http.server_address, timeout=5)
        conn.request("GET", "/healthz")
        answer = conn.getresponse()
        out = (answer.status, answer.read())
        conn.close()
        return out

    with started_runner(world, tmp_path / "c") as runner:
        assert healthz(runner) == (200, b"ok\n")
        runner.pass_started = time.monotonic() - 100_000.0
        status, body = healthz(runner)
        assert status == 503 and body.startswith(b"wedged: a pass has run for")
        runner.pass_started = None
        runner.scheduler.shutdown(wait=False)
        assert healthz(runner) == (503, b"the scheduler is not running\n")


@pytest.mark.parametrize(("length", "code"), [("abc", 400), ("-1", 400), (str(10 << 20), 413)])
@pytest.mark.localkube_only  # touches no cluster: one backend is enough
def test_the_webhook_refuses_bad_content_length_at_once(
    http_server: Any, length: str, code: int
) -> None:
    """`Content-Length: abc` was a traceback and `-1` hung: both are 400s, a huge one 413."""
    conn = http.client.HTTPConnection(*http_server.server_address, timeout=5)
    conn.putrequest("POST", "/hooks/git")
    conn.putheader("Content-Length", length)
    conn.endheaders()
    assert conn.getresponse().status == code


@pytest.mark.localkube_only  # touches no cluster: one backend is enough
def test_slow_clients_hold_a_bounded_number_of_threads(http_server: Any) -> None:
    """40 clients that connect and send nothing: threads stay bounded, they are timed
    out, and the server answers again afterwards."""
    before = threading.active_count()
    import socket

    socks = [socket.create_connection(http_server.server_address) for _ in range(40)]
    time.sleep(0.5)
    assert threading.active_count() - before <= 5
    for s in socks:
        s.close()
    conn = http.client.HTTPConnection(*http_server.server_address, timeout=30)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


# -- git ---------------------------------------------------------------------------------


def test_a_url_password_never_reaches_a_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`https://user:password@host/repo`: the password moves to the same environment path
    as tokens; git's own trace of its command lines (what `ps` shows) never has it."""
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    source = Source("http://alice:s3cr3t-pw@127.0.0.1:9/mesh.git", cache_dir=tmp_path / "c")
    with pytest.raises(SourceError) as e:
        source.fetch()
    assert "s3cr3t-pw" not in str(e.value)
    text = trace.read_text()
    assert "git fetch" in text or "'fetch'" in text
    assert "s3cr3t-pw" not in text
    assert "alice" not in text


@pytest.mark.localkube_only  # touches no cluster: one backend is enough
def test_processes_sharing_a_cache_take_turns_and_stale_locks_go(
    world: World, tmp_path: Path
) -> None:
    """Two writers on one cache directory both fetch; a `*.lock` left by a killed git does
    not block later passes."""
    caches = [Cache(world.repo.url, cache_dir=tmp_path / "shared") for _ in range(2)]
    errors: list[BaseException] = []

    def fetch(cache: Cache) -> None:
        try:
            for _ in range(10):
                cache.fetch("+refs/heads/*:refs/remotes/origin/*")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=fetch, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stale = caches[0].path / "refs" / "remotes" / "origin" / "main.lock"
    stale.write_text("left by a killed git")
    world.repo.commit({}, "a new commit to fetch")
    caches[0].fetch("+refs/heads/*:refs/remotes/origin/*")
    assert not stale.exists()
    assert caches[0].run("rev-parse", "refs/remotes/origin/main").strip() == world.repo.head


# -- endpoints ---------------------------------------------------------------------------


def test_a_flapping_pod_makes_few_endpoint_writes_and_ends_exact(
    world: World, tmp_path: Path
) -> None:
    """50 flaps of a central pod in about 1 s: at most one Endpoints write per remote per
    200 ms window, and the remotes end with the final state."""
    with started_runner(world, tmp_path / "c"):
        world.server.reset_counts()
        store = world.store("central")
        pods = store.kind("", "v1", "pods")
        name = world.mesh.pod_names("istio-pilot")[0]
        started = time.monotonic()
        for i in range(50):
            store.patch(
                pods,
                NS,
                name,
                "application/merge-patch+json",
                {"status": {"podIP": f"10.9.0.{i + 1}"}},
                subresource="status",
            )
            time.sleep(0.02)
        took = time.monotonic() - started
        time.sleep(1.0)
    windows = took / 0.2 + 2
    for remote in (EU, SAMPLE):
        writes = world.server.count(cluster=remote, verb="patch", resource="endpoints")
        assert writes <= windows, (remote, writes, windows)
        ep = world.get(remote, "endpoints", NS, "istio-pilot")
        assert [a["ip"] for s in ep["subsets"] for a in s["addresses"]] == ["10.9.0.50"]


# -- localkube ---------------------------------------------------------------------------


@pytest.mark.localkube_only
def test_localkube_reads_the_body_before_a_fault_answers(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A fault answered before the body was read left it on the kept-alive connection,
    where it was parsed as the next request; every answer is counted."""
    world.server.inject(cluster="central", verb="create", status=500, count=1)
    log = tmp_path / "access.log"
    world.server.set_access_log(log)
    host, port = world.server.url("central").split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    request.addfinalizer(conn.close)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    body = json.dumps({"metadata": {"name": "x"}, "data": {"a": "b"}})
    conn.request(
        "POST", "/clusters/central/api/v1/namespaces/istio-system/configmaps", body, headers
    )
    assert conn.getresponse().read() and True
    conn.request(
        "GET",
        "/clusters/central/api/v1/namespaces/istio-system/configmaps/istio-ca-root",
        headers=headers,
    )
    second = conn.getresponse()
    assert second.status == 404
    assert json.loads(second.read())["kind"] == "Status"
    assert [json.loads(line)["status"] for line in log.read_text().splitlines()] == [500, 404]


def test_status_message_is_one_line_in_the_status_file(world: World) -> None:
    """Nothing multi-line or unbounded reaches the status branch (checked on the file)."""
    config = base64.b64encode(b"clusters: [\n").decode()
    store = world.store("central")
    kind = store.kind("", "v1", "secrets")
    store.delete(kind, NS, EU)
    store.create(kind, NS, {"metadata": {"name": EU}, "data": {EU: config}})
    assert world.reconcile() == 1
    raw = git(world.repo.bare, "show", f"gitmesh/status:status/{EU}.yaml")
    message = yaml.safe_load(raw)["message"]
    assert "\n" not in message and len(message) <= 300
