"""What Intel TDX and SGX contribute to ``veritee demo``: emulated guests (released and
refused) and the emulated platforms' collateral, which the demo's broker reads as its
collateral files (the demo is offline). The corpus samples are not replayed here: their
collateral expired in 2025 and 2026, and ``veritee verify --at`` shows them instead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from veritee.tee.platform import CorpusCase, DemoGuest
from veritee.testing.dcap import DEFAULT_MR_ENCLAVE, DEFAULT_MR_TD, DcapEmulator

_PROVENANCE = "veritee demo: the emulated guest image"


@dataclass(frozen=True)
class TdxDemo:
    corpus_vendor: str = "intel"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        return {"tdx_mr_td": {"values": [DEFAULT_MR_TD.hex()], "provenance": _PROVENANCE},
                "allow_emulated": {"values": [True], "provenance": "veritee demo only"}}

    def collateral(self) -> tuple[tuple[str, bytes], ...]:
        """Files for the broker's collateral folder: the emulated TCB Info, QE identity and
        CRLs in dcap-qvl's combined form."""
        return (("tdx.collateral.json",
                 json.dumps(DcapEmulator(tee="tdx").combined_collateral()).encode()),)

    def guests(self) -> Iterator[DemoGuest]:
        yield DemoGuest("genuine TD (quote v4 and its CCEL)", DcapEmulator().coco_evidence,
                        "released")
        yield DemoGuest("genuine TD 1.5 (quote v5)", DcapEmulator(version=5).coco_evidence,
                        "released")
        yield DemoGuest("debug TD", DcapEmulator(debug=True).coco_evidence, "refused",
                        because="tdx.debug")
        yield DemoGuest("MRTD not a reference value",
                        DcapEmulator(mr_td=bytes.fromhex("5eed" * 24)).coco_evidence,
                        "refused", because="tdx.mr_td")
        yield DemoGuest("TCB out of date", DcapEmulator(tcb_out_of_date=True).coco_evidence,
                        "refused", because="tdx.tcb_status")
        yield DemoGuest("event log that does not replay to the RTMRs",
                        DcapEmulator(knob="tampered_event").coco_evidence, "refused",
                        because="BindingError")
        yield DemoGuest("replayed challenge (quote bound to an old nonce)",
                        DcapEmulator().coco_evidence, "refused", replay=True, because="nonce")


@dataclass(frozen=True)
class SgxDemo:
    corpus_vendor: str = "intel"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        return {"sgx_mr_enclave": {"values": [DEFAULT_MR_ENCLAVE.hex()],
                                   "provenance": _PROVENANCE}}

    def collateral(self) -> tuple[tuple[str, bytes], ...]:
        return (("sgx.collateral.json",
                 json.dumps(DcapEmulator(tee="sgx").combined_collateral()).encode()),)

    def guests(self) -> Iterator[DemoGuest]:
        yield DemoGuest("genuine enclave (quote v3)", DcapEmulator(tee="sgx").coco_evidence,
                        "released")
        yield DemoGuest("debug enclave", DcapEmulator(tee="sgx", debug=True).coco_evidence,
                        "refused", because="sgx.debug")
        yield DemoGuest("QE report not signed by the PCK key",
                        DcapEmulator(tee="sgx", knob="bad_qe_signature").coco_evidence,
                        "refused", because="SignatureError")


TDX_DEMO = TdxDemo()
SGX_DEMO = SgxDemo()
