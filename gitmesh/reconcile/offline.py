"""`gitmesh plan --offline`: what each remote would have, from the repository alone.

For pull-request jobs that hold no cluster credentials. Every remote is rendered as if it
were new (so every object is a create), with what a pass would observe on the central
cluster replaced by placeholders: no central pods (an enabled service's Endpoints hold
only its `podIPs`), no central Service ports (only the spec's), the intermediate CA and the
primary's gateway address and root certificate as `<...>` markers. Pure.
"""

from __future__ import annotations

from gitmesh import plan, render, specs
from gitmesh.errors import SpecError
from gitmesh.specs import meshrepo
from gitmesh.status.reports import PassReport, RemoteReport
from gitmesh.status.results import PassResult, RemoteResult

NOTE = (
    "Offline plan: every remote as if it were new; what a pass reads on the central cluster "
    "(pods, Service ports, the CA, the gateway address) is not shown or is a placeholder."
)
# The intermediate CA is minted at apply time; its Secret's values are masked in plans.
_CACERTS = dict.fromkeys(("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"), "")
_CENTRAL = render.Central(
    gateway_address="<east-west gateway address>", root_cert="<istiod root certificate>"
)


def _items(rendered: render.Rendered) -> list[plan.Item]:
    items: list[plan.Item] = []
    for comp in rendered.components:
        if comp.name == "injection":
            items += [
                plan.Item(
                    "patch",
                    "injection",
                    plan.Ref("Namespace", "", ns),
                    (
                        {
                            "op": "add",
                            "path": "/metadata/labels/istio-injection",
                            "value": "enabled",
                        },
                    ),
                )
                for ns in comp.namespaces
            ]
            continue
        if comp.error:
            continue
        items += plan.component(comp.name, list(comp.objects), [])
    return items


def as_new(
    name: str, spec: specs.Remote, mesh: specs.Mesh, central: render.Central
) -> RemoteResult:
    """A remote `plan` cannot reach yet (no kubeconfig Secret: a pull request adding it,
    before `gitmesh join`): its objects as creates, with a note saying so."""
    rendered = render.remote(spec, mesh, central, cacerts=_CACERTS)
    note = (
        "not joined yet (no kubeconfig for it on central, or its Secret is gone): planned "
        f"as if new; `gitmesh join {name} --remote-kubeconfig <its admin kubeconfig>` "
        "gives gitmesh its access"
    )
    return RemoteResult(RemoteReport(name, "Planned", message=note), tuple(_items(rendered)))


def plan_repo(repo: meshrepo.Repo, revision: str) -> PassResult:
    """Every valid remote's objects as creates; invalid remotes as InvalidSpec."""
    if repo.mesh is None:
        raise SpecError([p for p in repo.problems if p.file == meshrepo.MESH_FILE])
    results: dict[str, RemoteResult] = {}
    for name, spec in sorted(repo.remotes.items()):
        rendered = render.remote(spec, repo.mesh, _CENTRAL, cacerts=_CACERTS)
        results[name] = RemoteResult(RemoteReport(name, "Planned"), tuple(_items(rendered)))
    for name, problems in sorted(repo.invalid.items()):
        message = "; ".join(str(p) for p in problems)
        results[name] = RemoteResult(RemoteReport(name, "InvalidSpec", message=message))
    report = PassReport(revision, {n: r.report for n, r in results.items()})
    return PassResult(report, results)
