"""Certificate and CRL loading (veritee.x509): every encoding, no stripping, no hang."""

from __future__ import annotations

import base64
import hashlib
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from veritee.errors import ExpiredError
from veritee.testing.snp import SnpEmulator
from veritee.x509 import CertCache, split_pem_or_der

_WHITESPACE = b" \t\n\r\x0b\x0c"
_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _cert(serial: int) -> bytes:
    """A small self-signed Ed25519 certificate (deterministic for a serial)."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"test {serial}")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(serial)
        .not_valid_before(_T0).not_valid_after(_T0 + timedelta(days=1))
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _cert_ending_in_whitespace() -> bytes:
    for serial in range(1, 5000):
        der = _cert(serial)
        if der[-1] in _WHITESPACE:
            return der
    raise AssertionError("no certificate ends in a whitespace byte")


@pytest.fixture(scope="module")
def crl_der() -> bytes:
    return SnpEmulator().crl()


def test_der_ending_in_whitespace_byte_is_not_stripped() -> None:
    # A signature whose last byte is 0x20, 0x0a, ... is as likely as 6 in 256. Stripping
    # it made one VCEK in ~40 unreadable (found by the emulated matrix: flaky "VCEK missing").
    der = _cert_ending_in_whitespace()
    assert split_pem_or_der(der) == ([der], [])
    assert CertCache().cert(der) is not None


@pytest.mark.parametrize(
    ("name", "wrap"),
    [
        ("der", lambda d: d),
        ("der followed by zero padding", lambda d: d + bytes(100)),
        ("der followed by a newline", lambda d: d + b"\n"),
        ("base64", base64.b64encode),
        ("base64 with newline", lambda d: base64.b64encode(d) + b"\n"),
        ("base64url", lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")),
        ("pem", lambda d: x509.load_der_x509_certificate(d).public_bytes(
            serialization.Encoding.PEM)),
        ("pem with text around", lambda d: b"subject=...\n" + x509.load_der_x509_certificate(
            d).public_bytes(serialization.Encoding.PEM) + b"trailer\n"),
    ],
)
def test_certificate_encodings(name: str, wrap: object) -> None:
    der = _cert(7)
    assert split_pem_or_der(wrap(der)) == ([der], []), name  # type: ignore[operator]


def test_pem_bundle_keeps_order_and_finds_crls(crl_der: bytes) -> None:
    certs = [_cert(i) for i in (1, 2, 3)]
    pem = b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                   for d in certs)
    crl_pem = x509.load_der_x509_crl(crl_der).public_bytes(serialization.Encoding.PEM)
    assert split_pem_or_der(pem + crl_pem) == (certs, [crl_der])


@pytest.mark.parametrize("wrap", [lambda d: d, base64.b64encode, lambda d: d + bytes(8)])
def test_crl_der_is_recognised(crl_der: bytes, wrap: object) -> None:
    assert split_pem_or_der(wrap(crl_der)) == ([], [crl_der])  # type: ignore[operator]


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x30", b"\x30\x82", b"\x30\x84\xff\xff\xff\xff", b"\x30\x80\x00\x00",
     b"not a certificate", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
     b"-----BEGIN CERTIFICATE-----\nAAAA", b"\x00" * 64],
)
def test_garbage_gives_nothing(blob: bytes) -> None:
    certs, crls = split_pem_or_der(blob)
    cache = CertCache()
    assert all(cache.cert(c) is None for c in certs)
    assert crls == [] or all(c for c in crls)


def test_pem_scan_is_linear() -> None:
    # Many BEGIN markers without an END made the old regex scan quadratically (a hang).
    blob = b"-----BEGIN CERTIFICATE-----" * 40_000 + b"-----BEGIN X509 CRL-----" * 40_000
    assert split_pem_or_der(blob) == ([], [])


def test_cache_remembers_failures_and_bounds_its_size() -> None:
    cache = CertCache(max_entries=2)
    assert cache.cert(b"\x30\x03\x02\x01\x00") is None
    for serial in (1, 2, 3):
        assert cache.cert(_cert(serial)) is not None
    assert len(cache) == 2


def test_check_validity_names_both_instants() -> None:
    cert = CertCache().cert(_cert(1))
    assert cert is not None
    cert.check_validity(_T0, "test cert")
    cert.check_validity(_T0 + timedelta(days=1), "test cert")
    with pytest.raises(ExpiredError, match="not valid before"):
        cert.check_validity(_T0 - timedelta(seconds=1), "test cert")
    with pytest.raises(ExpiredError, match="expired at"):
        cert.check_validity(_T0 + timedelta(days=1, seconds=1), "test cert")


def test_unsupported_certificate_content_is_none() -> None:
    der = bytearray(_cert(1))
    # Break the public key algorithm OID (Ed25519 1.3.101.112 → 1.3.101.113 = Ed448 with a
    # 32-byte key): the certificate parses, its key does not.
    at = der.find(bytes.fromhex("300506032b6570032100"))
    der[at + 6] = 0x71
    assert CertCache().cert(bytes(der)) is None


def test_certificates_with_sha256_rsa_are_parsed() -> None:
    # The loader is not AMD-specific: any X.509 certificate parses.
    emu = SnpEmulator()
    der = emu.chain["ark"]
    cert = CertCache().cert(der)
    assert cert is not None
    assert cert.subject_cn == "ARK-Milan"
    assert cert.sha256 == hashlib.sha256(der).hexdigest()
    assert isinstance(cert.cert.signature_hash_algorithm, hashes.SHA384)


def test_serial_zero_parses_when_warnings_are_errors() -> None:
    # AMD VCEKs have serial 0; cryptography warns on load and on .serial_number. With
    # warnings as errors (pytest's filterwarnings = error, python -W error) every real VCEK
    # used to be dropped as unparsable and the verifier asked KDS for it.
    der = SnpEmulator().chain["vek"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = CertCache().cert(der)
    assert cert is not None
    assert cert.serial == 0
    assert cert.subject_cn == "SEV-VCEK"


def test_crl_with_an_invalid_version_is_no_crl(crl_der: bytes) -> None:
    # Found by fuzzing CRL endorsements: cryptography raises InvalidVersion, which is not a
    # ValueError, for a CRL whose version field says 0.
    broken = bytearray(crl_der)
    at = crl_der.index(b"\x02\x01\x01")  # TBSCertList.version = v2
    broken[at + 2] = 0
    assert CertCache().blob(bytes(broken)) == ((), ())


def test_odd_name_attributes_parse_the_same_whatever_the_warning_filters() -> None:
    # Found by flipping one byte of a VCEK: Locality "Santa Clara" relabelled as the country
    # name makes cryptography warn ("length must be >= 2 and <= 2"); with warnings as errors
    # the certificate used to vanish, without them it parsed.
    der = SnpEmulator().chain["vek"]
    locality = bytes.fromhex("0603550407")
    assert locality in der
    odd = der.replace(locality, bytes.fromhex("0603550406"), 1)
    for action in ("error", "ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter(action)
            cert = CertCache().cert(odd)
        assert cert is not None and cert.subject_cn == "SEV-VCEK", action
