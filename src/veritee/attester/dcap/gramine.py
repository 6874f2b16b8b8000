"""SGX quotes inside Gramine: the ``/dev/attestation`` pseudo-files.

Gramine's documentation ("Attestation and Secret Provisioning", low-level
``/dev/attestation`` interface): ``attestation_type`` reads ``none``, ``epid`` or ``dcap``
(the manifest's ``sgx.remote_attestation``); the 64 bytes written to ``user_report_data``
become the SGX report's REPORTDATA; reading ``quote`` then returns the quote the quoting
enclave made over that report. The files are process-local, so no other process can change
the report data between the write and the read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from veritee.attester.dcap.quotes import check_report_data
from veritee.attester.errors import CollectorError, CollectorUnavailableError

ATTESTATION: Final = Path("dev/attestation")
"""Gramine's pseudo-file system, relative to the file-system root."""
DCAP: Final = "dcap"


def attestation_type(root: Path = Path("/")) -> str | None:
    """The content of ``/dev/attestation/attestation_type``; None when absent (not Gramine).

    Raises:
        CollectorError: it exists but cannot be read.
    """
    path = root / ATTESTATION / "attestation_type"
    try:
        return path.read_bytes().decode("ascii", "replace").strip("\x00 \n")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from exc


def gramine_quote(report_data: bytes, *, root: Path = Path("/")) -> bytes:
    """A DCAP quote over ``report_data`` (exactly 64 bytes) from Gramine.

    Raises:
        MisuseError: ``report_data`` is not 64 bytes.
        CollectorUnavailableError: not inside Gramine, or its attestation type is not dcap.
        CollectorError: a pseudo-file refused the write or the read.
    """
    check_report_data(report_data, "SGX")
    kind = attestation_type(root)
    folder = root / ATTESTATION
    if kind is None:
        raise CollectorUnavailableError(
            f"not inside Gramine: {folder / 'attestation_type'} is absent")
    if kind != DCAP:
        raise CollectorUnavailableError(
            f"Gramine's attestation type is {kind!r} ({folder / 'attestation_type'}), not "
            f"'dcap': set sgx.remote_attestation = \"dcap\" in the manifest and run under "
            "gramine-sgx")
    _write(folder / "user_report_data", report_data)
    return _read(folder / "quote")


def _write(path: Path, data: bytes) -> None:
    try:  # one write(2), no O_CREAT: the file is Gramine's (as its C example writes it)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CollectorError(f"writing {path}: {exc.strerror or exc} (errno {exc.errno})") \
            from exc
    if written != len(data):
        raise CollectorError(f"short write to {path}: {written} of {len(data)} bytes")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CollectorError(f"reading {path}: {exc.strerror or exc} (errno {exc.errno}); the "
                             "host's AESM service or DCAP quote provider may be missing") \
            from exc


__all__ = ["ATTESTATION", "attestation_type", "gramine_quote"]
