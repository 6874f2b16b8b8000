"""What the SVSM vTPM on SEV-SNP contributes to ``veritee demo``: emulated guests that answer
the broker's credential-activation challenge. The genuine one gets the secret; a quote signed
by an AK other than the one the vTPM activated for, and a whole activation replayed from an
earlier session, are refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from veritee.attester.kbs_client import Challenge
from veritee.attester.svsm.emulated import EmulatedSvsmCollector
from veritee.tee.platform import CorpusCase, DemoGuest
from veritee.testing.snp import SnpEmulator
from veritee.testing.svsm import SvsmEmulator

_PROVENANCE = "veritee demo: the emulated OVMF + SVSM image"


@dataclass
class _Replaying:
    """A guest that keeps its first activation and sends it again in later sessions."""

    takes_challenge: ClassVar[bool] = True
    inner: EmulatedSvsmCollector = field(default_factory=EmulatedSvsmCollector)
    kept: dict[str, Any] | None = None

    def auth_params(self) -> dict[str, str]:
        return self.inner.auth_params()

    def __call__(self, report_data: bytes, challenge: Challenge | None = None) -> Any:
        document = self.inner(report_data, challenge)
        if self.kept is None:
            self.kept = document.get("activation")
        else:
            document["activation"] = self.kept
        return document


@dataclass(frozen=True)
class SvsmDemo:
    corpus_vendor: str = "amd"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        snp = SnpEmulator()
        tcb = snp.reported_tcb
        values: dict[str, Any] = {
            "svsm_launch_measurement": {"values": [snp.measurement.hex()],
                                        "provenance": _PROVENANCE},
            "allow_emulated": {"values": [True], "provenance": "veritee demo only"}}
        for component in ("bootloader", "tee", "snp", "microcode"):
            values[f"svsm_snp_{component}"] = {"values": [getattr(tcb, component)],
                                               "provenance": "veritee demo: minimum TCB"}
        return values

    def guests(self) -> Iterator[DemoGuest]:
        yield DemoGuest("genuine guest (SNP report at VMPL 0, manifest, activated AK, quote)",
                        EmulatedSvsmCollector(), "released")
        yield DemoGuest("quote signed by an AK the vTPM did not activate for",
                        EmulatedSvsmCollector(SvsmEmulator(knob="foreign_ak")), "refused",
                        because="BindingError")
        replaying = _Replaying()
        yield DemoGuest("a guest that keeps its activation (first session)",
                        replaying, "released")
        yield DemoGuest("the same guest sends that activation in a new session",
                        replaying, "refused", because="another session's challenge")


SVSM_DEMO = SvsmDemo()
