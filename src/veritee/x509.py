"""Certificates and CRLs for every verifier: loading from any encoding, and a cache.

Shared by the per-TEE verifiers (verification layer: may use ``cryptography``, never the
network, the disk or the clock).

AMD VCEKs and VLEKs carry serial number 0, which RFC 5280 forbids; ``cryptography`` warns
that it will refuse such certificates "in a future release". The pinned version accepts them
and the warning is silenced for that one message only (amd-sev.md §2.5, §5.10).
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from veritee.errors import ExpiredError
from veritee.evidence import b64decode_any

warnings.filterwarnings(
    "ignore",
    message="Parsed a serial number which wasn't positive",
    category=CryptographyDeprecationWarning,
)

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


@dataclass(frozen=True, slots=True)
class Cert:
    """A parsed certificate with the facts verifiers ask for often, computed once."""

    cert: x509.Certificate
    der: bytes
    sha256: str
    subject_cn: str
    issuer_cn: str
    not_before: datetime
    not_after: datetime
    public_key: Any

    def check_validity(self, now: datetime, what: str) -> None:
        """Raise ExpiredError unless ``now`` lies in [notBefore, notAfter]."""
        if now < self.not_before:
            raise ExpiredError(
                f"{what} ({self.subject_cn}) is not valid before {self.not_before.isoformat()}; "
                f"verification time is {now.isoformat()}"
            )
        if now > self.not_after:
            raise ExpiredError(
                f"{what} ({self.subject_cn}) expired at {self.not_after.isoformat()}; "
                f"verification time is {now.isoformat()}"
            )


@dataclass(frozen=True, slots=True)
class Crl:
    crl: x509.CertificateRevocationList
    der: bytes
    issuer_cn: str


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def split_pem_or_der(blob: bytes) -> tuple[list[bytes], list[bytes]]:
    """Certificate DERs and CRL DERs found in ``blob`` (PEM bundle, DER, or base64 DER)."""
    certs = [_pem_body(m.group(0)) for m in _PEM_CERT.finditer(blob)]
    crls = [_pem_body(m.group(0)) for m in _PEM_CRL.finditer(blob)]
    if certs or crls:
        return [c for c in certs if c], [c for c in crls if c]
    stripped = blob.strip()
    if stripped[:1] == b"\x30":
        return ([stripped], []) if not _looks_like_crl(stripped) else ([], [stripped])
    decoded = b64decode_any(stripped) if stripped and len(stripped) < 1 << 20 else None
    if decoded and decoded[:1] == b"\x30":
        return ([decoded], []) if not _looks_like_crl(decoded) else ([], [decoded])
    return [], []


def _pem_body(pem: bytes) -> bytes:
    lines = [ln for ln in pem.splitlines()[1:-1] if ln.strip()]
    return b64decode_any(b"".join(ln.strip() for ln in lines)) or b""


def _looks_like_crl(der: bytes) -> bool:
    try:
        x509.load_der_x509_crl(der)
    except ValueError:
        return False
    return True


@dataclass
class CertCache:
    """Parsed certificates, CRLs and verified signature links, keyed by content.

    One instance per verifier (never module-global): tests and tenants stay apart.
    Safe to share between threads.
    """

    max_entries: int = 4096
    _certs: dict[bytes, Cert | None] = field(default_factory=dict)
    _blobs: dict[bytes, tuple[tuple[Cert, ...], tuple[Crl, ...]]] = field(default_factory=dict)
    _links: dict[tuple[str, str], bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cert(self, der: bytes) -> Cert | None:
        """The parsed certificate for ``der``, or None when it does not parse."""
        hit = self._certs.get(der, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        parsed = _parse_cert(der)
        self._remember(self._certs, der, parsed)
        return parsed

    def blob(self, blob: bytes) -> tuple[tuple[Cert, ...], tuple[Crl, ...]]:
        """Every certificate and CRL inside one blob (PEM bundle, DER, base64)."""
        hit = self._blobs.get(blob)
        if hit is not None:
            return hit
        cert_ders, crl_ders = split_pem_or_der(blob)
        certs = tuple(c for c in (self.cert(d) for d in cert_ders) if c is not None)
        crls = tuple(c for c in (_parse_crl(d) for d in crl_ders) if c is not None)
        self._remember(self._blobs, blob, (certs, crls))
        return certs, crls

    def link(self, key: tuple[str, str]) -> bool | None:
        return self._links.get(key)

    def set_link(self, key: tuple[str, str], ok: bool) -> None:
        self._remember(self._links, key, ok)

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        with self._lock:
            if len(table) >= self.max_entries:
                table.pop(next(iter(table)))
            table[key] = value


_MISS = object()


def _parse_cert(der: bytes) -> Cert | None:
    try:
        cert = x509.load_der_x509_certificate(der)
        canonical = cert.public_bytes(Encoding.DER)
        return Cert(
            cert=cert,
            der=canonical,
            sha256=hashlib.sha256(canonical).hexdigest(),
            subject_cn=_cn(cert.subject),
            issuer_cn=_cn(cert.issuer),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            public_key=cert.public_key(),
        )
    except (ValueError, TypeError):
        return None
    except Exception:  # noqa: BLE001 - unsupported key types raise library-specific errors
        return None


def _parse_crl(der: bytes) -> Crl | None:
    try:
        crl = x509.load_der_x509_crl(der)
        return Crl(crl=crl, der=der, issuer_cn=_cn(crl.issuer))
    except (ValueError, TypeError):
        return None
