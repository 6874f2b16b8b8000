"""``veritee bench snp``: SEV-SNP verifications per second against the ECDSA P-384 floor.

The input is an emulated Milan extended report (report + VCEK/ASK/ARK certificate table)
from :mod:`veritee.testing.snp`, verified by one shared verifier that trusts the emulated
roots, with the expected report data given (as a broker always does). The caches are warm:
what is measured is the steady state of a verifier serving requests. The floor is one
ECDSA P-384/SHA-384 verification of the report's 672 signed bytes with a pre-loaded key —
the report signature check that no SNP verifier can skip. No peer implementation verifies
SNP reports from Python, so ``peer`` is null.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from veritee.bench.core import BenchResult, Figure, Operation, Settings, compare
from veritee.bench.floors import ECDSA_P384, ecdsa_p384_verify
from veritee.claims import Claims
from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.testing.snp import SnpEmulator

SIGNED_BYTES = 0x2A0  # SEV-SNP ABI, ATTESTATION_REPORT: the signature covers [0, 0x2A0)


def workload() -> tuple[Operation, Operation]:
    """(verify one emulated report, the floor), both checked once before returning."""
    emulator = SnpEmulator(product="milan", signer="vcek")
    nonce = hashlib.sha512(b"veritee bench snp").digest()
    blob = emulator.extended_report(nonce)
    evidence = decode_evidence(blob)
    verifier = get_verifier("snp", trust_emulated=True)
    source = CollateralSource()
    now = emulator.now

    def verify() -> Claims:
        return verifier.verify(evidence, report_data=nonce, collateral=source, now=now)

    claims = verify().to_dict()
    if not claims.get("emulated") or claims.get("report_data") != nonce.hex():
        raise RuntimeError("the benchmark's own evidence did not verify as expected")
    return verify, ecdsa_p384_verify(emulator.vek_key, blob[:SIGNED_BYTES])


@dataclass(frozen=True)
class SnpBenchmark:
    name: str = "snp"
    description: str = "SEV-SNP extended report verification vs. ECDSA P-384 verify"

    def planned_seconds(self, settings: Settings) -> float:
        return 2 * settings.seconds * len(_thread_counts(settings))

    def run(self, settings: Settings) -> BenchResult:
        verify, floor = workload()
        figures = {n: compare({"verify": verify, "floor": floor}, settings, n)
                   for n in _thread_counts(settings)}
        one, many = figures[1], figures[settings.threads]
        return BenchResult(
            benchmark=self.name,
            ops_per_s=many["verify"],
            floor=Figure(ECDSA_P384, many["floor"]),
            peer=None,
            threads=settings.threads,
            seconds=settings.seconds,
            extra=_single_thread(one, many),
        )


def _thread_counts(settings: Settings) -> list[int]:
    return sorted({1, settings.threads})


def _single_thread(one: dict[str, float], many: dict[str, float]) -> dict[str, Any]:
    """The one-thread figures beside the N-thread ones, and how each scales."""
    return {
        "single_thread_ops_per_s": round(one["verify"], 1),
        "single_thread_floor_ops_per_s": round(one["floor"], 1),
        "single_thread_ratio_to_floor": round(one["verify"] / one["floor"], 3),
        "scaling": round(many["verify"] / one["verify"], 3),
        "floor_scaling": round(many["floor"] / one["floor"], 3),
    }


BENCHMARK = SnpBenchmark()
