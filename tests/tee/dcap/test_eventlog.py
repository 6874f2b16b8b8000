"""The TCG PC Client event log parser (veritee.eventlog), on logs written by a small writer in
this file: both forms, StartupLocality, the padded end, replay checked against hashlib here,
event details (device paths, strings, variables), bounds, and errors that name the event and
field. The generic parser also replays the real PC Client logs of go-tpm-tools (corpus
``ibm-tpm-gpu``) to the PCRs its tests expect, when the corpus is present.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from conftest import corpus_dir
from veritee import eventlog as el
from veritee.errors import MalformedEvidenceError, MisuseError

# --- an independent writer --------------------------------------------------------------------

ALG_ID = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
NO_ACTION, SEPARATOR, EVENT_TAG, IPL, POST_CODE = 3, 4, 6, 13, 1
EFI_VAR_CONFIG, EFI_BOOT_APP, EFI_ACTION = 0x80000001, 0x80000003, 0x80000007
EFI_GLOBAL = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")


@dataclass(frozen=True)
class Ev:
    index: int
    type: int
    data: bytes
    #: Digests by algorithm; None: the hash of ``data`` in every algorithm of the log.
    digests: dict[str, bytes] | None = None

    def digest(self, alg: str) -> bytes:
        return self.digests[alg] if self.digests is not None else hashlib.new(alg, self.data) \
            .digest()


def spec_id(algs: Sequence[str], vendor: bytes = b"") -> bytes:
    body = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    body += b"".join(struct.pack("<HH", ALG_ID[a], hashlib.new(a).digest_size) for a in algs)
    body += bytes([len(vendor)]) + vendor
    return struct.pack("<II20sI", 0, NO_ACTION, bytes(20), len(body)) + body


def event2(ev: Ev, algs: Sequence[str]) -> bytes:
    names = list(ev.digests) if ev.digests is not None else list(algs)
    out = struct.pack("<III", ev.index, ev.type, len(names))
    out += b"".join(struct.pack("<H", ALG_ID[a]) + ev.digest(a) for a in names)
    return out + struct.pack("<I", len(ev.data)) + ev.data


def agile(events: Sequence[Ev], algs: Sequence[str] = ("sha256",), pad: bytes = b"") -> bytes:
    return spec_id(algs) + b"".join(event2(e, algs) for e in events) + pad


def legacy(events: Sequence[Ev]) -> bytes:
    return b"".join(struct.pack("<II20sI", e.index, e.type, e.digest("sha1"), len(e.data))
                    + e.data for e in events)


def expected_replay(events: Sequence[Ev], alg: str,
                    start: dict[int, bytes] | None = None) -> dict[int, bytes]:
    """Straight from the PFP rule, written without the library."""
    size = hashlib.new(alg).digest_size
    values: dict[int, bytes] = {}
    for e in events:
        if e.type == NO_ACTION:
            continue
        before = values.get(e.index, (start or {}).get(e.index, bytes(size)))
        values[e.index] = hashlib.new(alg, before + e.digest(alg)).digest()
    return values


def utf16(text: str, nul: bool = True) -> bytes:
    return (text + ("\0" if nul else "")).encode("utf-16-le")


def variable(name: str, data: bytes, guid: uuid.UUID = EFI_GLOBAL) -> bytes:
    return guid.bytes_le + struct.pack("<QQ", len(name), len(data)) + utf16(name, False) + data


def node(t: int, s: int, payload: bytes) -> bytes:
    return struct.pack("<BBH", t, s, 4 + len(payload)) + payload


END = node(0x7F, 0xFF, b"")
PART_GUID = uuid.UUID("00f1275e-5375-43d5-9eb5-de2add4c9932")


def hd_gpt(number: int = 15, start: int = 0x2800, size: int = 0x35000) -> bytes:
    return node(4, 1, struct.pack("<IQQ16sBB", number, start, size, PART_GUID.bytes_le, 2, 2))


def image_load(path: bytes, slack: bytes = b"") -> bytes:
    return struct.pack("<QQQQ", 0x7D6A4018, 0xEC008, 0, len(path)) + path + slack


BOOT_PATH = (node(2, 1, struct.pack("<II", 0x0A0341D0, 0)) + node(1, 1, bytes([0, 3]))
             + node(3, 2, struct.pack("<HH", 1, 0)) + hd_gpt()
             + node(4, 4, utf16("\\EFI\\BOOT\\BOOTX64.EFI")) + END)

EVENTS = (
    Ev(0, 0x80000008, struct.pack("<QQ", 0xFFC00000, 0x400000)),
    Ev(7, EFI_VAR_CONFIG, variable("SecureBoot", b"\x01")),
    Ev(7, SEPARATOR, bytes(4)),
    Ev(4, EFI_ACTION, b"Calling EFI Application from Boot Option"),
    Ev(4, EFI_BOOT_APP, image_load(BOOT_PATH), digests=None),
    Ev(8, IPL, b"grub_cmd: linux /vmlinuz root=/dev/sda1\0"),
    Ev(9, EVENT_TAG, struct.pack("<II", 0x8F3B22ED, 26) + b"LOADED_IMAGE::LoadOptions\0"),
    Ev(3, NO_ACTION, b"NvIndexInstance\0" + bytes(8)),
)


# --- both forms, replay -----------------------------------------------------------------------


@pytest.mark.parametrize("algs", [("sha256",), ("sha1", "sha256", "sha384", "sha512")],
                         ids=["sha256", "four-banks"])
def test_a_crypto_agile_log_parses_and_replays_in_every_bank(algs: tuple[str, ...]) -> None:
    log = el.parse(agile(EVENTS, algs))
    assert log.form == "crypto-agile"
    assert [a.name for a in log.algorithms] == list(algs)
    assert len(log.events) == 1 + len(EVENTS)
    assert log.events[0].details.string == "Spec ID Event03"
    assert [(e.index, e.type) for e in log.events[1:]] == [(e.index, e.type) for e in EVENTS]
    for alg in algs:
        assert log.replay(alg) == expected_replay(EVENTS, alg)
        assert el.replay(log.events, alg) == expected_replay(EVENTS, alg)


def test_a_legacy_sha1_log_parses_and_replays() -> None:
    events = [e for e in EVENTS if e.type != NO_ACTION]
    log = el.parse(legacy(events))
    assert log.form == "sha1" and log.spec_id is None
    assert [a.name for a in log.algorithms] == ["sha1"]
    assert log.replay("sha1") == expected_replay(events, "sha1")
    with pytest.raises(MalformedEvidenceError, match=r"no sha256 digests \(it has sha1"):
        log.replay("sha256")


def test_initial_values_start_an_index_elsewhere_than_zero() -> None:
    events = [Ev(17, SEPARATOR, bytes(4))]
    start = {17: b"\xff" * 32}
    assert el.parse(agile(events)).replay("sha256", initial=start) == \
        expected_replay(events, "sha256", start)


def test_spec_id_header_fields() -> None:
    log = el.parse(spec_id(["sha256", "sha384"], vendor=b"vend") + event2(EVENTS[2], ["sha256",
                   "sha384"]))
    assert log.spec_id is not None
    assert log.spec_id.spec_version == (2, 0, 0) and log.spec_id.uintn_size == 2
    assert log.spec_id.vendor_info == b"vend"
    assert [(a.id, a.size) for a in log.spec_id.algorithms] == [(0x000B, 32), (0x000C, 48)]


# --- StartupLocality --------------------------------------------------------------------------

LOCALITY3 = Ev(0, NO_ACTION, b"StartupLocality\0\x03")
CRTM = Ev(0, 0x00000008, utf16("1.0"))


def test_startup_locality_sets_index_0s_start() -> None:
    log = el.parse(agile([LOCALITY3, CRTM, EVENTS[2]], ("sha1", "sha256")))
    assert log.events[1].details.startup_locality == 3
    for alg in ("sha1", "sha256"):
        size = hashlib.new(alg).digest_size
        start = {0: bytes(size - 1) + b"\x03"}
        assert log.replay(alg) == expected_replay([CRTM, EVENTS[2]], alg, start)
        assert log.replay(alg)[0] != expected_replay([CRTM], alg)[0]


@pytest.mark.parametrize(("events", "error"), [
    ([CRTM, LOCALITY3], "comes after an event extending index 0"),
    ([LOCALITY3, LOCALITY3, CRTM], "comes after another one"),
    ([Ev(1, NO_ACTION, LOCALITY3.data), CRTM], "names index 1; it sets index 0"),
], ids=["after-an-extend", "twice", "not-index-0"])
def test_a_misplaced_startup_locality_is_malformed(events: list[Ev], error: str) -> None:
    log = el.parse(agile(events))
    with pytest.raises(MalformedEvidenceError, match=error):
        log.replay("sha256")


@pytest.mark.parametrize(("data", "error"), [
    (b"StartupLocality\0\x03\x00", "StartupLocality event data is 18 bytes, expected 17"),
    (b"StartupLocality\0", "StartupLocality event data is 16 bytes"),
    (b"StartupLocality\0\x07", "startup_locality is 7, localities are 0-4"),
], ids=["long", "short", "locality-7"])
def test_a_bad_startup_locality_event_is_malformed(data: bytes, error: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=rf"event 1 \(EV_NO_ACTION.*{error}"):
        el.parse(agile([Ev(0, NO_ACTION, data)]))


# --- the end of a log -------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [b"", b"\xff" * 4096, b"\0" * 4096, b"\xff" * 5, b"\0\0\0"],
                         ids=["none", "ff", "zeros", "short-ff", "short-zeros"])
def test_padding_after_the_log_ends_it(pad: bytes) -> None:
    raw = agile(EVENTS, pad=pad)
    log = el.parse(raw)
    assert len(log.events) == 1 + len(EVENTS)
    assert log.length == len(raw) - len(pad)


@pytest.mark.parametrize(("tail", "error"), [
    (b"\xff" * 64 + b"\x01" + b"\xff" * 7, r"byte 0x[0-9a-f]+ after the end of the log .* is "
     r"0x01, not padding"),
    (b"\x01\x00\x00", r"event 9: TCG_PCR_EVENT2 needs 12 bytes at offset 0x[0-9a-f]+, 3 left"),
    (struct.pack("<III", 1, 4, 1) + b"\x0b\x00" + bytes(10),
     r"event 9: digest 0 \(sha256\) needs 32 bytes, 10 left"),
    (struct.pack("<IIIH32sI", 1, 4, 1, 0x0B, bytes(32), 100) + bytes(4),
     r"event 9: event_size 100 runs past the end of the log \(4 bytes left\)"),
], ids=["junk-in-padding", "cut-header", "cut-digest", "cut-data"])
def test_a_cut_or_dirty_end_is_malformed_naming_event_and_field(tail: bytes, error: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=error):
        el.parse(agile(EVENTS) + tail)


@pytest.mark.parametrize("raw", [b"", b"\xff" * 64, bytes(16)], ids=["empty", "ff", "zeros"])
def test_an_empty_log_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedEvidenceError, match="empty"):
        el.parse(raw)


# --- structure errors name the event and field ------------------------------------------------


def _with_spec_id(body: bytes) -> bytes:
    return struct.pack("<II20sI", 0, NO_ACTION, bytes(20), len(body)) + body


SPEC_HEAD = b"Spec ID Event03\0" + struct.pack("<IBBBB", 0, 0, 2, 0, 2)
BAD_LOGS: list[tuple[str, Callable[[], bytes], str]] = [
    ("no-algorithms", lambda: _with_spec_id(SPEC_HEAD + struct.pack("<IB", 0, 0)),
     r"event 0 \(Spec ID Event03\): number_of_algorithms is 0"),
    ("wrong-digest-size", lambda: _with_spec_id(SPEC_HEAD + struct.pack("<IHHB", 1, 0x0B, 20, 0)),
     "sha256 digests are declared 20 bytes, they are 32"),
    ("algorithm-twice", lambda: _with_spec_id(
        SPEC_HEAD + struct.pack("<IHHHHB", 2, 0x0B, 32, 0x0B, 32, 0)), "declared twice"),
    ("spec-id-slack", lambda: _with_spec_id(SPEC_HEAD + struct.pack("<IHHB", 1, 0x0B, 32, 0)
                                            + b"x"), "its fields take 33 bytes, event_size is 34"),
    ("undeclared-algorithm", lambda: spec_id(["sha256"]) + struct.pack("<IIIH", 1, 4, 1, 0x0C)
     + bytes(48) + struct.pack("<I", 0), r"event 1: digest 0 algorithm 0x000c is not declared"),
    ("repeated-digest", lambda: spec_id(["sha256", "sha384"]) + struct.pack("<IIIH", 1, 4, 2, 0x0B)
     + bytes(32) + struct.pack("<H", 0x0B) + bytes(32) + struct.pack("<I", 0),
     r"event 1: digest 1 algorithm 0x000b is repeated"),
    ("too-many-digests", lambda: spec_id(["sha256"]) + struct.pack("<III", 1, 4, 2),
     r"event 1: digest_count is 2, the Spec ID event declares 1"),
    ("variable-name-past-data", lambda: agile([Ev(1, EFI_VAR_CONFIG, EFI_GLOBAL.bytes_le
                                                  + struct.pack("<QQ", 50, 0) + b"ab")]),
     r"event 1 \(EV_EFI_VARIABLE_DRIVER_CONFIG, offset 0x[0-9a-f]+\): unicode_name_length 50"),
    ("image-path-past-data", lambda: agile([Ev(4, EFI_BOOT_APP, struct.pack("<QQQQ", 0, 0, 0,
                                                                            99))]),
     r"event 1 \(EV_EFI_BOOT_SERVICES_APPLICATION.*length_of_device_path is 99"),
    ("tag-size", lambda: agile([Ev(9, EVENT_TAG, struct.pack("<II", 1, 9) + b"abc")]),
     "tagged_event_data_size is 9, the data after the header is 3 bytes"),
    ("blob2-description", lambda: agile([Ev(0, 0x8000000A, b"\x30abc")]),
     "description size 48 runs past the 4 bytes"),
    ("tables-count", lambda: agile([Ev(1, 0x80000009, struct.pack("<Q", 2) + bytes(24))]),
     "number_of_tables 2 does not fill the 24 bytes left"),
]


@pytest.mark.parametrize(("build", "error"), [(b, e) for _, b, e in BAD_LOGS],
                         ids=[n for n, _, _ in BAD_LOGS])
def test_malformed_structures_name_the_event_and_field(build: Callable[[], bytes],
                                                       error: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=error):
        el.parse(build())


def test_a_decoding_failure_is_raised_from_the_original() -> None:
    bad_name = EFI_GLOBAL.bytes_le + struct.pack("<QQ", 1, 0) + b"\x00\xd8"  # lone surrogate
    with pytest.raises(MalformedEvidenceError, match="unicode_name is not UTF-16LE") as info:
        el.parse(agile([Ev(1, EFI_VAR_CONFIG, bad_name)]))
    assert isinstance(info.value.__cause__, MalformedEvidenceError)
    assert isinstance(info.value.__cause__.__cause__, UnicodeDecodeError)


# --- bounds -----------------------------------------------------------------------------------


def test_the_number_of_events_is_bounded() -> None:
    raw = agile([EVENTS[2]] * 20)
    assert len(el.parse(raw, max_events=21).events) == 21
    with pytest.raises(MalformedEvidenceError, match="more than 20 events"):
        el.parse(raw, max_events=20)


def test_the_size_of_an_event_is_bounded() -> None:
    raw = agile([Ev(8, IPL, b"x" * 4096)])
    assert el.parse(raw, max_event_size=4096).events[1].details.string == "x" * 4096
    with pytest.raises(MalformedEvidenceError, match="event 1: event_size 4096 is over the bound"):
        el.parse(raw, max_event_size=4095)


def test_the_size_of_a_log_is_bounded() -> None:
    with pytest.raises(MalformedEvidenceError, match="over"):
        el.parse(agile(EVENTS, pad=b"\xff" * el.MAX_LOG_SIZE))


def test_a_huge_claimed_size_is_refused_without_allocating() -> None:
    raw = agile([]) + struct.pack("<IIIH32sI", 1, 4, 1, 0x0B, bytes(32), 0xFFFFFFFF)
    with pytest.raises(MalformedEvidenceError, match="event_size 4294967295 is over the bound"):
        el.parse(raw)


# --- details: device paths --------------------------------------------------------------------


def test_a_boot_application_event_gives_its_device_path() -> None:
    log = el.parse(agile(EVENTS))
    details = log.events[5].details
    assert details.device_path is not None
    assert details.device_path.text() == (
        "PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/"
        "HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)/\\EFI\\BOOT\\BOOTX64.EFI")
    assert details.device_path.trustee_texts() == (
        "ACPI(PNP0A03,0)", "Pci(0,3)", "Path(3,2,01000000)",
        "HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)",
        "File(\\EFI\\BOOT\\BOOTX64.EFI)")
    assert (details.image_location, details.image_length) == (0x7D6A4018, 0xEC008)


def test_trustee_renders_the_direct_kernel_boot_path_its_policy_matches() -> None:
    """OVMF's direct kernel boot: VenMedia (QEMU fw_cfg) + File(kernel), which Trustee's default
    policy finds with ``"File(kernel)" in event.details.device_paths``."""
    venmedia = uuid.UUID("1428f772-b64a-441e-b8c3-9ebdd7f893c7")
    path = el.parse_device_path(node(4, 3, venmedia.bytes_le) + node(4, 4, utf16("kernel")) + END)
    assert path.trustee_texts() == ("VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7,)",
                                    "File(kernel)")
    assert path.text() == "VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7)/kernel"


FV = uuid.UUID("8fc151ae-c96f-4bc9-8c33-107992c7735b")
NODES: list[tuple[str, bytes, str, str]] = [
    ("pci", node(1, 1, bytes([2, 0x1F])), "Pci(0x1F,0x2)", "Pci(2,31)"),
    ("memory-mapped", node(1, 3, struct.pack("<IQQ", 0xB, 0xFFC00000, 0xFFFFFFFF)),
     "MemoryMapped(0xB,0xFFC00000,0xFFFFFFFF)", None),
    ("ven-hw", node(1, 4, FV.bytes_le + b"\x01\x02"), f"VenHw({str(FV).upper()},0102)", None),
    ("ctrl", node(1, 5, struct.pack("<I", 1)), "Ctrl(0x1)", None),
    ("pcie-root", node(2, 1, struct.pack("<II", 0x0A0841D0, 1)), "PcieRoot(0x1)",
     "ACPI(PNP0A08,1)"),
    ("acpi-pnp", node(2, 1, struct.pack("<II", 0x050141D0, 0)), "Serial(0x0)", None),
    ("acpi-other-pnp", node(2, 1, struct.pack("<II", 0x0B0341D0, 2)), "Acpi(PNP0B03,0x2)",
     None),
    ("acpi-not-pnp", node(2, 1, struct.pack("<II", 0x12345678, 0)), "Acpi(0x12345678,0x0)",
     None),
    ("acpi-adr", node(2, 3, struct.pack("<II", 0x80010100, 2)), "AcpiAdr(0x80010100,0x2)",
     None),
    ("ata", node(3, 1, struct.pack("<BBH", 1, 0, 0)), "Ata(Secondary,Master,0x0)", None),
    ("usb", node(3, 5, bytes([1, 0])), "USB(0x1,0x0)", "USB(1,0)"),
    ("mac", node(3, 11, bytes.fromhex("5254001234ab") + bytes(26) + b"\x01"),
     "MAC(5254001234AB,0x1)", None),
    ("sata", node(3, 18, struct.pack("<HHH", 1, 0xFFFF, 0)), "Sata(0x1,0xFFFF,0x0)", None),
    ("nvme", node(3, 23, struct.pack("<I", 1) + bytes(range(1, 9))),
     "NVMe(0x1,08-07-06-05-04-03-02-01)", None),
    ("uri", node(3, 24, b"http://x/boot.efi"), "Uri(http://x/boot.efi)", None),
    ("hd-mbr", node(4, 1, struct.pack("<IQQ16sBB", 1, 0x800, 0x2EE000,
                                      bytes.fromhex("431202a0") + bytes(12), 1, 1)),
     "HD(1,MBR,0xA0021243,0x800,0x2EE000)", "HD(1,MBR,0xa0021243,0x800,0x2ee000)"),
    ("hd-gpt-0", node(4, 1, struct.pack("<IQQ16sBB", 0, 0, 0, PART_GUID.bytes_le, 2, 2)),
     "HD(0,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x0,0x0)",
     "HD(0,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932)"),
    ("cdrom", node(4, 2, struct.pack("<IQQ", 0, 0x10, 0x20)), "CDROM(0x0,0x10,0x20)", None),
    ("fv", node(4, 7, FV.bytes_le), f"Fv({str(FV).upper()})", None),
    ("fv-file", node(4, 6, FV.bytes_le), f"FvFile({str(FV).upper()})", None),
    ("offset", node(4, 8, struct.pack("<IQQ", 0, 0xF250, 0x201FF)), "Offset(0xF250,0x201FF)",
     None),
    ("unknown-media", node(4, 9, b"\xab\xcd"), "MediaPath(9,ABCD)", "Path(4,9,abcd)"),
    ("unknown-type", node(9, 1, b"\xab"), "Path(9,1,AB)", "Path(9,1,ab)"),
    ("no-payload", node(5, 7, b""), "BbsPath(7)", "Path(5,7,)"),
    ("pci-wrong-size", node(1, 1, b"\x01"), "HardwarePath(1,01)", "Path(1,1,01)"),
]


@pytest.mark.parametrize(("raw", "uefi", "trustee"), [(r, u, t) for _, r, u, t in NODES],
                         ids=[n for n, _, _, _ in NODES])
def test_device_path_nodes_render_as_uefi_and_trustee_text(raw: bytes, uefi: str,
                                                           trustee: str | None) -> None:
    path = el.parse_device_path(raw + END)
    (only,) = path.nodes
    assert only.text() == uefi
    if trustee is not None:
        assert only.trustee_text() == trustee


def test_instances_are_joined_with_a_comma() -> None:
    raw = node(1, 1, bytes([0, 1])) + node(0x7F, 0x01, b"") + node(1, 1, bytes([0, 2])) + END
    path = el.parse_device_path(raw)
    assert path.text() == "Pci(0x1,0x0),Pci(0x2,0x0)"
    assert path.node_texts() == ("Pci(0x1,0x0)", "Pci(0x2,0x0)")


@pytest.mark.parametrize(("raw", "error"), [
    (node(1, 1, bytes(2)), "has no end-of-path node"),
    (node(1, 1, bytes(2)) + b"\x7f\xff", "device path node 1: device path node needs 4 bytes"),
    (struct.pack("<BBH", 1, 1, 2) + END, r"device path node 0: length 2 at byte 0"),
    (struct.pack("<BBH", 1, 1, 40) + END, r"device path node 0: length 40 at byte 0 does not "
     r"fit the 8 bytes left"),
    (END + b"\0\0", "2 bytes follow the end-of-path node"),
], ids=["no-end", "cut-node", "short-node", "node-past-end", "after-end"])
def test_a_malformed_device_path_is_refused(raw: bytes, error: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=error):
        el.parse_device_path(raw)
    with pytest.raises(MalformedEvidenceError, match=r"event 1 \(EV_EFI_BOOT_SERVICES_APP"):
        el.parse(agile([Ev(4, EFI_BOOT_APP, image_load(raw))]))


def test_bytes_after_the_device_path_and_an_empty_path_are_accepted() -> None:
    """Shims are seen to leave bytes after the path, and to log no path at all."""
    log = el.parse(agile([Ev(4, EFI_BOOT_APP, image_load(BOOT_PATH, slack=b"\0" * 8)),
                          Ev(4, EFI_BOOT_APP, image_load(b"", slack=b"\0"))]))
    assert log.events[1].details.device_path is not None
    assert log.events[2].details.device_path is None


# --- details: strings and variables -----------------------------------------------------------


@pytest.mark.parametrize(("event_type", "data", "string"), [
    (IPL, b"grub_cmd: set default=2\0", "grub_cmd: set default=2"),
    (IPL, utf16("initrd=\\initramfs.img"), "initrd=\\initramfs.img"),
    (IPL, utf16("quiet", nul=False) + b"\0", "quiet"),  # UTF-16 and one odd zero byte
    (EFI_ACTION, b"Exit Boot Services Invocation", "Exit Boot Services Invocation"),
    (POST_CODE, b"ACPI DATA", "ACPI DATA"),
    (POST_CODE, struct.pack("<QQ", 0xFFA90000, 0x350000), None),
    (0x00000008, utf16(""), ""),
    (0x00000008, bytes.fromhex("1efb6b540c1d5540a4ad4ef4bf17b83a"), None),
    (EVENT_TAG, struct.pack("<II", 0x8F3B22EC, 13) + b"Linux initrd\0", "Linux initrd"),
    (0x8000000A, b"\x08TdxTable" + struct.pack("<QQ", 0x809000, 0x2000), "TdxTable"),
    (SEPARATOR, bytes(4), None),
], ids=["ascii", "utf16", "utf16-odd-byte", "efi-action", "post-code-text", "post-code-blob",
        "empty-utf16", "binary", "event-tag", "blob2-description", "separator"])
def test_event_strings(event_type: int, data: bytes, string: str | None) -> None:
    (event,) = el.parse(agile([Ev(4, event_type, data)])).events[1:]
    assert event.details.string == string


def test_variable_events_name_the_variable() -> None:
    db_guid = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
    log = el.parse(agile([EVENTS[1], Ev(7, EFI_VAR_CONFIG, variable("db", b"\xaa" * 40, db_guid)),
                          Ev(1, 0x80000002, variable("BootOrder", b"\x01\x00"))]))
    names = [(e.details.variable_guid, e.details.unicode_name, e.details.variable_data)
             for e in log.events[1:]]
    assert names == [("8BE4DF61-93CA-11D2-AA0D-00E098032B8C", "SecureBoot", b"\x01"),
                     ("D719B2CB-3D3A-4596-A3BC-DAD00E67656F", "db", b"\xaa" * 40),
                     ("8BE4DF61-93CA-11D2-AA0D-00E098032B8C", "BootOrder", b"\x01\x00")]
    assert all(e.data_digest_matches("sha256") for e in log.events[1:])


def test_data_digest_matches_tells_measured_data_from_other_data() -> None:
    log = el.parse(agile([Ev(4, EFI_BOOT_APP, image_load(BOOT_PATH),
                             digests={"sha256": hashlib.sha256(b"the PE image").digest()}),
                          EVENTS[2]]))
    assert not log.events[1].data_digest_matches("sha256")
    assert log.events[2].data_digest_matches("sha256")
    assert not log.events[2].data_digest_matches("sha384")  # no such digest


def test_handoff_tables_and_blobs() -> None:
    table = uuid.UUID("93bb96af-b9f2-4eb8-9462-e0ba74564236")
    tables2 = b"\x08TdxTable" + struct.pack("<Q", 1) + table.bytes_le + struct.pack("<Q", 0x809000)
    log = el.parse(agile([Ev(1, 0x8000000B, tables2), EVENTS[0]]))
    first, second = log.events[1].details, log.events[2].details
    assert first.string == "TdxTable"
    assert first.tables == (el.HandoffTable("93BB96AF-B9F2-4EB8-9462-E0BA74564236", 0x809000),)
    assert (second.blob_base, second.blob_length) == (0xFFC00000, 0x400000)


def test_events_have_json_for_policies() -> None:
    log = el.parse(agile(EVENTS))
    as_json = json.loads(json.dumps(log.to_json()))
    assert as_json["form"] == "crypto-agile" and as_json["algorithms"] == ["sha256"]
    boot = as_json["events"][5]
    assert boot["type_name"] == "EV_EFI_BOOT_SERVICES_APPLICATION" and boot["index"] == 4
    assert boot["digests"] == [{"alg": "sha256",
                                "digest": hashlib.sha256(EVENTS[4].data).hexdigest()}]
    assert boot["details"]["device_path_nodes"][-1] == "\\EFI\\BOOT\\BOOTX64.EFI"
    assert as_json["events"][7]["details"] == {"string": "LOADED_IMAGE::LoadOptions",
                                               "tag_id": 0x8F3B22ED}
    assert as_json["events"][2]["details"]["variable_data"] == "01"


def test_unknown_event_types_are_named_in_hex() -> None:
    (event,) = el.parse(agile([Ev(1, 0x12345, b"")])).events[1:]
    assert event.type_name == "0x00012345"
    assert el.event_type_name(0x80000003) == "EV_EFI_BOOT_SERVICES_APPLICATION"


# --- misuse -----------------------------------------------------------------------------------


def test_misuse_is_not_malformed_evidence() -> None:
    log = el.parse(agile(EVENTS))
    with pytest.raises(MisuseError, match="unknown digest algorithm 'md5'"):
        log.replay("md5")
    with pytest.raises(MisuseError, match="must be 32 bytes"):
        log.replay("sha256", initial={0: b"\0"})
    with pytest.raises(MisuseError, match="not str"):
        el.parse("not bytes")  # type: ignore[arg-type]


# --- the real PC Client logs of go-tpm-tools --------------------------------------------------


def _go_tpm_tools() -> list[tuple[str, str, dict[str, str]]]:
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools")
    expected = json.loads((folder / "expected_pcrs.json").read_text())
    return [(name, bank, pcrs) for name, banks in expected.items()
            for bank, pcrs in banks.items()]


def test_real_logs_replay_to_the_pcrs_their_tests_expect() -> None:
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools")
    cases = _go_tpm_tools()
    assert cases
    forms = set()
    for name, bank, pcrs in cases:
        log = el.parse((folder / "eventlogs" / name).read_bytes())
        forms.add(log.form)
        replayed = log.replay(el.ALGORITHMS[int(bank, 16)].name)
        assert {i: replayed[int(i)].hex() for i in pcrs} == pcrs, (name, bank)
    assert forms == {"crypto-agile", "sha1"}


def test_real_logs_give_device_paths_and_strings() -> None:
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools", "eventlogs")
    log = el.parse((folder / "rhel8-uefi.bin").read_bytes())
    paths = [e.details.device_path.text() for e in log.events if e.details.device_path]
    assert any(re.fullmatch(r"PciRoot\(0x0\)/Pci\(0x3,0x0\)/Scsi\(0x1,0x0\)/HD\(1,GPT,[0-9A-F-]+,"
                            r"0x800,0x64000\)/\\EFI\\redhat\\shimx64\.efi", p) for p in paths)
    assert "\\EFI\\redhat\\grubx64.efi" in paths
