"""The examples each `gitmesh COMMAND --help` ends with, as kubectl's help does (every
one is parsed by tests/unit/test_cli.py::test_every_command_has_examples_that_parse)."""

from __future__ import annotations

EXAMPLES = {
    "validate": [
        "gitmesh validate                        # the repository this directory is in",
        "gitmesh validate -o github .            # annotations on a pull request's diff",
        "gitmesh validate -o json ./mesh",
    ],
    "schema": ["gitmesh schema --out schemas/     # JSON Schemas for editors"],
    "plan": [
        "gitmesh plan --repo https://git.acme.dev/mesh.git --kubeconfig central.kc",
        "gitmesh plan --repo . --revision $PR_SHA -o markdown --exit-code > plan.md",
        "gitmesh plan --offline --repo . -o json  # no cluster credentials needed",
    ],
    "reconcile": [
        "gitmesh reconcile --once --repo https://git.acme.dev/mesh.git",
        "gitmesh reconcile --once --wait --health-timeout 10m --repo .",
        "gitmesh reconcile --once --dry-run --repo .",
    ],
    "run": [
        "gitmesh run --repo https://git.acme.dev/mesh.git --interval 30s",
        "GITMESH_REPO=https://git.acme.dev/mesh.git gitmesh run --shard",
    ],
    "status": [
        "gitmesh status --repo https://git.acme.dev/mesh.git",
        "gitmesh status remote-eu -o wide --repo .",
        "gitmesh status --exit-code -o json --repo .",
    ],
    "join": [
        "gitmesh join remote-eu --remote-kubeconfig eu-admin.kc --kubeconfig central.kc",
        "gitmesh join remote-eu --remote-kubeconfig eu-admin.kc --remote-context eu --dry-run",
    ],
    "localkube": [
        "gitmesh localkube --kubeconfig /tmp/kc --clusters central,west",
        "gitmesh localkube --kubeconfig /tmp/kc --backend kube-apiserver",
    ],
    "demo": ["gitmesh demo", "gitmesh demo --keep"],
    "completion": [
        "source <(gitmesh completion bash)",
        "gitmesh completion fish > ~/.config/fish/completions/gitmesh.fish",
    ],
}
