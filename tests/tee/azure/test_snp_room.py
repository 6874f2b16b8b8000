"""`--tee snp` on Trustee's Azure vTPM evidence v1/v2 says which TEE verifies it (the SNP room
finds the name in the registry: a platform built on the ``snp`` room)."""

from __future__ import annotations

import json

import pytest

from veritee.errors import UnrecognizedEvidenceError
from veritee.evidence import decode_evidence
from veritee.tee import platforms
from veritee.tee.snp.evidence import parse_snp_evidence
from veritee.testing.azure import AzureEmulator


@pytest.mark.parametrize("version", [1, 2])
def test_snp_on_azure_snp_evidence_names_the_composite(version: int) -> None:
    blob = json.dumps(AzureEmulator(version=version).evidence()).encode()
    with pytest.raises(UnrecognizedEvidenceError, match="Azure vTPM evidence") as caught:
        parse_snp_evidence(decode_evidence(blob))
    for platform in platforms():
        if "snp" in platform.reuses and platform.room != "azure":  # an SVSM vTPM, say
            assert f"--tee {platform.tee} " not in f"{caught.value.detail} "
    if "az-snp-vtpm" not in [p.tee for p in platforms()]:
        pytest.skip("the az-snp-vtpm descriptor is not registered yet")
    assert "--tee az-snp-vtpm" in caught.value.detail


def test_snp_on_azure_tdx_evidence_says_it_holds_a_td_quote() -> None:
    blob = json.dumps(AzureEmulator(machine="tdx", version=1).evidence()).encode()
    with pytest.raises(UnrecognizedEvidenceError, match="around a TD quote"):
        parse_snp_evidence(decode_evidence(blob))


def test_snp_still_reads_the_v0_form_hardware_report() -> None:
    emulator = AzureEmulator(version=0)
    blob = json.dumps(emulator.evidence()).encode()
    found = parse_snp_evidence(decode_evidence(blob))
    assert found.form == "azure-hcl" and found.report.vmpl == 0
