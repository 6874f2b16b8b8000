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
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.bench.core import FloorBenchmark, Operation, Workload
from veritee.bench.floors import ECDSA_P384, ecdsa_p384_verify
from veritee.claims import Claims
from veritee.collateral import CollateralSource
from veritee.evidence import TsmReport, decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp.evidence import TSM_PROVIDER
from veritee.tee.snp.kds import KDS_BASE_URL
from veritee.tee.snp.layout import LAYOUT, SIGNED_SIZE
from veritee.testing.snp import DEFAULT_MEASUREMENT, SnpEmulator


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
    return verify, ecdsa_p384_verify(emulator.vek_key, blob[:SIGNED_SIZE])


BENCHMARK = FloorBenchmark("snp", "SEV-SNP extended report verification vs. ECDSA P-384 verify",
                           ECDSA_P384, lambda: Workload(*workload()))


# -- the guests of ``veritee bench broker`` -------------------------------------------------------

#: ATTESTATION_REPORT.REPORT_DATA (SEV-SNP ABI Table 23).
_REPORT_DATA = next(slice(f.offset, f.end) for f in LAYOUT.fields if f.name == "report_data")
_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())


@dataclass
class BrokerGuest:
    """The emulated SNP guest side of broker flows (one emulated machine).

    Like the PSP, it signs one report per request: the emulator's report with the request's
    REPORT_DATA, signed with the emulated VCEK (ECDSA P-384, R and S little-endian, 72 bytes
    each, Table 134); the rest of the report and the certificate table are built once.
    """

    emulator: SnpEmulator = field(default_factory=SnpEmulator)
    tee: str = "snp"

    def __post_init__(self) -> None:
        self._cert_table = self.emulator.cert_table()
        self._template = self.emulator.report(bytes(64))
        self._key = self.emulator.vek_key

    def reference_values(self) -> dict[str, Any]:
        """What the broker must hold for these guests to be affirming: their image, their
        TCB as minimums (the default policy refuses a component without one) and the
        emulated roots."""
        tcb = self.emulator.reported_tcb.components()
        return {"snp_launch_measurement": [DEFAULT_MEASUREMENT.hex()],
                **{f"snp_{name}": [value] for name, value in tcb.items()},
                "allow_emulated": [True]}

    def report(self, report_data: bytes) -> bytes:
        """The emulator's signed report for ``report_data`` (64 bytes)."""
        if len(report_data) != 64:
            raise ValueError("report_data must be 64 bytes")
        template = self._template
        signed = (template[:_REPORT_DATA.start] + report_data
                  + template[_REPORT_DATA.stop:SIGNED_SIZE])
        r, s = decode_dss_signature(self._key.sign(signed, _ECDSA_SHA384))
        return (signed + r.to_bytes(72, "little") + s.to_bytes(72, "little")
                + template[SIGNED_SIZE + 144:])

    def evidence(self, report_data: bytes) -> dict[str, str]:
        """configfs-tsm evidence: a freshly signed report and the certificate table."""
        return TsmReport(self.report(report_data), self._cert_table, TSM_PROVIDER).to_json()

    #: AMD KDS, which the verifier asks for a VCEK the evidence does not carry.
    vendor_url: str = KDS_BASE_URL

    def forged_evidence(self, report_data: bytes) -> dict[str, str]:
        """A report of a chip nobody knows (a random CHIP_ID) without certificates: the
        verifier must ask AMD KDS for its VCEK before it can refuse it."""
        stranger = SnpEmulator(chip_seed=secrets.token_bytes(16))
        return TsmReport(stranger.report(report_data), b"", TSM_PROVIDER).to_json()


def broker_guest() -> tuple[BrokerGuest, Operation]:
    """The guests of ``veritee bench broker`` and the verification its ceiling measures."""
    verify, _ = workload()
    return BrokerGuest(), verify
