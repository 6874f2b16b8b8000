"""TCG PC Client event logs: parsed, explained and replayed. Shared by every platform whose
firmware keeps such a log; no platform is named here.

Sources: TCG "PC Client Platform Firmware Profile Specification" (PFP) 1.05/1.06, §10 (event
structures ``TCG_PCR_EVENT``, ``TCG_PCR_EVENT2``, ``TCG_EfiSpecIdEvent``,
``TCG_EfiStartupLocalityEvent``, ``TCG_PCClientTaggedEvent``, ``UEFI_IMAGE_LOAD_EVENT``,
``UEFI_VARIABLE_DATA``, ``UEFI_PLATFORM_FIRMWARE_BLOB[2]``, ``UEFI_HANDOFF_TABLE_POINTERS[2]``;
event types in §10.4.1), the TCG Algorithm Registry (digest algorithm IDs), UEFI 2.10 §10.3
(device path nodes) and §10.6 (their text forms, as EDK2's ``DevicePathToText`` prints them);
the research notes on PC Client event logs (§3.3 of the note that covers them) and on the
CCEL (intel-dcap.md §3.2).

Two forms exist. The legacy one is a run of SHA-1 ``TCG_PCR_EVENT`` records. The crypto-agile
one starts with one such record (an ``EV_NO_ACTION`` carrying ``Spec ID Event03``, which lists
the digest algorithms and their sizes) and continues with ``TCG_PCR_EVENT2`` records, each
holding one digest per algorithm. A log kept in a firmware table area is followed by padding
(``0xFF`` bytes of erased memory, or zeros) up to the area's end.

Replay (:func:`replay`): ``R[i] = H(R[i] || digest)`` from a zero start, skipping
``EV_NO_ACTION``; an ``EV_NO_ACTION`` "StartupLocality" event at index 0 sets index 0's start to
the locality in the last byte (PC Client PTP "PCR initial and reset values"; PFP
``TCG_EfiStartupLocalityEvent``). Replay proves the digests, not the event data: where the data
is what was measured, :meth:`Event.data_digest_matches` says whether it hashes to the digest.

Every malformed input raises :class:`~veritee.errors.MalformedEvidenceError` naming the event
and the field; the number of events, the size of one event and of the whole log are bounded.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, Literal

from veritee.errors import MalformedEvidenceError, MisuseError
from veritee.tee._layout import FieldTable

# --- event types (PFP §10.4.1) ----------------------------------------------------------------

EV_PREBOOT_CERT: Final = 0x00000000
EV_POST_CODE: Final = 0x00000001
EV_UNUSED: Final = 0x00000002
EV_NO_ACTION: Final = 0x00000003
EV_SEPARATOR: Final = 0x00000004
EV_ACTION: Final = 0x00000005
EV_EVENT_TAG: Final = 0x00000006
EV_S_CRTM_CONTENTS: Final = 0x00000007
EV_S_CRTM_VERSION: Final = 0x00000008
EV_CPU_MICROCODE: Final = 0x00000009
EV_PLATFORM_CONFIG_FLAGS: Final = 0x0000000A
EV_TABLE_OF_DEVICES: Final = 0x0000000B
EV_COMPACT_HASH: Final = 0x0000000C
EV_IPL: Final = 0x0000000D
EV_IPL_PARTITION_DATA: Final = 0x0000000E
EV_NONHOST_CODE: Final = 0x0000000F
EV_NONHOST_CONFIG: Final = 0x00000010
EV_NONHOST_INFO: Final = 0x00000011
EV_OMIT_BOOT_DEVICE_EVENTS: Final = 0x00000012
EV_POST_CODE2: Final = 0x00000013
EV_EFI_EVENT_BASE: Final = 0x80000000
EV_EFI_VARIABLE_DRIVER_CONFIG: Final = 0x80000001
EV_EFI_VARIABLE_BOOT: Final = 0x80000002
EV_EFI_BOOT_SERVICES_APPLICATION: Final = 0x80000003
EV_EFI_BOOT_SERVICES_DRIVER: Final = 0x80000004
EV_EFI_RUNTIME_SERVICES_DRIVER: Final = 0x80000005
EV_EFI_GPT_EVENT: Final = 0x80000006
EV_EFI_ACTION: Final = 0x80000007
EV_EFI_PLATFORM_FIRMWARE_BLOB: Final = 0x80000008
EV_EFI_HANDOFF_TABLES: Final = 0x80000009
EV_EFI_PLATFORM_FIRMWARE_BLOB2: Final = 0x8000000A
EV_EFI_HANDOFF_TABLES2: Final = 0x8000000B
EV_EFI_VARIABLE_BOOT2: Final = 0x8000000C
EV_EFI_GPT_EVENT2: Final = 0x8000000D
EV_EFI_HCRTM_EVENT: Final = 0x80000010
EV_EFI_VARIABLE_AUTHORITY: Final = 0x800000E0
EV_EFI_SPDM_FIRMWARE_BLOB: Final = 0x800000E1
EV_EFI_SPDM_FIRMWARE_CONFIG: Final = 0x800000E2
EV_EFI_SPDM_DEVICE_POLICY: Final = 0x800000E3
EV_EFI_SPDM_DEVICE_AUTHORITY: Final = 0x800000E4

#: The name of every event type above, by value (declared once: derived from the constants).
EVENT_TYPE_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {value: name for name, value in dict(globals()).items()
     if name.startswith("EV_") and isinstance(value, int)})


def event_type_name(event_type: int) -> str:
    """``EV_...`` for a known type, else the type in hex (``0x0000abcd``)."""
    return EVENT_TYPE_NAMES.get(event_type, f"0x{event_type:08x}")


# --- digest algorithms (TCG Algorithm Registry) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A digest algorithm of the log: its TCG algorithm ID, name, digest size, hashlib name."""

    id: int
    name: str
    size: int
    hashlib_name: str | None = None


ALGORITHMS: Final[Mapping[int, Algorithm]] = MappingProxyType({a.id: a for a in (
    Algorithm(0x0004, "sha1", 20, "sha1"),
    Algorithm(0x000B, "sha256", 32, "sha256"),
    Algorithm(0x000C, "sha384", 48, "sha384"),
    Algorithm(0x000D, "sha512", 64, "sha512"),
    Algorithm(0x0012, "sm3_256", 32, "sm3"),
    Algorithm(0x0027, "sha3_256", 32, "sha3_256"),
    Algorithm(0x0028, "sha3_384", 48, "sha3_384"),
    Algorithm(0x0029, "sha3_512", 64, "sha3_512"),
)})
_BY_NAME: Final = MappingProxyType({a.name: a for a in ALGORITHMS.values()})
SHA1: Final = ALGORITHMS[0x0004]

# --- bounds (a hostile log can neither hang the parser nor exhaust memory) --------------------

#: Records per log. Real firmware logs hold tens to a few hundred.
MAX_EVENTS: Final = 10_000
#: Bytes of one event's data. The largest real ones (certificate databases) are tens of KiB.
MAX_EVENT_SIZE: Final = 1 << 20
#: Bytes of a whole log, padding included.
MAX_LOG_SIZE: Final = 16 << 20
#: Algorithms a Spec ID event may declare.
MAX_ALGORITHMS: Final = 16
#: Largest digest an unregistered algorithm may declare.
MAX_DIGEST_SIZE: Final = 64

# --- fixed layouts (PFP §10) ------------------------------------------------------------------

#: TCG_PCR_EVENT: the legacy SHA-1 record (and the first record of a crypto-agile log).
LEGACY_EVENT: Final = FieldTable("TCG_PCR_EVENT", (
    ("pcr_index", 0, 4, "I"),
    ("event_type", 4, 4, "I"),
    ("digest", 8, 20, "s"),
    ("event_size", 28, 4, "I"),
), size=32)
#: The fixed start of TCG_PCR_EVENT2; digests (count given here), event_size and event follow.
EVENT2_HEAD: Final = FieldTable("TCG_PCR_EVENT2", (
    ("pcr_index", 0, 4, "I"),
    ("event_type", 4, 4, "I"),
    ("digest_count", 8, 4, "I"),
), size=12)
#: The fixed start of TCG_EfiSpecIdEvent; the algorithm table and vendor info follow.
SPEC_ID_HEAD: Final = FieldTable("TCG_EfiSpecIdEvent", (
    ("signature", 0, 16, "s"),
    ("platform_class", 16, 4, "I"),
    ("spec_version_minor", 20, 1, "B"),
    ("spec_version_major", 21, 1, "B"),
    ("spec_errata", 22, 1, "B"),
    ("uintn_size", 23, 1, "B"),
    ("number_of_algorithms", 24, 4, "I"),
), size=28)
STARTUP_LOCALITY: Final = FieldTable("TCG_EfiStartupLocalityEvent", (
    ("signature", 0, 16, "s"),
    ("startup_locality", 16, 1, "B"),
), size=17)
TAGGED_EVENT_HEAD: Final = FieldTable("TCG_PCClientTaggedEvent", (
    ("tagged_event_id", 0, 4, "I"),
    ("tagged_event_data_size", 4, 4, "I"),
), size=8)
IMAGE_LOAD_HEAD: Final = FieldTable("UEFI_IMAGE_LOAD_EVENT", (
    ("image_location_in_memory", 0, 8, "Q"),
    ("image_length_in_memory", 8, 8, "Q"),
    ("image_link_time_address", 16, 8, "Q"),
    ("length_of_device_path", 24, 8, "Q"),
), size=32)
VARIABLE_HEAD: Final = FieldTable("UEFI_VARIABLE_DATA", (
    ("variable_name", 0, 16, "s"),
    ("unicode_name_length", 16, 8, "Q"),
    ("variable_data_length", 24, 8, "Q"),
), size=32)
FIRMWARE_BLOB: Final = FieldTable("UEFI_PLATFORM_FIRMWARE_BLOB", (
    ("blob_base", 0, 8, "Q"),
    ("blob_length", 8, 8, "Q"),
), size=16)
TABLE_ENTRY: Final = FieldTable("UEFI_CONFIGURATION_TABLE", (
    ("vendor_guid", 0, 16, "s"),
    ("vendor_table", 16, 8, "Q"),
), size=24)
#: EFI_DEVICE_PATH_PROTOCOL node header (UEFI 2.10 §10.3.1).
NODE_HEAD: Final = FieldTable("device path node", (
    ("type", 0, 1, "B"),
    ("subtype", 1, 1, "B"),
    ("length", 2, 2, "H"),
), size=4)

SPEC_ID_SIGNATURE: Final = b"Spec ID Event03\0"
STARTUP_LOCALITY_SIGNATURE: Final = b"StartupLocality\0"
_PADDING: Final = b"\x00\xff"
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")

Form = Literal["crypto-agile", "sha1"]


def _read(table: FieldTable, data: bytes, offset: int, where: str) -> dict[str, Any]:
    """The named fields of ``table`` at ``offset``; a short buffer is named with ``where``."""
    if offset + table.size > len(data):
        raise MalformedEvidenceError(
            f"{where}: {table.what} needs {table.size} bytes at offset {offset:#x}, "
            f"{max(len(data) - offset, 0)} left")
    return dict(zip(table.names, table.struct.unpack_from(data, offset), strict=True))


def _scalar(fmt: struct.Struct, data: bytes, offset: int, where: str) -> int:
    if offset + fmt.size > len(data):
        raise MalformedEvidenceError(
            f"{where} needs {fmt.size} bytes at offset {offset:#x}, "
            f"{max(len(data) - offset, 0)} left")
    value: int = fmt.unpack_from(data, offset)[0]
    return value


def _guid(raw: bytes) -> str:
    """A UEFI GUID (mixed-endian bytes) in its registry form, upper case as EDK2 prints it."""
    return str(uuid.UUID(bytes_le=raw)).upper()


# --- text in event data -----------------------------------------------------------------------


_LINE_CONTROLS: Final = str.maketrans("", "", "\t\r\n")


def _printable(text: str) -> bool:
    """Printable characters, tabs and line ends only."""
    return text.isprintable() or text.translate(_LINE_CONTROLS).isprintable()


def decode_text(data: bytes) -> str | None:
    """Event data as text: printable ASCII, else printable UTF-16LE, once trailing NULs are
    dropped (``""`` for data of NULs only; an odd trailing zero byte after UTF-16 text, as
    systemd-boot leaves, is dropped too); None when it is neither."""
    stripped = data.rstrip(b"\0")
    if stripped.isascii() and _printable(stripped.decode("ascii")):
        return stripped.decode("ascii")
    # Stripping may take the zero high byte of the last UTF-16 unit; give it back.
    units = stripped + b"\0" * (len(stripped) % 2)
    try:
        text = units.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    return text if "\0" not in text and _printable(text) else None


# --- UEFI device paths (UEFI 2.10 §10.3, text forms §10.6) ------------------------------------


@dataclass(frozen=True, slots=True)
class DevicePathNode:
    """One node: type, subtype and the bytes after its 4-byte header."""

    type: int
    subtype: int
    data: bytes

    def text(self) -> str:
        """The node as EDK2's ``DevicePathToText`` prints it (``Pci(0x1,0x0)``, ``HD(...)``,
        a file path as itself); other nodes, and known ones of the wrong size, in the generic
        form (``HardwarePath(7,0A0B)``, ``Path(9,1,...)``)."""
        render = _UEFI_NODES.get((self.type, self.subtype))
        text = render(self.data) if render is not None else None
        return text if text is not None else _generic_text(self)

    def trustee_text(self) -> str:
        """The node as Trustee's event-log parser renders it for its policies'
        ``details.device_paths`` (``Pci(0,1)``, ``ACPI(PNP0A03,0)``, ``File(kernel)``,
        ``VenMedia(GUID,hex)``, ``HD(...)``, ``USB(0,0)``; else ``Path(type,subtype,hex)``)."""
        render = _TRUSTEE_NODES.get((self.type, self.subtype))
        text = render(self.data) if render is not None else None
        return text if text is not None else f"Path({self.type},{self.subtype},{self.data.hex()})"


END_TYPE: Final = 0x7F
END_ENTIRE: Final = 0xFF
END_INSTANCE: Final = 0x01


@dataclass(frozen=True, slots=True)
class DevicePath:
    """A device path: its nodes up to (not including) the end-of-path node; an end-of-instance
    node between two instances is kept."""

    nodes: tuple[DevicePathNode, ...]

    def text(self) -> str:
        """The whole path as UEFI text: nodes joined by ``/``, instances by ``,``."""
        out: list[str] = []
        for node in self.nodes:
            if node.type == END_TYPE:
                out.append(",")
            else:
                out.append(("/" if out and out[-1] != "," else "") + node.text())
        return "".join(out)

    def node_texts(self) -> tuple[str, ...]:
        """Each node's UEFI text, end-of-instance nodes left out."""
        return tuple(n.text() for n in self.nodes if n.type != END_TYPE)

    def trustee_texts(self) -> tuple[str, ...]:
        """Each node as Trustee renders it (its ``details.device_paths`` list)."""
        return tuple(n.trustee_text() for n in self.nodes)


def parse_device_path(data: bytes) -> DevicePath:
    """Nodes up to the end-of-path node, which must end ``data``.

    Raises:
        MalformedEvidenceError: a node runs past the data, is shorter than its header, or the
            path has no end node or bytes after it.
    """
    nodes: list[DevicePathNode] = []
    pos = 0
    while pos < len(data):
        where = f"device path node {len(nodes)}"
        head = _read(NODE_HEAD, data, pos, where)
        length = head["length"]
        if length < NODE_HEAD.size or pos + length > len(data):
            raise MalformedEvidenceError(
                f"{where}: length {length} at byte {pos} does not fit the "
                f"{len(data) - pos} bytes left (at least {NODE_HEAD.size})")
        if (head["type"], head["subtype"]) == (END_TYPE, END_ENTIRE):
            if pos + length != len(data):
                raise MalformedEvidenceError(
                    f"{where}: {len(data) - pos - length} bytes follow the end-of-path node")
            return DevicePath(tuple(nodes))
        nodes.append(DevicePathNode(head["type"], head["subtype"], data[pos + 4:pos + length]))
        pos += length
    raise MalformedEvidenceError(f"device path of {len(data)} bytes has no end-of-path node")


_GENERIC_PREFIX: Final = {1: "HardwarePath(", 2: "AcpiPath(", 3: "Msg(", 4: "MediaPath(",
                          5: "BbsPath("}


def _generic_text(node: DevicePathNode) -> str:
    """EDK2's ``DevPathToTextNodeGeneric``: ``Prefix(subtype[,HEX])`` or
    ``Path(type,subtype[,HEX])``."""
    prefix = _GENERIC_PREFIX.get(node.type, f"Path({node.type},")
    tail = f",{node.data.hex().upper()}" if node.data else ""
    return f"{prefix}{node.subtype}{tail})"


def _fixed(fmt: str, render: Callable[..., str]) -> Callable[[bytes], str | None]:
    """A renderer for a node whose payload is exactly the ``struct`` format ``fmt``."""
    layout = struct.Struct("<" + fmt)

    def text(data: bytes) -> str | None:
        return render(*layout.unpack(data)) if len(data) == layout.size else None
    return text


def _guid_node(name: str) -> Callable[[bytes], str | None]:
    return _fixed("16s", lambda g: f"{name}({_guid(g)})")


def _vendor(name: str) -> Callable[[bytes], str | None]:
    def text(data: bytes) -> str | None:
        if len(data) < 16:
            return None
        tail = f",{data[16:].hex().upper()}" if len(data) > 16 else ""
        return f"{name}({_guid(data[:16])}{tail})"
    return text


_EISA_PNP: Final = 0x41D0
_ACPI_NAMES: Final = {0x0A03: "PciRoot", 0x0A08: "PcieRoot", 0x0604: "Floppy",
                      0x0301: "Keyboard", 0x0501: "Serial", 0x0401: "ParallelPort"}


def _acpi(hid: int, uid: int) -> str:
    if hid & 0xFFFF != _EISA_PNP:
        return f"Acpi(0x{hid:08X},0x{uid:X})"
    name = _ACPI_NAMES.get(hid >> 16)
    return f"{name}(0x{uid:X})" if name else f"Acpi(PNP{hid >> 16:04X},0x{uid:X})"


def _acpi_adr(data: bytes) -> str | None:
    if not data or len(data) % 4:
        return None
    adrs = struct.unpack(f"<{len(data) // 4}I", data)
    return "AcpiAdr(" + ",".join(f"0x{a:X}" for a in adrs) + ")"


def _hard_drive(number: int, start: int, size: int, signature: bytes, _mbr: int,
                kind: int) -> str:
    if kind == 1:
        sig = f"MBR,0x{_U32.unpack_from(signature)[0]:08X}"
    elif kind == 2:
        sig = f"GPT,{_guid(signature)}"
    else:
        sig = f"{kind},0"
    return f"HD({number},{sig},0x{start:X},0x{size:X})"


def _file_path(data: bytes) -> str | None:
    if len(data) % 2:
        return None
    try:
        return data.decode("utf-16-le").rstrip("\0")
    except UnicodeDecodeError:
        return None


def _mac(data: bytes) -> str | None:
    if len(data) != 33:
        return None
    size = 6 if data[32] in (0, 1) else 32
    return f"MAC({data[:size].hex().upper()},0x{data[32]:X})"


def _uri(data: bytes) -> str | None:
    return f"Uri({data.decode('ascii')})" if data.isascii() else None


def _nvme(nsid: int, eui: bytes) -> str:
    return f"NVMe(0x{nsid:X},{'-'.join(f'{b:02X}' for b in reversed(eui))})"


#: (type, subtype) → UEFI text of the node's payload (None: not this node's size).
_UEFI_NODES: Final[Mapping[tuple[int, int], Callable[[bytes], str | None]]] = {
    (1, 1): _fixed("BB", lambda fn, dev: f"Pci(0x{dev:X},0x{fn:X})"),
    (1, 2): _fixed("B", lambda fn: f"PcCard(0x{fn:X})"),
    (1, 3): _fixed("IQQ", lambda t, s, e: f"MemoryMapped(0x{t:X},0x{s:X},0x{e:X})"),
    (1, 4): _vendor("VenHw"),
    (1, 5): _fixed("I", lambda c: f"Ctrl(0x{c:X})"),
    (1, 6): _fixed("BQ", lambda t, a: f"BMC(0x{t:X},0x{a:X})"),
    (2, 1): _fixed("II", _acpi),
    (2, 3): _acpi_adr,
    (3, 1): _fixed("BBH", lambda p, s, lun: "Ata({},{},0x{:X})".format(
        "Secondary" if p else "Primary", "Slave" if s else "Master", lun)),
    (3, 2): _fixed("HH", lambda pun, lun: f"Scsi(0x{pun:X},0x{lun:X})"),
    (3, 3): _fixed("IQQ", lambda _r, wwn, lun: f"Fibre(0x{wwn:X},0x{lun:X})"),
    (3, 5): _fixed("BB", lambda port, intf: f"USB(0x{port:X},0x{intf:X})"),
    (3, 10): _vendor("VenMsg"),
    (3, 11): _mac,
    (3, 16): _fixed("B", lambda lun: f"Unit(0x{lun:X})"),
    (3, 18): _fixed("HHH", lambda h, m, lun: f"Sata(0x{h:X},0x{m:X},0x{lun:X})"),
    (3, 20): _fixed("H", lambda vlan: f"Vlan({vlan})"),
    (3, 23): _fixed("I8s", _nvme),
    (3, 24): _uri,
    (4, 1): _fixed("IQQ16sBB", _hard_drive),
    (4, 2): _fixed("IQQ", lambda e, s, n: f"CDROM(0x{e:X},0x{s:X},0x{n:X})"),
    (4, 3): _vendor("VenMedia"),
    (4, 4): _file_path,
    (4, 5): _guid_node("Media"),
    (4, 6): _guid_node("FvFile"),
    (4, 7): _guid_node("Fv"),
    (4, 8): _fixed("IQQ", lambda _r, s, e: f"Offset(0x{s:X},0x{e:X})"),
}


def _trustee_acpi(data: bytes) -> str | None:
    if len(data) < 8:
        return None
    hid, uid = struct.unpack_from("<II", data)
    vendor = "".join(chr(((hid & 0xFFFF) >> shift & 0x1F) + 0x40) for shift in (10, 5, 0))
    return f"ACPI({vendor}{hid >> 16:04X},{uid})"


def _trustee_hd(data: bytes) -> str | None:
    if len(data) < 38 or data[36] not in (1, 2):
        return None
    number, start, size = struct.unpack_from("<IQQ", data)
    sig = (f"MBR,{_U32.unpack_from(data, 20)[0]:#010x}" if data[36] == 1
           else f"GPT,{_guid(data[20:36])}")
    extent = f",{start:#x},{size:#x}" if number else ""
    return f"HD({number},{sig}{extent})"


def _trustee_file(data: bytes) -> str | None:
    if not data or len(data) % 2:
        return None
    return f"File({data[:-2].decode('utf-16-le', 'replace')})"


#: Trustee's renderings (confidential-containers/trustee ``deps/eventlog`` device_paths).
_TRUSTEE_NODES: Final[Mapping[tuple[int, int], Callable[[bytes], str | None]]] = {
    (1, 1): lambda d: f"Pci({d[0]},{d[1]})" if len(d) >= 2 else None,
    (2, 1): _trustee_acpi,
    (3, 5): lambda d: f"USB({d[0]},{d[1]})" if len(d) >= 2 else None,
    (4, 1): _trustee_hd,
    (4, 3): lambda d: f"VenMedia({_guid(d[:16])},{d[16:].hex()})" if len(d) >= 16 else None,
    (4, 4): _trustee_file,
}


# --- event details --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandoffTable:
    """One UEFI_CONFIGURATION_TABLE entry of an EV_EFI_HANDOFF_TABLES[2] event."""

    guid: str
    address: int


@dataclass(frozen=True, slots=True)
class EventDetails:
    """What an event's data says, for policies. Fields that do not apply are None."""

    #: Text: EV_IPL, EV_EFI_ACTION, EV_POST_CODE, ... data; the tagged data of EV_EVENT_TAG;
    #: the description of a firmware blob or handoff-table event; an EV_NO_ACTION signature.
    string: str | None = None
    #: EV_EFI_BOOT_SERVICES_* / RUNTIME_SERVICES_DRIVER: the image's device path.
    device_path: DevicePath | None = None
    image_location: int | None = None
    image_length: int | None = None
    image_link_time_address: int | None = None
    #: EV_EFI_VARIABLE_*: the vendor GUID, the variable's name and its data.
    variable_guid: str | None = None
    unicode_name: str | None = None
    variable_data: bytes | None = None
    #: EV_EFI_PLATFORM_FIRMWARE_BLOB[2]: where the measured blob was.
    blob_base: int | None = None
    blob_length: int | None = None
    #: EV_EFI_HANDOFF_TABLES[2]: the tables handed off.
    tables: tuple[HandoffTable, ...] = ()
    #: EV_EVENT_TAG: the tagged event ID.
    tag_id: int | None = None
    #: EV_NO_ACTION "StartupLocality": the locality the platform was started from.
    startup_locality: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that apply, JSON-ready (bytes as hex, the device path as UEFI text plus
        its nodes)."""
        out: dict[str, Any] = {}
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if isinstance(value, DevicePath):
                out["device_path"] = value.text()
                out["device_path_nodes"] = list(value.node_texts())
            elif isinstance(value, bytes):
                out[name] = value.hex()
            elif name == "tables":
                out[name] = [{"guid": t.guid, "address": t.address} for t in value]
            else:
                out[name] = value
        return out


NO_DETAILS: Final = EventDetails()


def _image_load(data: bytes) -> EventDetails:
    """UEFI_IMAGE_LOAD_EVENT. Bytes after the device path are ignored: firmware and shims
    leave some (seen in real RHEL 8, Ubuntu 18.04, Debian 10 and COS 85 logs)."""
    head = _read(IMAGE_LOAD_HEAD, data, 0, "event data")
    length = head["length_of_device_path"]
    if IMAGE_LOAD_HEAD.size + length > len(data):
        raise MalformedEvidenceError(
            f"length_of_device_path is {length}, the data after the header is "
            f"{len(data) - IMAGE_LOAD_HEAD.size} bytes")
    end = IMAGE_LOAD_HEAD.size + length
    path = parse_device_path(data[IMAGE_LOAD_HEAD.size:end]) if length else None
    return EventDetails(device_path=path, image_location=head["image_location_in_memory"],
                        image_length=head["image_length_in_memory"],
                        image_link_time_address=head["image_link_time_address"])


def _variable(data: bytes) -> EventDetails:
    """UEFI_VARIABLE_DATA. Bytes after the variable data are ignored: shims leave some in
    EV_EFI_VARIABLE_AUTHORITY events (seen in real Debian 10 and COS 85 logs)."""
    head = _read(VARIABLE_HEAD, data, 0, "event data")
    name_end = VARIABLE_HEAD.size + 2 * head["unicode_name_length"]
    end = name_end + head["variable_data_length"]
    if end > len(data):
        raise MalformedEvidenceError(
            f"unicode_name_length {head['unicode_name_length']} and variable_data_length "
            f"{head['variable_data_length']} make {end} bytes, the event data is {len(data)}")
    try:
        name = data[VARIABLE_HEAD.size:name_end].decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise MalformedEvidenceError(f"unicode_name is not UTF-16LE: {exc}") from exc
    return EventDetails(variable_guid=_guid(head["variable_name"]), unicode_name=name,
                        variable_data=data[name_end:end])


def _description(data: bytes) -> tuple[str | None, int]:
    """A one-byte-length-prefixed description (BLOB2, HANDOFF_TABLES2); its text and end."""
    if not data:
        raise MalformedEvidenceError("the description size byte is missing")
    end = 1 + data[0]
    if end > len(data):
        raise MalformedEvidenceError(
            f"description size {data[0]} runs past the {len(data)} bytes of event data")
    return decode_text(data[1:end]), end


def _blob(data: bytes, start: int = 0, string: str | None = None) -> EventDetails:
    head = _read(FIRMWARE_BLOB, data, start, "event data")
    if start + FIRMWARE_BLOB.size != len(data):
        raise MalformedEvidenceError(
            f"firmware blob event data is {len(data)} bytes, expected "
            f"{start + FIRMWARE_BLOB.size}")
    return EventDetails(string=string, blob_base=head["blob_base"],
                        blob_length=head["blob_length"])


def _blob2(data: bytes) -> EventDetails:
    text, end = _description(data)
    return _blob(data, end, text)


def _tables(data: bytes, start: int = 0, string: str | None = None) -> EventDetails:
    count = _scalar(_U64, data, start, "event data: number_of_tables")
    first = start + 8
    if count > (len(data) - first) // TABLE_ENTRY.size or \
            first + count * TABLE_ENTRY.size != len(data):
        raise MalformedEvidenceError(
            f"number_of_tables {count} does not fill the {len(data) - first} bytes left")
    entries = (_read(TABLE_ENTRY, data, first + i * TABLE_ENTRY.size, f"table {i}")
               for i in range(count))
    return EventDetails(string=string, tables=tuple(
        HandoffTable(_guid(e["vendor_guid"]), e["vendor_table"]) for e in entries))


def _tables2(data: bytes) -> EventDetails:
    text, end = _description(data)
    return _tables(data, end, text)


def _tagged(data: bytes) -> EventDetails:
    head = _read(TAGGED_EVENT_HEAD, data, 0, "event data")
    size = head["tagged_event_data_size"]
    if TAGGED_EVENT_HEAD.size + size != len(data):
        raise MalformedEvidenceError(
            f"tagged_event_data_size is {size}, the data after the header is "
            f"{len(data) - TAGGED_EVENT_HEAD.size} bytes")
    return EventDetails(string=decode_text(data[TAGGED_EVENT_HEAD.size:]),
                        tag_id=head["tagged_event_id"])


def _no_action(data: bytes) -> EventDetails:
    """EV_NO_ACTION: a 16-byte signature names the event (Spec ID, StartupLocality, ...)."""
    if not data.startswith(STARTUP_LOCALITY_SIGNATURE):
        text = decode_text(data[:16]) if len(data) >= 16 else None
        return EventDetails(string=text) if text else NO_DETAILS
    if len(data) != STARTUP_LOCALITY.size:
        raise MalformedEvidenceError(
            f"StartupLocality event data is {len(data)} bytes, expected {STARTUP_LOCALITY.size}")
    locality = _read(STARTUP_LOCALITY, data, 0, "event data")["startup_locality"]
    if locality > 4:
        raise MalformedEvidenceError(f"startup_locality is {locality}, localities are 0-4")
    return EventDetails(string="StartupLocality", startup_locality=locality)


def _string(data: bytes) -> EventDetails:
    text = decode_text(data)
    return EventDetails(string=text) if text is not None else NO_DETAILS


_DETAILS: Final[Mapping[int, Callable[[bytes], EventDetails]]] = {
    EV_NO_ACTION: _no_action,
    EV_EVENT_TAG: _tagged,
    EV_EFI_BOOT_SERVICES_APPLICATION: _image_load,
    EV_EFI_BOOT_SERVICES_DRIVER: _image_load,
    EV_EFI_RUNTIME_SERVICES_DRIVER: _image_load,
    EV_EFI_VARIABLE_DRIVER_CONFIG: _variable,
    EV_EFI_VARIABLE_BOOT: _variable,
    EV_EFI_VARIABLE_BOOT2: _variable,
    EV_EFI_VARIABLE_AUTHORITY: _variable,
    EV_EFI_PLATFORM_FIRMWARE_BLOB: _blob,
    EV_EFI_PLATFORM_FIRMWARE_BLOB2: _blob2,
    EV_EFI_HANDOFF_TABLES: _tables,
    EV_EFI_HANDOFF_TABLES2: _tables2,
    **dict.fromkeys((EV_POST_CODE, EV_ACTION, EV_S_CRTM_VERSION, EV_COMPACT_HASH, EV_IPL,
                     EV_OMIT_BOOT_DEVICE_EVENTS, EV_NONHOST_INFO, EV_EFI_ACTION), _string),
}


def event_details(event_type: int, data: bytes) -> EventDetails:
    """The details of one event's data (empty for types whose data says nothing to policy).

    Raises:
        MalformedEvidenceError: the data does not have its type's structure.
    """
    parse = _DETAILS.get(event_type)
    return parse(data) if parse is not None else NO_DETAILS


# --- events and logs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One record of the log, in log order (``number`` 0 is the first record)."""

    number: int
    offset: int
    index: int
    type: int
    #: (algorithm name, digest) in record order.
    digests: tuple[tuple[str, bytes], ...]
    data: bytes = field(repr=False)
    details: EventDetails = NO_DETAILS

    @property
    def type_name(self) -> str:
        return event_type_name(self.type)

    def digest(self, algorithm: str) -> bytes | None:
        """This event's digest in ``algorithm`` (a name such as ``"sha384"``), if it has one."""
        return next((d for name, d in self.digests if name == algorithm), None)

    def data_digest_matches(self, algorithm: str) -> bool:
        """Whether the event data hashes to the recorded digest: true for events that measure
        their own data (variables, separators, actions), false for those that measure
        something else (images, blobs)."""
        digest = self.digest(algorithm)
        alg = algorithm_by_name(algorithm)
        return digest is not None and hashlib.new(_hash_name(alg), self.data).digest() == digest

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "index": self.index, "type": self.type,
                "type_name": self.type_name,
                "digests": [{"alg": name, "digest": d.hex()} for name, d in self.digests],
                "details": self.details.to_json()}


@dataclass(frozen=True, slots=True)
class SpecIdEvent:
    """TCG_EfiSpecIdEvent: the header of a crypto-agile log."""

    platform_class: int
    spec_version: tuple[int, int, int]
    uintn_size: int
    algorithms: tuple[Algorithm, ...]
    vendor_info: bytes


@dataclass(frozen=True, slots=True)
class EventLog:
    """A parsed log: every record (the Spec ID header included, as event 0) and the digest
    algorithms its records carry."""

    form: Form
    events: tuple[Event, ...]
    algorithms: tuple[Algorithm, ...]
    spec_id: SpecIdEvent | None
    #: Bytes up to the end of the last record (padding after it excluded).
    length: int

    def replay(self, algorithm: str, *,
               initial: Mapping[int, bytes] | None = None) -> dict[int, bytes]:
        """:func:`replay` of this log's events."""
        return replay(self, algorithm, initial=initial)

    def to_json(self) -> dict[str, Any]:
        return {"form": self.form, "algorithms": [a.name for a in self.algorithms],
                "events": [e.to_json() for e in self.events]}


@dataclass(frozen=True, slots=True)
class _Limits:
    max_events: int
    max_event_size: int


def parse(data: bytes, *, max_events: int = MAX_EVENTS,
          max_event_size: int = MAX_EVENT_SIZE) -> EventLog:
    """Parse a log in either form; padding (``0xFF`` or zero bytes) may follow it.

    Raises:
        MalformedEvidenceError: the log is empty, truncated, inconsistent, over a bound, or an
            event's data lacks its type's structure; the message names the event and field.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MisuseError(f"an event log is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_LOG_SIZE:
        raise MalformedEvidenceError(f"event log is {len(data)} bytes, over {MAX_LOG_SIZE}")
    if _at_end(data, 0):
        raise MalformedEvidenceError("event log is empty (no record before the padding)")
    limits = _Limits(max_events, max_event_size)
    first, offset = _legacy_event(data, 0, 0, limits)
    spec = _spec_id(first) if _is_spec_id(first) else None
    banks = spec.algorithms if spec is not None else (SHA1,)
    events = [first]
    while not _at_end(data, offset):
        if len(events) >= limits.max_events:
            raise MalformedEvidenceError(f"event log has more than {limits.max_events} events")
        read = _event2 if spec is not None else _legacy
        event, offset = read(data, offset, len(events), banks, limits)
        events.append(event)
    _check_padding(data, offset)
    return EventLog("crypto-agile" if spec else "sha1", tuple(events), banks, spec, offset)


def _at_end(data: bytes, offset: int) -> bool:
    """The log ends where the data does or where padding starts: eight 0xFF or eight zero
    bytes where a record's index and type would be, or fewer than eight padding bytes."""
    rest = data[offset:offset + 8]
    if len(rest) == 8:
        return rest in (b"\xff" * 8, b"\0" * 8)
    return not rest.translate(None, _PADDING)


def _check_padding(data: bytes, offset: int) -> None:
    junk = data[offset:].translate(None, _PADDING)
    if junk:
        first = next(i for i in range(offset, len(data)) if data[i] not in _PADDING)
        raise MalformedEvidenceError(
            f"event log: byte {first:#x} after the end of the log at {offset:#x} is "
            f"{data[first]:#04x}, not padding (0x00 or 0xff)")


def _is_spec_id(event: Event) -> bool:
    return event.type == EV_NO_ACTION and event.data.startswith(SPEC_ID_SIGNATURE)


def _event_data(data: bytes, offset: int, size: int, where: str, limits: _Limits) -> bytes:
    if size > limits.max_event_size:
        raise MalformedEvidenceError(
            f"{where}: event_size {size} is over the bound of {limits.max_event_size}")
    if offset + size > len(data):
        raise MalformedEvidenceError(
            f"{where}: event_size {size} runs past the end of the log "
            f"({len(data) - offset} bytes left)")
    return data[offset:offset + size]


def _make_event(number: int, offset: int, head: Mapping[str, int],
                digests: tuple[tuple[str, bytes], ...], data: bytes) -> Event:
    index, event_type = head["pcr_index"], head["event_type"]
    try:
        details = event_details(event_type, data)
    except MalformedEvidenceError as exc:
        raise MalformedEvidenceError(
            f"event {number} ({event_type_name(event_type)}, offset {offset:#x}): "
            f"{exc.detail}") from exc
    return Event(number, offset, index, event_type, digests, data, details)


def _legacy_event(data: bytes, offset: int, number: int,
                  limits: _Limits) -> tuple[Event, int]:
    where = f"event {number}"
    head = _read(LEGACY_EVENT, data, offset, where)
    body = offset + LEGACY_EVENT.size
    payload = _event_data(data, body, head["event_size"], where, limits)
    event = _make_event(number, offset, head, (("sha1", head["digest"]),), payload)
    return event, body + len(payload)


def _legacy(data: bytes, offset: int, number: int, _banks: tuple[Algorithm, ...],
            limits: _Limits) -> tuple[Event, int]:
    return _legacy_event(data, offset, number, limits)


def _event2(data: bytes, offset: int, number: int, banks: tuple[Algorithm, ...],
            limits: _Limits) -> tuple[Event, int]:
    where = f"event {number}"
    head = _read(EVENT2_HEAD, data, offset, where)
    if head["digest_count"] > len(banks):
        raise MalformedEvidenceError(
            f"{where}: digest_count is {head['digest_count']}, the Spec ID event declares "
            f"{len(banks)} algorithms")
    digests, pos = _digests(data, offset + EVENT2_HEAD.size, head["digest_count"], banks,
                            where)
    size = _scalar(_U32, data, pos, f"{where}: event_size")
    payload = _event_data(data, pos + 4, size, where, limits)
    event = _make_event(number, offset, head, digests, payload)
    return event, pos + 4 + size


def _digests(data: bytes, pos: int, count: int, banks: tuple[Algorithm, ...],
             where: str) -> tuple[tuple[tuple[str, bytes], ...], int]:
    by_id = {a.id: a for a in banks}
    out: list[tuple[str, bytes]] = []
    for i in range(count):
        alg_id = _scalar(_U16, data, pos, f"{where}: digest {i} algorithm")
        alg = by_id.get(alg_id)
        if alg is None or any(name == alg.name for name, _ in out):
            raise MalformedEvidenceError(
                f"{where}: digest {i} algorithm 0x{alg_id:04x} is "
                f"{'repeated' if alg else 'not declared in the Spec ID event'}")
        if pos + 2 + alg.size > len(data):
            raise MalformedEvidenceError(
                f"{where}: digest {i} ({alg.name}) needs {alg.size} bytes, "
                f"{max(len(data) - pos - 2, 0)} left")
        out.append((alg.name, data[pos + 2:pos + 2 + alg.size]))
        pos += 2 + alg.size
    return tuple(out), pos


def _spec_id(event: Event) -> SpecIdEvent:
    """TCG_EfiSpecIdEvent from the first record's data; it must fill the data exactly."""
    data, where = event.data, "event 0 (Spec ID Event03)"
    head = _read(SPEC_ID_HEAD, data, 0, where)
    count = head["number_of_algorithms"]
    if not 1 <= count <= MAX_ALGORITHMS:
        raise MalformedEvidenceError(
            f"{where}: number_of_algorithms is {count}, expected 1 to {MAX_ALGORITHMS}")
    algorithms: list[Algorithm] = []
    pos = SPEC_ID_HEAD.size
    for i in range(count):
        alg_id = _scalar(_U16, data, pos, f"{where}: algorithm {i} id")
        size = _scalar(_U16, data, pos + 2, f"{where}: algorithm {i} digest size")
        algorithms.append(_declared(alg_id, size, algorithms, f"{where}: algorithm {i}"))
        pos += 4
    vendor_size = _scalar(struct.Struct("<B"), data, pos, f"{where}: vendor_info_size")
    end = pos + 1 + vendor_size
    if end != len(data):
        raise MalformedEvidenceError(
            f"{where}: its fields take {end} bytes, event_size is {len(data)}")
    return SpecIdEvent(head["platform_class"], (head["spec_version_major"],
                       head["spec_version_minor"], head["spec_errata"]), head["uintn_size"],
                       tuple(algorithms), data[pos + 1:end])


def _declared(alg_id: int, size: int, seen: list[Algorithm], where: str) -> Algorithm:
    known = ALGORITHMS.get(alg_id)
    if any(a.id == alg_id for a in seen):
        raise MalformedEvidenceError(f"{where}: algorithm 0x{alg_id:04x} is declared twice")
    if known is not None and known.size != size:
        raise MalformedEvidenceError(
            f"{where}: {known.name} digests are declared {size} bytes, they are {known.size}")
    if known is None and not 1 <= size <= MAX_DIGEST_SIZE:
        raise MalformedEvidenceError(
            f"{where}: algorithm 0x{alg_id:04x} digest size {size} is not 1 to "
            f"{MAX_DIGEST_SIZE}")
    return known or Algorithm(alg_id, f"0x{alg_id:04x}", size)


# --- replay -----------------------------------------------------------------------------------


def algorithm_by_name(name: str) -> Algorithm:
    """A registered algorithm by name (``"sha1"``, ``"sha256"``, ``"sha384"``, ...).

    Raises:
        MisuseError: no registered algorithm has that name.
    """
    alg = _BY_NAME.get(name)
    if alg is None:
        raise MisuseError(f"unknown digest algorithm {name!r}; known: {', '.join(_BY_NAME)}")
    return alg


def _hash_name(alg: Algorithm) -> str:
    if alg.hashlib_name is None or alg.hashlib_name not in hashlib.algorithms_available:
        raise MisuseError(f"{alg.name} is not available in this Python's hashlib")
    return alg.hashlib_name


def replay(events: EventLog | Iterable[Event], algorithm: str, *,
           initial: Mapping[int, bytes] | None = None) -> dict[int, bytes]:
    """The value of every index the events extend, replayed in ``algorithm``.

    ``R[i] = H(R[i] || digest)``, each index starting at ``initial[i]`` (default all zero
    bytes); EV_NO_ACTION events extend nothing. A StartupLocality EV_NO_ACTION event (which
    must name index 0 and come before any event that extends it) makes index 0 start at
    zero bytes ending in the locality, e.g. ``00…03`` (PC Client PTP "PCR initial and reset
    values"; PFP TCG_EfiStartupLocalityEvent). Indices no event extends are left out.

    Raises:
        MisuseError: ``algorithm`` is unknown, or an ``initial`` value has the wrong size.
        MalformedEvidenceError: the log has no ``algorithm`` digests, an extending event lacks
            one, or a StartupLocality event is misplaced.
    """
    alg = algorithm_by_name(algorithm)
    if isinstance(events, EventLog):
        if alg not in events.algorithms:
            raise MalformedEvidenceError(
                f"the event log has no {alg.name} digests (it has "
                f"{', '.join(a.name for a in events.algorithms)})")
        events = events.events
    start = _initial(alg, initial)
    constructor = _constructor(alg)
    values: dict[int, bytes] = {}
    locality_seen = False
    for event in events:
        if event.type == EV_NO_ACTION:
            if event.details.startup_locality is not None:
                _locality(event, alg, start, values, locality_seen)
                locality_seen = True
            continue
        digest = event.digest(alg.name)
        if digest is None:
            raise MalformedEvidenceError(
                f"event {event.number} ({event.type_name}, index {event.index}) has no "
                f"{alg.name} digest")
        current = values.get(event.index, start.get(event.index, bytes(alg.size)))
        values[event.index] = constructor(current + digest).digest()
    return values


def _constructor(alg: Algorithm) -> Callable[[bytes], Any]:
    name = _hash_name(alg)
    return lambda data: hashlib.new(name, data)


def _initial(alg: Algorithm, initial: Mapping[int, bytes] | None) -> dict[int, bytes]:
    start = {i: bytes(v) for i, v in (initial or {}).items()}
    wrong = {i: len(v) for i, v in start.items() if len(v) != alg.size}
    if wrong:
        raise MisuseError(f"initial values must be {alg.size} bytes for {alg.name}: {wrong}")
    return start


def _locality(event: Event, alg: Algorithm, start: dict[int, bytes],
              values: Mapping[int, bytes], seen: bool) -> None:
    where = f"event {event.number} (StartupLocality)"
    if event.index != 0:
        raise MalformedEvidenceError(f"{where} names index {event.index}; it sets index 0")
    if seen or 0 in values:
        raise MalformedEvidenceError(
            f"{where} comes after {'another one' if seen else 'an event extending index 0'}")
    assert event.details.startup_locality is not None
    start[0] = bytes(alg.size - 1) + bytes([event.details.startup_locality])


__all__ = [
    "ALGORITHMS",
    "EVENT_TYPE_NAMES",
    "MAX_EVENTS",
    "MAX_EVENT_SIZE",
    "MAX_LOG_SIZE",
    "Algorithm",
    "DevicePath",
    "DevicePathNode",
    "Event",
    "EventDetails",
    "EventLog",
    "HandoffTable",
    "SpecIdEvent",
    "algorithm_by_name",
    "decode_text",
    "event_details",
    "event_type_name",
    "parse",
    "parse_device_path",
    "replay",
]
