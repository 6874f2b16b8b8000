"""veritee against dcap-qvl (the Rust verifier's Python bindings, a development dependency) on
every corpus quote that has collateral (dcap-qvl's, or go-tdx-guest's PCS files converted to
dcap-qvl's form) and on emulated quotes with every knob: the
same verdict (verified or not) and the same TCB status, except the divergences pinned here
and explained in docs/ARCHITECTURE.md ("DCAP: where veritee and dcap-qvl differ")."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import corpus_dir
from veritee.collateral import CollateralSource
from veritee.errors import VeriteeError
from veritee.evidence import Evidence, decode_evidence
from veritee.tee import get_verifier
from veritee.tee.dcap.collateral import signed_json_from_body
from veritee.tee.dcap.evidence import parse_dcap_evidence
from veritee.testing.dcap import DcapEmulator, knob_errors, root_cert

dcap_qvl = pytest.importorskip("dcap_qvl")

#: (setting or knob) → what dcap-qvl does instead, and why veritee differs.
DIVERGENCES = {
    # dcap-qvl refuses a debug TD or enclave outright; veritee verifies it and the claim
    # ``debug`` goes to policy (CONTRACT.md §1: a debug TD is a claim), whose default refuses.
    "debug": "rejected",
    # dcap-qvl reads no event log; veritee replays the CCEL into the RTMRs and refuses the
    # evidence when they differ. The quote itself is genuine, so dcap-qvl accepts it.
    "tampered_event": "UpToDate",
    # dcap-qvl takes SGX quotes only in version 3; version 5 defines an SGX body (DCAP
    # sgx_quote_5.h, research note §1.2) and veritee verifies it.
    "sgx-v5": "rejected",
}

CORPUS = [
    ("dcap-qvl/sample/tdx_quote", "dcap-qvl/sample/tdx_quote_collateral.json", "2025-07-01"),
    ("dcap-qvl/sample/sgx_quote", "dcap-qvl/sample/sgx_quote_collateral.json", "2025-07-01"),
    ("dcap-qvl/sample/tdx-quote.hex", "dcap-qvl/sample/tdx_quote_collateral.json", "2025-07-01"),
    ("dcap-qvl/sample/quote-from-tappd.hex", "dcap-qvl/sample/tdx_quote_collateral.json",
     "2025-07-01"),
    ("dcap-qvl/sample/tdx_quote_outdated", "dcap-qvl/sample/tdx_quote_outdated_collateral.json",
     "2026-03-01"),
    ("go-tdx-guest/testing/testdata/quote_v5_sample.dat",
     "dcap-qvl/sample/tdx_quote_outdated_collateral.json", "2026-03-01"),
]


def _theirs(quote: bytes, collateral: str, now: datetime, root: bytes | None = None) -> str:
    parsed = dcap_qvl.QuoteCollateralV3.from_json(collateral)
    try:
        if root is None:
            report = dcap_qvl.verify(quote, parsed, int(now.timestamp()))
        else:
            report = dcap_qvl.verify_with_root_ca(quote, parsed, root, int(now.timestamp()))
    except ValueError:
        return "rejected"
    return str(report.status)


def _mine(tee: str, evidence: Evidence, collateral: CollateralSource, now: datetime, *,
          emulated: bool = False) -> str:
    try:
        claims = get_verifier(tee, trust_emulated=emulated).verify(
            evidence, report_data=None, collateral=collateral, now=now).to_dict()
    except VeriteeError:
        return "rejected"
    return str(claims["tcb_status"])


@pytest.mark.parametrize(("quote", "collateral", "day"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_quotes_get_dcap_qvls_verdict(quote: str, collateral: str, day: str) -> None:
    root = corpus_dir("intel")
    evidence = decode_evidence((root / quote).read_bytes())
    raw = parse_dcap_evidence(evidence).quote
    text = (root / collateral).read_text()
    now = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    tee = "sgx" if "sgx" in quote else "tdx"
    source = CollateralSource.of(text.encode())
    assert _mine(tee, evidence, source, now) == _theirs(raw, text, now)


def _emulated_cases() -> list[Any]:
    cases = []
    for tee in ("tdx", "sgx"):
        settings: list[tuple[str, dict[str, Any]]] = [
            ("default", {}), ("debug", {"debug": True}),
            ("tcb_out_of_date", {"tcb_out_of_date": True}), ("v5", {"version": 5})]
        settings += [(knob, {"knob": knob}) for knob in knob_errors(tee)]
        cases += [pytest.param(tee, name, kw, id=f"{tee}-{name}") for name, kw in settings]
    return cases


@pytest.mark.parametrize(("tee", "name", "settings"), _emulated_cases())
def test_emulated_quotes_get_dcap_qvls_verdict(tee: str, name: str,
                                               settings: dict[str, Any]) -> None:
    emulator = DcapEmulator(tee=tee, **settings)  # type: ignore[arg-type]
    combined = json.dumps(emulator.combined_collateral())
    crls = [body for suffix, body in emulator.pcs_files() if "crl" in suffix]
    mine = _mine(tee, Evidence.from_json(emulator.coco_evidence()),
                 CollateralSource.of(combined.encode(), *crls), emulator.now, emulated=True)
    theirs = _theirs(emulator.quote(bytes(64)), combined, emulator.now,
                     root_cert().public_bytes(serialization.Encoding.DER))
    divergence = DIVERGENCES.get(name, DIVERGENCES.get(f"{tee}-{name}"))
    if divergence is not None:
        assert theirs == divergence and mine != theirs
    else:
        assert mine == theirs


#: PCS-format collateral sets of the corpus (go-tdx-guest's), turned into dcap-qvl's combined
#: form for it: (quote, TCB Info body, QE identity body, instant).
PCS_SETS = [
    ("go-tdx-guest/testing/testdata/tdx_prod_quote_SPR_E4.dat",
     "go-tdx-guest/testing/testdata/sample_tcbInfo_response",
     "go-tdx-guest/testing/testdata/sample_qeIdentity_response", "2023-07-01"),
    ("go-tdx-guest/testing/testdata/quote_v5_sample.dat",
     "go-tdx-guest/testing/testdata/sample_tcbinfo_response_v5",
     "go-tdx-guest/testing/testdata/sample_qeIdentity_response", "2026-02-15"),
]


def _combined_from_pcs(root: Any, tcb_body: str, identity_body: str) -> str:
    """dcap-qvl's QuoteCollateralV3 JSON from PCS bodies, their issuer chains and CRLs."""
    chains = root / "go-tdx-guest/testing/issuer_chains"
    data = root / "go-tdx-guest/testing/testdata"
    tcb = signed_json_from_body((root / tcb_body).read_bytes(), "tcbInfo")
    identity = signed_json_from_body((root / identity_body).read_bytes(), "enclaveIdentity")
    pck_crl = (data / "pckcrl").read_bytes()
    return json.dumps({
        "pck_crl_issuer_chain": (chains / "pckCrlIssuerChain.pem").read_text(),
        "root_ca_crl": (data / "rootcrl.der").read_bytes().hex(),
        "pck_crl": pck_crl.hex() if pck_crl[:1] == b"\x30" else bytes.fromhex(
            pck_crl.decode().strip()).hex(),
        "tcb_info_issuer_chain": (chains / "tcbInfoIssuerChain.pem").read_text(),
        "tcb_info": tcb.raw.decode(), "tcb_info_signature": tcb.signature.hex(),
        "qe_identity_issuer_chain": (chains / "qeIdentityIssuerChain.pem").read_text(),
        "qe_identity": identity.raw.decode(), "qe_identity_signature": identity.signature.hex(),
    })


@pytest.mark.parametrize(("quote", "tcb", "identity", "day"), PCS_SETS,
                         ids=[c[0].rsplit("/", 1)[-1] for c in PCS_SETS])
def test_pcs_format_corpus_sets_get_dcap_qvls_verdict(quote: str, tcb: str, identity: str,
                                                      day: str) -> None:
    root = corpus_dir("intel")
    evidence = decode_evidence((root / quote).read_bytes())
    combined = _combined_from_pcs(root, tcb, identity)
    now = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    mine = _mine("tdx", evidence, CollateralSource.of(combined.encode()), now)
    assert mine == _theirs(parse_dcap_evidence(evidence).quote, combined, now)
