"""Synthetic OVMF and SVSM firmware images, for tests, the demo and benchmarks.

TEST ONLY. The images are not firmware: their bytes are a deterministic stream, and they end
with what the AMD launch measurements read (research note amd-sev.md §3.1): a GUIDed table
(footer GUID and length, entries ``data, u16 length, GUID``) 32 bytes before the end, with the
SEV-ES reset block, the SEV metadata (``"ASEV"``, the sections of edk2's AmdSev build), the
kernel-hashes area and the SEV secret area; an SVSM image carries SVSM_INFO instead of the
reset block.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence
from typing import Final

from veritee.tee.snp.ovmf import (
    OVMF_SEV_METADATA_GUID,
    PAGE_SIZE,
    RESET_VECTOR_SIZE,
    SEV_ES_RESET_BLOCK_GUID,
    SEV_HASH_TABLE_RV_GUID,
    SEV_SECRET_GUID,
    SVSM_INFO_GUID,
    TABLE_FOOTER_GUID,
)

#: (gpa, size, type) of the AmdSev build's sections (edk2-stable202405; the corpus fixture
#: ``ovmf_AmdSev_suffix.bin``).
AMDSEV_SECTIONS: Final = ((0x800000, 0x9000, 1), (0x80A000, 0x3000, 1), (0x80D000, 0x1000, 2),
                          (0x80E000, 0x1000, 3), (0x80F000, 0x1000, 4), (0x810000, 0x1000, 0x10),
                          (0x811000, 0xF000, 1))
AMDSEV_RESET_EIP: Final = 0x0080B004
AMDSEV_HASHES_AREA: Final = (0x810C00, 0x400)
AMDSEV_SECRET_AREA: Final = (0x810000, 0xC00)

Entry = tuple[uuid.UUID, bytes]


def entry(guid: uuid.UUID, data: bytes) -> bytes:
    """One GUIDed table entry: its data, ``u16`` length (with the 18-byte header), GUID."""
    return data + struct.pack("<H", len(data) + 18) + guid.bytes_le


def metadata(sections: Sequence[tuple[int, int, int]], *, version: int = 1) -> bytes:
    """A SEV metadata block: ``"ASEV"``, size, version, count, then the sections."""
    body = b"".join(struct.pack("<III", *s) for s in sections)
    return b"ASEV" + struct.pack("<III", 16 + len(body), version, len(sections)) + body


def build_firmware(size: int, entries: Sequence[Entry], *,
                   sections: Sequence[tuple[int, int, int]] | None = None,
                   seed: bytes = b"veritee synthetic OVMF") -> bytes:
    """A ``size``-byte image of deterministic bytes ending in a GUIDed table of ``entries``
    (plus an OVMF_SEV_METADATA entry locating ``sections`` when given)."""
    body = bytearray(hashlib.shake_256(seed).digest(size))
    table_entries = [entry(guid, data) for guid, data in entries]
    end = size - RESET_VECTOR_SIZE
    if sections is not None:
        block = metadata(sections)
        # The metadata sits one page below the end (as in edk2's reset vector area).
        at = size - PAGE_SIZE
        body[at:at + len(block)] = block
        table_entries.append(entry(OVMF_SEV_METADATA_GUID, struct.pack("<I", size - at)))
    table = b"".join(table_entries)
    footer = struct.pack("<H", len(table) + 18) + TABLE_FOOTER_GUID.bytes_le
    start = end - len(table) - len(footer)
    if sections is not None and start < size - PAGE_SIZE + len(metadata(sections)):
        raise ValueError("the table and the metadata overlap: use fewer entries or sections")
    body[start:end] = table + footer
    return bytes(body)


def build_ovmf(size: int = 2 << 20, *, kernel_hashes: bool = True,
               sections: Sequence[tuple[int, int, int]] = AMDSEV_SECTIONS,
               reset_eip: int = AMDSEV_RESET_EIP,
               seed: bytes = b"veritee synthetic OVMF") -> bytes:
    """An OVMF-like image with the AmdSev build's table: reset block, SEV metadata, and (with
    ``kernel_hashes``) the kernel-hashes area and the SEV secret area."""
    entries: list[Entry] = [(SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", reset_eip))]
    if kernel_hashes:
        entries += [(SEV_HASH_TABLE_RV_GUID, struct.pack("<II", *AMDSEV_HASHES_AREA)),
                    (SEV_SECRET_GUID, struct.pack("<II", *AMDSEV_SECRET_AREA))]
    else:
        sections = [s for s in sections if s[2] != 0x10]
    return build_firmware(size, entries, sections=sections, seed=seed)


#: Sections of a synthetic SVSM image (GPAs inside its memory; types SEC_MEM, SECRETS, CPUID
#: and CAA).
SVSM_SECTIONS: Final = ((0xFF7F0000, 0x2000, 1), (0xFF7F2000, 0x1000, 2),
                        (0xFF7F3000, 0x1000, 3), (0xFF7F4000, 0x1000, 4))


def build_svsm(size: int = 256 << 10, *, entry_offset: int = 0x1000,
               sections: Sequence[tuple[int, int, int]] = SVSM_SECTIONS,
               seed: bytes = b"veritee synthetic SVSM") -> bytes:
    """An SVSM-like image: SVSM_INFO (the entry point's offset) and SEV metadata."""
    return build_firmware(size, [(SVSM_INFO_GUID, struct.pack("<I", entry_offset))],
                          sections=sections, seed=seed)


__all__ = [
    "AMDSEV_HASHES_AREA",
    "AMDSEV_RESET_EIP",
    "AMDSEV_SECRET_AREA",
    "AMDSEV_SECTIONS",
    "SVSM_SECTIONS",
    "build_firmware",
    "build_ovmf",
    "build_svsm",
    "entry",
    "metadata",
]
