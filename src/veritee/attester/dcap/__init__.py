"""Intel TDX and SGX (DCAP) evidence collection in a guest or an enclave.

:class:`HardwareTdxCollector` takes the TD quote from configfs-tsm (provider ``tdx_guest``)
and the event log from the ACPI CCEL in sysfs; :class:`HardwareSgxCollector` takes the
enclave's quote from Gramine's ``/dev/attestation`` or Occlum's ``/dev/sgx`` (enclave-cc runs
on Occlum). Both have the shape the KBS client takes (``veritee.tee.platform.Collector``):
called with the 64 report-data bytes they return the Confidential Containers evidence JSON
that :func:`veritee.tee.dcap.evidence.decode_dcap_evidence` reads. ``root`` is the file-system
prefix every path is taken under (tests point it at a fake tree); ``fs`` and ``ioctl`` replace
configfs-tsm and the device calls.

The emulated collectors (over ``veritee.testing``'s DCAP emulator) are in
:mod:`veritee.attester.dcap.emulated`, imported only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.attester.dcap.quotes import REPORT_DATA_SIZE
from veritee.attester.dcap.sgx import SgxCollected, SgxSource, collect_sgx
from veritee.attester.dcap.tdx import TdxCollected, collect_tdx
from veritee.attester.dcap.tdxguest import DEVICE, td_report
from veritee.attester.ioctl import Ioctl
from veritee.attester.tsm import TsmFs


@dataclass
class HardwareTdxCollector:
    """Collects from this TD (see :func:`~veritee.attester.dcap.tdx.collect_tdx`)."""

    root: Path = Path("/")
    fs: TsmFs | None = None
    ioctl: Ioctl | None = None
    """Replaces ``fcntl.ioctl`` for ``/dev/tdx_guest`` (:meth:`td_report` only)."""
    require_eventlog: bool = False

    def collect(self, report_data: bytes) -> TdxCollected:
        return collect_tdx(report_data, root=self.root, fs=self.fs,
                           require_eventlog=self.require_eventlog)

    def td_report(self, report_data: bytes) -> bytes:
        """The 1024-byte TDREPORT from ``/dev/tdx_guest`` — a diagnostic, not evidence."""
        return td_report(report_data, device=self.root / DEVICE, ioctl=self.ioctl)

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        return self.collect(report_data).evidence()


@dataclass
class HardwareSgxCollector:
    """Collects from the enclave LibOS here (see :func:`~veritee.attester.dcap.sgx.collect_sgx`)."""

    root: Path = Path("/")
    ioctl: Ioctl | None = None
    """Replaces ``fcntl.ioctl`` for Occlum's ``/dev/sgx``."""

    def collect(self, report_data: bytes) -> SgxCollected:
        return collect_sgx(report_data, root=self.root, ioctl=self.ioctl)

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        return self.collect(report_data).evidence()


__all__ = ["REPORT_DATA_SIZE", "HardwareSgxCollector", "HardwareTdxCollector", "SgxCollected",
           "SgxSource", "TdxCollected", "collect_sgx", "collect_tdx", "td_report"]
