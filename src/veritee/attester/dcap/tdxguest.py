"""TDREPORTs through ``/dev/tdx_guest`` (``TDX_CMD_GET_REPORT0``) — for diagnostics only.

Structure from the Linux uapi ``include/uapi/linux/tdx-guest.h`` (and
Documentation/virt/coco/tdx-guest.rst)::

    #define TDX_REPORTDATA_LEN 64
    #define TDX_REPORT_LEN     1024
    struct tdx_report_req { __u8 reportdata[TDX_REPORTDATA_LEN];
                            __u8 tdreport[TDX_REPORT_LEN]; };                     // 1088
    #define TDX_CMD_GET_REPORT0 _IOWR('T', 1, struct tdx_report_req)             // 0xC4405401

The driver runs TDCALL[TDG.MR.REPORT] (subtype 0) and returns -EINVAL for bad operands, -EIO
when the TDCALL fails. The TDREPORT is MAC'd with a key of this CPU: only the TDX quoting
enclave can check it, so it is no evidence for a remote verifier. A quote needs the host's
quoting enclave, reached by the GetQuote TDVMCALL, which user space cannot issue: upstream
Linux exposes it only through configfs-tsm (provider ``tdx_guest``, Linux 6.7+, "virt:
tdx-guest: Add Quote generation support using TSM_REPORTS"); the upstream uapi has no quote
ioctl. (Intel's DCAP ``libtdx_attest`` can instead send the TDREPORT to the host's quote
generation service over vsock; veritee does not do that.)

TDREPORT_STRUCT (TDX module ABI; as go-tdx-guest and the attestation-agent read it): the
256-byte REPORTMACSTRUCT (REPORTTYPE 4 — type 0x81 for TDX, subtype, version, reserved —,
12 reserved, CPUSVN 16, TEE_TCB_INFO_HASH 48, TEE_INFO_HASH 48, REPORTDATA 64 at offset 128,
32 reserved, MAC 32), TEE_TCB_INFO (239) and 17 reserved bytes, then TDINFO (512) at 512.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path
from typing import Final

from veritee.attester.dcap.quotes import check_report_data
from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.ioctl import Ioctl, iowr, open_device

DEVICE: Final = Path("dev/tdx_guest")
"""The misc device, relative to the file-system root (its name is the driver's)."""
REPORTDATA_LEN: Final = 64
TDREPORT_LEN: Final = 1024
REPORT_REQ: Final = struct.Struct(f"<{REPORTDATA_LEN}s{TDREPORT_LEN}s")  # tdx_report_req
TDX_CMD_GET_REPORT0: Final = iowr("T", 1, REPORT_REQ.size)  # 0xC4405401

#: REPORTMACSTRUCT.REPORTTYPE.TYPE of a TDX report.
REPORT_TYPE_TDX: Final = 0x81
REPORTDATA_OFFSET: Final = 128
TDINFO_OFFSET: Final = 512


def td_report(report_data: bytes, *, device: Path = Path("/") / DEVICE,
              ioctl: Ioctl | None = None) -> bytes:
    """The 1024-byte TDREPORT over ``report_data`` (exactly 64 bytes) from ``device``.

    Raises:
        MisuseError: ``report_data`` is not 64 bytes.
        CollectorUnavailableError: the device is absent or is not the TDX guest device.
        CollectorError: permission denied, the TDCALL failed, or the answer is no TDREPORT
            carrying ``report_data``.
    """
    check_report_data(report_data, "TDX")
    fd = open_device(device, flags=os.O_RDWR, absent=(
        "this is not a TDX guest, or the tdx_guest driver is not loaded (modprobe tdx_guest)"))
    try:
        arg = bytearray(REPORT_REQ.pack(report_data, bytes(TDREPORT_LEN)))
        _call(ioctl or fcntl.ioctl, fd, arg, device)
    finally:
        os.close(fd)
    return _checked(REPORT_REQ.unpack(arg)[1], report_data, device)


def _call(call: Ioctl, fd: int, arg: bytearray, device: Path) -> None:
    try:
        call(fd, TDX_CMD_GET_REPORT0, arg)
    except OSError as exc:
        if exc.errno == errno.ENOTTY:
            raise CollectorUnavailableError(
                f"{device} does not answer TDX_CMD_GET_REPORT0: it is not the upstream TDX "
                "guest device (older kernels had other, incompatible ioctls)") from exc
        raise CollectorError(
            f"TDX_CMD_GET_REPORT0 on {device} failed: {exc.strerror or exc} (errno "
            f"{exc.errno}; EIO: the TDG.MR.REPORT TDCALL failed)") from exc


def _checked(report: bytes, report_data: bytes, device: Path) -> bytes:
    if report[0] != REPORT_TYPE_TDX:
        raise CollectorError(f"{device} returned a report of type {report[0]:#04x}, not a "
                             f"TDREPORT ({REPORT_TYPE_TDX:#04x})")
    got = report[REPORTDATA_OFFSET : REPORTDATA_OFFSET + REPORTDATA_LEN]
    if got != report_data:
        raise CollectorError(f"{device} returned a TDREPORT whose REPORTDATA is {got.hex()}, "
                             f"not the {report_data.hex()} asked for")
    return report


__all__ = ["DEVICE", "REPORT_REQ", "TDX_CMD_GET_REPORT0", "td_report"]
