"""Both Azure verifiers on the emulated machines: genuine evidence of every version verifies
with the claims CONTRACT.md §1.1 names; each knob is rejected with its own error; a missing
Intel collateral is undecided only when everything else holds."""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from veritee.collateral import CollateralFile, CollateralSource
from veritee.errors import (
    BindingError,
    ChainError,
    CollateralMissingError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    VeriteeError,
)
from veritee.evidence import decode_evidence
from veritee.tee.azure.verify import AzSnpVtpmVerifier, AzTdxVtpmVerifier
from veritee.testing import pki
from veritee.testing.azure import (
    DEFAULT_REPORT_DATA,
    KNOB_ERRORS,
    AzureEmulator,
    ak_key,
    emulated_snp_roots,
    emulated_tdx_roots,
)
from veritee.testing.snp import SnpEmulator

NONCE = DEFAULT_REPORT_DATA


@functools.cache
def snp_verifier() -> AzSnpVtpmVerifier:
    return AzSnpVtpmVerifier().with_roots(emulated_snp_roots())


@functools.cache
def tdx_verifier() -> AzTdxVtpmVerifier:
    return AzTdxVtpmVerifier().with_roots(emulated_tdx_roots())


def verifier(machine: str) -> AzSnpVtpmVerifier | AzTdxVtpmVerifier:
    return snp_verifier() if machine == "snp" else tdx_verifier()


def run(emulator: AzureEmulator, *, report_data: bytes | None = NONCE,
        collateral: bool = True) -> dict[str, Any]:
    blob = json.dumps(emulator.evidence(NONCE)).encode()
    files = tuple(CollateralFile(f"collateral{suffix}", data, "collateral")
                  for suffix, data in emulator.collateral()) if collateral else ()
    claims = verifier(emulator.machine).verify(
        decode_evidence(blob), report_data=report_data, collateral=CollateralSource(files=files),
        now=emulator.now)
    return claims.to_dict()


@pytest.mark.parametrize("machine", ["snp", "tdx"])
@pytest.mark.parametrize("version", [0, 1, 2])
def test_genuine_evidence_verifies(machine: str, version: int) -> None:
    emulator = AzureEmulator(machine=machine, version=version)  # type: ignore[arg-type]
    claims = run(emulator)
    tpm, hcl = claims["tpm"], claims["hcl"]
    assert tpm["extra_data"] == NONCE.hex() == claims["report_data"]
    assert tpm["pcr_select"] == {"sha256": list(range(24))}
    assert tpm["pcrs"]["sha256"]["8"] == emulator.pcrs[8].hex()
    spki = hcl["ak_public"]
    assert tpm["signer"] == hashlib.sha256(bytes.fromhex(spki)).hexdigest()
    assert hcl["report_type"] == machine
    assert hcl["vm_configuration"]["secure-boot"] is True
    assert hcl["vm_configuration"]["vmUniqueId"].startswith("00000000")
    assert hcl["key_ids"] == ["HCLAkPub", "HCLEkPub"]
    assert ("user_data" in hcl) and hcl["user_data"].startswith(
        NONCE.hex() if version == 2 else "00")
    hardware = claims[machine]
    assert hardware["report_data"][:64] == hcl["var_data_sha256"]
    assert claims["emulated"] is True and claims["evidence_form"] == f"trustee-v{version}"
    if machine == "snp":
        assert hardware["vmpl"] == 0 and hardware["signer"] == "vcek"
        assert hardware["evidence_form"] == "extended-report"
    else:
        assert hardware["tcb_status"] == "UpToDate"


def test_without_report_data_the_nonce_is_reported_not_checked() -> None:
    claims = run(AzureEmulator(knob="wrong_nonce", version=1), report_data=None)
    assert claims["tpm"]["extra_data"] != NONCE.hex()


def test_report_data_of_any_length_is_compared_exactly() -> None:
    with pytest.raises(BindingError):
        run(AzureEmulator(version=1), report_data=NONCE[:16])


def knob_cases() -> list[tuple[str, str, int]]:
    cases = []
    for knob in KNOB_ERRORS:
        for machine in ("snp", "tdx"):
            if knob == "vmpl1" and machine == "tdx":
                continue
            cases.append((knob, machine, 2))
    return cases


@pytest.mark.parametrize(("knob", "machine", "version"), knob_cases(),
                         ids=[f"{k}-{m}" for k, m, _ in knob_cases()])
def test_each_knob_is_rejected_with_its_error(knob: str, machine: str, version: int) -> None:
    emulator = AzureEmulator(machine=machine, version=version, knob=knob)  # type: ignore[arg-type]
    with pytest.raises(KNOB_ERRORS[knob]) as caught:
        run(emulator)
    assert type(caught.value) is KNOB_ERRORS[knob]
    claims = caught.value.claims or {}
    assert claims["hcl"]["report_type"] == machine  # errors carry what was parsed


@pytest.mark.parametrize("knob", [k for k in KNOB_ERRORS if k != "vmpl1"])
def test_rejected_beats_undecided_without_intel_collateral(knob: str) -> None:
    emulator = AzureEmulator(machine="tdx", knob=knob)  # type: ignore[arg-type]
    with pytest.raises(KNOB_ERRORS[knob]):
        run(emulator, collateral=False)


def test_without_intel_collateral_genuine_tdx_is_undecided_with_claims() -> None:
    with pytest.raises(CollateralMissingError) as caught:
        run(AzureEmulator(machine="tdx"), collateral=False)
    claims = caught.value.claims or {}
    assert {"tpm", "hcl", "tdx"} <= set(claims)
    assert claims["tdx"]["report_data"][:64] == claims["hcl"]["var_data_sha256"]
    assert caught.value.status == "undecided"


def test_the_hardware_report_is_verified_as_the_snp_room_does() -> None:
    emulator = AzureEmulator(snp=SnpEmulator(knob="wrong_key"))
    with pytest.raises(SignatureError) as caught:
        run(emulator)
    assert caught.value.claims is not None and caught.value.claims["snp"]["vmpl"] == 0
    assert "tpm" in caught.value.claims


def test_pinned_roots_do_not_trust_emulated_hardware() -> None:
    blob = json.dumps(AzureEmulator(version=1).evidence(NONCE)).encode()
    with pytest.raises(ChainError):
        AzSnpVtpmVerifier().verify(decode_evidence(blob), report_data=NONCE,
                                   collateral=CollateralSource(), now=AzureEmulator().now)


def test_an_hcl_report_of_the_other_type_is_malformed() -> None:
    emulator = AzureEmulator(machine="snp", version=1)
    document = emulator.evidence(NONCE)
    tdx = AzureEmulator(machine="tdx", version=1).evidence(NONCE)
    document["hcl_report"] = tdx["hcl_report"]
    with pytest.raises(MalformedEvidenceError, match="holds a TDX report"):
        snp_verifier().verify(decode_evidence(json.dumps(document).encode()), report_data=NONCE,
                              collateral=CollateralSource(), now=emulator.now)


def test_a_naive_now_is_misuse() -> None:
    blob = json.dumps(AzureEmulator().evidence(NONCE)).encode()
    with pytest.raises(MisuseError):
        snp_verifier().verify(decode_evidence(blob), report_data=NONCE,
                              collateral=CollateralSource(), now=datetime(2026, 1, 1))


def test_roots_and_with_roots() -> None:
    plain_snp, plain_tdx = AzSnpVtpmVerifier(), AzTdxVtpmVerifier()
    assert plain_snp.roots and not any(r.emulated for r in plain_snp.roots)
    assert plain_tdx.roots and not any(r.emulated for r in plain_tdx.roots)
    both = (*emulated_snp_roots(), *emulated_tdx_roots())
    trusting = plain_snp.with_roots(both)
    assert trusting.roots[:len(plain_snp.roots)] == plain_snp.roots
    assert all(r.emulated for r in trusting.roots[len(plain_snp.roots):])
    assert type(plain_tdx.with_roots(both)) is AzTdxVtpmVerifier
    assert type(plain_tdx.with_collateral_grace(timedelta(hours=1))) is AzTdxVtpmVerifier


def test_ak_in_the_claims_is_the_emulators() -> None:
    claims = run(AzureEmulator(version=1))
    spki = ak_key().public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    assert claims["hcl"]["ak_public"] == spki.hex()


def test_errors_are_veritee_errors_with_nested_claims() -> None:
    with pytest.raises(VeriteeError) as caught:
        run(AzureEmulator(knob="unbound"))
    claims = caught.value.claims or {}
    assert set(claims) >= {"hcl", "tpm", "snp", "report_data"}


def _public_pem(name: str) -> bytes:
    pem: bytes = pki.load_key(name).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem


@pytest.mark.parametrize(("keys", "error"), [
    (("azure-ak",), None),
    (("azure-foreign-ak", "azure-ak"), None),
    (("azure-foreign-ak",), SignatureError),
])
def test_trusted_ak_endorsements_must_include_the_signer(
        keys: tuple[str, ...], error: type[Exception] | None) -> None:
    emulator = AzureEmulator(version=1)
    blob = json.dumps(emulator.evidence(NONCE)).encode()
    files = tuple(CollateralFile(f"{k}.pem", _public_pem(k)) for k in keys)

    def verify() -> Any:
        return snp_verifier().verify(decode_evidence(blob), report_data=NONCE,
                                     collateral=CollateralSource(files=files), now=emulator.now)

    if error is None:
        assert verify().to_dict()["tpm"]["extra_data"] == NONCE.hex()
    else:
        with pytest.raises(error, match="none of the 1 trusted keys"):
            verify()
