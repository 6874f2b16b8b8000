"""Building blocks for test PKIs: committed test keys, certificates in vendor formats.

TEST KEYS ONLY. The private keys under ``veritee/testing/data`` are public; nothing they
sign is trusted unless an operator explicitly enables emulated roots.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

DATA = "veritee.testing"
PSS_SHA384 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
FAR_AHEAD = datetime(2049, 12, 31, tzinfo=UTC)


def data_path(*parts: str) -> Path:
    return Path(str(resources.files(DATA).joinpath("data", *parts)))


def load_key(name: str) -> Any:
    """A committed test private key by file stem (``data/keys/<name>.pem``)."""
    pem = data_path("keys", f"{name}.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def amd_name(common_name: str) -> x509.Name:
    """An X.509 name in AMD's shape (amd-sev.md §2.2)."""
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def sign_pss(builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA384(), rsa_padding=PSS_SHA384)


def with_serial_zero(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> bytes:
    """Re-sign ``cert`` (built with serial 1) as serial 0, as AMD's VCEKs and VLEKs are.

    ``cryptography`` refuses to build a serial of 0, so the TBS is patched (``02 01 01`` →
    ``02 01 00``, same length) and signed again; the outer lengths do not change.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    marker = b"\xa0\x03\x02\x01\x02\x02\x01\x01"  # [0] version v3, INTEGER serial 1
    at = tbs.find(marker)
    if at < 0:
        raise ValueError("certificate does not start with version 3 and serial 1")
    new_tbs = tbs[:at] + marker[:-1] + b"\x00" + tbs[at + len(marker):]
    signature = issuer_key.sign(new_tbs, PSS_SHA384, hashes.SHA384())
    if len(signature) != len(cert.signature):
        raise ValueError("signature length changed")
    out = der.replace(tbs, new_tbs, 1)
    return out[: len(out) - len(signature)] + signature


def ca_cert(subject: str, key: rsa.RSAPrivateKey, issuer: str,  # noqa: PLR0917 - AMD's shape
            issuer_key: rsa.RSAPrivateKey, serial: int, crl_url: str | None = None, *,
            not_before: datetime = LONG_AGO,
            not_after: datetime = FAR_AHEAD) -> x509.Certificate:
    """An ARK/ASK-shaped CA certificate (RSA-PSS SHA-384)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(amd_name(subject))
        .issuer_name(amd_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    )
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        ]), critical=False)
    return sign_pss(builder, issuer_key)


def new_p384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def now_utc() -> datetime:
    return datetime.now(UTC)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def hex_of(text: str, size: int, name: str) -> bytes:
    """``text`` (hex, ``0x`` allowed) as ``size`` bytes, for emulator knobs.

    Raises:
        ValueError: not hex, or another size (the message names the knob).
    """
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise ValueError(f"{name}={text!r} is not hex") from exc
    if len(value) != size:
        raise ValueError(f"{name} is {len(value)} bytes; it must be {size}")
    return value
