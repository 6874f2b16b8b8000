"""The AK trust anchors an operator supplies: public keys (PEM or DER SubjectPublicKeyInfo,
JWK, TPMT_PUBLIC or TPM2B_PUBLIC) and CA certificates (PEM or DER, one or many), and how an
AK is found trusted by them.

No vendor roots are pinned: TPM AKs are per machine, and the GCE EK/AK CAs
(go-tpm-tools ``server/ca-certs``) are operator choices, supplied like any CA. An AK is
trusted when its public key equals a supplied key, or when its AK certificate chains, through
the evidence's intermediates, to a supplied CA certificate at the verification instant
(signature links only: go-tpm-tools tolerates GCE's critical SAN extension, and so do we by
not applying a TLS profile).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.collateral import CollateralFile
from veritee.encoding import b64url_decode
from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    MisuseError,
    UntrustedRootError,
    VeriteeError,
)
from veritee.tee.tpm.structures import PublicKey, parse_public, parse_public_2b
from veritee.x509 import Cert, issued_by, parse_cert, same_key, split_pem_or_der

#: Certificates between an AK certificate and its CA, at most.
MAX_CHAIN: Final = 8
_JWK_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


@dataclass(frozen=True, slots=True)
class TpmRoot:
    """One trust anchor: an AK public key or a CA certificate."""

    name: str
    key: PublicKey | None = None
    certificate: Cert | None = None
    emulated: bool = False
    #: The key's DER SubjectPublicKeyInfo and its SHA-256 (the ``signer`` claim), computed
    #: once when the anchor is made (anchors change only when the operator's files do).
    spki: bytes | None = field(default=None, init=False, repr=False, compare=False)
    signer: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.key is not None:
            der = spki_of(self.key)
            object.__setattr__(self, "spki", der)
            object.__setattr__(self, "signer", hashlib.sha256(der).digest())

    @classmethod
    def from_bytes(cls, blob: bytes, name: str, *, emulated: bool = False) -> list[TpmRoot]:
        """The anchors in one file (every certificate of a bundle, or one key); empty when
        it holds none. Never raises: unusable bytes give an empty list."""
        certs, _ = split_pem_or_der(blob)
        parsed = [c for c in (parse_cert(d) for d in certs) if c is not None]
        if parsed:
            return [cls(f"{name} ({c.subject_cn})", certificate=c, emulated=emulated)
                    for c in parsed]
        key = load_key(blob)
        return [cls(name, key=key, emulated=emulated)] if key is not None else []


def load_key(blob: bytes) -> PublicKey | None:
    """An RSA or EC public key from PEM/DER SPKI, a JWK, a TPMT_PUBLIC or a TPM2B_PUBLIC;
    None when ``blob`` is none of these."""
    stripped = blob.strip()
    loaders: list[Any] = []
    if stripped.startswith(b"-----BEGIN PUBLIC KEY-----"):
        loaders.append(lambda: serialization.load_pem_public_key(stripped))
    elif stripped.startswith(b"{"):
        loaders.append(lambda: _jwk(stripped))
    else:
        loaders += [lambda: serialization.load_der_public_key(blob),
                    lambda: parse_public(blob).key, lambda: parse_public_2b(blob).key]
    for load in loaders:
        try:
            key = load()
        except (ValueError, TypeError, VeriteeError):
            continue
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            return key
    return None


def _jwk(text: bytes) -> PublicKey | None:
    try:
        jwk = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(jwk, dict) and isinstance(jwk.get("keys"), list) and jwk["keys"]:
        jwk = jwk["keys"][0]
    if not isinstance(jwk, dict):
        return None
    ints = {k: b64url_decode(jwk[k]) for k in ("n", "e", "x", "y") if isinstance(jwk.get(k), str)}
    number = {k: int.from_bytes(v, "big") for k, v in ints.items() if v is not None}
    if jwk.get("kty") == "RSA" and {"n", "e"} <= number.keys():
        return rsa.RSAPublicNumbers(number["e"], number["n"]).public_key()
    curve = _JWK_CURVES.get(str(jwk.get("crv")))
    if jwk.get("kty") == "EC" and curve is not None and {"x", "y"} <= number.keys():
        return ec.EllipticCurvePublicNumbers(number["x"], number["y"], curve).public_key()
    return None


def anchors_from(files: Iterable[CollateralFile]) -> list[TpmRoot]:
    """The anchors in the operator's files; a file the operator named that holds none is
    misuse (files found in a directory that hold none are ignored).

    Raises:
        MisuseError: a named file holds no key or certificate.
    """
    out: list[TpmRoot] = []
    for item in files:
        found = TpmRoot.from_bytes(item.data, item.name)
        if not found and item.named:
            raise MisuseError(
                f"{item.origin} file {item.name} holds no AK public key (PEM/DER SPKI, JWK, "
                "TPMT_PUBLIC) and no CA certificate")
        out += found
    return out


def key_anchor(key: PublicKey, anchors: Sequence[TpmRoot]) -> TpmRoot | None:
    """The supplied key equal to ``key`` (the same SPKI, as :func:`~veritee.x509.same_key`
    compares keys), if any."""
    if not any(a.key is not None for a in anchors):
        return None
    der = spki_of(key)
    return next((a for a in anchors if a.key is not None and a.spki == der), None)


def spki_of(key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_anchor(ak_cert: bytes, ak: PublicKey, intermediates: Sequence[bytes],
                       anchors: Sequence[TpmRoot], now: datetime) -> TpmRoot | None:
    """The supplied CA the AK certificate chains to; None when no CA is supplied.

    Raises:
        MalformedEvidenceError: the AK certificate or an intermediate does not parse.
        BindingError: the AK certificate certifies another key than the AK.
        ExpiredError: a certificate on the chain is not valid at ``now``.
        UntrustedRootError: CAs are supplied and the chain reaches none of them.
    """
    leaf = _cert(ak_cert, "the AK certificate")
    if not same_key(leaf.public_key, ak):
        raise BindingError(f"the AK certificate ({leaf.subject_cn}) certifies another key than "
                           "the AK that signed the quote")
    cas = [a for a in anchors if a.certificate is not None]
    if not cas:
        return None
    pool = [_cert(d, f"intermediate certificate {n}") for n, d in enumerate(intermediates)]
    cert = leaf
    for _ in range(MAX_CHAIN + 1):
        cert.check_validity(now, f"certificate {cert.subject_cn}")
        found = next((a for a in cas if a.certificate is not None and (
            a.certificate.sha256 == cert.sha256 or issued_by(cert, a.certificate))), None)
        if found is not None:
            assert found.certificate is not None
            found.certificate.check_validity(now, f"CA certificate {found.name}")
            return found
        issuer = next((c for c in pool if c.sha256 != cert.sha256 and issued_by(cert, c)), None)
        if issuer is None:
            break
        cert = issuer
    names = ", ".join(a.name for a in cas)
    raise UntrustedRootError(
        f"the AK certificate ({leaf.subject_cn}) does not chain to a supplied CA ({names}); "
        f"the chain ends at {cert.subject_cn}, issued by {cert.issuer_cn}")


def _cert(der: bytes, what: str) -> Cert:
    cert = parse_cert(der)
    if cert is None:
        raise MalformedEvidenceError(f"{what} is not a DER X.509 certificate")
    return cert


__all__ = ["TpmRoot", "anchors_from", "certificate_anchor", "key_anchor",
           "load_key", "spki_of"]
