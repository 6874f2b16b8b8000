"""The CCEL table and RTMR replay (veritee.tee.dcap.ccel).

The corpus CCEL (go-tdx-guest's GCE COS 113 TD) replays to the four RTMRs of its quote, read
here from the quote's bytes at the TD 1.0 body offsets of research note intel-dcap.md §1.4
(RTMR0 at 376 in a v4 quote, 48 bytes each) and checked against the MANIFEST; a tampered
event is refused naming the RTMR and both values. Synthetic logs cover what the corpus cannot.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import corpus_dir, manifest
from veritee import eventlog
from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    MisuseError,
    UnsupportedVersionError,
)
from veritee.tee.dcap import ccel

CCEL = ("intel", "go-tdx-guest", "testing", "testdata", "ccel")
RTMR0_OFFSET_V4 = 48 + 328  # quote header, then the TD report body's RTMR0 (note §1.4)


def _entry(name: str) -> dict[str, Any]:
    (entry,) = [e for e in manifest("intel") if e["file"].endswith(f"ccel/{name}")]
    return entry


@pytest.fixture
def folder() -> Path:
    return corpus_dir(*CCEL)


@pytest.fixture
def quoted(folder: Path) -> tuple[bytes, ...]:
    quote = (folder / "cos-113-tdx-quote.dat").read_bytes()
    assert struct.unpack_from("<H", quote)[0] == 4  # a v4 quote: TD 1.0 body at 48
    rtmrs = tuple(quote[RTMR0_OFFSET_V4 + 48 * i:RTMR0_OFFSET_V4 + 48 * (i + 1)]
                  for i in range(4))
    assert [r.hex() for r in rtmrs] == [_entry("cos-113-tdx-quote.dat")["expected"]["report"]
                                        [f"rtmr{i}"] for i in range(4)]
    return rtmrs


# --- the corpus ---------------------------------------------------------------------------------


def test_the_corpus_ccel_table(folder: Path) -> None:
    raw = (folder / "ccel_table.dat").read_bytes()
    table = ccel.parse_ccel_table(raw)
    assert (table.cc_type, table.cc_subtype, table.revision) == (2, 0, 1)
    assert (table.laml, table.lasa) == (0x40000, 0xBEDBF000)
    assert table.oem_id == b"INTEL " and table.to_bytes() == raw


def test_the_corpus_ccel_replays_to_the_rtmrs_of_its_quote(folder: Path,
                                                           quoted: tuple[bytes, ...]) -> None:
    raw = (folder / "ccel_data.dat").read_bytes()
    expected = _entry("ccel_data.dat")["expected"]
    rtmrs, log = ccel.replay_rtmrs(raw)
    assert list(rtmrs) == list(quoted)
    assert [r.hex() for r in rtmrs] == expected["rtmrs"]
    assert len(log.events) - 1 == expected["events"]  # the Spec ID header is event 0
    assert len(raw) == ccel.parse_ccel_table((folder / "ccel_table.dat").read_bytes()).laml
    assert ccel.verify_event_log(raw, quoted) == log


def test_the_corpus_events_carry_what_policies_read(folder: Path) -> None:
    log = eventlog.parse((folder / "ccel_data.dat").read_bytes())
    by_type = {e.type_name for e in log.events}
    assert {"EV_EFI_BOOT_SERVICES_APPLICATION", "EV_IPL", "EV_EFI_ACTION",
            "EV_EFI_VARIABLE_DRIVER_CONFIG", "EV_SEPARATOR"} <= by_type
    paths = [e.details.device_path for e in log.events if e.details.device_path]
    assert [p.trustee_texts()[-1] for p in paths] == ["File(\\EFI\\BOOT\\BOOTX64.EFI)",
                                                      "File(\\EFI\\BOOT\\grub-lakitu.efi)"]
    assert paths[0].text().startswith("PciRoot(0x0)/Pci(0x4,0x0)/NVMe(0x1,")
    strings = [e.details.string for e in log.events if e.type_name == "EV_IPL"]
    assert any(s and s.startswith("kernel_cmdline: /syslinux/vmlinuz.A") for s in strings)
    names = [e.details.unicode_name for e in log.events if e.details.unicode_name]
    assert names[:5] == ["SecureBoot", "PK", "KEK", "db", "dbx"]
    assert all(e.data_digest_matches("sha384") for e in log.events
               if e.type_name in ("EV_EFI_VARIABLE_DRIVER_CONFIG", "EV_SEPARATOR",
                                  "EV_EFI_ACTION"))


def _first(log: eventlog.EventLog, mr_index: int, type_name: str) -> eventlog.Event:
    return next(e for e in log.events if e.index == mr_index and e.type_name == type_name)


def test_a_tampered_digest_is_refused_naming_the_rtmr(folder: Path,
                                                      quoted: tuple[bytes, ...]) -> None:
    raw = bytearray((folder / "ccel_data.dat").read_bytes())
    target = _first(eventlog.parse(bytes(raw)), 2, "EV_EFI_BOOT_SERVICES_APPLICATION")
    digest_at = target.offset + 12 + 2  # index, type, count; then the algorithm ID
    raw[digest_at] ^= 0x01
    with pytest.raises(BindingError, match=rf"RTMR1 replays to [0-9a-f]{{96}} from the event "
                       rf"log, the quote says {quoted[1].hex()}"):
        ccel.verify_event_log(bytes(raw), quoted)
    ccel.verify_event_log(bytes(raw), quoted, registers=(0, 2, 3))  # RTMR1 left out


def test_tampered_event_data_still_replays_but_no_longer_matches_its_digest(
        folder: Path, quoted: tuple[bytes, ...]) -> None:
    """Replay proves digests, not data (note §3.2): the policy checks data_digest_matches."""
    raw = bytearray((folder / "ccel_data.dat").read_bytes())
    target = _first(eventlog.parse(bytes(raw)), 1, "EV_EFI_VARIABLE_DRIVER_CONFIG")
    data_at = target.offset + 12 + 2 + 48 + 4  # header, one SHA-384 digest, event_size
    raw[data_at + len(target.data) - 1] ^= 0x01  # SecureBoot's value byte
    log = ccel.verify_event_log(bytes(raw), quoted)
    tampered = log.events[target.number]
    assert tampered.details.variable_data == b"\x01"
    assert not tampered.data_digest_matches("sha384")


def test_a_cut_ccel_is_malformed(folder: Path) -> None:
    raw = (folder / "ccel_data.dat").read_bytes()
    log = eventlog.parse(raw)
    with pytest.raises(MalformedEvidenceError, match=r"event 43"):
        ccel.replay_rtmrs(raw[:log.events[43].offset + 30])


# --- the table ----------------------------------------------------------------------------------


def _table(**changes: Any) -> bytes:
    fields: dict[str, Any] = {"signature": b"CCEL", "length": 56, "revision": 1, "checksum": 0,
                              "oem_id": b"VERITE", "oem_table_id": b"TESTTABL",
                              "oem_revision": 2, "creator_id": b"TEST", "creator_revision": 1,
                              "cc_type": 2, "cc_subtype": 0, "laml": 0x10000, "lasa": 0x7F000000}
    fields.update(changes)
    raw = bytearray(struct.pack("<4sIBB6s8sI4sIBB2xQQ", *fields.values()))
    if "checksum" not in changes:
        raw[9] = -sum(raw) % 256
    return bytes(raw)


def test_a_synthetic_table_round_trips() -> None:
    raw = _table()
    table = ccel.parse_ccel_table(raw)
    assert (table.laml, table.lasa, table.oem_table_id) == (0x10000, 0x7F000000, b"TESTTABL")
    assert table.to_bytes() == raw


def _reserved_set() -> bytes:
    raw = bytearray(_table())
    raw[38] = 1
    raw[9] = (raw[9] - 1) % 256
    return bytes(raw)


BAD_TABLES: list[tuple[str, Callable[[], bytes], type[Exception], str]] = [
    ("signature", lambda: _table(signature=b"TDEL"), MalformedEvidenceError, "signature is"),
    ("length-field", lambda: _table(length=60), MalformedEvidenceError, "length field is 60"),
    ("short", lambda: _table()[:40], MalformedEvidenceError, "40 bytes, shorter than 56"),
    ("long", lambda: _table() + b"\0", MalformedEvidenceError, "the table is 57 bytes"),
    ("checksum", lambda: _table(checksum=7), MalformedEvidenceError, "checksum 0x07"),
    ("cc-type", lambda: _table(cc_type=1), MalformedEvidenceError, "cc_type is 1, expected 2"),
    ("revision", lambda: _table(revision=2), UnsupportedVersionError, "revision is 2"),
    ("reserved", _reserved_set, MalformedEvidenceError, r"reserved bytes \[0x26, 0x28\)"),
]


@pytest.mark.parametrize(("build", "error", "message"),
                         [(b, e, m) for _, b, e, m in BAD_TABLES], ids=[n for n, *_ in BAD_TABLES])
def test_a_bad_table_is_refused(build: Callable[[], bytes], error: type[Exception],
                                message: str) -> None:
    with pytest.raises(error, match=message):
        ccel.parse_ccel_table(build())


# --- synthetic logs -----------------------------------------------------------------------------


def _log(events: list[tuple[int, int, bytes]], alg: str = "sha384") -> bytes:
    alg_id, size = {"sha384": (0x0C, 48), "sha256": (0x0B, 32)}[alg]
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBIHHB", 0, 0, 2, 0, 2, 1, alg_id, size, 0)
    out = struct.pack("<II20sI", 1, 3, bytes(20), len(spec)) + spec
    for index, event_type, data in events:
        out += struct.pack("<IIIH", index, event_type, 1, alg_id) + hashlib.new(alg, data).digest()
        out += struct.pack("<I", len(data)) + data
    return out + b"\xff" * 256


def test_each_mr_index_extends_its_rtmr() -> None:
    events = [(i, 4, bytes([i]) * 4) for i in (1, 2, 3, 4, 2)]
    rtmrs, _ = ccel.replay_rtmrs(_log(events))
    for rtmr in range(4):
        value = bytes(48)
        for index, _, data in events:
            if index == rtmr + 1:
                value = hashlib.sha384(value + hashlib.sha384(data).digest()).digest()
        assert rtmrs[rtmr] == value
    assert [ccel.rtmr_of(i) for i in range(6)] == [None, 0, 1, 2, 3, None]


def test_an_unextended_rtmr_is_zero_and_no_action_at_mr_0_is_fine() -> None:
    rtmrs, _ = ccel.replay_rtmrs(_log([(0, 3, b"NvIndexInstance\0"), (1, 4, bytes(4))]))
    assert rtmrs[1:] == (bytes(48),) * 3 and rtmrs[0] != bytes(48)


@pytest.mark.parametrize(("events", "alg", "message"), [
    ([(0, 4, bytes(4))], "sha384", r"event 1 \(EV_SEPARATOR\) extends MR index 0: MRTD is "
     "measured at build time only"),
    ([(5, 4, bytes(4))], "sha384", "extends MR index 5: only 1-4"),
    ([(1, 4, bytes(4))], "sha256", r"no sha384 digests \(it has sha256\)"),
], ids=["mrtd", "index-5", "sha256-only"])
def test_a_log_that_cannot_be_an_rtmr_log_is_malformed(events: list[tuple[int, int, bytes]],
                                                       alg: str, message: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=message):
        ccel.replay_rtmrs(_log(events, alg))


def test_compare_misuse() -> None:
    with pytest.raises(MisuseError, match="give 4 RTMRs"):
        ccel.compare_rtmrs([bytes(48)] * 3, [bytes(48)] * 4)
    with pytest.raises(MisuseError, match="RTMR4 does not exist"):
        ccel.compare_rtmrs([bytes(48)] * 4, [bytes(48)] * 4, registers=(4,))
    ccel.compare_rtmrs([bytes(48)] * 4, [bytes(48)] * 4)
