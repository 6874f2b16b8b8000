"""Bad quote bytes of every kind give a malformed-evidence error (STYLE §8): random bytes, random
tails behind a valid prefix, overwritten, inserted and deleted bytes, random length fields, and
every single-bit flip — where the flipped field decides the error, the exact error kind.

A mutation may also leave a quote that parses (a flip in a hash, a signature or the PEM text):
then it must round-trip, and its bytes are the mutated ones.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, manifest
from veritee.errors import MalformedEvidenceError, UnsupportedVersionError
from veritee.evidence import decode_evidence
from veritee.tee.dcap.quote import (
    BODY_SGX,
    BODY_TD10,
    BODY_TD15,
    CERT_PCK_CHAIN,
    HEADER,
    INTEL_QE_VENDOR_ID,
    SGX_REPORT,
    SUPPORTED_VERSIONS,
    TD_REPORT_10,
    TD_REPORT_15,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    Quote,
    build_quote,
    build_signature_data,
    pack_fields,
    parse_quote,
)

FUZZ = settings(deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@functools.cache
def synthetic(version: int = 4, body_type: int = BODY_TD10) -> bytes:
    """A well-formed (unsigned) quote."""
    tee = TEE_TYPE_SGX if body_type == BODY_SGX else TEE_TYPE_TDX
    header = pack_fields(HEADER, {"version": version, "att_key_type": 2, "tee_type": tee,
                                  "qe_vendor_id": INTEL_QE_VENDOR_ID})
    table = {BODY_SGX: SGX_REPORT, BODY_TD10: TD_REPORT_10, BODY_TD15: TD_REPORT_15}[body_type]
    body = pack_fields(table, {"report_data": b"\x5a" * 64})
    signature_data = build_signature_data(
        version=version, signature=b"\x01" * 64, attestation_key=b"\x02" * 64,
        qe_report=pack_fields(SGX_REPORT, {}), qe_report_signature=b"\x03" * 64,
        qe_auth_data=bytes(range(32)), certification=CertificationData(CERT_PCK_CHAIN, PEM))
    return build_quote(header, body, signature_data)


SHAPES = [(3, BODY_SGX), (4, BODY_TD10), (4, BODY_SGX), (5, BODY_SGX), (5, BODY_TD10),
          (5, BODY_TD15)]


def _corpus_quotes() -> list[bytes]:
    entries = [e for e in manifest("intel") if "version" in (e.get("expected") or {})]
    return [decode_evidence((CORPUS / "intel" / e["file"]).read_bytes()).data
            for e in entries if (CORPUS / "intel" / e["file"]).is_file()]


#: Real quotes when the corpus is present, synthetic ones always.
QUOTES = [synthetic(*shape) for shape in SHAPES] + _corpus_quotes()


def outcome(data: bytes) -> Quote | MalformedEvidenceError:
    """The quote, or the malformed-evidence error; any other exception fails the test. A quote
    that parses round-trips to the bytes it was read from."""
    try:
        quote = parse_quote(data)
    except MalformedEvidenceError as exc:
        assert exc.detail, "an error without a message"
        return exc
    assert quote.to_bytes() == quote.raw == data[: len(quote.raw)]
    assert len(quote.raw) + quote.trailing_bytes == len(data)
    return quote


# -- random bytes ----------------------------------------------------------------------------------

LENGTHS = (0, 1, 2, 4, 8, 47, 48, 49, 54, 432, 436, 632, 636, 702, 706, 1020, 1026, 1500, 5006)


@FUZZ
@given(st.sampled_from(LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_random_bytes_of_interesting_lengths(blob: bytes) -> None:
    outcome(blob)


@FUZZ
@given(st.sampled_from(range(len(QUOTES))), st.integers(0, 800), st.binary(max_size=2000))
def test_random_tail_behind_a_valid_prefix(index: int, keep: int, tail: bytes) -> None:
    outcome(QUOTES[index][:keep] + tail)


@FUZZ
@given(st.sampled_from(range(len(QUOTES))), st.data())
def test_overwritten_bytes(index: int, data: st.DataObject) -> None:
    mutated = bytearray(QUOTES[index])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    outcome(bytes(mutated))


@FUZZ
@given(st.sampled_from(range(len(QUOTES))), st.data())
def test_inserted_and_deleted_bytes(index: int, data: st.DataObject) -> None:
    quote = QUOTES[index]
    at = data.draw(st.integers(0, len(quote)))
    cut = data.draw(st.integers(0, 64))
    insert = data.draw(st.binary(max_size=64))
    result = outcome(quote[:at] + insert + quote[at + cut :])
    if isinstance(result, Quote) and len(result.raw) <= at:
        assert result.raw == quote[: len(result.raw)]  # the change fell in the trailing bytes


# -- length fields ---------------------------------------------------------------------------------


def _length_fields(data: bytes) -> list[tuple[int, str]]:
    """``(offset, struct format)`` of every length field of a well-formed quote."""
    quote = parse_quote(data)
    sig = quote.signed_length + 4
    wrapped = quote.signature_data.wrapped
    qe = sig + 128 + (6 if wrapped else 0)
    auth = qe + 448
    inner = auth + 2 + len(quote.signature_data.qe.qe_auth_data)
    fields = [(quote.signed_length, "<I"), (auth, "<H"), (inner + 2, "<I")]
    if wrapped:
        fields.append((sig + 130, "<I"))
    if quote.version == 5:
        fields.append((50, "<I"))
    return fields


@FUZZ
@given(st.sampled_from(range(len(QUOTES))), st.data())
def test_random_length_fields_are_malformed(index: int, data: st.DataObject) -> None:
    quote = QUOTES[index]
    offset, fmt = data.draw(st.sampled_from(_length_fields(quote)))
    old = struct.unpack_from(fmt, quote, offset)[0]
    limit = 0xFFFF if fmt == "<H" else 0xFFFFFFFF
    value = data.draw(st.integers(0, limit).filter(lambda v: v != old))
    mutated = bytearray(quote)
    struct.pack_into(fmt, mutated, offset, value)
    result = outcome(bytes(mutated))
    assert type(result) is MalformedEvidenceError, (offset, value, result)


# -- every single-bit flip -------------------------------------------------------------------------


def _regions(data: bytes) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of a well-formed quote: which check a flip inside meets."""
    quote = parse_quote(data)
    sig = quote.signed_length + 4
    wrapped = quote.signature_data.wrapped
    qe = sig + 128 + (6 if wrapped else 0)
    auth = qe + 448
    inner = auth + 2 + len(quote.signature_data.qe.qe_auth_data)
    regions = [(0, 2, "version"), (2, 4, "att_key_type"), (4, 8, "tee_type"), (8, 48, "free")]
    if quote.version == 5:
        regions += [(48, 50, "body_type"), (50, 54, "malformed")]
    regions += [(quote.body_offset, quote.signed_length, "free"),
                (quote.signed_length, sig, "malformed"), (sig, sig + 128, "free")]
    if wrapped:
        regions.append((sig + 128, qe, "malformed"))
    regions += [(qe, auth, "free"), (auth, auth + 2, "malformed"), (auth + 2, inner, "free"),
                (inner, inner + 2, "inner_type"), (inner + 2, inner + 6, "malformed"),
                (inner + 6, len(quote.raw), "free")]
    return regions


def _expected(kind: str, data: bytes, start: int) -> type[Exception] | None:
    """The exact error a flip in a region of ``kind`` gives (None: the quote still parses;
    MalformedEvidenceError for a version flip that lands on another supported version, which
    then fails on the lengths)."""
    if kind in ("free", "malformed", "tee_type"):
        return None if kind == "free" else MalformedEvidenceError
    value = struct.unpack_from("<H", data, start)[0]
    if kind == "version":
        return MalformedEvidenceError if value in SUPPORTED_VERSIONS else UnsupportedVersionError
    if kind == "att_key_type":
        return UnsupportedVersionError if value in (0, 3) else MalformedEvidenceError
    if kind == "body_type":
        return MalformedEvidenceError if value in (1, 2, 3) else UnsupportedVersionError
    return None if value in (1, 2, 3, 4) else MalformedEvidenceError  # inner_type


@pytest.mark.parametrize(("version", "body_type"), SHAPES)
def test_every_bit_flip_gives_the_error_of_its_field(version: int, body_type: int) -> None:
    quote = synthetic(version, body_type)
    for start, end, kind in _regions(quote):
        for bit in range(start * 8, end * 8):
            flipped = bytearray(quote)
            flipped[bit // 8] ^= 1 << (bit % 8)
            expected = _expected(kind, bytes(flipped), start)
            result = outcome(bytes(flipped))
            if expected is None:
                assert isinstance(result, Quote), (kind, bit // 8, bit % 8, result)
            elif kind == "version" and expected is MalformedEvidenceError:
                assert isinstance(result, MalformedEvidenceError), (bit, result)
            else:
                assert type(result) is expected, (kind, bit // 8, bit % 8, result)


@pytest.mark.parametrize("index", range(len(QUOTES)))
def test_every_bit_flip_of_the_header_of_each_quote(index: int) -> None:
    quote = QUOTES[index]
    for bit in range(8 * 8):
        flipped = bytearray(quote)
        flipped[bit // 8] ^= 1 << (bit % 8)
        result = outcome(bytes(flipped))
        assert isinstance(result, MalformedEvidenceError), bit
        if bit < 16:
            version = struct.unpack_from("<H", flipped)[0]
            if version not in SUPPORTED_VERSIONS:
                assert type(result) is UnsupportedVersionError, bit


def test_the_corpus_or_its_absence_is_visible() -> None:
    entries: list[dict[str, Any]] = [e for e in manifest("intel")
                                     if "version" in (e.get("expected") or {})]
    if not entries:
        pytest.skip("corpus folder intel is absent (set VERITEE_CORPUS): synthetic quotes only")
    assert len(QUOTES) == len(SHAPES) + len(entries)
