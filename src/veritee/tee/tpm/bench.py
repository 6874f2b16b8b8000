"""``veritee bench tpm``: TPM quote verifications per second, beside the RSA-2048 floor and
keylime.

The input is an emulated quote over the whole SHA-256 bank (24 PCRs), signed by an RSA-2048
AK (RSASSA-SHA256), in keylime's quote string; the AK's public key is the trusted endorsement.
``verify`` decodes the string, checks the signature, parses the TPMS_ATTEST and the PCR blob,
compares the nonce and recomputes the PCR digest, and builds the claims. The floor is the one
RSA verification no verifier can skip; the peer, keylime's ``checkquote`` (when installed),
takes the same quote, nonce, signature, PCR blob and AK.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from veritee.bench.core import FloorBenchmark, Operation, Workload
from veritee.bench.floors import RSA2048, rsa_pkcs1_verify
from veritee.claims import Claims
from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing.tpm import TpmEmulator

PEER = "keylime"
_NONCE = b"veritee bench tpm nonce 32 bytes"
_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def workload() -> Workload:
    emulator = TpmEmulator(banks=("sha256",))
    quote = emulator.quote(_NONCE)
    evidence = decode_evidence(emulator.keylime(_NONCE))
    source = CollateralSource.of(emulator.ak_pem)
    verifier = TpmVerifier()

    def verify() -> Claims:
        return verifier.verify(evidence, report_data=_NONCE, collateral=source,
                               now=_NOW)

    claims = verify().to_dict()
    if claims.get("extra_data") != _NONCE.hex():
        raise RuntimeError("the benchmark's own quote did not verify as expected")
    return Workload(verify, rsa_pkcs1_verify(emulator.ak_key, quote.attest),
                    _peer(emulator.ak_pem, quote.attest, quote.signature, quote.pcr_blob()))


def _peer(ak_pem: bytes, attest: bytes, signature: bytes, blob: bytes) -> Operation | None:
    """keylime's quote check on the same input, or None when keylime is not installed (a
    development dependency)."""
    logging.getLogger("keylime.config").setLevel(logging.ERROR)  # it warns of a missing file
    try:
        from keylime.tpm import tpm_util  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        return None

    def check() -> Any:
        return tpm_util.checkquote(ak_pem, _NONCE, signature, attest, blob, "sha256")

    check()
    return check

TPM_BENCHMARK = FloorBenchmark("tpm", "TPM 2.0 quote verification vs. keylime and one "
                               "RSA-2048 verify", RSA2048, workload, PEER)
