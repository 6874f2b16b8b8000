"""SEV-SNP evidence collection in a guest: configfs-tsm first, then ``/dev/sev-guest``.

:func:`collect_snp` returns the report and the host's certificate table; :class:`SnpCollected`
expresses them as the configfs-tsm JSON evidence ``veritee verify`` and the broker accept.
:class:`HardwareSnpCollector` and :class:`EmulatedSnpCollector` share one interface, so the
KBS client (``veritee attest``, with or without ``--emulate``) takes either: calling one with
the 64 report-data bytes returns the primary evidence JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.ioctl import Ioctl
from veritee.attester.snp.sevguest import DEFAULT_DEVICE, sev_guest_report
from veritee.attester.tsm import DEFAULT_TSM_ROOT, TsmFs, tsm_report
from veritee.errors import MisuseError
from veritee.evidence import TsmReport
from veritee.tee.snp.evidence import TSM_PROVIDER
from veritee.tee.snp.layout import REPORT_SIZE

if TYPE_CHECKING:
    from veritee.testing.snp import SnpEmulator

REPORT_DATA_SIZE = 64
Source = Literal["configfs-tsm", "sev-guest", "emulated"]


@dataclass(frozen=True)
class SnpCollected:
    """One SNP report as collected, with the certificate table the host supplied (or b"")."""

    report: bytes
    cert_table: bytes
    source: Source

    def evidence(self) -> dict[str, str]:
        """The configfs-tsm JSON evidence (base64url blobs), as the verifier reads it."""
        return TsmReport(self.report, self.cert_table, TSM_PROVIDER).to_json()

    def to_json(self) -> bytes:
        return json.dumps(self.evidence(), indent=1).encode() + b"\n"

    def extended_report(self) -> bytes:
        """The report followed by its certificate table (the raw form ``snpguest`` writes)."""
        return self.report + self.cert_table


def collect_snp(report_data: bytes, *, tsm_root: Path = DEFAULT_TSM_ROOT,
                device: Path = DEFAULT_DEVICE, privlevel: int | None = None,
                fs: TsmFs | None = None, ioctl: Ioctl | None = None) -> SnpCollected:
    """Collect a report over ``report_data`` (exactly 64 bytes) from this SEV-SNP guest.

    configfs-tsm (Linux 6.7+) is tried first, ``/dev/sev-guest`` second. ``privlevel`` is the
    VMPL to request (configfs-tsm ``privlevel``; the device's ``vmpl``, 0 when not given).

    Raises:
        MisuseError: ``report_data`` is not 64 bytes or ``privlevel`` is not 0..3.
        CollectorUnavailableError: neither interface exists here; the message names both.
        CollectorError: an interface exists but refused (permission, firmware error).
    """
    if len(report_data) != REPORT_DATA_SIZE:
        raise MisuseError(f"report data is {len(report_data)} bytes; SNP takes exactly 64 "
                          "(hash or pad it explicitly)")
    if privlevel is not None and not 0 <= privlevel <= 3:
        raise MisuseError(f"privlevel is {privlevel}; SNP has VMPLs 0 to 3")
    try:
        tsm = tsm_report(report_data, root=tsm_root, fs=fs, provider=TSM_PROVIDER,
                         privlevel=privlevel)
    except CollectorError as tsm_error:
        try:
            got = sev_guest_report(report_data, device=device, vmpl=privlevel or 0, ioctl=ioctl)
        except CollectorError as device_error:
            both = f"{tsm_error.detail}; and {device_error.detail}"
            if isinstance(tsm_error, CollectorUnavailableError) and isinstance(
                    device_error, CollectorUnavailableError):
                raise CollectorUnavailableError(both) from device_error
            raise CollectorError(both) from device_error
        collected = SnpCollected(got.report, got.cert_table, "sev-guest")
    else:
        collected = SnpCollected(tsm.outblob, tsm.auxblob, "configfs-tsm")
    _check(collected, report_data)
    return collected


def _check(collected: SnpCollected, report_data: bytes) -> None:
    """The report must be a whole report carrying our report data (else another writer's)."""
    report = collected.report
    if len(report) < REPORT_SIZE:
        raise CollectorError(f"{collected.source} returned {len(report)} bytes; an SNP report "
                             f"is {REPORT_SIZE}")
    if report[0x50:0x90] != report_data:
        raise CollectorError(f"{collected.source} returned a report whose REPORT_DATA is "
                             f"{report[0x50:0x90].hex()}, not the {report_data.hex()} asked for")


class SnpCollector(Protocol):
    """What ``veritee attest`` needs from a collector."""

    def collect(self, report_data: bytes) -> SnpCollected: ...

    def __call__(self, report_data: bytes) -> dict[str, Any]: ...


@dataclass
class HardwareSnpCollector:
    """Collects from this guest's hardware (see :func:`collect_snp`)."""

    tsm_root: Path = DEFAULT_TSM_ROOT
    device: Path = DEFAULT_DEVICE
    privlevel: int | None = None
    fs: TsmFs | None = None
    ioctl: Ioctl | None = None

    def collect(self, report_data: bytes) -> SnpCollected:
        return collect_snp(report_data, tsm_root=self.tsm_root, device=self.device,
                           privlevel=self.privlevel, fs=self.fs, ioctl=self.ioctl)

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        return self.collect(report_data).evidence()


def _default_emulator() -> SnpEmulator:
    from veritee.testing.snp import SnpEmulator  # noqa: PLC0415 - loaded only when asked for

    return SnpEmulator()


@dataclass
class EmulatedSnpCollector:
    """Collects from an emulated SNP guest (:class:`veritee.testing.snp.SnpEmulator`).

    Its evidence verifies only where the operator trusts emulated roots.
    """

    emulator: SnpEmulator = field(default_factory=_default_emulator)

    def collect(self, report_data: bytes) -> SnpCollected:
        if len(report_data) != REPORT_DATA_SIZE:
            raise MisuseError(f"report data is {len(report_data)} bytes; SNP takes exactly 64")
        return SnpCollected(self.emulator.report(report_data), self.emulator.cert_table(),
                            "emulated")

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        return self.collect(report_data).evidence()
