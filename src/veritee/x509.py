"""Certificates and CRLs for every verifier: loading from any encoding, and a cache.

Shared by the per-TEE verifiers (verification layer: may use ``cryptography``, never the
network, the disk or the clock).

AMD VCEKs and VLEKs carry serial number 0, which RFC 5280 forbids; ``cryptography`` warns
that it will refuse such certificates "in a future release". The pinned version accepts them
and the warning is silenced for that one message only (amd-sev.md §2.5, §5.10): by a filter
at import and, because a process may turn warnings into errors (``python -W error``, pytest's
``filterwarnings = error``), around the parse itself, so that a certificate parses the same
in every process. Read the serial from :attr:`Cert.serial`, which was taken under that guard,
rather than from ``Cert.cert``.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from veritee.errors import ExpiredError, MalformedEvidenceError
from veritee.evidence import b64decode_any, textproto_bytes

_SERIAL_WARNING = "Parsed a serial number which wasn't positive"
warnings.filterwarnings("ignore", message=_SERIAL_WARNING,
                        category=CryptographyDeprecationWarning)
#: ``warnings.catch_warnings`` swaps process-wide state: one parse at a time inside it.
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def _quiet_parse() -> Iterator[None]:
    """Parse the same way whatever the process does with warnings: tolerate serial 0, and
    ignore the UserWarnings cryptography emits for odd name attributes (such as a country
    name that is not two letters); the signatures decide what such a certificate is worth."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SERIAL_WARNING,
                                category=CryptographyDeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield

_PEM_CERT = (b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----")
_PEM_CRL = (b"-----BEGIN X509 CRL-----", b"-----END X509 CRL-----")


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
    serial: int
    """The serial number (0 on AMD VCEKs and VLEKs)."""

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
    """Certificate DERs and CRL DERs found in ``blob`` (PEM bundle, DER, or base64 DER).

    A DER blob is taken as its first element: bytes after it (padding in a certificate
    table, a trailing newline) are ignored and never stripped from the element itself.
    """
    certs = _pem_blocks(blob, *_PEM_CERT)
    crls = _pem_blocks(blob, *_PEM_CRL)
    if certs or crls:
        return certs, crls
    if _TEXTPROTO_CERT in blob:
        return _textproto_certs(blob), []
    der = _der_element(blob) or _der_element(blob.strip())
    if der is None:
        stripped = blob.strip()
        decoded = b64decode_any(stripped) if stripped and len(stripped) < 1 << 20 else None
        der = _der_element(decoded) if decoded else None
    if der is None:
        return [], []
    return ([], [der]) if _looks_like_crl(der) else ([der], [])


#: Project Oak's endorsements are protobuf text: ``tee_certificate: "<escaped DER>"``.
_TEXTPROTO_CERT = b"tee_certificate:"


def _textproto_certs(blob: bytes) -> list[bytes]:
    try:
        values = textproto_bytes(blob, "tee_certificate")
    except MalformedEvidenceError:
        return []
    return [der for value in values if (der := _der_element(value)) is not None]


def _pem_blocks(blob: bytes, begin: bytes, end: bytes) -> list[bytes]:
    """The decoded bodies of every ``begin``…``end`` block (one linear scan)."""
    out: list[bytes] = []
    pos = 0
    while (start := blob.find(begin, pos)) >= 0:
        stop = blob.find(end, start + len(begin))
        if stop < 0:
            break
        body = _pem_body(blob[start + len(begin) : stop])
        if body:
            out.append(body)
        pos = stop + len(end)
    return out


def _pem_body(text: bytes) -> bytes:
    return b64decode_any(b"".join(text.split())) or b""


def _der_element(blob: bytes) -> bytes | None:
    """The leading DER SEQUENCE of ``blob`` when its length fits in ``blob``; else None."""
    if len(blob) < 2 or blob[0] != 0x30:
        return None
    first = blob[1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        if not 0 < count <= 4 or len(blob) < 2 + count:
            return None
        header, length = 2 + count, int.from_bytes(blob[2 : 2 + count], "big")
    end = header + length
    return blob[:end] if end <= len(blob) else None


def _looks_like_crl(der: bytes) -> bool:
    return _parse_crl(der) is not None


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
        with _quiet_parse():
            cert = x509.load_der_x509_certificate(der)
            serial = cert.serial_number
            subject_cn, issuer_cn = _cn(cert.subject), _cn(cert.issuer)
        canonical = cert.public_bytes(Encoding.DER)
        return Cert(
            cert=cert,
            der=canonical,
            sha256=hashlib.sha256(canonical).hexdigest(),
            subject_cn=subject_cn,
            issuer_cn=issuer_cn,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            public_key=cert.public_key(),
            serial=serial,
        )
    except Exception:  # ValueError, and library-specific ones (InvalidVersion, key types)
        return None


def _parse_crl(der: bytes) -> Crl | None:
    try:
        with _quiet_parse():
            crl = x509.load_der_x509_crl(der)
            issuer_cn = _cn(crl.issuer)
        return Crl(crl=crl, der=der, issuer_cn=issuer_cn)
    except Exception:  # ValueError, and library-specific ones such as InvalidVersion
        return None
