"""The `veritee emulate` face of the Azure emulators: knobs, --host-data into PCR 8, and the
collateral that comes beside TDX evidence."""

from __future__ import annotations

import hashlib
import json

import pytest

from veritee.testing.azure import (
    AZ_SNP_EMULATOR,
    AZ_TDX_EMULATOR,
    AzureEmulator,
    init_data_pcr,
)


def test_knobs_are_listed_per_machine() -> None:
    assert "vmpl1" in AZ_SNP_EMULATOR.knobs and "vmpl1" not in AZ_TDX_EMULATOR.knobs
    assert "version=N" in AZ_TDX_EMULATOR.knobs


def test_host_data_is_measured_into_pcr8() -> None:
    digest = bytes(range(32))
    out = AZ_SNP_EMULATOR.emulate(report_data=b"nonce", host_data=digest, knobs=["version=1"])
    document = json.loads(out.evidence)
    assert document["version"] == 1 and out.form == "trustee-v1"
    assert document["tpm_quote"]["pcrs"][8] == init_data_pcr(digest).hex()
    assert init_data_pcr(digest) == hashlib.sha256(bytes(32) + digest).digest()
    assert out.endorsements == ()


def test_tdx_evidence_comes_with_intel_collateral() -> None:
    out = AZ_TDX_EMULATOR.emulate(report_data=None, host_data=None, knobs=["version=0"])
    assert "td_quote" in json.loads(out.evidence)
    assert [suffix for suffix, _ in out.endorsements] == [".collateral.json"]


@pytest.mark.parametrize(("emulator", "kwargs", "text"), [
    (AZ_SNP_EMULATOR, {"knobs": ["nope"]}, "unknown knob"),
    (AZ_TDX_EMULATOR, {"knobs": ["vmpl1"]}, "unknown knob"),
    (AZ_SNP_EMULATOR, {"knobs": ["unbound", "foreign_ak"]}, "one defect knob"),
    (AZ_SNP_EMULATOR, {"knobs": ["version=3"]}, "unknown knob"),
    (AZ_SNP_EMULATOR, {"knobs": ["version=1", "user_data_mismatch"]}, "version 2"),
    (AZ_SNP_EMULATOR, {"knobs": [], "host_data": bytes(48)}, "32"),
    (AZ_SNP_EMULATOR, {"knobs": [], "report_data": bytes(65)}, "at most 64"),
])
def test_bad_settings_are_value_errors(emulator: object, kwargs: dict[str, object],
                                       text: str) -> None:
    call = {"report_data": None, "host_data": None, **kwargs}
    with pytest.raises(ValueError, match=text):
        emulator.emulate(**call)  # type: ignore[attr-defined]


def test_the_emulator_refuses_bad_pcrs() -> None:
    with pytest.raises(ValueError, match="24 SHA-256"):
        AzureEmulator(pcrs=(bytes(32),) * 23)
