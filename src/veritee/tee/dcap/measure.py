"""MRTD from a TDVF (OVMF built for TDX) image: ``veritee measure tdx --tdvf OVMF.fd``.

Sources: research note intel-dcap.md §3.1; tianocore/edk2
``OvmfPkg/ResetVector/X64/IntelTdxMetadata.asm`` (the TDVF descriptor and its sections) and
``OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`` (the GUIDed table that ends the image);
Intel "TDX Virtual Firmware Design Guide" (section types and attributes); Intel "TDX Module
Base Architecture Specification" (what TDH.MEM.PAGE.ADD and TDH.MR.EXTEND add to MRTD); QEMU
``hw/i386/tdvf.c`` (the checks a VMM makes on the metadata).

Finding the metadata: the image ends with 32 bytes of reset vector; before them sits the
GUIDed table footer (``u16`` table length, GUID ``96b582de-…``), and before that the table's
entries, each ``data, u16 length, GUID``, read from the end. The entry
``e47a6535-984a-4798-865e-4685a7bf8ec2`` holds a ``u32``: the distance from the end of the
image to the TDVF descriptor (``"TDVF"``, length, version 1, section count, then 32-byte
sections).

MRTD is one running SHA-384 over the records the TDX module hashes while the VMM builds the
TD: per 4 KiB page of each section, a 128-byte ``MEM.PAGE.ADD`` record (``b"MEM.PAGE.ADD"``
at 0, the GPA as ``u64`` at 16) unless the section is PAGE.AUG; then, for MR.EXTEND sections,
per 256-byte chunk a 128-byte ``MR.EXTEND`` record (``b"MR.EXTEND"``, GPA at 16) and the
chunk's 256 bytes. VMMs differ in order: ``single-pass`` adds and extends page by page (KVM
today), ``two-pass`` adds every page of a section, then extends them (older KVM).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from veritee.errors import MalformedEvidenceError, MisuseError, UnsupportedVersionError
from veritee.tee._layout import FieldTable

PAGE_SIZE: Final = 0x1000
CHUNK_SIZE: Final = 0x100
RECORD_SIZE: Final = 128
RESET_VECTOR_SIZE: Final = 32
#: The OVMF GUIDed table footer and the entry that locates the TDVF descriptor.
TABLE_FOOTER_GUID: Final = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
TDX_METADATA_OFFSET_GUID: Final = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")
TDVF_SIGNATURE: Final = b"TDVF"
TDVF_VERSIONS: Final = frozenset({1})

ATTRIBUTE_MR_EXTEND: Final = 1 << 0
ATTRIBUTE_PAGE_AUG: Final = 1 << 1
KNOWN_ATTRIBUTES: Final = ATTRIBUTE_MR_EXTEND | ATTRIBUTE_PAGE_AUG
#: Section types (TDVF design guide; 4-6 from later revisions and td-shim).
SECTION_TYPES: Final = {0: "BFV", 1: "CFV", 2: "TD_HOB", 3: "TEMP_MEM", 4: "PERM_MEM",
                        5: "PAYLOAD", 6: "PAYLOAD_PARAM"}
#: Sections that are copied from the image (raw data required) and those that are not.
_FROM_IMAGE: Final = frozenset({0, 1})
_NOT_FROM_IMAGE: Final = frozenset({2, 3})

Order = Literal["single-pass", "two-pass"]
ORDERS: Final[tuple[Order, ...]] = ("single-pass", "two-pass")

#: Bounds, so a hostile image cannot make measuring take long: bytes of image, GPA pages
#: added, pages extended (stock OVMF: 4 MiB, about 2 000 pages added, 512 extended).
MAX_IMAGE_SIZE: Final = 64 << 20
MAX_ADDED_PAGES: Final = 1 << 18
MAX_EXTENDED_PAGES: Final = 1 << 14

DESCRIPTOR: Final = FieldTable("TDVF descriptor", (
    ("signature", 0, 4, "s"),
    ("length", 4, 4, "I"),
    ("version", 8, 4, "I"),
    ("number_of_section_entries", 12, 4, "I"),
), size=16)
SECTION: Final = FieldTable("TDVF section", (
    ("data_offset", 0, 4, "I"),
    ("raw_data_size", 4, 4, "I"),
    ("memory_address", 8, 8, "Q"),
    ("memory_data_size", 16, 8, "Q"),
    ("type", 24, 4, "I"),
    ("attributes", 28, 4, "I"),
), size=32)
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_GPA: Final = struct.Struct("<16xQ104x")


@dataclass(frozen=True, slots=True)
class Section:
    """One TDVF section: where its bytes are in the image and where they go in the TD."""

    data_offset: int
    raw_data_size: int
    memory_address: int
    memory_data_size: int
    type: int
    attributes: int

    @property
    def type_name(self) -> str:
        return SECTION_TYPES.get(self.type, str(self.type))

    @property
    def pages(self) -> int:
        return self.memory_data_size // PAGE_SIZE

    @property
    def added(self) -> bool:
        """PAGE.ADDed at build time (so its GPAs are in MRTD)."""
        return not self.attributes & ATTRIBUTE_PAGE_AUG

    @property
    def extended(self) -> bool:
        """MR.EXTENDed at build time (so its contents are in MRTD)."""
        return bool(self.attributes & ATTRIBUTE_MR_EXTEND)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "data_offset": self.data_offset,
                "raw_data_size": self.raw_data_size, "memory_address": self.memory_address,
                "memory_data_size": self.memory_data_size, "attributes": self.attributes,
                "page_add": self.added, "mr_extend": self.extended}


@dataclass(frozen=True, slots=True)
class MeasureResult:
    """The MRTD one TDVF image gives under one page-add order."""

    mr_td: bytes
    order: Order
    sections: tuple[Section, ...]
    #: Offset of the TDVF descriptor in the image.
    metadata_offset: int

    def to_json(self) -> dict[str, Any]:
        """CONTRACT.md §2: ``{"platform": "tdx", "measurement": hex, ...}``."""
        return {"platform": "tdx", "measurement": self.mr_td.hex(), "mr_td": self.mr_td.hex(),
                "page_add_order": self.order, "metadata_offset": self.metadata_offset,
                "sections": [s.to_json() for s in self.sections]}


def measure(tdvf: bytes, *, order: str = "single-pass") -> MeasureResult:
    """MRTD of ``tdvf`` (a TDVF image) under ``order``.

    Raises:
        MisuseError: ``order`` is not ``"single-pass"`` or ``"two-pass"``.
        MalformedEvidenceError: the image has no TDVF metadata, or metadata that a VMM would
            refuse or that does not fit the image or the bounds.
        UnsupportedVersionError: a TDVF descriptor version other than 1.
    """
    chosen = _order(order)
    if not isinstance(tdvf, bytes | bytearray | memoryview):
        raise MisuseError(f"a TDVF image is bytes, not {type(tdvf).__name__}")
    image = bytes(tdvf)
    offset, sections = parse_metadata(image)
    return MeasureResult(compute_mrtd(image, sections, chosen), chosen, sections, offset)


def _order(order: str) -> Order:
    for known in ORDERS:
        if order == known:
            return known
    raise MisuseError(f"page-add order {order!r}; known: {', '.join(ORDERS)}")


def parse_metadata(image: bytes) -> tuple[int, tuple[Section, ...]]:
    """The TDVF descriptor's offset and its sections, checked as a VMM checks them.

    Raises:
        MalformedEvidenceError, UnsupportedVersionError: see :func:`measure`.
    """
    if len(image) > MAX_IMAGE_SIZE:
        raise MalformedEvidenceError(f"TDVF image is {len(image)} bytes, over {MAX_IMAGE_SIZE}")
    offset = _descriptor_offset(image)
    head = DESCRIPTOR.unpack(image[offset:offset + DESCRIPTOR.size])
    if head["signature"] != TDVF_SIGNATURE:
        raise MalformedEvidenceError(
            f"TDVF descriptor at {offset:#x} has signature {head['signature']!r}, expected "
            f"{TDVF_SIGNATURE!r}")
    if head["version"] not in TDVF_VERSIONS:
        raise UnsupportedVersionError(f"TDVF descriptor version is {head['version']}, known: 1")
    count = head["number_of_section_entries"]
    length = DESCRIPTOR.size + SECTION.size * count
    if count < 1:
        raise MalformedEvidenceError(f"TDVF descriptor at {offset:#x} has no sections")
    if head["length"] != length:
        raise MalformedEvidenceError(
            f"TDVF descriptor: {count} sections and length {head['length']} do not agree "
            f"(expected {length})")
    if offset + length > len(image):
        raise MalformedEvidenceError(
            f"TDVF descriptor at {offset:#x}: its {length} bytes run past the "
            f"{len(image):#x}-byte image")
    start = offset + DESCRIPTOR.size
    sections = tuple(_section(image, start + i * SECTION.size, i) for i in range(count))
    _check_bounds(sections)
    return offset, sections


def _descriptor_offset(image: bytes) -> int:
    """Walk the GUIDed table backwards from its footer to the TDX metadata offset entry."""
    footer = len(image) - RESET_VECTOR_SIZE
    if footer < 18 or image[footer - 16:footer] != TABLE_FOOTER_GUID.bytes_le:
        raise MalformedEvidenceError(
            f"no GUIDed table footer ({TABLE_FOOTER_GUID}) {RESET_VECTOR_SIZE} bytes before the "
            "end of the image: not an OVMF/TDVF image")
    table_length = _U16.unpack_from(image, footer - 18)[0]
    table_start = footer - table_length
    if table_length < 18 or table_start < 0:
        raise MalformedEvidenceError(
            f"GUIDed table length {table_length} does not fit before {footer:#x}")
    for guid, data in _table_entries(image, table_start, footer - 18):
        if guid == TDX_METADATA_OFFSET_GUID.bytes_le:
            return _metadata_offset(image, data)
    raise MalformedEvidenceError(
        f"the GUIDed table has no TDX metadata offset entry ({TDX_METADATA_OFFSET_GUID}): "
        "not a TDVF image")


def _table_entries(image: bytes, start: int, end: int) -> Iterator[tuple[bytes, bytes]]:
    """(GUID, data) of each entry in ``image[start:end]``, last entry first."""
    while end - start >= 18:
        length = _U16.unpack_from(image, end - 18)[0]
        if length < 18 or end - length < start:
            raise MalformedEvidenceError(
                f"GUIDed table entry ending at {end:#x} has length {length}, which does not "
                f"fit the table (from {start:#x}; at least 18)")
        yield image[end - 16:end], image[end - length:end - 18]
        end -= length


def _metadata_offset(image: bytes, data: bytes) -> int:
    if len(data) < 4:
        raise MalformedEvidenceError(
            f"TDX metadata offset entry holds {len(data)} bytes, expected a u32")
    distance: int = _U32.unpack_from(data, len(data) - 4)[0]
    if not DESCRIPTOR.size <= distance <= len(image):
        raise MalformedEvidenceError(
            f"TDX metadata offset {distance:#x} does not point inside the "
            f"{len(image):#x}-byte image")
    return len(image) - distance


def _section(image: bytes, at: int, number: int) -> Section:
    section = Section(**SECTION.unpack(image[at:at + SECTION.size]))
    where = f"TDVF section {number} ({section.type_name})"
    problem = _section_problem(section, len(image))
    if problem:
        raise MalformedEvidenceError(f"{where}: {problem}")
    return section


def _section_problem(s: Section, image_size: int) -> str | None:
    """What a VMM would refuse in one section (QEMU ``tdvf_parse_and_check_section_entry``
    and the image bounds), else None."""
    checks = (
        (s.type not in SECTION_TYPES, f"type {s.type} is unknown"),
        (bool(s.attributes & ~KNOWN_ATTRIBUTES), f"attributes {s.attributes:#x} set "
         f"reserved bits (known: MR.EXTEND {ATTRIBUTE_MR_EXTEND}, PAGE.AUG {ATTRIBUTE_PAGE_AUG})"),
        (bool(s.memory_address % PAGE_SIZE), f"memory_address {s.memory_address:#x} is not "
         "page aligned"),
        (bool(s.memory_data_size % PAGE_SIZE) or not s.memory_data_size,
         f"memory_data_size {s.memory_data_size:#x} is not a positive number of pages"),
        (s.memory_address + s.memory_data_size > 1 << 64, "its memory runs past 2^64"),
        (s.raw_data_size > s.memory_data_size, f"raw_data_size {s.raw_data_size:#x} is over "
         f"memory_data_size {s.memory_data_size:#x}"),
        (s.data_offset + s.raw_data_size > image_size, f"raw data [{s.data_offset:#x}, "
         f"+{s.raw_data_size:#x}) runs past the {image_size:#x}-byte image (offsets count "
         "from the start of the whole flash: measure OVMF.fd, not a split OVMF_CODE.fd)"),
        (s.type in _FROM_IMAGE and not s.raw_data_size, "has no raw data"),
        (s.type in _NOT_FROM_IMAGE and s.raw_data_size > 0, f"raw_data_size is "
         f"{s.raw_data_size:#x}; this type takes nothing from the image"),
        (s.extended and s.raw_data_size != s.memory_data_size, "is MR.EXTENDed beyond its raw "
         "data (VMMs differ on what those bytes are)"),
    )
    return next((message for failed, message in checks if failed), None)


def _check_bounds(sections: tuple[Section, ...]) -> None:
    added = sum(s.pages for s in sections if s.added)
    extended = sum(s.pages for s in sections if s.extended)
    if added > MAX_ADDED_PAGES or extended > MAX_EXTENDED_PAGES:
        raise MalformedEvidenceError(
            f"TDVF sections add {added} pages and extend {extended}, over the bounds "
            f"({MAX_ADDED_PAGES}, {MAX_EXTENDED_PAGES})")
    spans = sorted((s.memory_address, s.memory_address + s.memory_data_size, i)
                   for i, s in enumerate(sections))
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise MalformedEvidenceError(
                f"TDVF sections {first} and {second} overlap at GPA {start:#x}")


def _record(name: bytes, gpa: int) -> bytes:
    """The 128-byte record the TDX module hashes: ``name`` at 0, the GPA (u64) at 16."""
    return name + _GPA.pack(gpa)[len(name):]


def _page_add(section: Section, page: int) -> bytes:
    if not section.added:
        return b""
    return _record(b"MEM.PAGE.ADD", section.memory_address + page * PAGE_SIZE)


def _mr_extend(image: bytes, section: Section, page: int) -> bytes:
    if not section.extended:
        return b""
    base = page * PAGE_SIZE
    return b"".join(
        _record(b"MR.EXTEND", section.memory_address + base + at)
        + image[section.data_offset + base + at:section.data_offset + base + at + CHUNK_SIZE]
        for at in range(0, PAGE_SIZE, CHUNK_SIZE))


def compute_mrtd(image: bytes, sections: tuple[Section, ...], order: Order) -> bytes:
    """The SHA-384 over the build-time records of ``sections`` (note §3.1), in ``order``."""
    h = hashlib.sha384()
    for section in sections:
        pages = range(section.pages)
        if order == "two-pass":
            for page in pages:
                h.update(_page_add(section, page))
            for page in pages:
                h.update(_mr_extend(image, section, page))
        else:
            for page in pages:
                h.update(_page_add(section, page) + _mr_extend(image, section, page))
    return h.digest()


__all__ = [
    "ORDERS",
    "MeasureResult",
    "Order",
    "Section",
    "compute_mrtd",
    "measure",
    "parse_metadata",
]
