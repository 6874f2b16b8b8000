"""Certificates, CRLs and chains for every verifier: loading from any encoding, a cache,
signature links, CRL checks and pinned roots.

Verification layer: may use ``cryptography``; never the network, the disk or the clock (the
verification instant is an argument).

AMD VCEKs and VLEKs carry serial number 0, which RFC 5280 forbids and which ``cryptography``
warns about when it loads them. Nothing here touches the process's warning filters (they are
process-wide and not thread-safe): :mod:`veritee._der` reads the serial and the common names
from the DER itself, and a certificate with a non-positive serial is loaded from a copy whose
serial byte is made positive. :attr:`Cert.der`, :attr:`Cert.tbs` and :attr:`Cert.signature`
are the original bytes, and :attr:`Cert.serial` the real serial; read them rather than the
``cryptography`` object's.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from veritee import _der
from veritee.encoding import b64decode_any
from veritee.errors import ChainError, ExpiredError, MalformedEvidenceError, UntrustedRootError
from veritee.evidence import textproto_bytes

_PEM_CERT = (b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----")
_PEM_CRL = (b"-----BEGIN X509 CRL-----", b"-----END X509 CRL-----")


@dataclass(frozen=True, slots=True)
class Cert:
    """A parsed certificate with the facts verifiers ask for often, computed once."""

    cert: x509.Certificate
    """For extensions, the public key and the signature algorithm. Its serial is not the
    certificate's when that is zero or negative: use :attr:`serial`."""
    der: bytes
    sha256: str
    subject_cn: str
    issuer_cn: str
    not_before: datetime
    not_after: datetime
    public_key: Any
    serial: int
    """The serial number (0 on AMD VCEKs and VLEKs)."""
    tbs: bytes
    """The signed TBSCertificate bytes, as they are in :attr:`der`."""
    signature: bytes

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

    def lists(self, cert: Cert) -> bool:
        """True when ``cert``'s serial is on this CRL (callers check the CRL's signature)."""
        return self.crl.get_revoked_certificate_by_serial_number(cert.serial) is not None


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
    return ([], [der]) if _parse_crl(der) is not None else ([der], [])


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
        body = b64decode_any(b"".join(blob[start + len(begin) : stop].split())) or b""
        if body:
            out.append(body)
        pos = stop + len(end)
    return out


def _der_element(blob: bytes) -> bytes | None:
    """The leading DER SEQUENCE of ``blob`` when its length fits in ``blob``; else None."""
    if len(blob) < 2 or blob[0] != 0x30:
        return None
    try:
        _, _, end = _der.tlv(blob, 0)
    except ValueError:
        return None
    return blob[:end]


# -- parsing and caching --------------------------------------------------------------------------


@dataclass
class CertCache:
    """Parsed certificates, CRLs and verified signature links, keyed by content.

    One instance per verifier (never module-global): tests and tenants stay apart. Safe to
    share between threads; a lookup never waits for another thread's parse (two threads may
    parse the same bytes once each, and keep the same result).
    """

    max_entries: int = 4096
    _certs: dict[bytes, Cert | None] = field(default_factory=dict)
    _blobs: dict[bytes, tuple[tuple[Cert, ...], tuple[Crl, ...]]] = field(default_factory=dict)
    _links: dict[tuple[str, str], bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        """How many certificates, blobs and links are remembered."""
        return len(self._certs) + len(self._blobs) + len(self._links)

    def cert(self, der: bytes) -> Cert | None:
        """The parsed certificate for ``der``, or None when it does not parse."""
        hit = self._certs.get(der, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        parsed = parse_cert(der)
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

    def link(self, cert: Cert, issuer: Cert, check: Callable[[Cert, Cert], bool]) -> bool:
        """Whether ``issuer`` signed ``cert`` (``check`` decides; the answer is remembered)."""
        key = (cert.sha256, issuer.sha256)
        ok = self._links.get(key)
        if ok is None:
            ok = check(cert, issuer)
            self._remember(self._links, key, ok)
        return ok

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        with self._lock:
            if len(table) >= self.max_entries:
                table.pop(next(iter(table)))
            table[key] = value


_MISS = object()


def parse_cert(der: bytes) -> Cert | None:
    """A :class:`Cert` for DER bytes (the first element of ``der``), or None when they are
    not a certificate."""
    try:
        tag, start, end = _der.tlv(der, 0)
        original = der[:end]
        parts = _der.children(original, start, end)
        if tag != 0x30 or len(parts) != 3 or parts[2][0] != 0x03:
            return None
        serial, offset, subject_cn, issuer_cn = _der.certificate_facts(original)
        loadable = _der.positive_serial_copy(original, serial, offset)
        cert = _load(x509.load_der_x509_certificate, loadable)
        public_key = cert.public_key()
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    except (ValueError, IndexError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        return None
    return Cert(cert=cert, der=original, sha256=hashlib.sha256(original).hexdigest(),
                subject_cn=subject_cn, issuer_cn=issuer_cn, not_before=not_before,
                not_after=not_after, public_key=public_key, serial=serial,
                tbs=original[start : parts[0][2]],
                signature=original[parts[2][1] + 1 : parts[2][2]])


def _parse_crl(der: bytes) -> Crl | None:
    try:
        issuer_cn = _der.crl_issuer_cn(der)
        crl = _load(x509.load_der_x509_crl, der)
    except (ValueError, IndexError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        return None
    return Crl(crl=crl, der=der, issuer_cn=issuer_cn)


def _load(loader: Callable[[bytes], Any], der: bytes) -> Any:
    """``loader(der)``; a warning that this process turns into an error refuses the bytes
    (the serial and the names that make cryptography warn were dealt with above)."""
    try:
        return loader(der)
    except Warning as exc:
        raise ValueError(str(exc)) from exc


# -- signatures, chains, CRLs, pins ----------------------------------------------------------------


def signature_verifies(signed: bytes, signature: bytes, key: Any, *,
                       rsa_padding: padding.AsymmetricPadding | None,
                       algorithm: hashes.HashAlgorithm | None) -> bool:
    """Whether ``signature`` over ``signed`` verifies under ``key`` (RSA with the padding
    given, ECDSA with ``algorithm``, Ed25519)."""
    try:
        if isinstance(key, rsa.RSAPublicKey) and rsa_padding is not None and algorithm:
            key.verify(signature, signed, rsa_padding, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, signed, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def same_key(one: Any, other: Any) -> bool:
    """Whether two ``cryptography`` public keys are the same key (their SPKI encodings)."""
    def spki(key: Any) -> bytes:
        encoded: bytes = key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        return encoded
    return spki(one) == spki(other)


def issued_by(cert: Cert, issuer: Cert) -> bool:
    """Whether ``issuer``'s key signed ``cert`` with the algorithm ``cert`` names."""
    params = cert.cert.signature_algorithm_parameters
    rsa_padding = params if isinstance(params, padding.AsymmetricPadding) else None
    return signature_verifies(cert.tbs, cert.signature, issuer.public_key,
                              rsa_padding=rsa_padding,
                              algorithm=cert.cert.signature_hash_algorithm)


@dataclass
class CertPool:
    """Certificates and CRLs available for one verification, indexed by role (the TEE's
    ``role`` function names each certificate's place in its vendor's PKI)."""

    role: Callable[[Cert], str]
    roles: dict[str, list[Cert]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    crls: list[Crl] = field(default_factory=list)

    def add(self, cert: Cert) -> bool:
        """Add ``cert`` unless present; True when it was new."""
        if cert.sha256 in self.seen:
            return False
        self.seen.add(cert.sha256)
        self.roles.setdefault(self.role(cert), []).append(cert)
        return True

    def extend(self, certs: Iterable[Cert], crls: Iterable[Crl] = ()) -> None:
        for cert in certs:
            self.add(cert)
        self.crls.extend(crls)

    def by_role(self, role: str) -> list[Cert]:
        return self.roles.get(role, [])

    def copy(self) -> CertPool:
        return CertPool(self.role, {r: list(c) for r, c in self.roles.items()}, set(self.seen),
                        list(self.crls))


def check_link(cache: CertCache, cert: Cert, issuer: Cert, what: str,
               check: Callable[[Cert, Cert], bool] = issued_by) -> None:
    """Raise ChainError unless ``issuer`` signed ``cert`` (``check`` may impose a profile)."""
    if not cache.link(cert, issuer, check):
        raise ChainError(f"{what} does not verify ({cert.subject_cn} ← {issuer.subject_cn})")


def check_crl(crl: Crl, issuer: Cert, now: datetime, *,
              verifies: Callable[[Crl, Cert], bool]) -> None:
    """A CRL must be signed by ``issuer`` (``verifies`` decides) and current at ``now``.

    Raises:
        ChainError: it is not signed by ``issuer`` (a CRL naming an issuer it does not come
            from is an error, never skipped).
        ExpiredError: ``now`` is before its thisUpdate or after its nextUpdate.
    """
    if not verifies(crl, issuer):
        raise ChainError(f"the CRL naming {issuer.subject_cn} as its issuer is not signed by "
                         f"{issuer.subject_cn}'s key")
    last, nxt = crl.crl.last_update_utc, crl.crl.next_update_utc
    if now < last or (nxt is not None and now > nxt):
        raise ExpiredError(
            f"the {issuer.subject_cn} CRL is valid from {last.isoformat()} to "
            f"{nxt.isoformat() if nxt else 'unspecified'}; verification time is {now.isoformat()}"
        )


def require_pinned(cert: Cert, pinned: Container[str], *, what: str, vendor: str,
                   hint: str = "") -> None:
    """Raise UntrustedRootError unless ``cert``'s SHA-256 is one of ``pinned``."""
    if cert.sha256 not in pinned:
        raise UntrustedRootError(
            f"{cert.subject_cn} from the {what} has SHA-256 {cert.sha256}, which is not a "
            f"pinned {vendor} root{hint}")


__all__ = ["Cert", "CertCache", "CertPool", "Crl", "check_crl", "check_link", "issued_by",
           "parse_cert", "require_pinned", "signature_verifies", "split_pem_or_der"]
