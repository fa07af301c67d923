"""localkube: a Kubernetes API server emulator on real HTTP(S), for tests, benchmarks and
`gitmesh demo`.

It is driven by the official `kubernetes` client and by `kubectl`, and follows the
Kubernetes API conventions: discovery (/api, /apis, per group-version resource lists),
namespaced and cluster-scoped kinds, custom resources of CRDs created at run time,
uid/creationTimestamp/generation, one resourceVersion counter per cluster that rises on
every write, 409 AlreadyExists and Conflict, 404 for a missing namespace, 422 for invalid
names, `Status` error bodies, JSON Patch (a failed `test` is a 422, as in kube), merge
patch, strategic merge patch for built-in kinds (415 for custom resources), label and field
selectors, limit/continue, watches resumed from a resourceVersion with 410 Gone once the
history is trimmed, bookmarks, finalizers and deletionTimestamp, namespace termination,
`status` subresources, server-side dry run, server defaults clients must cope with
(Service clusterIP and port protocol, Deployment strategy, container defaults, resource
quantities in canonical form...), Tables
for `kubectl get`, bearer-token auth over HTTPS, fault injection and request counts.

It is held to kube-apiserver by tests/integration/test_differential.py (the same requests
sent to both; `--backend kube-apiserver` runs the real one). Differences it found and
kept, each a strict xfail there:
- no schemas: unknown fields are stored and echoed, `fieldValidation=Strict` is ignored,
  field types are not checked (`replicas: "three"` is accepted) — gitmesh builds its
  objects from typed code, and the real backend runs every integration test;
- immutable fields are not enforced (immutable ConfigMaps, a Deployment's selector, a
  RoleBinding's roleRef);
- namespace deletion is synchronous: no Terminating phase while a namespace empties;
- every delete is immediate: `propagationPolicy: Foreground` answers a Status, not the
  object held by a `foregroundDeletion` finalizer (and Orphan orphans nothing: there is
  no garbage collector); gitmesh deletes with Background;
- no `kube-root-ca.crt` ConfigMap is published into new namespaces (kube-controller-manager
  does it on the real tier); gitmesh neither reads nor writes it.
Found and fixed: a failed JSON Patch `test` now answers kube's bare 422 (no causes),
`Status` bodies always carry `details`, Secret `stringData` is folded into `data`, and
Tables keep `metadata.continue`; and (issue 21) a misspelt `dryRun` or `fieldValidation`
is a 422 (a misspelt dryRun made a real write), an ExternalName Service's `externalName`
and an ownerReference's apiVersion, kind, name and uid are validated, a TokenRequest keeps
its `audiences` (defaulting to the API server's) and a token for another audience does not
authenticate, and a strategic merge puts new keyed list elements in kube's order (the
patch's first).

What it does not emulate either: admission webhooks and admission plugins (the webhooks you
create are stored, never called), server-side apply (`application/apply-patch+yaml` gets
415), `metadata.managedFields` (always omitted), authorization (any valid token may do
anything), OpenAPI documents (/openapi/v2 and v3 are 404, so `kubectl apply` needs
`--validate=false`), protobuf beyond the Namespace, ConfigMap, Secret and ServiceAccount
bodies kubectl's typed generators send, aggregated discovery, full field validation of built-in
kinds (names and a handful of fields only), controllers (no ReplicaSets or pods behind
Deployments — `simulate_workloads` only fills in Deployment status; garbage collection of
ownerReferences), graceful pod deletion (pods go at once), consistent snapshots for paged
lists (a `continue` reads the current state), and HTTP/2.
"""

from gitmesh.localkube.server import Fault, Server
from gitmesh.localkube.store import ApiError, Store

__all__ = ["ApiError", "Fault", "Server", "Store"]
