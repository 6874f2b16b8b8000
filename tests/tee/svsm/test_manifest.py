"""SVSM service manifests: the GUID table round-trips, its defects are refused, and the
REPORT_DATA binding is SHA-512(nonce ‖ manifest)."""

from __future__ import annotations

import contextlib
import hashlib
import struct
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    MisuseError,
    UnsupportedVersionError,
)
from veritee.tee.svsm import manifest as m

OTHER = uuid.UUID("a4453a59-0000-4000-8000-000000000000")
ENTRIES = [(m.VTPM_GUID, b"ek-public-area"), (OTHER, b""), (uuid.uuid4(), b"third")]


def test_header_bytes_are_little_endian_guid() -> None:
    table = m.build_services_manifest(ENTRIES[:1])
    assert table[:16] == bytes.fromhex("bb9e8463923d7046a1ff58f9c94b87bb")
    assert struct.unpack_from("<II", table, 16) == (len(table), 1)
    assert table[24:40] == bytes.fromhex("ebf176c42301a545" "9641b4e7dde5bfe3")
    assert struct.unpack_from("<II", table, 40) == (48, len(b"ek-public-area"))


@pytest.mark.parametrize("count", [0, 1, 3])
def test_round_trip(count: int) -> None:
    table = m.build_services_manifest(ENTRIES[:count])
    parsed = m.parse_services_manifest(table)
    assert [(e.guid, e.data) for e in parsed.entries] == ENTRIES[:count]
    assert parsed.raw == table
    assert m.build_services_manifest([(e.guid, e.data) for e in parsed.entries]) == table


def test_get() -> None:
    parsed = m.parse_services_manifest(m.build_services_manifest(ENTRIES))
    assert parsed.get(m.VTPM_GUID) == b"ek-public-area"
    assert parsed.get(OTHER) == b""
    assert parsed.get(uuid.UUID(int=0)) is None


def _patch(at: int, value: bytes) -> Callable[[bytes], bytes]:
    return lambda t: t[:at] + value + t[at + len(value):]


DEFECTS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("empty", lambda t: b""),
    ("header_cut", lambda t: t[:23]),
    ("wrong_guid", _patch(0, bytes(16))),
    ("total_length_short", _patch(16, struct.pack("<I", 10))),
    ("total_length_long", lambda t: t + b"x"),
    ("count_too_large", _patch(20, struct.pack("<I", 1000))),
    ("offset_into_entry_list", _patch(24 + 16, struct.pack("<I", 24))),
    ("length_past_end", _patch(24 + 20, struct.pack("<I", 10_000))),
    ("offset_overflow", _patch(24 + 16, struct.pack("<I", 0xFFFFFFFF))),
    ("duplicate_guid", _patch(48, m.VTPM_GUID.bytes_le)),
]


@pytest.mark.parametrize(("name", "mutate"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_defects_refused(name: str, mutate: Callable[[bytes], bytes]) -> None:
    table = m.build_services_manifest(ENTRIES)
    with pytest.raises(MalformedEvidenceError):
        m.parse_services_manifest(mutate(table))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_only_typed_errors(data: bytes) -> None:
    table = m.build_services_manifest(ENTRIES)
    for blob in (data, table[:24] + data, table[: len(data) % len(table)] + data):
        with contextlib.suppress(MalformedEvidenceError):
            m.parse_services_manifest(blob)


def test_vtpm_manifest_versions() -> None:
    assert m.vtpm_ek_public(b"ek", 0) == b"ek"
    with pytest.raises(UnsupportedVersionError):
        m.vtpm_ek_public(b"ek", 1)
    with pytest.raises(MalformedEvidenceError):
        m.vtpm_ek_public(b"", 0)


def test_binding() -> None:
    nonce, blob = bytes(range(64)), b"manifest"
    expected = hashlib.sha512(nonce + blob).digest()
    assert m.expected_report_data(nonce, blob) == expected
    m.check_report_data(expected, nonce=nonce, manifest=blob)
    for report_data, n, b in [(expected, bytes(64), blob), (expected, nonce, b"other"),
                              (bytes(64), nonce, blob), (expected[:32], nonce, blob)]:
        with pytest.raises(BindingError):
            m.check_report_data(report_data, nonce=n, manifest=b)


@pytest.mark.parametrize("size", [0, 32, 48, 63, 65])
def test_nonce_must_be_64_bytes(size: int) -> None:
    with pytest.raises(MisuseError):
        m.expected_report_data(bytes(size), b"manifest")
