"""OVMF (and Coconut SVSM) firmware images as the AMD launch measurements see them.

Sources: research note amd-sev.md §3.1 (the footer table, the entries the measurements use,
the SEV metadata and its section types); tianocore/edk2
``OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`` (the GUIDed table that ends the image) and
``OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`` (``"ASEV"`` and its sections); QEMU
``target/i386/sev.c`` (``SevInfoBlock``, ``SevSnpBootInfoBlock``, ``sev_secret_area`` and what
a VMM does with each section).

The image ends with 32 bytes of reset vector. Before them sits the table footer: a ``u16``
table length and GUID ``96b582de-…``; before that the entries, each ``data, u16 length
(incl. this 18-byte header), GUID``, read from the end towards the start. This module only
parses (no hashing, no trust decisions): :mod:`veritee.tee.snp.launch` measures.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from veritee.errors import MalformedEvidenceError, MisuseError, UnsupportedVersionError
from veritee.tee._layout import FieldTable

PAGE_SIZE: Final = 0x1000
FOUR_GIB: Final = 1 << 32
RESET_VECTOR_SIZE: Final = 32
ENTRY_HEADER_SIZE: Final = 18  # u16 length + GUID
#: Refuse larger images, so a hostile file cannot make measuring take long (stock OVMF:
#: 2 or 4 MiB; the whole firmware window below 4 GiB is 16 MiB on QEMU's q35).
MAX_IMAGE_SIZE: Final = 64 << 20
#: Pages the SEV metadata may ask the measurement to add (stock OVMF: about 50).
MAX_METADATA_PAGES: Final = 1 << 18

TABLE_FOOTER_GUID: Final = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_ES_RESET_BLOCK_GUID: Final = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
OVMF_SEV_METADATA_GUID: Final = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
SEV_HASH_TABLE_RV_GUID: Final = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_SECRET_GUID: Final = uuid.UUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")
SEV_SNP_BOOT_BLOCK_GUID: Final = uuid.UUID("bd39c0c2-2f8e-4243-83e8-1b74cebcb7d9")
SVSM_INFO_GUID: Final = uuid.UUID("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd")

METADATA_SIGNATURE: Final = b"ASEV"
METADATA_VERSIONS: Final = frozenset({1})


class SectionType(IntEnum):
    """OVMF SEV metadata section types (edk2 ``OvmfSevMetadata.asm``; 4 from the SVSM
    work, sev-snp-measure 0.0.11)."""

    SNP_SEC_MEM = 1
    SNP_SECRETS = 2
    CPUID = 3
    SVSM_CAA = 4
    SNP_KERNEL_HASHES = 0x10


KNOWN_SECTION_TYPES: Final = ", ".join(f"{t.value:#x} {t.name}" for t in SectionType)

#: The SEV metadata header (edk2 ``OvmfSevMetadata.asm`` ``_DescriptorSev``), then
#: ``num_items`` sections of 12 bytes each.
METADATA_HEADER: Final = FieldTable("OVMF SEV metadata header", (
    ("signature", 0, 4, "s"),
    ("size", 4, 4, "I"),
    ("version", 8, 4, "I"),
    ("num_items", 12, 4, "I"),
), size=16)
METADATA_SECTION: Final = FieldTable("OVMF SEV metadata section", (
    ("gpa", 0, 4, "I"),
    ("size", 4, 4, "I"),
    ("type", 8, 4, "I"),
), size=12)
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U32_PAIR: Final = struct.Struct("<II")


@dataclass(frozen=True, slots=True)
class MetadataSection:
    """One section of the SEV metadata: guest memory a VMM sets up before launch."""

    gpa: int
    size: int
    type: int

    @property
    def type_name(self) -> str:
        try:
            return SectionType(self.type).name
        except ValueError:
            return f"unknown ({self.type:#x})"

    def checked_type(self) -> SectionType:
        """The section's type, or UnsupportedVersionError naming it and the known set."""
        try:
            return SectionType(self.type)
        except ValueError:
            raise UnsupportedVersionError(
                f"OVMF SEV metadata section at GPA {self.gpa:#x} has type {self.type:#x}, which "
                f"this version does not know (known: {KNOWN_SECTION_TYPES}); its measurement "
                "cannot be predicted") from None

    @property
    def pages(self) -> int:
        return self.size // PAGE_SIZE

    def to_json(self) -> dict[str, int | str]:
        return {"gpa": self.gpa, "size": self.size, "type": self.type_name}


@dataclass(frozen=True, slots=True, eq=False)
class Ovmf:
    """A firmware image placed so that it ends at ``end_at`` in guest memory (4 GiB for
    OVMF; just below OVMF and its variable store for an SVSM image)."""

    data: bytes = field(repr=False)
    end_at: int
    #: The GUIDed table: entry GUID → entry data (empty when the image has no footer).
    table: Mapping[uuid.UUID, bytes] = field(repr=False)
    sections: tuple[MetadataSection, ...]
    what: str = "OVMF"

    @property
    def gpa(self) -> int:
        """Where the image starts in guest memory."""
        return self.end_at - len(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def ap_reset_eip(self) -> int | None:
        """SEV_ES_RESET_BLOCK: the address application processors start at, or None."""
        return self._u32(SEV_ES_RESET_BLOCK_GUID, "SEV_ES_RESET_BLOCK")

    @property
    def hashes_table(self) -> tuple[int, int] | None:
        """SEV_HASH_TABLE_RV: (GPA, size) of the kernel-hashes area, or None (absent or a
        zero GPA: built without measured direct boot)."""
        return self._area(SEV_HASH_TABLE_RV_GUID, "SEV_HASH_TABLE_RV")

    @property
    def secret_area(self) -> tuple[int, int] | None:
        """SEV_SECRET: (base, size) of the SEV launch-secret area, or None."""
        return self._area(SEV_SECRET_GUID, "SEV_SECRET")

    @property
    def snp_boot_block(self) -> tuple[int, ...] | None:
        """SEV_SNP_BOOT_BLOCK: its u32 words (QEMU's ``SevSnpBootInfoBlock``: pre-validated
        start and end, secrets address and length, CPUID address and length), or None."""
        data = self.table.get(SEV_SNP_BOOT_BLOCK_GUID)
        if data is None:
            return None
        if len(data) % 4:
            raise MalformedEvidenceError(
                f"{self.what} SEV_SNP_BOOT_BLOCK entry holds {len(data)} bytes, not u32 words")
        return tuple(_U32.unpack_from(data, at)[0] for at in range(0, len(data), 4))

    @property
    def svsm_info(self) -> int | None:
        """SVSM_INFO: the SVSM entry point's offset from the image's start, or None."""
        return self._u32(SVSM_INFO_GUID, "SVSM_INFO")

    def has_section(self, kind: SectionType) -> bool:
        return any(s.type == kind for s in self.sections)

    def require_ap_reset_eip(self) -> int:
        eip = self.ap_reset_eip
        if eip is None:
            raise MalformedEvidenceError(
                f"{self.what} has no SEV_ES_RESET_BLOCK entry ({SEV_ES_RESET_BLOCK_GUID}) in its "
                "GUIDed table: SEV-ES and SNP guests need the AP reset address (is it built "
                "with SEV support?)")
        return eip

    def require_hashes_table(self) -> tuple[int, int]:
        area = self.hashes_table
        if area is None:
            raise MalformedEvidenceError(
                f"{self.what} has no kernel-hashes area (SEV_HASH_TABLE_RV "
                f"{SEV_HASH_TABLE_RV_GUID} absent or zero): it does not support measured "
                "direct boot, so --kernel cannot be measured (use the AmdSev build, "
                "OvmfPkg/AmdSev/AmdSevX64.dsc)")
        return area

    def require_pages(self) -> None:
        """SNP measures the image page by page: its length must be a multiple of 4 KiB."""
        if len(self.data) % PAGE_SIZE or not self.data:
            raise MalformedEvidenceError(
                f"{self.what} image is {len(self.data)} bytes, not a positive multiple of 4 KiB: "
                "SNP measures it page by page")

    def _u32(self, guid: uuid.UUID, name: str) -> int | None:
        data = self.table.get(guid)
        if data is None:
            return None
        if len(data) < 4:
            raise MalformedEvidenceError(
                f"{self.what} {name} entry holds {len(data)} bytes, expected a u32")
        value: int = _U32.unpack_from(data)[0]
        return value

    def _area(self, guid: uuid.UUID, name: str) -> tuple[int, int] | None:
        data = self.table.get(guid)
        if data is None:
            return None
        if len(data) < 8:
            raise MalformedEvidenceError(
                f"{self.what} {name} entry holds {len(data)} bytes, expected u32 base and size")
        base, size = _U32_PAIR.unpack_from(data)
        return None if base == 0 else (base, size)

    def to_json(self) -> dict[str, object]:
        area = self.hashes_table
        secret = self.secret_area
        return {"size": self.size, "gpa": self.gpa, "ap_reset_eip": self.ap_reset_eip,
                "hashes_table": list(area) if area else None,
                "secret_area": list(secret) if secret else None,
                "sections": [s.to_json() for s in self.sections]}


def parse_ovmf(data: bytes, *, end_at: int = FOUR_GIB, what: str = "OVMF") -> Ovmf:
    """Parse an OVMF (or SVSM) image: its GUIDed table and SEV metadata.

    An image without a table footer parses to an empty table (plain SEV needs none); a
    footer whose entries do not fit, or metadata that does not, is malformed.

    Raises:
        MisuseError: ``data`` is not bytes.
        MalformedEvidenceError: over :data:`MAX_IMAGE_SIZE`, empty, or a table or metadata
            that does not fit the image.
        UnsupportedVersionError: a SEV metadata version other than 1.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MisuseError(f"a firmware image is bytes, not {type(data).__name__}")
    image = bytes(data)
    if len(image) > MAX_IMAGE_SIZE:
        raise MalformedEvidenceError(
            f"{what} image is {len(image)} bytes, over the {MAX_IMAGE_SIZE >> 20} MiB limit")
    if not image:
        raise MalformedEvidenceError(f"{what} image is empty")
    if len(image) > end_at:
        raise MalformedEvidenceError(
            f"{what} image is {len(image):#x} bytes, larger than the {end_at:#x} bytes of "
            "guest memory below where it must end")
    table = MappingProxyType(dict(_table_entries(image, what)))
    sections = _metadata(image, table.get(OVMF_SEV_METADATA_GUID), what)
    return Ovmf(image, end_at, table, sections, what)


def _table_entries(image: bytes, what: str) -> Iterator[tuple[uuid.UUID, bytes]]:
    """(GUID, data) of each table entry, last first; nothing when there is no footer."""
    footer = len(image) - RESET_VECTOR_SIZE
    if footer < ENTRY_HEADER_SIZE or image[footer - 16:footer] != TABLE_FOOTER_GUID.bytes_le:
        return
    table_length = _U16.unpack_from(image, footer - ENTRY_HEADER_SIZE)[0]
    start = footer - table_length
    if table_length < ENTRY_HEADER_SIZE or start < 0:
        raise MalformedEvidenceError(
            f"{what} GUIDed table length {table_length} does not fit before {footer:#x} (at "
            f"least {ENTRY_HEADER_SIZE})")
    end = footer - ENTRY_HEADER_SIZE
    while end - start >= ENTRY_HEADER_SIZE:
        length = _U16.unpack_from(image, end - ENTRY_HEADER_SIZE)[0]
        if length < ENTRY_HEADER_SIZE or end - length < start:
            raise MalformedEvidenceError(
                f"{what} GUIDed table entry ending at {end:#x} has length {length}, which does "
                f"not fit the table (from {start:#x}; at least {ENTRY_HEADER_SIZE})")
        yield uuid.UUID(bytes_le=image[end - 16:end]), image[end - length:end - ENTRY_HEADER_SIZE]
        end -= length


def _metadata(image: bytes, entry: bytes | None, what: str) -> tuple[MetadataSection, ...]:
    if entry is None:
        return ()
    if len(entry) < 4:
        raise MalformedEvidenceError(
            f"{what} OVMF_SEV_METADATA entry holds {len(entry)} bytes, expected a u32 offset")
    distance: int = _U32.unpack_from(entry)[0]
    if not METADATA_HEADER.size <= distance <= len(image):
        raise MalformedEvidenceError(
            f"{what} SEV metadata offset {distance:#x} (from the end) does not point inside "
            f"the {len(image):#x}-byte image")
    start = len(image) - distance
    head = METADATA_HEADER.unpack(image[start:start + METADATA_HEADER.size])
    if head["signature"] != METADATA_SIGNATURE:
        raise MalformedEvidenceError(
            f"{what} SEV metadata at {start:#x} has signature {head['signature']!r}, expected "
            f"{METADATA_SIGNATURE!r}")
    if head["version"] not in METADATA_VERSIONS:
        raise UnsupportedVersionError(
            f"{what} SEV metadata version is {head['version']}, known: 1")
    count = head["num_items"]
    needed = METADATA_HEADER.size + METADATA_SECTION.size * count
    if head["size"] < needed or start + head["size"] > len(image):
        raise MalformedEvidenceError(
            f"{what} SEV metadata at {start:#x}: size {head['size']:#x} does not hold its "
            f"{count} sections ({needed:#x} bytes) inside the {len(image):#x}-byte image")
    first = start + METADATA_HEADER.size
    sections = tuple(
        MetadataSection(**METADATA_SECTION.unpack(
            image[at:at + METADATA_SECTION.size]))
        for at in range(first, first + METADATA_SECTION.size * count, METADATA_SECTION.size))
    pages = sum(s.size // PAGE_SIZE for s in sections)
    if pages > MAX_METADATA_PAGES:
        raise MalformedEvidenceError(
            f"{what} SEV metadata sections cover {pages} pages, over the bound "
            f"{MAX_METADATA_PAGES}")
    return sections


__all__ = [
    "FOUR_GIB",
    "MAX_IMAGE_SIZE",
    "PAGE_SIZE",
    "MetadataSection",
    "Ovmf",
    "SectionType",
    "parse_ovmf",
]
