"""gitmesh: Istio single-mesh multi-cluster, reconciled from git.

The package is layered: pure modules (specs, render, plan, statusfiles) know nothing of I/O;
`gitmesh.cluster` is the only module that imports `kubernetes`; `gitmesh.source` and
`gitmesh.status.branch` are the only ones that import `git`. `tests/unit/test_layers.py`
enforces this.
"""

__version__ = "0.1.0"
