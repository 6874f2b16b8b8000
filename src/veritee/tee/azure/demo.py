"""What Azure's confidential VMs contribute to ``veritee demo``: emulated CVMs (an HCL report
around an emulated SNP report or TD quote, and a vTPM quote signed by the HCL's AK), released
and refused. The corpus holds no Azure samples here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from veritee.tee.platform import CorpusCase, DemoGuest
from veritee.testing.azure import AzureEmulator, default_pcrs
from veritee.testing.dcap import DEFAULT_MR_TD
from veritee.testing.snp import SnpEmulator

_PROVENANCE = "veritee demo: the emulated CVM image"
#: The vTPM PCRs the demo's reference values pin.
PINNED: tuple[int, ...] = (0, 4, 7, 9)


@dataclass(frozen=True)
class AzSnpDemo:
    corpus_vendor: str = "azure"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        values = _pcr_values()
        tcb = SnpEmulator().reported_tcb
        for component in ("bootloader", "tee", "snp", "microcode"):
            values[f"azure_snp_{component}"] = {"values": [getattr(tcb, component)],
                                                "provenance": "veritee demo: minimum TCB"}
        return values

    def guests(self) -> Iterator[DemoGuest]:
        yield DemoGuest("genuine CVM (evidence v2: HCL report, SNP report, vTPM quote)",
                        AzureEmulator().evidence, "released")
        yield DemoGuest("genuine CVM (evidence v1)", AzureEmulator(version=1).evidence,
                        "released")
        yield DemoGuest("another boot loader (vTPM PCR 4 differs)",
                        AzureEmulator(pcrs=_other_boot_loader()).evidence, "refused",
                        because="azure_pcr")
        yield DemoGuest("vTPM quote not bound to the SNP report (HCL var data changed)",
                        AzureEmulator(knob="unbound").evidence, "refused",
                        because="BindingError")
        yield DemoGuest("v2 user-data is not the KBS report data",
                        AzureEmulator(knob="user_data_mismatch").evidence, "refused",
                        because="BindingError")


@dataclass(frozen=True)
class AzTdxDemo:
    corpus_vendor: str = "azure"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        return {**_pcr_values(), "azure_tdx_mr_td": {"values": [DEFAULT_MR_TD.hex()],
                                                    "provenance": _PROVENANCE}}

    def collateral(self) -> tuple[tuple[str, bytes], ...]:
        """The emulated Intel collateral of the TD quote, for the broker's collateral folder."""
        return tuple((f"az-tdx{suffix}", data)
                     for suffix, data in AzureEmulator(machine="tdx").collateral())

    def guests(self) -> Iterator[DemoGuest]:
        yield DemoGuest("genuine CVM (evidence v1: HCL report, TD quote, vTPM quote)",
                        AzureEmulator(machine="tdx", version=1).evidence, "released")
        yield DemoGuest("another boot loader (vTPM PCR 4 differs)",
                        AzureEmulator(machine="tdx", version=1,
                                      pcrs=_other_boot_loader()).evidence,
                        "refused", because="azure_pcr")
        yield DemoGuest("vTPM quote not bound to the TD quote (HCL var data changed)",
                        AzureEmulator(machine="tdx", version=1, knob="unbound").evidence,
                        "refused", because="BindingError")


def _pcr_values() -> dict[str, Any]:
    pcrs = default_pcrs()
    values: dict[str, Any] = {f"azure_pcr{i}": {"values": [pcrs[i].hex()],
                                                 "provenance": _PROVENANCE} for i in PINNED}
    values["allow_emulated"] = {"values": [True], "provenance": "veritee demo only"}
    return values


def _other_boot_loader() -> tuple[bytes, ...]:
    changed = list(default_pcrs())
    changed[4] = bytes.fromhex("4b" * 32)
    return tuple(changed)


AZ_SNP_DEMO = AzSnpDemo()
AZ_TDX_DEMO = AzTdxDemo()
