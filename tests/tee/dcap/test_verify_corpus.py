"""Real DCAP quotes from ../shared/corpus/intel through the verifier, read in place through its
MANIFEST: with the collateral a verdict names, at an instant inside its window, the quote
reaches the MANIFEST's TCB status and advisory IDs; without collateral it is undecided with
every parsed claim; the synthetic QVL samples are refused by the pinned root; the CCEL
replays to its quote's RTMRs and a tampered event is refused."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import corpus_dir, manifest
from veritee import eventlog
from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    ExpiredError,
    RevokedError,
    SignatureError,
    UnrecognizedEvidenceError,
    UntrustedRootError,
    VeriteeError,
)
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.tee.dcap.verify import DcapVerifier

REJECTING = {"TcbNotSupported": BindingError, "Revoked": RevokedError}


def _entries() -> list[dict[str, Any]]:
    return [e for e in manifest("intel") if isinstance(e.get("expected"), dict)
            and "version" in e["expected"]]


def _verdicts() -> list[Any]:
    cases = []
    for entry in _entries():
        for verdict in entry["expected"].get("verdicts") or []:
            if verdict["collateral_files"]["kind"] in ("dcap-qvl", "pcs"):
                cases.append(pytest.param(entry, verdict, id=verdict["case"]))
    return cases


def _collateral_paths(root: Path, verdict: dict[str, Any]) -> list[Path]:
    files = verdict["collateral_files"]
    if files["kind"] == "dcap-qvl":
        return [root / files["path"]]
    names = [files[k] for k in ("tcb_info", "qe_identity", "root_crl", "pck_crl")]
    chains = {str(Path(files[k]).parent) for k in ("tcb_chain", "qe_chain")}
    return [root / n for n in names] + [root / c for c in sorted(chains)]


def _verifier(entry: dict[str, Any]) -> DcapVerifier:
    tee = "tdx" if entry["expected"]["tee_type"] == "0x81" else "sgx"
    verifier = get_verifier(tee)
    assert isinstance(verifier, DcapVerifier)
    return verifier


def _quote(root: Path, entry: dict[str, Any]) -> Any:
    return decode_evidence((root / entry["file"]).read_bytes())


@pytest.mark.parametrize(("entry", "verdict"), _verdicts())
def test_every_verdict_is_reproduced(entry: dict[str, Any], verdict: dict[str, Any]) -> None:
    root = corpus_dir("intel")
    source = CollateralSource.from_paths(collateral=_collateral_paths(root, verdict))
    start, end = (datetime.fromisoformat(t) for t in verdict["verify_time_window"])
    verify = _verifier(entry).verify
    if verdict["verify_time_window_empty"]:
        with pytest.raises(ExpiredError):          # no instant at which all of it is current
            verify(_quote(root, entry), report_data=None, collateral=source, now=start)
        return
    now = start + (end - start) / 2
    status = verdict["status"]
    if status in REJECTING:
        with pytest.raises(REJECTING[status]) as caught:
            verify(_quote(root, entry), report_data=None, collateral=source, now=now)
        assert caught.value.claims and caught.value.claims["fmspc"] == entry["expected"][
            "pck"]["fmspc"]
        return
    claims = verify(_quote(root, entry), report_data=None, collateral=source, now=now).to_dict()
    assert claims["tcb_status"] == status
    assert claims["advisory_ids"] == (verdict["advisory_ids"] or [])
    assert claims["revocation"] == "checked"
    assert claims["tcb_date"] == datetime.fromisoformat(
        verdict["detail"]["sgx_tcb_level"]["tcbDate"]).isoformat()
    assert claims["qe_tcb_status"] == verdict["detail"]["qe_tcb_status"]
    assert datetime.fromisoformat(claims["collateral_expiration"]) == end


@pytest.mark.parametrize("entry", [e for e in _entries() if e["expected"]["checks"].get(
    "pck_chain_ok")], ids=lambda e: e["file"])
def test_without_collateral_a_genuine_quote_is_undecided_with_its_claims(
        entry: dict[str, Any]) -> None:
    root = corpus_dir("intel")
    expected = entry["expected"]
    with pytest.raises(CollateralMissingError) as caught:
        _verifier(entry).verify(_quote(root, entry), report_data=None,
                                collateral=CollateralSource(),
                                now=datetime.fromisoformat(expected["pck"]["validity"][0]))
    claims = caught.value.claims
    assert claims is not None and claims["quote_version"] == expected["version"]
    assert claims["pck"]["fmspc"] == expected["pck"]["fmspc"]
    assert claims["pck"]["tcb_components"] == expected["pck"]["sgx_tcb_comp_svn"]
    assert claims["pck"]["pce_svn"] == expected["pck"]["pcesvn"]
    assert claims["pck"]["ca"] == expected["pck"]["issuer_ca"]
    for name, value in expected["report"].items():
        assert claims[name] == value, name


@pytest.mark.parametrize("sample", ["", "tdx/"])
def test_the_synthetic_qvl_samples_are_refused_by_the_pinned_root(sample: str) -> None:
    root = corpus_dir("intel") / "qvl/Src/AttestationApp/sampleData" / sample
    source = CollateralSource.from_paths(collateral=[root / "pckCert.pem",
                                                     root / "pckSignChain.pem"])
    verifier = get_verifier("tdx" if sample else "sgx")
    with pytest.raises(UntrustedRootError, match="not a pinned Intel root"):
        verifier.verify(decode_evidence((root / "quote.dat").read_bytes()), report_data=None,
                        collateral=source, now=datetime.fromisoformat("2024-01-01T00:00:00Z"))


def _ccel_evidence(log: bytes) -> Any:
    folder = corpus_dir("intel") / "go-tdx-guest/testing/testdata/ccel"
    quote = (folder / "cos-113-tdx-quote.dat").read_bytes()
    return decode_evidence(json.dumps({"quote": base64.b64encode(quote).decode(),
                                       "cc_eventlog": base64.b64encode(log).decode()}).encode())


def test_the_ccel_replays_and_a_tampered_event_is_refused() -> None:
    folder = corpus_dir("intel") / "go-tdx-guest/testing/testdata/ccel"
    log = (folder / "ccel_data.dat").read_bytes()
    now = datetime.fromisoformat("2025-07-01T00:00:00Z")
    with pytest.raises(CollateralMissingError) as caught:     # replayed, then no TCB Info
        get_verifier("tdx").verify(_ccel_evidence(log), report_data=None,
                                   collateral=CollateralSource(), now=now)
    assert caught.value.claims is not None
    tampered = bytearray(log)
    offset = _first_rtmr1_digest(log)
    tampered[offset] ^= 1
    with pytest.raises(BindingError, match="RTMR1"):
        get_verifier("tdx").verify(_ccel_evidence(bytes(tampered)), report_data=None,
                                   collateral=CollateralSource(), now=now)


def _first_rtmr1_digest(log: bytes) -> int:
    """The offset of the SHA-384 digest of the first event extending RTMR1 (MR index 2)."""
    parsed = eventlog.parse(log)
    event = next(e for e in parsed.events[1:] if e.index == 2)
    return log.index(event.digest("sha384"), event.offset)


def test_report_data_and_the_tee_are_bound() -> None:
    root = corpus_dir("intel")
    quote = decode_evidence((root / "dcap-qvl/sample/tdx_quote").read_bytes())
    now = datetime.fromisoformat("2025-07-01T00:00:00Z")
    with pytest.raises(UnrecognizedEvidenceError, match="--tee tdx"):
        get_verifier("sgx").verify(quote, report_data=None, collateral=CollateralSource(),
                                   now=now)
    with pytest.raises(BindingError, match="REPORTDATA"):
        get_verifier("tdx").verify(quote, report_data=bytes(64), collateral=CollateralSource(),
                                   now=now)


def test_a_flipped_bit_anywhere_signed_is_refused() -> None:
    root = corpus_dir("intel")
    raw = bytearray((root / "dcap-qvl/sample/tdx_quote").read_bytes())
    now = datetime.fromisoformat("2025-07-01T00:00:00Z")
    for offset in (30, 48 + 136, 48 + 520, 48 + 583):     # header, MRTD, REPORTDATA, its end
        forged = bytearray(raw)
        forged[offset] ^= 0x01
        with pytest.raises(VeriteeError) as caught:
            get_verifier("tdx").verify(decode_evidence(bytes(forged)), report_data=None,
                                       collateral=CollateralSource(), now=now)
        assert isinstance(caught.value, SignatureError), offset
