"""What the device collectors share: the ioctl request encoding and opening a device.

Request numbers follow the Linux ``include/uapi/asm-generic/ioctl.h`` layout on x86-64:
direction in bits 30–31 (1 write, 2 read, 3 both, seen from user space), the argument size in
bits 16–29, the type character in bits 8–15 and the command number in bits 0–7.

The ioctl function is injectable (:data:`Ioctl`, the shape of :func:`fcntl.ioctl` with a
mutable buffer), so tests replace the kernel or the LibOS behind a device with a fake that
reads and writes the same buffers. Shared by every TEE's collectors (no TEE named here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.errors import MisuseError

#: ``fcntl.ioctl``'s shape: (fd, request, mutable argument buffer) → result.
Ioctl = Callable[[int, int, bytearray], object]

_IOC_WRITE: Final = 1
_IOC_READ: Final = 2
_IOC_SIZE_LIMIT: Final = 1 << 14


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    if not 0 <= size < _IOC_SIZE_LIMIT:
        raise MisuseError(f"an ioctl argument of {size} bytes does not fit the 14-bit size field")
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


def ior(kind: str, nr: int, size: int) -> int:
    """``_IOR(kind, nr, size)``: the kernel writes the argument."""
    return _ioc(_IOC_READ, kind, nr, size)


def iowr(kind: str, nr: int, size: int) -> int:
    """``_IOWR(kind, nr, size)``: the kernel reads and writes the argument."""
    return _ioc(_IOC_READ | _IOC_WRITE, kind, nr, size)


def open_device(device: Path, *, flags: int, absent: str) -> int:
    """Open ``device``; ``absent`` says what its absence means and what to do.

    Raises:
        CollectorUnavailableError: the device does not exist.
        CollectorError: permission denied or another error opening it.
    """
    try:
        return os.open(device, flags | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise CollectorUnavailableError(f"{device} is absent: {absent}") from exc
    except PermissionError as exc:
        raise CollectorError(f"permission denied opening {device}: run as root (or grant "
                             "access to the device)") from exc
    except OSError as exc:
        raise CollectorError(f"cannot open {device}: {exc.strerror or exc}") from exc


__all__ = ["Ioctl", "ior", "iowr", "open_device"]
