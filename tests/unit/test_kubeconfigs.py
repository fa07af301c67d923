"""Remote kubeconfigs from Secrets: which key, and what is refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from gitmesh import kubeconfigs
from gitmesh.errors import CredentialsError

CONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "r",
    "clusters": [{"name": "r", "cluster": {"server": "https://10.0.0.1"}}],
    "users": [{"name": "r", "user": {"token": "t0ken-value"}}],
    "contexts": [{"name": "r", "context": {"cluster": "r", "user": "r"}}],
}


def secret(data: dict[str, Any]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(yaml.safe_dump(v).encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": "remote-1", "namespace": "istio-system"}, "data": encoded}


def test_single_key_or_the_remotes_name() -> None:
    """One data key (whatever its name) or the key named after the remote."""
    assert kubeconfigs.from_secret(secret({"kubeconfig": CONFIG}), "remote-1") == CONFIG
    both = secret({"remote-1": CONFIG, "other": {"clusters": []}})
    assert kubeconfigs.from_secret(both, "remote-1") == CONFIG


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "has no data"),
        ({"a": CONFIG, "b": CONFIG}, "must have one key, or a key named 'remote-1'"),
        ({"kubeconfig": {"users": []}}, "is not a kubeconfig"),
    ],
)
def test_unusable_secrets_are_clear_errors(data: dict[str, Any], message: str) -> None:
    """Anything else names the Secret and what would be valid."""
    with pytest.raises(CredentialsError, match=message) as e:
        kubeconfigs.from_secret(secret(data), "remote-1")
    assert "Secret istio-system/remote-1" in str(e.value)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("users", "tokenFile"),
        ("users", "client-certificate"),
        ("users", "client-key"),
        ("clusters", "certificate-authority"),
    ],
)
def test_file_references_from_a_secret_are_refused(section: str, field: str) -> None:
    """A kubeconfig from a Secret may not read gitmesh's own files."""
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    key = "user" if section == "users" else "cluster"
    config[section][0][key][field] = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    with pytest.raises(CredentialsError, match=field):
        kubeconfigs.from_secret(secret({"kubeconfig": config}), "remote-1")


def test_exec_plugins_refused_unless_allowed() -> None:
    """exec plugins and auth-provider commands run programs: refused by default."""
    for user in (
        {"exec": {"command": "aws"}},
        {"auth-provider": {"name": "gcp", "config": {"cmd-path": "gcloud"}}},
    ):
        config = {**CONFIG, "users": [{"name": "r", "user": user}]}
        with pytest.raises(CredentialsError, match="--allow-exec"):
            kubeconfigs.check_exec(config, where="x", allow_exec=False)
        kubeconfigs.check_exec(config, where="x", allow_exec=True)


def test_messages_never_carry_the_kubeconfig() -> None:
    """Errors describe the problem, never the credentials."""
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    config["users"][0]["user"]["tokenFile"] = "/etc/x"
    with pytest.raises(CredentialsError) as e:
        kubeconfigs.from_secret(secret({"a": config}), "remote-1")
    assert "t0ken-value" not in str(e.value)
