"""SEV-SNP reports through ``/dev/sev-guest`` (``SNP_GET_REPORT``, ``SNP_GET_EXT_REPORT``).

Structures from the Linux uapi ``include/uapi/linux/sev-guest.h`` (x86-64, little-endian,
natural alignment)::

    struct snp_report_req { __u8 user_data[64]; __u32 vmpl; __u8 rsvd[28]; };      // 96
    struct snp_report_resp { __u8 data[4000]; };
    struct snp_ext_report_req { struct snp_report_req data; __u64 certs_address;
                                __u32 certs_len; };                                    // 112
    struct snp_guest_request_ioctl { __u8 msg_version; __u64 req_data; __u64 resp_data;
        union { __u64 exitinfo2; struct { __u32 fw_error; __u32 vmm_error; }; }; };    // 32
    #define SNP_GET_REPORT     _IOWR('S', 0x0, struct snp_guest_request_ioctl)
    #define SNP_GET_EXT_REPORT _IOWR('S', 0x2, struct snp_guest_request_ioctl)

``resp.data`` holds the firmware's MSG_REPORT_RSP (SEV-SNP ABI Table 25): ``u32 status``,
``u32 report_size``, 24 reserved bytes, then the report. For the extended request the kernel
copies the host's certificate table (GHCB §4.1.8.1) to ``certs_address``; when the buffer is
too small it fails with EIO, ``vmm_error`` = 1 (``SNP_GUEST_VMM_ERR_INVALID_LEN``) and the
needed length in ``certs_len``.

The ioctl function is injectable: tests replace it with a fake kernel that reads and writes
the same buffers through the addresses the structures carry.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.ioctl import Ioctl, iowr
from veritee.errors import MalformedEvidenceError
from veritee.tee.snp import certtable
from veritee.tee.snp.layout import REPORT_SIZE

DEFAULT_DEVICE: Final = Path("/dev/sev-guest")

GUEST_REQUEST: Final = struct.Struct("<B7xQQQ")  # snp_guest_request_ioctl
REPORT_REQ: Final = struct.Struct("<64sI28x")  # snp_report_req
EXT_REPORT_REQ: Final = struct.Struct("<64sI28xQI4x")  # snp_ext_report_req
REPORT_RESP_SIZE: Final = 4000  # snp_report_resp
MSG_REPORT_RSP: Final = struct.Struct("<II24x")  # SEV-SNP ABI Table 25 header
MSG_VERSION: Final = 1
PAGE_SIZE: Final = 4096
#: The kernel refuses certificate buffers larger than this (SEV_FW_BLOB_MAX_SIZE).
MAX_CERTS_LEN: Final = 0x4000
VMM_ERR_INVALID_LEN: Final = 1


SNP_GET_REPORT: Final = iowr("S", 0x0, GUEST_REQUEST.size)  # 0xC0205300
SNP_GET_EXT_REPORT: Final = iowr("S", 0x2, GUEST_REQUEST.size)  # 0xC0205302


@dataclass(frozen=True)
class GuestReport:
    report: bytes
    cert_table: bytes


def sev_guest_report(report_data: bytes, *, device: Path = DEFAULT_DEVICE, vmpl: int = 0,
                     extended: bool = True, ioctl: Ioctl | None = None) -> GuestReport:
    """A report (and, when ``extended``, the host's certificate table) from the device.

    Raises:
        CollectorUnavailableError: the device is absent.
        CollectorError: permission denied, or the driver or firmware refused.
    """
    if len(report_data) != 64:
        raise CollectorError(f"report data is {len(report_data)} bytes; SNP takes exactly 64")
    if not 0 <= vmpl <= 3:
        raise CollectorError(f"VMPL is {vmpl}; SNP has VMPLs 0 to 3")
    call = ioctl or fcntl.ioctl
    fd = _open(device)
    try:
        if extended:
            return _extended(fd, call, report_data, vmpl, device)
        return GuestReport(_plain(fd, call, report_data, vmpl, device), b"")
    finally:
        os.close(fd)


def _open(device: Path) -> int:
    try:
        return os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise CollectorUnavailableError(
            f"{device} is absent: this is not an SEV-SNP guest or the sev-guest module is not "
            "loaded (modprobe sev-guest)"
        ) from exc
    except PermissionError as exc:
        raise CollectorError(
            f"permission denied opening {device}: run as root (or grant read-write access "
            "to the device)"
        ) from exc
    except OSError as exc:
        raise CollectorError(f"cannot open {device}: {exc.strerror or exc}") from exc


def _plain(fd: int, call: Ioctl, report_data: bytes, vmpl: int, device: Path) -> bytes:
    req = ctypes.create_string_buffer(REPORT_REQ.pack(report_data, vmpl), REPORT_REQ.size)
    resp = ctypes.create_string_buffer(REPORT_RESP_SIZE)
    _request(fd, call, SNP_GET_REPORT, req=req, resp=resp, device=device)
    return _report_from(resp.raw, device)


def _extended(fd: int, call: Ioctl, report_data: bytes, vmpl: int, device: Path) -> GuestReport:
    certs_len = MAX_CERTS_LEN
    for _ in range(2):
        certs = ctypes.create_string_buffer(certs_len)
        req = ctypes.create_string_buffer(
            EXT_REPORT_REQ.pack(report_data, vmpl, ctypes.addressof(certs), certs_len),
            EXT_REPORT_REQ.size)
        resp = ctypes.create_string_buffer(REPORT_RESP_SIZE)
        try:
            _request(fd, call, SNP_GET_EXT_REPORT, req=req, resp=resp, device=device)
        except _TooSmall as exc:
            needed = EXT_REPORT_REQ.unpack(req.raw)[3]
            if needed <= certs_len:
                raise CollectorError(
                    f"SNP_GET_EXT_REPORT on {device}: the host asks for a {needed}-byte "
                    f"certificate buffer, no more than the {certs_len} bytes given") from exc
            certs_len = -(-needed // PAGE_SIZE) * PAGE_SIZE
            continue
        return GuestReport(_report_from(resp.raw, device), _cert_table(certs.raw))
    raise CollectorError(f"SNP_GET_EXT_REPORT on {device}: the certificate buffer kept "
                         "growing")


class _TooSmall(Exception):
    """The certificate buffer is too small (EIO with VMM error INVALID_LEN)."""


def _request(fd: int, call: Ioctl, request: int, *, req: ctypes.Array[ctypes.c_char],
             resp: ctypes.Array[ctypes.c_char], device: Path) -> None:
    arg = bytearray(GUEST_REQUEST.pack(MSG_VERSION, ctypes.addressof(req),
                                       ctypes.addressof(resp), 0))
    name = "SNP_GET_EXT_REPORT" if request == SNP_GET_EXT_REPORT else "SNP_GET_REPORT"
    try:
        call(fd, request, arg)
    except OSError as exc:
        fw_error, vmm_error = struct.unpack_from("<II", arg, 24)
        if exc.errno == errno.EIO and vmm_error == VMM_ERR_INVALID_LEN and \
                request == SNP_GET_EXT_REPORT:
            raise _TooSmall from exc
        if exc.errno == errno.ENOTTY:
            raise CollectorUnavailableError(
                f"{device} does not answer {name}: it is not the SEV-SNP guest device"
            ) from exc
        raise CollectorError(
            f"{name} on {device} failed: {exc.strerror or exc} (errno {exc.errno}), "
            f"firmware error {fw_error:#x}, VMM error {vmm_error:#x}"
        ) from exc


def _report_from(data: bytes, device: Path) -> bytes:
    status, size = MSG_REPORT_RSP.unpack_from(data)
    if status != 0:
        raise CollectorError(
            f"the SEV-SNP firmware refused the report request on {device}: MSG_REPORT_RSP "
            f"status {status:#x} (0x16: invalid parameters, e.g. a VMPL below the guest's)"
        )
    if size < REPORT_SIZE or size > len(data) - MSG_REPORT_RSP.size:
        raise CollectorError(f"MSG_REPORT_RSP on {device} says the report is {size} bytes; "
                             f"expected {REPORT_SIZE}")
    return data[MSG_REPORT_RSP.size : MSG_REPORT_RSP.size + REPORT_SIZE]


def _cert_table(buffer: bytes) -> bytes:
    """The certificate table at the start of ``buffer`` without the zero tail; b"" if the
    host gave none. A table that does not parse is passed on whole: the verifier judges it."""
    try:
        entries = certtable.parse_cert_table(buffer)
    except MalformedEvidenceError:
        return buffer
    if not entries:
        return b""
    end = certtable.ENTRY_SIZE * (len(entries) + 1)
    for index in range(len(entries)):
        _, offset, length = struct.unpack_from("<16sII", buffer, index * certtable.ENTRY_SIZE)
        end = max(end, offset + length)
    return buffer[:end]
