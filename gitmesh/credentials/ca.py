"""An intermediate CA per remote, signed by the central CA: the remote's `cacerts`.

Istio's "plug in CA certificates" layout: `ca-cert.pem` and `ca-key.pem` are the remote's
own intermediate (citadel signs workload certificates with them), `root-cert.pem` is the
central root, `cert-chain.pem` runs from the intermediate up to that root. The central
key never leaves central: a compromised remote holds only its own intermediate, which
the central CA can stop renewing.

`keep` decides whether a remote's current `cacerts` is still good (signed by today's
central CA, for this remote, its key matching, far enough from expiry), so a no-op pass
writes nothing; `mint` makes a new one. Keys are RSA (PKCS#1), as citadel 1.0 and 1.1
read them (security/pkg/pki/util/crypto.go, keycertbundle.go at istio 1.0.5).
"""

from __future__ import annotations

import base64
import datetime
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

LIFETIME = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)  # renewed once less than this is left
KEY_SIZE = 2048
ORGANIZATION = "gitmesh"
KEYS = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")


class CAError(ValueError):
    """The central CA material cannot sign an intermediate (missing, unparsable, not a CA,
    pathlen 0, expired)."""


@dataclass(frozen=True, slots=True)
class Signer:
    """The central CA: the certificate and key that sign, and the chain up to the root."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain_pem: bytes  # from the signer up to (and including) the root
    root_pem: bytes

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> Signer:
        """From the base64 data of the central CA Secret (Istio's `istio-ca-secret` or a
        plugged-in `cacerts`). Cached by that data: every remote of a pass needs it."""
        return _signer(tuple(sorted(data.items())))

    def check_time(self, now: datetime.datetime) -> None:
        """Refuse a central CA that is not valid at `now`: what it signed would not be."""
        if now >= self.cert.not_valid_after_utc:
            raise CAError(f"expired on {self.cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z")
        if now < self.cert.not_valid_before_utc:
            raise CAError(f"is not valid before {self.cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z")

    @classmethod
    def _load(cls, data: Mapping[str, str]) -> Signer:
        try:
            cert_pem = base64.b64decode(data["ca-cert.pem"])
            key_pem = base64.b64decode(data["ca-key.pem"])
            cert = x509.load_pem_x509_certificate(cert_pem)
            # The key is checked against the certificate below; OpenSSL's RSA checks on
            # load cost a quarter of a second for a 2048-bit key.
            key = serialization.load_pem_private_key(
                key_pem, password=None, unsafe_skip_rsa_key_validation=True
            )
        except KeyError as e:
            raise CAError(f"lacks {e.args[0]}") from None
        except ValueError as e:
            raise CAError(f"cannot be read: {e}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CAError("its key is neither RSA nor EC")
        if key.public_key() != cert.public_key():
            raise CAError("ca-key.pem is not the key of ca-cert.pem")
        _check_can_sign_a_ca(cert)
        root_pem = base64.b64decode(data.get("root-cert.pem") or "") or cert_pem
        chain_pem = base64.b64decode(data.get("cert-chain.pem") or "") or cert_pem
        if root_pem.strip() not in chain_pem:
            chain_pem = chain_pem.rstrip(b"\n") + b"\n" + root_pem
        return cls(cert, key, chain_pem, root_pem)


def _check_can_sign_a_ca(cert: x509.Certificate) -> None:
    """gitmesh signs a CA under the central CA (each remote's intermediate), so the
    central certificate must be a CA whose path length leaves room for one more CA below
    it (RFC 5280 4.2.1.9: pathLenConstraint 0 allows end-entity certificates only) and
    whose key usage, if it has one, includes certificate signing."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CAError("ca-cert.pem is not a CA certificate (no basicConstraints)") from None
    if not constraints.ca:
        raise CAError("ca-cert.pem is not a CA certificate (basicConstraints CA:FALSE)")
    if constraints.path_length == 0:
        raise CAError(
            "ca-cert.pem has pathlen:0: it may sign workload certificates but no CA, and "
            "gitmesh signs an intermediate CA per remote under it; use a CA with a path "
            "length of at least 1 (or none), or set citadel.caSecretName"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise CAError("ca-cert.pem's key usage does not include keyCertSign")


@functools.lru_cache(maxsize=8)
def _signer(items: tuple[tuple[str, str], ...]) -> Signer:
    return Signer._load(dict(items))


def _name(remote: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Intermediate CA for remote {remote}"),
        ]
    )


def _ca_builder(
    *,
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    signer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    path_length: int | None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
        .sign(signer_key, hashes.SHA256())
    )


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _b64(pems: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in pems.items()}


def mint(signer: Signer, remote: str, now: datetime.datetime) -> dict[str, str]:
    """A new intermediate CA for `remote`: the `cacerts` data, base64 as Secrets hold it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    cert = _ca_builder(
        subject=_name(remote),
        key=key,
        issuer=signer.cert.subject,
        signer_key=signer.key,
        not_before=now - datetime.timedelta(minutes=5),
        not_after=min(now + LIFETIME, signer.cert.not_valid_after_utc),
        path_length=0,
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return _b64(
        {
            "ca-cert.pem": cert_pem,
            "ca-key.pem": _pem_key(key),
            "root-cert.pem": signer.root_pem,
            "cert-chain.pem": cert_pem + signer.chain_pem,
        }
    )


def self_signed_root(
    organization: str,
    now: datetime.datetime,
    *,
    lifetime: datetime.timedelta = 10 * LIFETIME,
    path_length: int | None = None,
) -> dict[str, str]:
    """A root CA as Istio's self-signed citadel keeps it in `istio-ca-secret`
    (`ca-cert.pem`, `ca-key.pem`): for the demo and tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    cert = _ca_builder(
        subject=name,
        key=key,
        issuer=name,
        signer_key=key,
        not_before=now,
        not_after=now + lifetime,
        path_length=path_length,
    )
    return _b64(
        {"ca-cert.pem": cert.public_bytes(serialization.Encoding.PEM), "ca-key.pem": _pem_key(key)}
    )


def keep(
    current: Mapping[str, str] | None, signer: Signer, remote: str, now: datetime.datetime
) -> bool:
    """Whether a remote's `cacerts` data can stay as it is."""
    if not current or set(current) != set(KEYS):
        return False
    window = _valid_window(
        tuple(current[k] for k in KEYS),
        signer.cert.public_bytes(serialization.Encoding.DER),
        signer.root_pem,
        remote,
    )
    if window is None or window[0] > now:
        return False
    # Far from expiry; or as long as the central CA lets it last (in the central CA's last
    # month a new one could last no longer: re-minting it every pass would only churn).
    return window[1] - now >= RENEW_BEFORE or window[1] >= signer.cert.not_valid_after_utc


@functools.lru_cache(maxsize=4096)
def _valid_window(
    data: tuple[str, ...], signer_der: bytes, root_pem: bytes, remote: str
) -> tuple[datetime.datetime, datetime.datetime] | None:
    """(not before, not after) of a well-formed intermediate for `remote` signed by the
    signer; None otherwise. Cached: a pass re-checks every remote's unchanged cacerts."""
    try:
        pems = dict(zip(KEYS, (base64.b64decode(v) for v in data), strict=True))
        cert = x509.load_pem_x509_certificate(pems["ca-cert.pem"])
        key = serialization.load_pem_private_key(
            pems["ca-key.pem"], password=None, unsafe_skip_rsa_key_validation=True
        )
        signer = x509.load_der_x509_certificate(signer_der)
    except ValueError:
        return None
    if pems["root-cert.pem"] != root_pem or not pems["cert-chain.pem"].startswith(
        pems["ca-cert.pem"]
    ):
        return None
    if cert.subject != _name(remote) or cert.issuer != signer.subject:
        return None
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
        return None
    try:
        cert.verify_directly_issued_by(signer)
    except (InvalidSignature, ValueError, TypeError):
        return None
    return cert.not_valid_before_utc, cert.not_valid_after_utc
