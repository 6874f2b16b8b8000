"""The base64 decoder: pybase64's strict path gives binascii's strict answers on any input."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee import encoding

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n!\x00\xff"


def _outcome(decode, data: bytes) -> bytes | str:  # type: ignore[no-untyped-def]
    try:
        return bytes(decode(data))
    except (binascii.Error, ValueError):
        return "error"


@settings(max_examples=600)
@given(st.one_of(
    st.binary(max_size=64),
    st.text(alphabet=_ALPHABET, max_size=64).map(lambda t: t.encode("latin-1")),
    st.binary(max_size=96).map(base64.b64encode),
    st.binary(max_size=96).map(lambda b: base64.b64encode(b)[:-1]),
))
def test_fast_and_fallback_decoders_agree(data: bytes) -> None:
    """On every input b64decode_any hands them: trailing padding stripped, then restored to
    a multiple of 4."""
    body = data.rstrip(b"=")
    padded = body + b"=" * (-len(body) % 4)
    assert _outcome(encoding._strict_b64decode, padded) == _outcome(
        encoding._binascii_strict, padded)


@given(st.binary(max_size=4096))
def test_round_trip_standard_and_urlsafe(raw: bytes) -> None:
    assert encoding.b64decode_any(base64.b64encode(raw)) == raw
    assert encoding.b64decode_any(base64.urlsafe_b64encode(raw).rstrip(b"=").decode()) == raw


@pytest.mark.parametrize("text", [b"QUJD=QUJD", b"QU JD", b"QUJD!", b"Q", b"QUJ\x00", "QUJ\udc80"])
def test_refused(text: bytes | str) -> None:
    assert encoding.b64decode_any(text) is None


def test_the_fast_decoder_is_in_use() -> None:
    assert encoding._strict_b64decode is not encoding._binascii_strict
