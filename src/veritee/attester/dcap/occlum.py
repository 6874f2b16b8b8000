"""SGX quotes inside Occlum (and so inside enclave-cc, whose agent runs on Occlum): ``/dev/sgx``.

Occlum's LibOS serves ``/dev/sgx`` itself (``src/libos/src/fs/dev_fs/dev_sgx``); the DCAP
commands exist when it is built with DCAP support. Layouts from Occlum's
``demos/remote_attestation/dcap/dcap_lib/dcap.h`` (x86-64, natural alignment)::

    typedef struct { sgx_report_data_t *report_data;   // in: 64 bytes
                     uint32_t *quote_len;              // in/out: the buffer's size
                     uint8_t *quote_buf; }             // out
        sgxioc_gen_dcap_quote_arg_t;                                            // 24
    #define SGXIOC_GET_DCAP_QUOTE_SIZE _IOR('s', 7, uint32_t)                   // 0x80047307
    #define SGXIOC_GEN_DCAP_QUOTE      _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t) // 0xC0187308

The LibOS refuses a buffer smaller than the quote size (EINVAL) and answers EIO while its
DCAP quote generator is not ready; it writes the quote at the start of the buffer. The
Confidential Containers attestation agent asks for the size first and then for a quote into a
buffer of exactly that size; so does this module.

A host with the in-kernel SGX driver has ``/dev/sgx_enclave`` (or a ``/dev/sgx/`` folder of
the older DCAP driver); a process there is not inside an enclave and gets no quote here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from pathlib import Path
from typing import Final

from veritee.attester.dcap.quotes import check_report_data
from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.ioctl import Ioctl, ior, iowr, open_device
from veritee.tee.dcap.quote import MAX_QUOTE_BYTES

DEVICE: Final = Path("dev/sgx")
"""Occlum's SGX device, relative to the file-system root."""
QUOTE_SIZE: Final = struct.Struct("<I")  # uint32_t
GEN_QUOTE_ARG: Final = struct.Struct("<QQQ")  # sgxioc_gen_dcap_quote_arg_t
SGXIOC_GET_DCAP_QUOTE_SIZE: Final = ior("s", 7, QUOTE_SIZE.size)  # 0x80047307
SGXIOC_GEN_DCAP_QUOTE: Final = iowr("s", 8, GEN_QUOTE_ARG.size)  # 0xC0187308

#: What the LibOS answers to a command it does not have.
_NOT_SUPPORTED: Final = frozenset({errno.ENOTTY, errno.ENOSYS, errno.EINVAL})


def occlum_quote(report_data: bytes, *, device: Path = Path("/") / DEVICE,
                 ioctl: Ioctl | None = None) -> bytes:
    """A DCAP quote over ``report_data`` (exactly 64 bytes) from Occlum's ``device``.

    Raises:
        MisuseError: ``report_data`` is not 64 bytes.
        CollectorUnavailableError: the device is absent, is a folder (an SGX host's driver),
            or does not know the DCAP commands.
        CollectorError: the LibOS refused or returned an impossible size.
    """
    check_report_data(report_data, "SGX")
    if device.is_dir():
        raise CollectorUnavailableError(
            f"{device} is a folder (an SGX driver's device nodes): this process runs on an "
            "SGX host, not inside an Occlum enclave")
    fd = open_device(device, flags=os.O_RDONLY, absent="not inside an Occlum enclave")
    try:
        call = ioctl or fcntl.ioctl
        return _generate(fd, call, report_data, _quote_size(fd, call, device), device)
    finally:
        os.close(fd)


def _quote_size(fd: int, call: Ioctl, device: Path) -> int:
    arg = bytearray(QUOTE_SIZE.size)
    _request(fd, call, SGXIOC_GET_DCAP_QUOTE_SIZE, arg, device)
    size: int = QUOTE_SIZE.unpack(arg)[0]
    if not 0 < size <= MAX_QUOTE_BYTES:
        raise CollectorError(f"SGXIOC_GET_DCAP_QUOTE_SIZE on {device} says a quote is {size} "
                             f"bytes (expected 1 to {MAX_QUOTE_BYTES})")
    return size


def _generate(fd: int, call: Ioctl, report_data: bytes, size: int, device: Path) -> bytes:
    data = ctypes.create_string_buffer(report_data, len(report_data))
    length = ctypes.c_uint32(size)
    quote = ctypes.create_string_buffer(size)
    arg = bytearray(GEN_QUOTE_ARG.pack(ctypes.addressof(data), ctypes.addressof(length),
                                       ctypes.addressof(quote)))
    _request(fd, call, SGXIOC_GEN_DCAP_QUOTE, arg, device)
    if length.value > size:
        raise CollectorError(f"SGXIOC_GEN_DCAP_QUOTE on {device} says it wrote {length.value} "
                             f"bytes into a {size}-byte buffer")
    return quote.raw[: length.value]


def _request(fd: int, call: Ioctl, request: int, arg: bytearray, device: Path) -> None:
    name = "SGXIOC_GET_DCAP_QUOTE_SIZE" if request == SGXIOC_GET_DCAP_QUOTE_SIZE else \
        "SGXIOC_GEN_DCAP_QUOTE"
    try:
        call(fd, request, arg)
    except OSError as exc:
        if exc.errno in _NOT_SUPPORTED and request == SGXIOC_GET_DCAP_QUOTE_SIZE:
            raise CollectorUnavailableError(
                f"{device} does not answer {name} ({exc.strerror or exc}): Occlum was built "
                "without DCAP support, or this device is not Occlum's") from exc
        raise CollectorError(
            f"{name} on {device} failed: {exc.strerror or exc} (errno {exc.errno}; EIO: the "
            "LibOS's DCAP quote generator is not ready — is the host's DCAP quote library "
            "installed and its PCCS configured?)") from exc


__all__ = ["DEVICE", "GEN_QUOTE_ARG", "SGXIOC_GEN_DCAP_QUOTE", "SGXIOC_GET_DCAP_QUOTE_SIZE",
           "occlum_quote"]
