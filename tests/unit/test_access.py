"""gitmesh.access's pure parts: when a token is due, and the kubeconfig join stores."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import yaml

from gitmesh import access, kubeconfigs

NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def test_a_token_is_due_with_a_third_of_its_life_left() -> None:
    life = 30 * DAY
    assert not access.due(NOW + 11 * DAY, life, NOW)
    assert access.due(NOW + 10 * DAY, life, NOW)
    assert access.due(NOW - DAY, life, NOW)  # expired


def test_the_stored_kubeconfig_holds_the_token_and_the_ca_inline(tmp_path: Path) -> None:
    """A CA file of the admin's kubeconfig is inlined (a Secret's kubeconfig may not name
    local files); the admin's user entry is not copied."""
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    text = access.kubeconfig(
        "eu", {"server": "https://eu.example:6443", "certificate-authority": str(ca)}, "tok"
    )
    config = kubeconfigs.parse(text, where="test", from_secret=True)
    cluster, user = kubeconfigs.current(config)
    assert user == {"token": "tok"}
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.read_bytes()
    assert "certificate-authority" not in cluster
    assert yaml.safe_load(text)["current-context"] == "eu"


def test_the_grants_are_the_rules() -> None:
    assert ("", "serviceaccounts/token", "create") in access.granted()
    assert ("", "pods", "create") not in access.granted()
    assert all(verb == "list" for group, res, verb in access.granted() if group == "*")
    wildcards = {verb for _, res, verb in access.granted() if res == "*"}
    assert wildcards == {"get", "list", "watch"}  # reads only (the reader role's Istio kinds)
