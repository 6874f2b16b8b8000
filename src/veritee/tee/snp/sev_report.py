"""The SEV attestation report (SEV API ≥ 0.23, ATTESTATION command; QEMU's
``query-sev-attestation-report``): the launch digest and the guest owner's nonce, signed by
the platform's PEK — evidence that verifies offline, against the pinned ARK, with no TIK.

Layout (research note amd-sev.md §3.4; virtee/sev ``LegacyAttestationReport``), 0xD0 bytes,
little-endian:

| off | size | field |
|---|---|---|
| 0x00 | 16 | MNONCE (chosen by whoever asked for the report: ``report_data`` here) |
| 0x10 | 32 | LAUNCH_DIGEST |
| 0x30 | 4 | POLICY |
| 0x34 | 4 | SIG_USAGE (the PEK, 0x1002) |
| 0x38 | 4 | SIG_ALGO (ECDSA-SHA256, 0x2) |
| 0x3C | 4 | reserved (zero) |
| 0x40 | 144 | SIG: R[72] ‖ S[72], little-endian |

Signed bytes: ``[0x00, 0x34)``, ECDSA P-384 with SHA-256.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.errors import (
    BindingError,
    ChainError,
    MalformedEvidenceError,
    SignatureError,
    UnsupportedVersionError,
)
from veritee.tee.snp.sevcert import Algo, SevChain, Usage, ecdsa_le_verifies

SIZE: Final = 0xD0
SIGNED_SIZE: Final = 0x34
_HEAD: Final = struct.Struct("<16s32sIIII")


@dataclass(frozen=True, slots=True)
class AttestationReport:
    mnonce: bytes
    launch_digest: bytes
    policy: int
    sig_usage: int
    sig_algo: int
    signature: bytes
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> AttestationReport:
        """Raises MalformedEvidenceError (size, reserved bytes) or UnsupportedVersionError
        (a signer or algorithm other than the PEK's ECDSA-SHA256)."""
        if len(data) != SIZE:
            raise MalformedEvidenceError(
                f"a SEV attestation report is {SIZE} bytes, not {len(data)}")
        mnonce, digest, policy, usage, algo, reserved = _HEAD.unpack_from(data)
        if reserved:
            raise MalformedEvidenceError(f"reserved bytes 0x3C..0x40 are {reserved:#x}, not 0")
        if usage != Usage.PEK or algo != Algo.ECDSA_SHA256:
            raise UnsupportedVersionError(
                f"the report names signer usage {usage:#x} and algorithm {algo:#x}; SEV "
                "reports are signed by the PEK (0x1002) with ECDSA-SHA256 (0x2)")
        return cls(mnonce, digest, policy, usage, algo, data[0x40:SIZE], bytes(data))

    def verify_signed_by(self, chain: SevChain) -> None:
        """Check the report's signature under the (already verified) chain's PEK.

        Raises:
            ChainError: the PEK's key is not an ECDSA P-384 key.
            SignatureError: the signature does not verify.
        """
        key = chain.pek.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ChainError("the PEK's key is not an elliptic-curve key")
        if not ecdsa_le_verifies(key, self.signature, self.raw[:SIGNED_SIZE], hashes.SHA256()):
            raise SignatureError("the attestation report's signature does not verify under "
                                 "the platform's PEK")

    def check_nonce(self, expected: bytes) -> None:
        """Raises BindingError when MNONCE is not ``expected`` (16 bytes)."""
        if self.mnonce != expected:
            raise BindingError(f"the report's MNONCE is {self.mnonce.hex()}, expected "
                               f"{expected.hex()}")


__all__ = ["SIZE", "AttestationReport"]
