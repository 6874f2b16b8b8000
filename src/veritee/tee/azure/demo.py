"""What Azure's SEV-SNP confidential VMs contribute to ``veritee demo``: emulated CVMs (an
HCL report around an emulated SNP report, and a vTPM quote signed by the HCL's AK), released
and refused. The corpus holds no Azure samples here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from veritee.tee.platform import CorpusCase, DemoGuest
from veritee.testing.azure import AzureEmulator, default_pcrs
from veritee.testing.snp import SnpEmulator

_PROVENANCE = "veritee demo: the emulated CVM image"
#: The vTPM PCRs the demo's reference values pin.
PINNED: tuple[int, ...] = (0, 4, 7, 9)


@dataclass(frozen=True)
class AzSnpDemo:
    corpus_vendor: str = "azure"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        pcrs = default_pcrs()
        values: dict[str, Any] = {f"azure_pcr{i}": {"values": [pcrs[i].hex()],
                                                     "provenance": _PROVENANCE} for i in PINNED}
        tcb = SnpEmulator().reported_tcb
        for component in ("bootloader", "tee", "snp", "microcode"):
            values[f"azure_snp_{component}"] = {"values": [getattr(tcb, component)],
                                                "provenance": "veritee demo: minimum TCB"}
        values["allow_emulated"] = {"values": [True], "provenance": "veritee demo only"}
        return values

    def guests(self) -> Iterator[DemoGuest]:
        yield DemoGuest("genuine CVM (evidence v2: HCL report, SNP report, vTPM quote)",
                        AzureEmulator().evidence, "released")
        yield DemoGuest("genuine CVM (evidence v1)", AzureEmulator(version=1).evidence,
                        "released")
        changed = list(default_pcrs())
        changed[4] = bytes.fromhex("4b" * 32)
        yield DemoGuest("another boot loader (vTPM PCR 4 differs)",
                        AzureEmulator(pcrs=tuple(changed)).evidence, "refused",
                        because="azure_pcr")
        yield DemoGuest("vTPM quote not bound to the SNP report (HCL var data changed)",
                        AzureEmulator(knob="unbound").evidence, "refused",
                        because="BindingError")
        yield DemoGuest("v2 user-data is not the KBS report data",
                        AzureEmulator(knob="user_data_mismatch").evidence, "refused",
                        because="BindingError")


AZ_SNP_DEMO = AzSnpDemo()
