"""Evidence as users hold it: raw bytes, hex text, base64/base64url text or JSON.

:func:`decode_evidence` turns the bytes of one file (or one HTTP field) into an
:class:`Evidence` without knowing which TEE produced it; each TEE's evidence adapter then
reads the binary or the JSON form it understands. Nothing here verifies anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from veritee.errors import MalformedEvidenceError

Form = Literal["raw", "hex", "base64", "json"]

#: Evidence larger than this is refused before any parsing (the largest real evidence,
#: an Azure vTPM bundle with a GPU, is well below 1 MiB).
MAX_EVIDENCE_BYTES = 4 * 1024 * 1024

_HEX_RE = re.compile(rb"\A(?:0[xX])?[0-9a-fA-F]+\Z")
_B64_RE = re.compile(rb"\A[A-Za-z0-9+/_-]+={0,2}\Z")
_WS = re.compile(rb"\s+")


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence after its outer text encoding was removed."""

    data: bytes
    """The binary evidence (for ``form == "json"``: the UTF-8 JSON text)."""
    form: Form
    json: Any = field(default=None, compare=False)
    """The decoded JSON document when ``form == "json"``."""

    @classmethod
    def from_json(cls, document: Any) -> Evidence:
        """Wrap an already parsed JSON document (for example a field of a KBS request)."""
        if isinstance(document, str):
            try:
                return decode_evidence(document.encode())
            except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\\ud800")
                raise MalformedEvidenceError("evidence text is not valid Unicode") from exc
        try:
            text = json.dumps(document, separators=(",", ":")).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise MalformedEvidenceError(f"evidence is not a JSON document: {exc}") from exc
        return cls(data=text, form="json", json=document)


def decode_text_bytes(text: bytes) -> bytes | None:
    """Decode hex (optional ``0x``, whitespace ignored) or base64/base64url text; else None."""
    compact = _WS.sub(b"", text)
    if not compact:
        return None
    if _HEX_RE.match(compact) and len(compact.removeprefix(b"0x").removeprefix(b"0X")) % 2 == 0:
        digits = compact[2:] if compact[:2] in (b"0x", b"0X") else compact
        return bytes.fromhex(digits.decode())
    if _B64_RE.match(compact):
        return b64decode_any(compact)
    return None


def b64decode_any(text: bytes | str) -> bytes | None:
    """Decode standard or URL-safe base64, padded or not; None if it is neither."""
    raw = text.encode() if isinstance(text, str) else text
    raw = raw.strip()
    alt = raw.replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    if len(alt) % 4 == 1:
        return None
    try:
        return base64.b64decode(alt + b"=" * (-len(alt) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_evidence(blob: bytes) -> Evidence:
    """Recognise the outer form of ``blob`` and strip it.

    Raises:
        MalformedEvidenceError: the blob is empty or larger than :data:`MAX_EVIDENCE_BYTES`.
    """
    if not blob:
        raise MalformedEvidenceError("evidence is empty")
    if len(blob) > MAX_EVIDENCE_BYTES:
        raise MalformedEvidenceError(
            f"evidence is {len(blob)} bytes, more than the limit of {MAX_EVIDENCE_BYTES}"
        )
    stripped = blob.strip()
    if stripped[:1] in (b"{", b"["):
        try:
            document = json.loads(stripped)
        except (ValueError, RecursionError):  # not JSON (or nested beyond reading)
            document = None
        if document is not None:
            return Evidence(data=stripped, form="json", json=document)
    if _is_text(stripped):
        decoded = decode_text_bytes(stripped)
        if decoded is not None:
            compact = _WS.sub(b"", stripped)
            form: Form = "hex" if _HEX_RE.match(compact) else "base64"
            return Evidence(data=decoded, form=form)
    return Evidence(data=blob, form="raw")


def _is_text(blob: bytes) -> bool:
    try:
        text = blob.decode("ascii")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c.isspace() for c in text)


# -- protobuf text format (Project Oak stores evidence and endorsements this way) --------------

_TEXT_ESCAPES = {ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9,
                 ord("v"): 11, ord("\\"): 92, ord("'"): 39, ord('"'): 34, ord("?"): 63}
_OCTAL = frozenset(b"01234567")
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


def textproto_bytes(text: bytes, field: str) -> list[bytes]:
    """The values of every ``field: "..."`` in protobuf text format, unescaped.

    Adjacent quoted strings concatenate, as the format defines.

    Raises:
        MalformedEvidenceError: a string is unterminated or holds a bad escape.
    """
    pattern = re.compile(rb"(?<![\w.])" + re.escape(field.encode()) + rb"\s*:\s*")
    values: list[bytes] = []
    for match in pattern.finditer(text):
        pos = match.end()
        chunks: list[bytes] = []
        while pos < len(text) and text[pos] in b"\"'":
            chunk, pos = _unquote(text, pos)
            chunks.append(chunk)
            while pos < len(text) and text[pos] in b" \t\r\n":
                pos += 1
        if chunks:
            values.append(b"".join(chunks))
    return values


def _unquote(text: bytes, start: int) -> tuple[bytes, int]:
    quote = text[start]
    out = bytearray()
    pos = start + 1
    while pos < len(text) and text[pos] != 0x0A:
        byte = text[pos]
        if byte == quote:
            return bytes(out), pos + 1
        if byte == 0x5C and pos + 1 < len(text):  # a backslash escape
            value, pos = _escape(text, pos + 1)
            out.append(value)
        else:
            out.append(byte)
            pos += 1
    raise MalformedEvidenceError("unterminated string in protobuf text")


def _escape(text: bytes, pos: int) -> tuple[int, int]:
    """The byte an escape stands for (``pos`` is just after the backslash), and where the
    text goes on."""
    code = text[pos]
    if code in _OCTAL:
        end = pos
        while end < len(text) and end < pos + 3 and text[end] in _OCTAL:
            end += 1
        value = int(text[pos:end], 8)
        if value > 255:
            raise MalformedEvidenceError(
                f"octal escape \\{text[pos:end].decode()} exceeds a byte")
        return value, end
    if code in b"xX":
        end = pos + 1
        while end < len(text) and end < pos + 3 and text[end] in _HEXDIGITS:
            end += 1
        if end == pos + 1:
            raise MalformedEvidenceError("\\x escape without hex digits in protobuf text")
        return int(text[pos + 1:end], 16), end
    if code in _TEXT_ESCAPES:
        return _TEXT_ESCAPES[code], pos + 1
    raise MalformedEvidenceError(f"unknown escape \\{chr(code)} in protobuf text")
