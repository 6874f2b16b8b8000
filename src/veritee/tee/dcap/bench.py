"""``veritee bench tdx`` and ``veritee bench sgx``: DCAP quote verifications per second.

The input is an emulated quote (a TDX v4 quote with its CCEL event log in the CoCo JSON, or an
SGX v3 quote) and its collateral in dcap-qvl's combined form (TCB Info, QE identity, both
CRLs, issuer chains) from :mod:`veritee.testing.dcap`, verified by one verifier trusting the
emulated root, with the expected report data given. Three figures, each in the same run:

* ``verify`` (the headline): collateral warm, as a broker serves: the verified collateral is
  reused while current, and the QE report's signature is known for this quoting enclave (every
  quote from one QE carries the same QE report), so each call checks the quote's signature,
  its PCK chain links (cached), the PCK CRLs and the TCB level;
* ``verify_new_qe``: as ``verify``, but the QE report's signature is verified and the
  attestation key loaded on every call, as for a quote from a quoting enclave never seen
  before: the two verifications the floor counts;
* ``verify_cold``: a new verifier on every call, so the collateral's signatures, chains and
  CRLs are verified again each time, as dcap-qvl does (the like-for-like figure);
* the peer, dcap-qvl (its Python bindings, when installed) on the same quote, collateral and
  emulated root (``verify_with_root_ca``), and the floor: two ECDSA P-256 verifications (the
  QE report by the PCK key and the quote by the attestation key).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from veritee.bench.core import BenchResult, Figure, Operation, Settings, compare
from veritee.bench.floors import ECDSA_P256_TWICE, ecdsa_p256_verify_twice
from veritee.claims import Claims
from veritee.collateral import CollateralSource
from veritee.evidence import Evidence
from veritee.tee.dcap.quote import parse_quote
from veritee.tee.dcap.verify import SgxVerifier, TdxVerifier
from veritee.testing.dcap import DcapEmulator, dcap_key, emulated_anchors, root_cert

PEER = "dcap-qvl"


@dataclass(frozen=True)
class Workload:
    verify: Operation
    verify_new_qe: Operation
    verify_cold: Operation
    floor: Operation
    peer: Operation | None


def workload(tee: str) -> Workload:
    """The operations, each checked once before returning."""
    emulator = DcapEmulator(tee=tee)  # type: ignore[arg-type]
    nonce = bytes(range(64))
    document = emulator.coco_evidence(nonce) if tee == "tdx" else {
        "quote": emulator.coco_evidence(nonce)["quote"]}
    evidence = Evidence.from_json(document)
    combined = emulator.combined_collateral()
    source = CollateralSource.of(json.dumps(combined).encode())
    kind = TdxVerifier if tee == "tdx" else SgxVerifier
    warm = kind(emulated_anchors())
    new_qe = kind(emulated_anchors(), remember_quoting_enclaves=False)
    now = emulator.now

    def verify() -> Claims:
        return warm.verify(evidence, report_data=nonce, collateral=source, now=now)

    def verify_new_qe() -> Claims:
        return new_qe.verify(evidence, report_data=nonce, collateral=source, now=now)

    def verify_cold() -> Claims:
        cold = kind(emulated_anchors())
        return cold.verify(evidence, report_data=nonce, collateral=source, now=now)

    for operation in (verify, verify_new_qe, verify_cold):
        claims = operation().to_dict()
        if not claims.get("emulated") or claims.get("tcb_status") != "UpToDate":
            raise RuntimeError("the benchmark's own quote did not verify as expected")
    quote = parse_quote(emulator.quote(nonce))
    floor = ecdsa_p256_verify_twice((dcap_key("pck"), quote.signature_data.qe.qe_report_bytes),
                                    (dcap_key("attestation"), quote.signed_bytes))
    peer = _peer(emulator.quote(nonce), combined, int(now.timestamp()))
    return Workload(verify, verify_new_qe, verify_cold, floor, peer)


def _peer(quote: bytes, combined: dict[str, str], now: int) -> Operation | None:
    """dcap-qvl's verification of the same quote and collateral under the emulated root, or
    None when dcap-qvl is not installed (a development dependency)."""
    try:
        import dcap_qvl  # type: ignore[import-untyped]  # noqa: PLC0415 - optional peer
    except ImportError:
        return None
    collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(combined))
    root = root_cert().public_bytes(serialization.Encoding.DER)

    def verify() -> Any:
        return dcap_qvl.verify_with_root_ca(quote, collateral, root, now)

    report = verify()
    if report.status != "UpToDate":
        raise RuntimeError(f"dcap-qvl gave {report.status} for the benchmark's quote")
    return verify


@dataclass(frozen=True)
class DcapBenchmark:
    name: str
    tee: str
    description: str

    def planned_seconds(self, settings: Settings) -> float:
        return 5 * settings.seconds * len(_thread_counts(settings))

    def run(self, settings: Settings) -> BenchResult:
        work = workload(self.tee)
        ops: dict[str, Callable[[], Any]] = {"verify": work.verify, "floor": work.floor,
                                             "verify_new_qe": work.verify_new_qe,
                                             "verify_cold": work.verify_cold}
        if work.peer is not None:
            ops["peer"] = work.peer
        figures = {n: compare(ops, settings, n) for n in _thread_counts(settings)}
        one, many = figures[1], figures[settings.threads]
        return BenchResult(
            benchmark=self.name, ops_per_s=many["verify"],
            floor=Figure(ECDSA_P256_TWICE, many["floor"]),
            peer=Figure(PEER, many["peer"]) if "peer" in many else None,
            threads=settings.threads, seconds=settings.seconds, extra=_extra(one, many))


def _thread_counts(settings: Settings) -> list[int]:
    return sorted({1, settings.threads})


def _extra(one: dict[str, float], many: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cold_ops_per_s": round(many["verify_cold"], 1),
        "new_qe_ops_per_s": round(many["verify_new_qe"], 1),
        "new_qe_ratio_to_floor": round(many["verify_new_qe"] / many["floor"], 3),
        "single_thread_new_qe_ops_per_s": round(one["verify_new_qe"], 1),
        "single_thread_new_qe_ratio_to_floor": round(one["verify_new_qe"] / one["floor"], 3),
        "single_thread_ops_per_s": round(one["verify"], 1),
        "single_thread_floor_ops_per_s": round(one["floor"], 1),
        "single_thread_ratio_to_floor": round(one["verify"] / one["floor"], 3),
        "single_thread_cold_ops_per_s": round(one["verify_cold"], 1),
        "scaling": round(many["verify"] / one["verify"], 3),
    }
    if "peer" in many:
        out.update({
            "cold_ratio_to_peer": round(many["verify_cold"] / many["peer"], 3),
            "single_thread_peer_ops_per_s": round(one["peer"], 1),
            "single_thread_ratio_to_peer": round(one["verify"] / one["peer"], 3),
            "single_thread_cold_ratio_to_peer": round(one["verify_cold"] / one["peer"], 3),
            "single_thread_new_qe_ratio_to_peer": round(one["verify_new_qe"] / one["peer"], 3),
        })
    return out


TDX_BENCHMARK = DcapBenchmark("tdx", "tdx", "TDX quote verification (warm and cold collateral) "
                              "vs. dcap-qvl and two ECDSA P-256 verifies")
SGX_BENCHMARK = DcapBenchmark("sgx", "sgx", "SGX quote verification (warm and cold collateral) "
                              "vs. dcap-qvl and two ECDSA P-256 verifies")
