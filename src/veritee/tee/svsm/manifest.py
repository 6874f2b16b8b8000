"""SVSM service manifests and their binding to the SNP report (layout only, no trust decision).

The SVSM attestation protocol (AMD 58019 "Secure VM Service Module for SEV-SNP Guests" §7;
coconut-svsm ``kernel/src/protocols/attest.rs``) answers two calls:

* ``SVSM_ATTEST_SERVICES`` (call 0): a VMPL0 report over the *services manifest*, a GUID
  table of every service's own manifest;
* ``SVSM_ATTEST_SINGLE_SERVICE`` (call 1) for one service GUID and manifest version: a VMPL0
  report over that service's manifest alone. For the vTPM (:data:`VTPM_GUID`), manifest
  version 0 is the vTPM EK's ``TPMT_PUBLIC`` (58019 §8.3.3).

Either way ``REPORT_DATA = SHA-512(nonce ‖ manifest)``, the nonce being the 64 bytes the
guest passed (58019 Table 11: ``nonce_size`` must be 64).

GUID table (58019 §7.1; ``GuidTable::to_vec``), all integers little-endian, GUIDs in their
mixed-endian ("LE") byte order:

==========  ====  ======================================================================
offset      size  field
==========  ====  ======================================================================
0x00        16    :data:`SERVICES_GUID`
0x10        4     total length of the table, header and data included
0x14        4     entry count *n*
0x18+24*i   16    entry *i*: service GUID
+0x10       4     offset of the entry's data from the start of the table
+0x14       4     length of the entry's data
24*(n+1)    …     the entries' data
==========  ====  ======================================================================
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    MisuseError,
    UnsupportedVersionError,
)

SERVICES_GUID: Final = uuid.UUID("63849ebb-3d92-4670-a1ff-58f9c94b87bb")
"""The GUID that opens a services manifest (the GUID table header)."""
VTPM_GUID: Final = uuid.UUID("c476f1eb-0123-45a5-9641-b4e7dde5bfe3")
"""The SVSM vTPM service (58019 §8.3)."""
#: The vTPM manifest versions this verifier reads: 0 = the EK's TPMT_PUBLIC.
VTPM_MANIFEST_VERSIONS: Final = frozenset({0})
NONCE_SIZE: Final = 64
"""58019 Table 11: the attestation nonce is exactly 64 bytes."""
ENTRY_SIZE: Final = 24
"""The header and each entry are 24 bytes (``GUID_HEADER_ENTRY_SIZE``)."""
#: A manifest larger than this is refused before parsing (real ones are well below 4 KiB).
MAX_MANIFEST_BYTES: Final = 1 << 20
_HEADER: Final = struct.Struct("<16sII")
_ENTRY: Final = struct.Struct("<16sII")


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    guid: uuid.UUID
    data: bytes


@dataclass(frozen=True, slots=True)
class ServicesManifest:
    """A parsed GUID table; ``raw`` holds the exact bytes the report data hashes."""

    entries: tuple[ServiceEntry, ...]
    raw: bytes

    def get(self, guid: uuid.UUID) -> bytes | None:
        """The manifest of service ``guid``, or None when the table does not list it."""
        return next((e.data for e in self.entries if e.guid == guid), None)


def parse_services_manifest(data: bytes) -> ServicesManifest:
    """Read a services manifest (the GUID table of ``SVSM_ATTEST_SERVICES``).

    Every entry's data must lie inside the table after the entry list, the total length must
    equal the bytes given, and no GUID may appear twice.

    Raises:
        MalformedEvidenceError: the bytes are no GUID table, or an entry points outside it.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise MalformedEvidenceError(
            f"services manifest is {len(data)} bytes; at most {MAX_MANIFEST_BYTES}")
    if len(data) < ENTRY_SIZE:
        raise MalformedEvidenceError(
            f"services manifest is {len(data)} bytes; its header alone is {ENTRY_SIZE}")
    guid, total, count = _HEADER.unpack_from(data)
    if uuid.UUID(bytes_le=guid) != SERVICES_GUID:
        raise MalformedEvidenceError(
            f"services manifest GUID is {uuid.UUID(bytes_le=guid)}, expected {SERVICES_GUID}")
    if total != len(data):
        raise MalformedEvidenceError(
            f"services manifest length field is {total}, the manifest is {len(data)} bytes")
    table_end = ENTRY_SIZE * (count + 1)
    if table_end > len(data):
        raise MalformedEvidenceError(
            f"services manifest lists {count} entries; {len(data)} bytes hold at most "
            f"{len(data) // ENTRY_SIZE - 1}")
    entries = tuple(_entry(data, i, table_end) for i in range(count))
    guids = [e.guid for e in entries]
    if len(set(guids)) != len(guids):
        raise MalformedEvidenceError(f"services manifest lists a GUID twice: {guids}")
    return ServicesManifest(entries, bytes(data))


def _entry(data: bytes, index: int, table_end: int) -> ServiceEntry:
    guid, offset, length = _ENTRY.unpack_from(data, ENTRY_SIZE * (index + 1))
    if offset < table_end or offset + length > len(data):
        raise MalformedEvidenceError(
            f"services manifest entry {index} data [{offset}, {offset + length}) is outside "
            f"the data area [{table_end}, {len(data)})")
    return ServiceEntry(uuid.UUID(bytes_le=guid), bytes(data[offset:offset + length]))


def build_services_manifest(entries: Sequence[tuple[uuid.UUID, bytes]]) -> bytes:
    """The GUID table of ``entries`` as the SVSM writes it (data in entry order)."""
    header_size = ENTRY_SIZE * (len(entries) + 1)
    total = header_size + sum(len(d) for _, d in entries)
    out = bytearray(_HEADER.pack(SERVICES_GUID.bytes_le, total, len(entries)))
    cursor = header_size
    for guid, blob in entries:
        out += _ENTRY.pack(guid.bytes_le, cursor, len(blob))
        cursor += len(blob)
    for _, blob in entries:
        out += blob
    return bytes(out)


def vtpm_ek_public(manifest: bytes, version: int) -> bytes:
    """The vTPM EK's ``TPMT_PUBLIC`` from a single-service vTPM manifest.

    Raises:
        UnsupportedVersionError: ``version`` is not one of :data:`VTPM_MANIFEST_VERSIONS`.
        MalformedEvidenceError: the manifest is empty or too large.
    """
    if version not in VTPM_MANIFEST_VERSIONS:
        raise UnsupportedVersionError(
            f"vTPM service manifest version is {version}; supported: "
            f"{sorted(VTPM_MANIFEST_VERSIONS)}")
    if not manifest:
        raise MalformedEvidenceError("vTPM service manifest is empty (it must be the EK's "
                                     "TPMT_PUBLIC)")
    if len(manifest) > MAX_MANIFEST_BYTES:
        raise MalformedEvidenceError(
            f"vTPM service manifest is {len(manifest)} bytes; at most {MAX_MANIFEST_BYTES}")
    return bytes(manifest)


def expected_report_data(nonce: bytes, manifest: bytes) -> bytes:
    """``SHA-512(nonce ‖ manifest)``: the REPORT_DATA the SVSM asks the PSP for.

    Raises:
        MisuseError: ``nonce`` is not 64 bytes.
    """
    if len(nonce) != NONCE_SIZE:
        raise MisuseError(f"the SVSM attestation nonce is {len(nonce)} bytes; it must be "
                          f"{NONCE_SIZE} (58019 Table 11)")
    return hashlib.sha512(bytes(nonce) + bytes(manifest)).digest()


def check_report_data(report_data: bytes, *, nonce: bytes, manifest: bytes) -> None:
    """Check that the SNP REPORT_DATA binds ``nonce`` and ``manifest`` (constant time).

    Raises:
        BindingError: it does not; the message names both values.
        MisuseError: ``nonce`` is not 64 bytes.
    """
    expected = expected_report_data(nonce, manifest)
    if not hmac.compare_digest(bytes(report_data), expected):
        raise BindingError(
            f"REPORT_DATA is {bytes(report_data).hex()}, expected SHA-512(nonce ‖ manifest) = "
            f"{expected.hex()}: the SVSM manifest is not bound to this nonce")


__all__ = [
    "NONCE_SIZE",
    "SERVICES_GUID",
    "VTPM_GUID",
    "VTPM_MANIFEST_VERSIONS",
    "ServiceEntry",
    "ServicesManifest",
    "build_services_manifest",
    "check_report_data",
    "expected_report_data",
    "parse_services_manifest",
    "vtpm_ek_public",
]
