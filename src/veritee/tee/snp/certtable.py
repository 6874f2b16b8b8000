"""The certificate table of extended reports (GHCB ``SNP_EXT_GUEST_REQUEST``, Linux
configfs-tsm ``auxblob``, ``/dev/sev-guest`` ``SNP_GET_EXT_REPORT``).

GHCB specification (56421) §4.1.8.1 "Certificate table": 24-byte entries
``{GUID[16], offset u32 LE, length u32 LE}`` ending with an all-zero entry; offsets count
from the start of the table. GUIDs are stored in canonical (string-order) byte order on
every sample seen (amd-sev.md §1.6); the mixed-endian form is accepted as well.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Final

from veritee.errors import MalformedEvidenceError

ENTRY_SIZE: Final = 24
MAX_ENTRIES: Final = 64

GUID_VCEK: Final = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK: Final = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK: Final = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # also the ASVK
GUID_ARK: Final = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
GUID_EXTRA_PLATFORM_INFO: Final = uuid.UUID("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6")
#: A CRL from the ARK (virtee/sev ``CertType::CRL``); used only if the ARK signed it.
GUID_CRL: Final = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea")

KNOWN: Final = {
    GUID_VCEK: "vcek",
    GUID_VLEK: "vlek",
    GUID_ASK: "ask",
    GUID_ARK: "ark",
    GUID_EXTRA_PLATFORM_INFO: "extra_platform_info",
    GUID_CRL: "crl",
}
#: The GUID of each kind (inverse of :data:`KNOWN`).
GUID_OF: Final = {name: guid for guid, name in KNOWN.items()}
_BY_BYTES: Final = {g.bytes: name for g, name in KNOWN.items()} | {
    g.bytes_le: name for g, name in KNOWN.items()
}
_ENTRY = struct.Struct("<16sII")


@dataclass(frozen=True, slots=True)
class CertEntry:
    kind: str
    """``vcek``, ``vlek``, ``ask``, ``ark``, ``crl``, ``extra_platform_info`` or ``other``."""
    guid: uuid.UUID
    data: bytes


def parse_cert_table(blob: bytes) -> tuple[CertEntry, ...]:
    """Parse a certificate table.

    Raises:
        MalformedEvidenceError: truncated, no terminator, too many entries, or an entry
            pointing outside the blob.
    """
    entries: list[CertEntry] = []
    for index in range(MAX_ENTRIES + 1):
        start = index * ENTRY_SIZE
        if start + ENTRY_SIZE > len(blob):
            raise MalformedEvidenceError(
                f"certificate table is {len(blob)} bytes and ends inside entry {index} "
                "(no all-zero terminator)"
            )
        guid_bytes, offset, length = _ENTRY.unpack_from(blob, start)
        if not any(blob[start : start + ENTRY_SIZE]):
            return tuple(entries)
        if index == MAX_ENTRIES:
            break
        if offset + length > len(blob) or length == 0:
            raise MalformedEvidenceError(
                f"certificate table entry {index} points at [{offset}, {offset + length}) "
                f"outside the {len(blob)}-byte table"
            )
        kind = _BY_BYTES.get(guid_bytes, "other")
        entries.append(CertEntry(kind, uuid.UUID(bytes=guid_bytes), blob[offset : offset + length]))
    raise MalformedEvidenceError(f"certificate table has more than {MAX_ENTRIES} entries")


def build_cert_table(entries: list[tuple[uuid.UUID, bytes]]) -> bytes:
    """The inverse of :func:`parse_cert_table` (canonical GUID byte order)."""
    header = bytearray()
    body = bytearray()
    base = ENTRY_SIZE * (len(entries) + 1)
    for guid, data in entries:
        header += _ENTRY.pack(guid.bytes, base + len(body), len(data))
        body += data
    return bytes(header + bytes(ENTRY_SIZE) + body)


def vcek_table(vcek: bytes) -> bytes:
    """A certificate table holding one VCEK given as PEM or DER (bytes after a DER
    certificate are ignored), as the composites built on an SNP report carry it.

    Raises:
        MalformedEvidenceError: ``vcek`` holds no certificate, or more than one.
    """
    from veritee.x509 import split_pem_or_der  # noqa: PLC0415 - x509 loads cryptography

    ders = split_pem_or_der(vcek)[0]
    if len(ders) != 1:
        raise MalformedEvidenceError(
            f"the evidence's vcek holds {len(ders)} certificates; it must hold the VCEK")
    return build_cert_table([(GUID_VCEK, ders[0])])
