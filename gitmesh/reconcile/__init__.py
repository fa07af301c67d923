"""One reconcile pass: the one place that puts the stages in order.

    specs ──► observe central (pods, services, CA) ──► per remote, in parallel (bounded):
        credentials ─► observe (one LIST per managed kind) ─► render ─► plan ─► apply,
        component by component; a failing component stops that remote's later ones
    ──► a PassReport for the status branch

It takes its collaborators (the central `Cluster`, a `connect` factory for remotes, a
clock) and returns plain values; it holds no state between passes, so a pass that dies
half-way leaves nothing that blocks the next one.

One remote never stops the others: each remote's work has a deadline (`remote_timeout`,
every request inside it also bounded by `request_timeout`), and whatever it raises becomes
that remote's ReconcileFailed with a scrubbed one-line message; the traceback goes to the
debug log, scrubbed too. A remote whose kubeconfig names the central cluster's server is
refused before anything is sent to it.

Which remotes gitmesh has applied to is kept on central too (`inventory`), so a
removed remote is pruned even when the status branch was deleted.

The stages, a module each: `settings` (how a pass behaves), `observe`, `apply`, `remote`
(one remote: credentials → observe → render → plan → apply), `prune`, `passes` (the pass),
`endpoints` (the hot path of `gitmesh run`), `primary` (an istiod primary's remote
Secrets), `inventory`, `workers` (a pass over worker processes) and `cycle` (fetch the
source → run a pass → commit the status: the one place the CLI, the poller and the demo
share). This module imports none of them: pure callers take `settings` alone.
"""
