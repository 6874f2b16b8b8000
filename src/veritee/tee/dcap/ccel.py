"""The ACPI CCEL table and the TDX event log it points to, replayed into RTMR0–3.

Sources: research note intel-dcap.md §3.2; ACPI 6.5 "Confidential Computing Event Log Table
(CCEL)" (56 bytes: the ACPI header, CC type, CC subtype, reserved, LAML, LASA); UEFI 2.11 §38
"Confidential Computing" (CC type 2 = Intel TDX; the log's index field is the CC
measurement-register (MR) index); tianocore/edk2 ``OvmfPkg/Tcg/TdTcg2Dxe`` ``MapPcrToMrIndex``
(MR 0 = MRTD, never extended at run time; MR index i+1 = RTMR[i]).

A Linux guest exposes the table as sysfs ``firmware/acpi/tables/CCEL`` and the log area (LAML
bytes, the log then 0xFF padding) as ``firmware/acpi/tables/data/CCEL``. The log is a TCG PC
Client crypto-agile log (:mod:`veritee.eventlog`) with SHA-384 digests; ``RTMR[i] =
SHA384(RTMR[i] || digest)`` from 48 zero bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from veritee import eventlog
from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    MisuseError,
    UnsupportedVersionError,
)
from veritee.eventlog import EV_NO_ACTION, EventLog
from veritee.tee._layout import FieldTable

CCEL_SIGNATURE: Final = b"CCEL"
CCEL_SIZE: Final = 56
CCEL_REVISIONS: Final = frozenset({1})
#: UEFI 2.11 §38 EFI_CC_TYPE_TDX.
CC_TYPE_TDX: Final = 2
RTMR_COUNT: Final = 4
RTMR_SIZE: Final = 48
ALGORITHM: Final = "sha384"

#: ACPI 6.5 §5.2.6 (system description table header), then the CCEL fields.
CCEL_TABLE: Final = FieldTable("CCEL table", (
    ("signature", 0, 4, "s"),
    ("length", 4, 4, "I"),
    ("revision", 8, 1, "B"),
    ("checksum", 9, 1, "B"),
    ("oem_id", 10, 6, "s"),
    ("oem_table_id", 16, 8, "s"),
    ("oem_revision", 24, 4, "I"),
    ("creator_id", 28, 4, "s"),
    ("creator_revision", 32, 4, "I"),
    ("cc_type", 36, 1, "B"),
    ("cc_subtype", 37, 1, "B"),
    ("_reserved_26", 38, 2, "x"),
    ("laml", 40, 8, "Q"),
    ("lasa", 48, 8, "Q"),
), size=CCEL_SIZE)

Rtmrs = tuple[bytes, bytes, bytes, bytes]


@dataclass(frozen=True, slots=True)
class CcelTable:
    """The CCEL table: who made it, the CC type, and where the log area is (LASA, LAML)."""

    revision: int
    oem_id: bytes
    oem_table_id: bytes
    oem_revision: int
    creator_id: bytes
    creator_revision: int
    cc_type: int
    cc_subtype: int
    #: Log area minimum length: the size of the area the log sits in.
    laml: int
    #: Log area start address (guest physical).
    lasa: int
    raw: bytes

    def to_bytes(self) -> bytes:
        return self.raw


def parse_ccel_table(data: bytes) -> CcelTable:
    """The CCEL table from its bytes (sysfs ``firmware/acpi/tables/CCEL``).

    Raises:
        MalformedEvidenceError: wrong signature, length, checksum, CC type, or reserved bytes
            that are not zero.
        UnsupportedVersionError: a revision other than 1.
        MisuseError: ``data`` is not bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MisuseError(f"a CCEL table is bytes, not {type(data).__name__}")
    data = bytes(data)
    fields = CCEL_TABLE.unpack(data)
    if fields["signature"] != CCEL_SIGNATURE:
        raise MalformedEvidenceError(
            f"CCEL table signature is {fields['signature']!r}, expected {CCEL_SIGNATURE!r}")
    if fields["length"] != len(data) or len(data) != CCEL_SIZE:
        raise MalformedEvidenceError(
            f"CCEL table length field is {fields['length']}, the table is {len(data)} bytes "
            f"(expected {CCEL_SIZE})")
    if sum(data) % 256:
        raise MalformedEvidenceError(
            f"CCEL table checksum {fields['checksum']:#04x} does not make its bytes sum to 0")
    if fields["revision"] not in CCEL_REVISIONS:
        raise UnsupportedVersionError(f"CCEL table revision is {fields['revision']}, "
                                      f"known: {sorted(CCEL_REVISIONS)}")
    if fields["cc_type"] != CC_TYPE_TDX:
        raise MalformedEvidenceError(
            f"CCEL cc_type is {fields['cc_type']}, expected {CC_TYPE_TDX} (Intel TDX)")
    CCEL_TABLE.check_zero(data)
    del fields["signature"], fields["length"], fields["checksum"]
    return CcelTable(**fields, raw=data)


def rtmr_of(mr_index: int) -> int | None:
    """The RTMR a CC MR index extends (``RTMR[i] = MR index i+1``); None for MR 0 (MRTD) and
    for indices that name no register."""
    return mr_index - 1 if 1 <= mr_index <= RTMR_COUNT else None


def replay_rtmrs(log: bytes | EventLog) -> tuple[Rtmrs, EventLog]:
    """RTMR0–3 replayed from a CCEL log (48 zero bytes where no event extends one), and the
    parsed log.

    Raises:
        MalformedEvidenceError: the log does not parse, has no SHA-384 digests, or an event
            extends MR index 0 (MRTD, which no guest can extend) or an index above 4.
    """
    parsed = log if isinstance(log, EventLog) else eventlog.parse(log)
    for event in parsed.events:
        if event.type != EV_NO_ACTION and rtmr_of(event.index) is None:
            raise MalformedEvidenceError(
                f"event {event.number} ({event.type_name}) extends MR index {event.index}: "
                + ("MRTD is measured at build time only" if event.index == 0
                   else "only 1-4 (RTMR0-3) can be extended"))
    replayed = parsed.replay(ALGORITHM)
    zero = bytes(RTMR_SIZE)
    rtmrs = tuple(replayed.get(i + 1, zero) for i in range(RTMR_COUNT))
    return (rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]), parsed


def compare_rtmrs(replayed: Sequence[bytes], quoted: Sequence[bytes], *,
                  registers: Sequence[int] = (0, 1, 2, 3)) -> None:
    """Raise unless each RTMR in ``registers`` replays to the quoted value.

    RTMR3 is for the OS and applications: leave it out of ``registers`` when they extend it
    without logging into the CCEL (then only the quote knows it).

    Raises:
        BindingError: the first RTMR that differs, with both values.
        MisuseError: four values are not given on each side, or a register is not 0-3.
    """
    if len(replayed) != RTMR_COUNT or len(quoted) != RTMR_COUNT:
        raise MisuseError(f"give {RTMR_COUNT} RTMRs on each side, not {len(replayed)} and "
                          f"{len(quoted)}")
    for i in registers:
        if i not in range(RTMR_COUNT):
            raise MisuseError(f"RTMR{i} does not exist (RTMR0-3)")
        if bytes(replayed[i]) != bytes(quoted[i]):
            raise BindingError(
                f"RTMR{i} replays to {bytes(replayed[i]).hex()} from the event log, the quote "
                f"says {bytes(quoted[i]).hex()}")


def verify_event_log(log: bytes | EventLog, quoted: Sequence[bytes], *,
                     registers: Sequence[int] = (0, 1, 2, 3)) -> EventLog:
    """The parsed CCEL log, once it replays to the quote's RTMRs (:func:`compare_rtmrs`).

    Raises:
        MalformedEvidenceError: the log does not parse or replay.
        BindingError: an RTMR in ``registers`` differs from the quote's.
    """
    rtmrs, parsed = replay_rtmrs(log)
    compare_rtmrs(rtmrs, quoted, registers=registers)
    return parsed


__all__ = [
    "CCEL_TABLE",
    "CC_TYPE_TDX",
    "CcelTable",
    "Rtmrs",
    "compare_rtmrs",
    "parse_ccel_table",
    "replay_rtmrs",
    "rtmr_of",
    "verify_event_log",
]
