"""Text encodings of bytes, written once: base64 and base64url (padded or not), hex.

Standard library (DESIGN.md, layer "errors, common types"), and one codec beside it: strict
base64 decoding goes through pybase64 (a C decoder, 10-20x faster than ``binascii`` on the
kilobytes of a quote or event log) when it is importable, with the same strictness; the
``binascii`` path stays as the fallback, and tests hold the two to the same answers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Final

_HEX_RE: Final = re.compile(rb"\A(?:0[xX])?[0-9a-fA-F]+\Z")
_B64_RE: Final = re.compile(rb"\A[A-Za-z0-9+/_-]+={0,2}\Z")
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_WS: Final = re.compile(rb"\s+")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes | None:
    """Strict base64url, padded or not; None when ``text`` is anything else."""
    if not isinstance(text, str) or not _B64URL_RE.fullmatch(text.rstrip("=")):
        return None
    body = text.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None


def b64decode_any(text: bytes | str) -> bytes | None:
    """Decode standard or URL-safe base64, padded or not; None if it is neither."""
    try:
        raw = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError:
        return None
    alt = raw.strip().translate(_URLSAFE_TO_STANDARD).rstrip(b"=")
    if len(alt) % 4 == 1:
        return None
    try:
        return _strict_b64decode(alt + b"=" * (-len(alt) % 4))
    except (binascii.Error, ValueError):
        return None


def _binascii_strict(data: bytes) -> bytes:
    """Only the alphabet, padding only at the end (C speed, unlike ``validate=True``)."""
    return binascii.a2b_base64(data, strict_mode=True)


def _strict_decoder() -> Callable[[bytes], bytes]:
    try:
        import pybase64  # noqa: PLC0415 - the fallback needs the import to be able to fail
    except ImportError:   # pragma: no cover - pybase64 is a dependency; the fallback is tested
        return _binascii_strict

    def decode(data: bytes) -> bytes:
        # pybase64's validate=True refuses characters outside the alphabet and misplaced
        # padding, as binascii's strict mode does; input here is always padded to a multiple
        # of 4 by the caller.
        return pybase64.b64decode(data, validate=True)

    return decode


_strict_b64decode: Final = _strict_decoder()
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def is_hex_text(text: bytes) -> bool:
    """Hex digits (optional ``0x``), an even number of them."""
    return bool(_HEX_RE.match(text)) and len(text.removeprefix(b"0x").removeprefix(b"0X")) % 2 == 0


def decode_text_bytes(text: bytes) -> bytes | None:
    """Decode hex (optional ``0x``, whitespace ignored) or base64/base64url text; else None."""
    compact = _WS.sub(b"", text)
    if not compact:
        return None
    if is_hex_text(compact):
        digits = compact[2:] if compact[:2] in (b"0x", b"0X") else compact
        return bytes.fromhex(digits.decode())
    if _B64_RE.match(compact):
        return b64decode_any(compact)
    return None


def compact(text: bytes) -> bytes:
    """``text`` without white space."""
    return _WS.sub(b"", text)


__all__ = ["b64decode_any", "b64url", "b64url_decode", "compact", "decode_text_bytes",
           "is_hex_text"]
