"""Collectors over :mod:`veritee.testing`'s emulated TDX and SGX platforms, for
``veritee attest --tee tdx|sgx --emulate``. Their quotes verify only where the operator trusts
emulated roots, and only with the emulated platform's collateral (``veritee emulate tdx``
writes it beside the evidence; a broker reads it from its collateral files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veritee.attester.dcap.quotes import REPORT_DATA_SIZE
from veritee.errors import MisuseError

if TYPE_CHECKING:
    from veritee.testing.dcap import DcapEmulator


def _emulator(tee: str) -> DcapEmulator:
    from veritee.testing.dcap import DcapEmulator  # noqa: PLC0415 - loaded only when asked for

    return DcapEmulator(tee=tee)  # type: ignore[arg-type]


@dataclass
class EmulatedTdxCollector:
    """The CoCo evidence of an emulated TD: its quote and its CCEL."""

    emulator: DcapEmulator = field(default_factory=lambda: _emulator("tdx"))

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        if len(report_data) != REPORT_DATA_SIZE:
            raise MisuseError(f"report data is {len(report_data)} bytes; a TD quote takes "
                              f"exactly {REPORT_DATA_SIZE}")
        return self.emulator.coco_evidence(report_data)


@dataclass
class EmulatedSgxCollector:
    """The CoCo evidence of an emulated enclave: its quote."""

    emulator: DcapEmulator = field(default_factory=lambda: _emulator("sgx"))

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        if len(report_data) != REPORT_DATA_SIZE:
            raise MisuseError(f"report data is {len(report_data)} bytes; an SGX quote takes "
                              f"exactly {REPORT_DATA_SIZE}")
        return self.emulator.coco_evidence(report_data)
