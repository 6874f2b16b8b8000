"""``veritee bench az-snp-vtpm``: Azure SNP CVM evidence verified per second, beside its
signature floor.

The input is an emulated CVM's Trustee evidence v2 (HCL report with an emulated Milan SNP
report, the VCEK, a vTPM quote over 24 SHA-256 PCRs signed by the HCL's RSA-2048 AK). ``verify``
parses the JSON and the HCL report, verifies the quote (RSA-2048), checks user-data and the
var-data binding, and verifies the SNP report as ``--tee snp`` does (ECDSA P-384; the VCEK
chain cached, as a broker's is). The floor is those two signature checks with pre-loaded keys.
No peer verifies this evidence from Python.
"""

from __future__ import annotations

import hashlib

from veritee.bench.core import FloorBenchmark, Workload
from veritee.bench.floors import RSA2048_AND_P384, rsa_and_p384_verify
from veritee.claims import Claims
from veritee.collateral import CollateralSource
from veritee.evidence import Evidence
from veritee.tee import get_verifier
from veritee.tee.snp.layout import SIGNED_SIZE
from veritee.testing.azure import AzureEmulator, ak_key


def workload() -> Workload:
    emulator = AzureEmulator()
    nonce = hashlib.sha384(b"veritee bench az-snp-vtpm").digest()
    evidence = Evidence.from_json(emulator.evidence(nonce))
    verifier = get_verifier("az-snp-vtpm", trust_emulated=True)
    source = CollateralSource()
    now = emulator.now

    def verify() -> Claims:
        return verifier.verify(evidence, report_data=nonce, collateral=source, now=now)

    claims = verify().to_dict()
    if not claims.get("emulated"):
        raise RuntimeError("the benchmark's own evidence did not verify as expected")
    message, _, _ = emulator.tpm_quote(nonce)
    report = emulator.hardware_report(emulator.var_data(nonce))
    assert emulator.snp is not None
    return Workload(verify, rsa_and_p384_verify(ak_key(), message, emulator.snp.vek_key,
                                                report[:SIGNED_SIZE]))


AZ_SNP_BENCHMARK = FloorBenchmark(
    "az-snp-vtpm", "Azure SNP CVM evidence (vTPM quote + HCL + SNP report) vs. RSA-2048 + "
    "ECDSA P-384 verifies", RSA2048_AND_P384, workload)
