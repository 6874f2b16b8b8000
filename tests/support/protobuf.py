"""A minimal protobuf encoder for tests, written apart from the emulators' (it writes zero
varints too, as Go's encoder does for map keys)."""

from __future__ import annotations


def _varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def pb(number: int, value: bytes | int) -> bytes:
    """Field ``number``: a varint for an int, length-delimited for bytes."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value
