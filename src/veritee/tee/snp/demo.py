"""What SEV-SNP contributes to ``veritee demo``: emulated guests (released and refused) and
the real samples of the shared corpus verified offline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

from veritee.tee.platform import CorpusCase, DemoGuest
from veritee.testing.snp import (
    DEFAULT_MEASUREMENT,
    DEFAULT_TCB,
    KNOB_ERRORS,
    KNOBS,
    PRODUCTS,
    Knob,
    SnpEmulator,
)

_SIGNER_OF: dict[str, Literal["vcek", "vlek"]] = {"milan": "vcek", "genoa": "vlek",
                                                   "turin": "vcek"}


def tcb_minimums(provenance: str) -> dict[str, Any]:
    """Reference values ``snp_<component>`` that every emulated product line meets: a
    component passes when it is >= one listed value, so the smallest per component is
    listed (``fmc`` exists on Turin only)."""
    components = {name for tcb in DEFAULT_TCB.values() for name in tcb}
    return {f"snp_{name}": {"values": [min(tcb[name] for tcb in DEFAULT_TCB.values()
                                           if name in tcb)],
                            "provenance": provenance}
            for name in sorted(components)}


@dataclass(frozen=True)
class SnpDemo:
    corpus_vendor: str = "amd"
    #: The real samples and the endorsements their MANIFEST.json names (corpus/amd/...).
    corpus: tuple[CorpusCase, ...] = (
        CorpusCase("go-sev-guest/attestation.bin",
                   ("go-sev-guest/vcek.testcer", "go-sev-guest/milan.testcer")),
        CorpusCase("virtee-sev/report_milan.hex", ("virtee-sev/vcek_milan.der",)),
        CorpusCase("veraison/sevsnp-tsm-report.json"),
    )

    def reference_values(self) -> dict[str, Any]:
        """The demo's genuine guests are affirming under the default policy: their image,
        the emulated roots, and TCB minimums that every emulated product line meets."""
        return {
            "snp_launch_measurement": {"values": [DEFAULT_MEASUREMENT.hex()],
                                       "provenance": "veritee demo: the emulated guest image"},
            **tcb_minimums("veritee demo: the smallest TCB of the emulated Milan, Genoa and "
                           "Turin platforms"),
            "allow_emulated": {"values": [True], "provenance": "veritee demo only"},
        }

    def guests(self) -> Iterator[DemoGuest]:
        for product in PRODUCTS:
            signer = _SIGNER_OF[product]
            emu = SnpEmulator(product=product, signer=signer)
            yield DemoGuest(f"genuine {product} guest ({signer.upper()})", emu.coco_evidence,
                            "released")
        stranger = SnpEmulator(measurement=bytes.fromhex("5eed" * 24))
        yield DemoGuest("measurement not a reference value", stranger.coco_evidence, "refused",
                        because="snp.measurement")
        yield DemoGuest("replayed challenge (evidence bound to an old nonce)",
                        SnpEmulator().coco_evidence, "refused", replay=True, because="nonce")
        for knob in KNOBS:
            if knob == "revoked":
                continue  # needs a CRL in the broker's collateral; covered by `veritee verify`
            emu = SnpEmulator(knob=cast(Knob, knob))
            # The CoCo JSON form has no room for REPORTED_TCB's reserved bytes (its TCB is
            # four or five numbers), so that defect travels as configfs-tsm's raw report.
            collector = emu.configfs_tsm if knob == "tcb_reserved" else emu.coco_evidence
            yield DemoGuest(f"defect: {knob.replace('_', ' ')}", collector, "refused",
                            because=KNOB_ERRORS[knob].__name__)
        yield DemoGuest("evidence in no format veritee reads", lambda rd: {"not": "evidence"},
                        "refused", because="UnrecognizedEvidenceError")
        vlek = SnpEmulator(signer="vlek")
        yield DemoGuest("VLEK-signed report without its VLEK",
                        lambda rd: {"attestation_report": vlek.coco_evidence(rd)[
                            "attestation_report"]}, "refused", because="CollateralMissingError")


DEMO = SnpDemo()
