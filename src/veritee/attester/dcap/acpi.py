"""The TDX event log of a guest: the ACPI CCEL table and its log area, from sysfs.

Linux exposes the table as ``/sys/firmware/acpi/tables/CCEL`` (56 bytes: ACPI 6.5 "CC Event
Log ACPI Table" — CC type, LAML, LASA) and the log area it points to (LAML bytes: the TCG
crypto-agile log, then padding) as ``/sys/firmware/acpi/tables/data/CCEL`` (intel-dcap.md
§3.2). The attestation agent of Confidential Containers sends the log area's bytes whole as
``cc_eventlog``; so does veritee, and the verifier reads up to the padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.errors import MalformedEvidenceError
from veritee.tee.dcap.ccel import parse_ccel_table

TABLE: Final = Path("sys/firmware/acpi/tables/CCEL")
"""The CCEL table, relative to the file-system root."""
LOG_AREA: Final = Path("sys/firmware/acpi/tables/data/CCEL")
"""The CCEL log area, relative to the file-system root."""


@dataclass(frozen=True)
class Ccel:
    """What sysfs offers of the CCEL: the table and the log area, each None when absent."""

    table: bytes | None
    log: bytes | None


def read_ccel(root: Path = Path("/")) -> Ccel:
    """Read the CCEL table and log area under ``root``; absent files are None.

    Raises:
        CollectorError: a file exists but cannot be read (permission: run as root).
    """
    return Ccel(_read_optional(root / TABLE), _read_optional(root / LOG_AREA))


def required_log(ccel: Ccel, root: Path = Path("/")) -> bytes:
    """The log area, or an error saying why this guest offers none.

    Raises:
        CollectorUnavailableError: the log area is absent (with or without the table).
    """
    if ccel.log is not None:
        return ccel.log
    if ccel.table is None:
        raise CollectorUnavailableError(
            f"no TDX event log: {root / TABLE} and {root / LOG_AREA} are absent (the firmware "
            "published no CCEL table, or this is not a TDX guest)")
    raise CollectorUnavailableError(
        f"no TDX event log: the CCEL table is at {root / TABLE} but its log area "
        f"{root / LOG_AREA} is absent (this kernel does not expose ACPI CCEL data in sysfs; "
        f"{describe_table(ccel.table)})")


def describe_table(table: bytes) -> str:
    """One line about the table (CC type, log area), or why it does not parse."""
    try:
        parsed = parse_ccel_table(table)
    except MalformedEvidenceError as exc:
        return f"the CCEL table does not parse: {exc.detail}"
    return (f"CCEL table revision {parsed.revision}, CC type {parsed.cc_type}, log area "
            f"{parsed.laml} bytes at {parsed.lasa:#x}")


def _read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise CollectorError(f"permission denied reading {path}: run as root (sysfs ACPI "
                             "tables are readable by root only)") from exc
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from exc


__all__ = ["LOG_AREA", "TABLE", "Ccel", "describe_table", "read_ccel", "required_log"]
