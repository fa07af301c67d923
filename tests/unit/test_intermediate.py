"""The remote's intermediate CA: signed by the central CA, verified by openssl as Istio's
"plug in CA certificates" layout expects, kept while good, renewed before expiry."""

from __future__ import annotations

import base64
import datetime
import shutil
import subprocess
from pathlib import Path

import pytest

from gitmesh.credentials import ca

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def central() -> dict[str, str]:
    return ca.self_signed_root("cluster.local", NOW)


@pytest.fixture(scope="module")
def signer(central: dict[str, str]) -> ca.Signer:
    return ca.Signer.from_secret(central)


def write(data: dict[str, str], where: Path) -> Path:
    where.mkdir()
    for key, value in data.items():
        (where / key).write_bytes(base64.b64decode(value))
    return where


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_verifies_the_intermediate_against_the_central_root(
    central: dict[str, str], signer: ca.Signer, tmp_path: Path
) -> None:
    cacerts = write(ca.mint(signer, "eu", NOW), tmp_path / "cacerts")
    root = write(central, tmp_path / "central")
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int(NOW.timestamp()) + 60),
            "-CAfile",
            str(root / "ca-cert.pem"),
            "-untrusted",
            str(cacerts / "cert-chain.pem"),
            str(cacerts / "ca-cert.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert (cacerts / "root-cert.pem").read_bytes() == (root / "ca-cert.pem").read_bytes()
    assert (cacerts / "ca-key.pem").read_bytes() != (root / "ca-key.pem").read_bytes()
    assert (cacerts / "ca-key.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY")


def test_kept_while_good_renewed_before_expiry(signer: ca.Signer) -> None:
    cacerts = ca.mint(signer, "eu", NOW)
    assert ca.keep(cacerts, signer, "eu", NOW + datetime.timedelta(days=300))
    renew_at = NOW + ca.LIFETIME - ca.RENEW_BEFORE
    assert not ca.keep(cacerts, signer, "eu", renew_at + datetime.timedelta(hours=1))


def test_not_kept_for_another_remote_a_new_central_ca_or_a_tampered_key(
    signer: ca.Signer,
) -> None:
    cacerts = ca.mint(signer, "eu", NOW)
    assert not ca.keep(cacerts, signer, "us", NOW)
    rotated = ca.Signer.from_secret(ca.self_signed_root("cluster.local", NOW))
    assert not ca.keep(cacerts, rotated, "eu", NOW)
    other = ca.mint(signer, "eu", NOW)
    assert not ca.keep({**cacerts, "ca-key.pem": other["ca-key.pem"]}, signer, "eu", NOW)
    assert not ca.keep(None, signer, "eu", NOW)


def test_central_ca_problems_are_named(central: dict[str, str]) -> None:
    with pytest.raises(ca.CAError, match=r"lacks ca-key\.pem"):
        ca.Signer.from_secret({"ca-cert.pem": central["ca-cert.pem"]})
    other = ca.self_signed_root("cluster.local", NOW)
    with pytest.raises(ca.CAError, match=r"not the key of ca-cert\.pem"):
        ca.Signer.from_secret({**central, "ca-key.pem": other["ca-key.pem"]})


DAY = datetime.timedelta(days=1)


@pytest.mark.parametrize(
    ("central_life", "checked_at", "kept"),
    [
        # A central CA of ten years: the intermediate lasts a year, renewed in its last month.
        (3650 * DAY, 300 * DAY, True),
        (3650 * DAY, 340 * DAY, False),
        # Citadel's self-signed CA lasts a year (istio 1.0.5 security/cmd/istio_ca/main.go
        # line 50: defaultSelfSignedCACertTTL = 365 * 24 * time.Hour, the default of
        # --self-signed-ca-cert-ttl): the intermediate ends with it, and is never re-minted
        # in the central CA's last month (a new one could last no longer).
        (365 * DAY, 340 * DAY, True),
        (365 * DAY, 364 * DAY, True),
        # A central CA three days from expiry: kept every pass until then.
        (3 * DAY, 0 * DAY, True),
        (3 * DAY, 2 * DAY, True),
    ],
)
def test_an_intermediate_is_minted_once_in_every_month_of_the_central_cas_life(
    central_life: datetime.timedelta, checked_at: datetime.timedelta, kept: bool
) -> None:
    """Before: in the central CA's last 30 days every pass minted a new `cacerts` (the
    intermediate could not outlive the central CA, so it was always "due")."""
    signer = ca.Signer.from_secret(ca.self_signed_root("c", NOW, lifetime=central_life))
    cacerts = ca.mint(signer, "eu", NOW)
    assert ca.keep(cacerts, signer, "eu", NOW + checked_at) is kept


def test_a_central_ca_that_cannot_sign_an_intermediate_is_refused() -> None:
    """pathlen:0 (what Istio's tools/certs make of a per-cluster intermediate) allows no CA
    below it: every workload chain would fail `path length constraint exceeded`."""
    with pytest.raises(ca.CAError, match="pathlen:0"):
        ca.Signer.from_secret(ca.self_signed_root("c", NOW, path_length=0))
    assert ca.Signer.from_secret(ca.self_signed_root("c", NOW, path_length=1))
    expired = ca.Signer.from_secret(ca.self_signed_root("c", NOW - 2 * DAY, lifetime=DAY))
    with pytest.raises(ca.CAError, match="expired on"):
        expired.check_time(NOW)
    ca.Signer.from_secret(ca.self_signed_root("c", NOW)).check_time(NOW)


def test_an_intermediate_gitmesh_minted_cannot_be_a_central_ca(signer: ca.Signer) -> None:
    """A remote's intermediate (CA, pathlen 0) handed over as a central CA is refused."""
    minted = ca.mint(signer, "eu", NOW)
    with pytest.raises(ca.CAError, match="pathlen:0"):
        ca.Signer.from_secret({k: minted[k] for k in ("ca-cert.pem", "ca-key.pem")})
