"""gitmesh: Istio single-mesh multi-cluster, reconciled from git.

A package per stage of the pipeline, in layers: `cli` over `testing` over `run` over
`reconcile` over `credentials` and `status` over `source` and `cluster` over `render`,
`plan` and `kubeconfigs` over `specs` over the ground floor (`errors`, `resources`,
`selectors`, `quantity`, `logs`, `deadlines`, `settings`). The pure core (specs, render,
plan, the status reports) imports no I/O; `gitmesh.cluster` is the only package that
imports `kubernetes`; `gitmesh.source` and `gitmesh.status.branch` the only ones that
import `git`. import-linter holds it (the contracts in pyproject.toml, run by
tests/unit/test_layers.py).
"""

__version__ = "0.1.0"
