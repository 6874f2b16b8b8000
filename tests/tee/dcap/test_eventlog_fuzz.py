"""Bad event logs, CCEL tables and TDVF images raise only MalformedEvidenceError (or its
UnsupportedVersionError leaf): random bytes, mutated and truncated valid inputs, and inputs at
the bounds, each handled within a bounded time (STYLE §8, DESIGN "done" item 6).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS
from veritee import eventlog
from veritee.errors import BindingError, MalformedEvidenceError
from veritee.tee.dcap import ccel, measure

FUZZ = settings(deadline=None, max_examples=200, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Seconds one input may take, far above what any takes (the bounds keep it so).
TIME_LIMIT = 2.0


def outcome(parse: Callable[[bytes], Any], raw: bytes) -> Any:
    """What ``parse`` returns or the MalformedEvidenceError it raises (with a message); any
    other exception fails the test, and so does taking longer than TIME_LIMIT."""
    start = time.perf_counter()
    try:
        result = parse(raw)
    except MalformedEvidenceError as exc:
        assert exc.detail
        result = exc
    assert time.perf_counter() - start < TIME_LIMIT
    return result


def use_log(raw: bytes) -> eventlog.EventLog:
    """Parse, then do everything a verifier does with a log: replay each bank and render every
    event for policy."""
    log = eventlog.parse(raw)
    for alg in log.algorithms:
        if alg.hashlib_name is not None:
            log.replay(alg.name)
    for event in log.events:
        event.to_json()
        if event.details.device_path is not None:
            event.details.device_path.text()
            event.details.device_path.trustee_texts()
    return log


# --- seeds ------------------------------------------------------------------------------------


def _node(t: int, s: int, payload: bytes) -> bytes:
    return struct.pack("<BBH", t, s, 4 + len(payload)) + payload


PATH = (_node(2, 1, struct.pack("<II", 0x0A0341D0, 0)) + _node(1, 1, b"\0\x03")
        + _node(4, 1, struct.pack("<IQQ16sBB", 1, 0x800, 0x1000, bytes(16), 2, 2))
        + _node(4, 4, "\\EFI\\BOOT\\BOOTX64.EFI\0".encode("utf-16-le")) + _node(0x7F, 0xFF, b""))
EVENT_DATA = (
    (0, 3, b"StartupLocality\0\x03"),
    (0, 0x80000008, struct.pack("<QQ", 0xFFC00000, 0x400000)),
    (1, 0x80000001, uuid.UUID(int=7).bytes_le + struct.pack("<QQ", 2, 1) + "PK".encode(
        "utf-16-le") + b"\x01"),
    (1, 0x8000000B, b"\x03abc" + struct.pack("<Q", 1) + bytes(24)),
    (4, 0x80000003, struct.pack("<QQQQ", 0, 0, 0, len(PATH)) + PATH),
    (9, 6, struct.pack("<II", 1, 4) + b"tag\0"),
    (8, 13, "grub_cmd: linux\0".encode("utf-16-le")),
    (7, 4, bytes(4)),
)


def seed_log(algs: tuple[tuple[int, str], ...] = ((0x0B, "sha256"), (0x0C, "sha384"))) -> bytes:
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    spec += b"".join(struct.pack("<HH", i, hashlib.new(n).digest_size) for i, n in algs) + b"\0"
    out = struct.pack("<II20sI", 0, 3, bytes(20), len(spec)) + spec
    for index, event_type, data in EVENT_DATA:
        out += struct.pack("<III", index, event_type, len(algs)) + b"".join(
            struct.pack("<H", i) + hashlib.new(n, data).digest() for i, n in algs)
        out += struct.pack("<I", len(data)) + data
    return out + b"\xff" * 64


def seed_legacy() -> bytes:
    return b"".join(struct.pack("<II20sI", i, t, hashlib.sha1(d).digest(), len(d)) + d
                    for i, t, d in EVENT_DATA[1:])


def _corpus(*parts: str) -> bytes | None:
    path = CORPUS.joinpath(*parts)
    return path.read_bytes() if path.is_file() else None


CCEL_DIR = ("intel", "go-tdx-guest", "testing", "testdata", "ccel")
REAL_CCEL = _corpus(*CCEL_DIR, "ccel_data.dat")
SEEDS = [seed_log(), seed_legacy(), seed_log(((0x04, "sha1"),))]
if REAL_CCEL is not None:
    SEEDS.append(REAL_CCEL[:20_000])  # the log and the start of its padding


def test_the_seeds_are_valid() -> None:
    for raw in SEEDS:
        assert isinstance(outcome(use_log, raw), eventlog.EventLog)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with some bytes replaced, a run inserted or deleted, and maybe cut short."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw[at:at] = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        del raw[at:at + draw(st.integers(0, 64))]
    if draw(st.booleans()):
        del raw[draw(st.integers(0, len(raw))):]
    return bytes(raw)


# --- event logs -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_a_log_or_malformed(raw: bytes) -> None:
    outcome(use_log, raw)


HEADER = seed_log()[:eventlog.parse(seed_log()).events[1].offset]


@FUZZ
@given(st.binary(max_size=512).map(lambda b: HEADER + b))
def test_random_records_after_a_valid_header_are_a_log_or_malformed(raw: bytes) -> None:
    outcome(use_log, raw)


@FUZZ
@given(mutated(SEEDS))
def test_mutated_logs_are_a_log_or_malformed(raw: bytes) -> None:
    outcome(use_log, raw)


def test_every_truncation_of_a_log_is_a_log_or_malformed() -> None:
    """A cut log parses only when cut after its header and between records, or where what is
    left of the cut record is under 8 bytes of 0x00/0xFF (which is padding)."""
    raw = seed_log()
    boundaries = sorted(e.offset for e in eventlog.parse(raw).events[1:])
    for cut in range(len(raw) - 64):
        result = outcome(use_log, raw[:cut])
        tail = raw[max((b for b in boundaries if b <= cut), default=0):cut]
        padding = len(tail) < 8 and not tail.translate(None, b"\x00\xff")
        assert isinstance(result, eventlog.EventLog) == (cut >= boundaries[0] and padding), cut


@FUZZ
@given(st.binary(max_size=256))
def test_random_device_paths_parse_or_are_malformed(raw: bytes) -> None:
    def render(data: bytes) -> tuple[str, tuple[str, ...]]:
        path = eventlog.parse_device_path(data)
        return path.text(), path.trustee_texts()
    outcome(render, raw)
    outcome(render, raw + _node(0x7F, 0xFF, b""))


@FUZZ
@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=128))
def test_any_event_type_with_any_data_is_details_or_malformed(event_type: int,
                                                              data: bytes) -> None:
    outcome(lambda d: eventlog.event_details(event_type, d).to_json(), data)
    for known in (0x80000003, 0x80000001, 0x8000000A, 0x8000000B, 6, 3):
        outcome(lambda d, t=known: eventlog.event_details(t, d).to_json(), data)


def test_a_log_at_the_event_bound_is_quick() -> None:
    one = struct.pack("<IIIH32sI", 1, 4, 1, 0x0B, bytes(32), 0)
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBIHHB", 0, 0, 2, 0, 2, 1, 0x0B, 32, 0)
    header = struct.pack("<II20sI", 0, 3, bytes(20), len(spec)) + spec
    at_bound = header + one * (eventlog.MAX_EVENTS - 1)
    log = outcome(use_log, at_bound)
    assert isinstance(log, eventlog.EventLog) and len(log.events) == eventlog.MAX_EVENTS
    assert isinstance(outcome(use_log, at_bound + one), MalformedEvidenceError)


# --- CCEL -------------------------------------------------------------------------------------

CCEL_TABLE = _corpus(*CCEL_DIR, "ccel_table.dat")


@FUZZ
@given(st.binary(max_size=80))
def test_random_ccel_tables_are_malformed(raw: bytes) -> None:
    outcome(ccel.parse_ccel_table, raw)


@pytest.mark.skipif(CCEL_TABLE is None or REAL_CCEL is None, reason="corpus absent")
@FUZZ
@given(st.data())
def test_mutated_ccel_tables_and_logs_are_typed_errors(data: st.DataObject) -> None:
    assert CCEL_TABLE is not None and REAL_CCEL is not None
    outcome(ccel.parse_ccel_table, data.draw(mutated([CCEL_TABLE])))
    rtmrs, _ = ccel.replay_rtmrs(REAL_CCEL)
    raw = data.draw(mutated([REAL_CCEL[:20_000]]))
    outcome(lambda r: ccel.replay_rtmrs(use_log(r)), raw)
    start = time.perf_counter()
    with contextlib.suppress(MalformedEvidenceError, BindingError):
        ccel.verify_event_log(raw, rtmrs)
    assert time.perf_counter() - start < TIME_LIMIT


# --- TDVF images ------------------------------------------------------------------------------


def seed_image() -> bytes:
    size, cfv = 0x30000, 0x10000
    image = bytearray(hashlib.shake_256(b"fuzz tdvf").digest(size))
    sections = [(cfv, size - cfv, (1 << 32) - (size - cfv), size - cfv, 0, 1),
                (0, cfv, (1 << 32) - size, cfv, 1, 0), (0, 0, 0x809000, 0x2000, 2, 0),
                (0, 0, 0x800000, 0x6000, 3, 0)]
    descriptor = b"TDVF" + struct.pack("<III", 16 + 32 * len(sections), 1, len(sections))
    descriptor += b"".join(struct.pack("<IIQQII", *s) for s in sections)
    at = size - 0x800
    image[at:at + len(descriptor)] = descriptor
    entry = struct.pack("<IH", size - at, 22) + measure.TDX_METADATA_OFFSET_GUID.bytes_le
    table = entry + struct.pack("<H", len(entry) + 18) + measure.TABLE_FOOTER_GUID.bytes_le
    image[size - 32 - len(table):size - 32] = table
    return bytes(image)


def measure_both(raw: bytes) -> tuple[bytes, bytes]:
    return (measure.measure(raw).mr_td, measure.measure(raw, order="two-pass").mr_td)


def test_the_image_seed_is_valid() -> None:
    assert isinstance(outcome(measure_both, seed_image()), tuple)


@st.composite
def mutated_image(draw: st.DrawFn) -> bytes:
    """The seed with bytes replaced in its metadata (the descriptor, the GUIDed table) or
    anywhere, or cut short."""
    raw = bytearray(seed_image())
    hot = (len(raw) - 0x800, len(raw) - 0x800 + 16 + 32 * 4), (len(raw) - 0x80, len(raw))
    for _ in range(draw(st.integers(1, 6))):
        lo, hi = draw(st.sampled_from((*hot, (0, len(raw)))))
        raw[draw(st.integers(lo, hi - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del raw[draw(st.integers(0, len(raw))):]
    return bytes(raw)


@FUZZ
@given(mutated_image())
def test_mutated_images_are_measured_or_malformed(raw: bytes) -> None:
    outcome(measure_both, raw)


@FUZZ
@given(st.binary(max_size=1024))
def test_random_images_are_malformed(raw: bytes) -> None:
    assert isinstance(outcome(measure_both, raw), MalformedEvidenceError)


def test_an_image_at_the_page_bound_is_quick() -> None:
    raw = bytearray(seed_image())
    at = len(raw) - 0x800 + 16 + 32 * 3  # the TEMP_MEM section
    raw[at:at + 32] = struct.pack("<IIQQII", 0, 0, 0x1_0000_0000,
                                  (measure.MAX_ADDED_PAGES - 64) * 0x1000, 3, 0)
    assert isinstance(outcome(measure_both, bytes(raw)), tuple)
