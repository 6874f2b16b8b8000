"""Floors: the cryptographic work an operation cannot avoid, as benchmark operations."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

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
