"""TDX evidence collection in a guest: the quote through configfs-tsm, the CCEL from sysfs.

The quote comes from configfs-tsm with provider ``tdx_guest`` (:mod:`veritee.attester.tsm`):
the kernel turns the TDREPORT into a quote with the GetQuote TDVMCALL, which user space cannot
make itself, so there is no device fallback (``/dev/tdx_guest`` gives only a TDREPORT, see
:mod:`veritee.attester.dcap.tdxguest`). The evidence is the Confidential Containers TDX
attester JSON ``{"cc_eventlog": <base64 | null>, "quote": <base64>}`` (trustee
``TdxEvidence``), which :func:`veritee.tee.dcap.evidence.decode_dcap_evidence` reads.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from veritee.attester import tsm
from veritee.attester.dcap import acpi, tdxguest
from veritee.attester.dcap.quotes import check_report_data, checked_quote
from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.tee.dcap.evidence import TSM_PROVIDER

TSM_REPORTS: Final = Path("sys/kernel/config/tsm/report")
"""configfs-tsm's report folder, relative to the file-system root."""


@dataclass(frozen=True)
class TdxCollected:
    """One TD quote as collected, with the CCEL log area and table when sysfs has them."""

    quote: bytes
    cc_eventlog: bytes | None
    ccel_table: bytes | None = None
    source: Literal["configfs-tsm"] = "configfs-tsm"

    def evidence(self) -> dict[str, str | None]:
        """The CoCo TDX attester JSON (standard base64), as the verifier reads it."""
        log = self.cc_eventlog
        return {"cc_eventlog": None if log is None else base64.b64encode(log).decode(),
                "quote": base64.b64encode(self.quote).decode()}

    def to_json(self) -> bytes:
        return json.dumps(self.evidence(), indent=1).encode() + b"\n"


def collect_tdx(report_data: bytes, *, root: Path = Path("/"), fs: tsm.TsmFs | None = None,
                require_eventlog: bool = False) -> TdxCollected:
    """A quote over ``report_data`` (exactly 64 bytes) and this TD's CCEL, under ``root``.

    Without a CCEL log area the evidence carries ``"cc_eventlog": null`` (the verifier then
    cannot replay the RTMRs), unless ``require_eventlog`` makes that an error.

    Raises:
        MisuseError: ``report_data`` is not 64 bytes.
        CollectorUnavailableError: configfs-tsm is absent or another TEE's (the message says
            whether ``/dev/tdx_guest`` exists and what to do); no CCEL when required.
        CollectorError: configfs-tsm or sysfs refused (permission, no quote from the host), or
            what came back is not a TDX quote over ``report_data``.
    """
    check_report_data(report_data, "TDX")
    quote = _tsm_quote(report_data, root, fs or tsm.OsTsmFs())
    ccel = acpi.read_ccel(root)
    log = acpi.required_log(ccel, root) if require_eventlog else ccel.log
    return TdxCollected(quote, log, ccel.table)


def _tsm_quote(report_data: bytes, root: Path, fs: tsm.TsmFs) -> bytes:
    reports = root / TSM_REPORTS
    if not fs.is_dir(reports):
        raise CollectorUnavailableError(_no_tsm(root, fs))
    try:
        report = tsm.tsm_report(report_data, root=reports, fs=fs, provider=TSM_PROVIDER)
    except CollectorError as exc:  # an absent or refused outblob: the host made no quote
        if isinstance(exc, CollectorUnavailableError) or "outblob" not in exc.detail:
            raise
        raise CollectorError(
            f"{exc.detail}: the tdx_guest driver got no quote from the host (is a quote "
            "generation service running there and the VMM's quote-generation socket "
            "configured?)") from exc
    return checked_quote(report.outblob, tee="tdx", report_data=report_data,
                         source=f"configfs-tsm at {reports}")


def _no_tsm(root: Path, fs: tsm.TsmFs) -> str:
    reports, device = root / TSM_REPORTS, root / tdxguest.DEVICE
    configfs = root / "sys/kernel/config"
    mount = "" if _mounted(fs, configfs) else \
        f"; configfs is not mounted: mount -t configfs none {configfs}"
    if device.exists():
        return (f"{reports} is absent, but {device} exists: this TD's kernel gives user space "
                "TDREPORTs but no quotes; quotes need configfs-tsm (Linux 6.7+ with "
                f"CONFIG_TSM_REPORTS){mount}")
    return (f"not inside a TD: {reports} is absent and so is {device} (no tdx_guest driver): "
            "run in an Intel TDX guest with Linux 6.7+ (CONFIG_TDX_GUEST_DRIVER, "
            f"CONFIG_TSM_REPORTS){mount}")


def _mounted(fs: tsm.TsmFs, configfs: Path) -> bool:
    try:
        return fs.is_dir(configfs) and bool(fs.listdir(configfs))
    except OSError:
        return False


__all__ = ["TSM_REPORTS", "TdxCollected", "collect_tdx"]
