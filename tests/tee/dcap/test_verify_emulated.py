"""Emulated TDX and SGX platforms through the verifier: genuine quotes verify with their
collateral and are marked emulated; each defect knob of the emulator is refused with the
error it names (or, for settings, becomes a claim); emulated roots are trusted only when
asked for."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from veritee.collateral import CollateralSource
from veritee.errors import ChainError, ExpiredError, SignatureError, UntrustedRootError
from veritee.evidence import Evidence
from veritee.tee import get_verifier
from veritee.tee.dcap.quote import parse_quote
from veritee.tee.dcap.verify import SgxVerifier
from veritee.testing.dcap import DcapEmulator, emulated_anchors, knob_errors


def _verify(emulator: DcapEmulator, *, files: bool = True, trust: bool = True) -> Any:
    collateral = (CollateralSource.of(json.dumps(emulator.combined_collateral()).encode(),
                                      *[b for s, b in emulator.pcs_files() if "crl" in s])
                  if files else CollateralSource())
    report_data = bytes(range(64))
    evidence = Evidence.from_json(emulator.coco_evidence(report_data))
    return get_verifier(emulator.tee, trust_emulated=trust).verify(
        evidence, report_data=report_data, collateral=collateral, now=emulator.now)


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_a_genuine_emulated_quote_verifies_and_says_it_is_emulated(tee: str) -> None:
    claims = _verify(DcapEmulator(tee=tee)).to_dict()
    assert claims["tcb_status"] == "UpToDate"
    assert claims["emulated"] is True
    assert claims["revocation"] == "checked"
    if tee == "tdx":
        assert claims["event_log"]["replayed"] == ["rtmr0", "rtmr1", "rtmr2"]


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_emulated_roots_are_not_trusted_by_default(tee: str) -> None:
    with pytest.raises(UntrustedRootError):
        _verify(DcapEmulator(tee=tee), trust=False)


@pytest.mark.parametrize(("tee", "knob"), [(t, k) for t in ("tdx", "sgx")
                                           for k in knob_errors(t)])
def test_every_knob_is_refused_with_its_error(tee: str, knob: str) -> None:
    error = knob_errors(tee)[knob]
    with pytest.raises(error):
        _verify(DcapEmulator(tee=tee, knob=knob))   # type: ignore[arg-type]


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_settings_are_claims_not_failures(tee: str) -> None:
    claims = _verify(DcapEmulator(tee=tee, debug=True, tcb_out_of_date=True)).to_dict()
    assert claims["debug"] is True
    assert claims["tcb_status"] == "OutOfDate"
    assert claims["advisory_ids"]


def test_collateral_is_reused_while_current_and_re_verified_after() -> None:
    emulator = DcapEmulator(tee="tdx")
    verifier = get_verifier("tdx", trust_emulated=True)
    collateral = CollateralSource.of(json.dumps(emulator.combined_collateral()).encode())
    evidence = Evidence.from_json(emulator.coco_evidence())
    first = verifier.verify(evidence, report_data=None, collateral=collateral, now=emulator.now)
    again = verifier.verify(evidence, report_data=None, collateral=collateral,
                            now=emulator.now + timedelta(minutes=1))
    assert first.to_dict()["tcb_status"] == again.to_dict()["tcb_status"] == "UpToDate"
    late = emulator.now + timedelta(days=400)
    with pytest.raises(ExpiredError):
        verifier.verify(evidence, report_data=None, collateral=collateral, now=late)


def test_a_quote_not_from_intels_quoting_enclave_is_refused() -> None:
    """The QE vendor ID is checked before anything else trusts the QE."""
    emulator = DcapEmulator(tee="sgx")
    quote = bytearray(emulator.quote(bytes(64)))
    quote[12] ^= 0x01                                    # qe_vendor_id, header bytes 12..28
    collateral = CollateralSource.of(json.dumps(emulator.combined_collateral()).encode())
    with pytest.raises(ChainError, match="QE vendor ID"):
        get_verifier("sgx", trust_emulated=True).verify(
            Evidence.from_json({"quote": base64.b64encode(bytes(quote)).decode()}),
            report_data=None, collateral=collateral, now=emulator.now)


def test_a_grace_shorter_than_the_staleness_still_rejects() -> None:
    """Collateral expired a day ago: an hour of grace is not enough, a week is."""
    emulator = DcapEmulator(knob="expired_collateral")
    collateral = CollateralSource.of(json.dumps(emulator.combined_collateral()).encode())
    evidence = Evidence.from_json(emulator.coco_evidence())
    short = get_verifier("tdx", trust_emulated=True, collateral_grace=timedelta(hours=1))
    with pytest.raises(ExpiredError):
        short.verify(evidence, report_data=None, collateral=collateral, now=emulator.now)
    week = get_verifier("tdx", trust_emulated=True, collateral_grace=timedelta(days=7))
    claims = week.verify(evidence, report_data=None, collateral=collateral,
                         now=emulator.now).to_dict()
    assert claims["collateral_expired"] is True


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_a_verifier_that_knows_the_quoting_enclave_still_refuses_every_knob(tee: str) -> None:
    """The QE report's signature and the attestation key are remembered per QE: after a
    genuine quote has verified, every defect is still refused by the same verifier."""
    verifier = get_verifier(tee, trust_emulated=True)
    genuine = DcapEmulator(tee=tee)   # type: ignore[arg-type]
    collateral = CollateralSource.of(json.dumps(genuine.combined_collateral()).encode(),
                                     *[b for s, b in genuine.pcs_files() if "crl" in s])
    report_data = bytes(range(64))
    verifier.verify(Evidence.from_json(genuine.coco_evidence(report_data)),
                    report_data=report_data, collateral=collateral, now=genuine.now)
    for knob, error in knob_errors(tee).items():
        emulator = DcapEmulator(tee=tee, knob=knob)  # type: ignore[arg-type]
        files = CollateralSource.of(json.dumps(emulator.combined_collateral()).encode(),
                                    *[b for s, b in emulator.pcs_files() if "crl" in s])
        with pytest.raises(error):
            verifier.verify(Evidence.from_json(emulator.coco_evidence(report_data)),
                            report_data=report_data, collateral=files, now=emulator.now)


@pytest.mark.parametrize("remember", [True, False])
@pytest.mark.parametrize("part", ["qe_report_signature", "signature"])
def test_a_forged_signature_beside_a_known_qe_report_is_refused(part: str,
                                                                remember: bool) -> None:
    """The same QE report and attestation key as a quote already verified, with the QE
    report's or the quote's signature altered: refused."""
    emulator = DcapEmulator(tee="sgx")
    verifier = SgxVerifier(emulated_anchors(), remember_quoting_enclaves=remember)
    collateral = CollateralSource.of(json.dumps(emulator.combined_collateral()).encode())
    raw = emulator.quote(bytes(64))
    verifier.verify(Evidence.from_json({"quote": base64.b64encode(raw).decode()}),
                    report_data=None, collateral=collateral, now=emulator.now)
    sig_data = parse_quote(raw).signature_data
    value = (sig_data.qe.qe_report_signature if part == "qe_report_signature"
             else sig_data.signature)
    at = raw.index(value) + 5
    forged = bytearray(raw)
    forged[at] ^= 0x40
    with pytest.raises(SignatureError):
        verifier.verify(Evidence.from_json({"quote": base64.b64encode(bytes(forged)).decode()}),
                        report_data=None, collateral=collateral, now=emulator.now)
