"""Floors: the cryptographic work an operation cannot avoid, as benchmark operations."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from veritee.bench.core import Operation

ECDSA_P384 = "ecdsa-p384-verify"


def ecdsa_p384_verify(key: ec.EllipticCurvePrivateKey, message: bytes) -> Operation:
    """One ECDSA P-384/SHA-384 verification of ``message`` with a pre-loaded public key.

    The signature is made once, here; the operation only verifies.
    """
    algorithm = ec.ECDSA(hashes.SHA384())
    signature = key.sign(message, algorithm)
    public_key = key.public_key()
    public_key.verify(signature, message, algorithm)

    def verify() -> None:
        public_key.verify(signature, message, algorithm)

    return verify


ECDSA_P256_TWICE = "ecdsa-p256-verify-x2"


def ecdsa_p256_verify_twice(first: tuple[ec.EllipticCurvePrivateKey, bytes],
                            second: tuple[ec.EllipticCurvePrivateKey, bytes]) -> Operation:
    """Two ECDSA P-256/SHA-256 verifications (each ``(key, message)``) with pre-loaded public
    keys: what a quote signed by one key and certified by another cannot avoid."""
    algorithm = ec.ECDSA(hashes.SHA256())
    checks = []
    for key, message in (first, second):
        signature = key.sign(message, algorithm)
        public_key = key.public_key()
        public_key.verify(signature, message, algorithm)
        checks.append((public_key, signature, message))

    def verify() -> None:
        for public_key, signature, message in checks:
            public_key.verify(signature, message, algorithm)

    return verify


RSA2048 = "rsa2048-pkcs1-verify"


def rsa_pkcs1_verify(key: rsa.RSAPrivateKey, message: bytes) -> Operation:
    """One RSASSA-PKCS1-v1_5/SHA-256 verification of ``message`` with a pre-loaded public key
    (a quote signed by an RSA-2048 attestation key)."""
    algorithm, pad = hashes.SHA256(), padding.PKCS1v15()
    signature = key.sign(message, pad, algorithm)
    public_key = key.public_key()
    public_key.verify(signature, message, pad, algorithm)

    def verify() -> None:
        public_key.verify(signature, message, pad, algorithm)

    return verify


RSA2048_AND_P384 = "rsa2048-verify+ecdsa-p384-verify"


def rsa_and_p384_verify(rsa_key: rsa.RSAPrivateKey, rsa_message: bytes,
                        ec_key: ec.EllipticCurvePrivateKey, ec_message: bytes) -> Operation:
    """An RSA-2048 quote verification and an ECDSA P-384 report verification: what a vTPM
    quote beside a hardware report signed with P-384 cannot avoid."""
    first, second = rsa_pkcs1_verify(rsa_key, rsa_message), ecdsa_p384_verify(ec_key, ec_message)

    def verify() -> None:
        first()
        second()

    return verify
