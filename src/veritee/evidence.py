"""Evidence as users hold it: raw bytes, hex text, base64/base64url text or JSON.

:func:`decode_evidence` turns the bytes of one file (or one HTTP field) into an
:class:`Evidence` without knowing which TEE produced it; each TEE's evidence adapter then
reads the binary or the JSON form it understands. Nothing here verifies anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from veritee.encoding import b64decode_any, b64url, compact, decode_text_bytes, is_hex_text
from veritee.errors import MalformedEvidenceError

Form = Literal["raw", "hex", "base64", "json"]

#: Evidence larger than this is refused before any parsing (the largest real evidence,
#: an Azure vTPM bundle with a GPU, is well below 1 MiB).
MAX_EVIDENCE_BYTES = 4 * 1024 * 1024


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
            form: Form = "hex" if is_hex_text(compact(stripped)) else "base64"
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


# -- JSON fields and the envelopes every TEE shares ---------------------------------------------

#: Wrappers (``primary_evidence``, ``quote``, ...) nest at most this deep.
MAX_JSON_DEPTH = 8


def json_bytes(value: Any, name: str, size: int | None = None) -> bytes:
    """Bytes from a JSON value: base64/base64url/hex text, PEM text, or a list of byte values.

    Text that reads both as hex and as base64 is taken as hex, unless only the base64
    reading has the ``size`` the field needs.

    Raises:
        MalformedEvidenceError: the value is none of these.
    """
    if isinstance(value, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
            raise MalformedEvidenceError(f"{name}: a byte list holds a value outside 0..255")
        return bytes(value)
    if isinstance(value, str):
        try:
            text = value.strip().encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedEvidenceError(f"{name} holds non-ASCII text") from exc
        if text.startswith(b"-----BEGIN"):
            return text
        decoded = decode_text_bytes(text) if is_hex_text(text) else None
        if decoded is None or (size is not None and len(decoded) != size):
            decoded = b64decode_any(text) or decoded
        if decoded is None:
            raise MalformedEvidenceError(f"{name} is neither base64 nor hex text")
        return decoded
    raise MalformedEvidenceError(
        f"{name} must be a string or a byte list, got {type(value).__name__}")


def maybe_json_text(value: Any, name: str) -> Any:
    """``value`` parsed when it is a JSON object written as a string (KBS wrappers do that)."""
    if isinstance(value, str) and value.lstrip()[:1] == "{":
        try:
            return json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise MalformedEvidenceError(f"{name} is not valid JSON: {exc}") from exc
    return value


def unwrap_primary(document: Any) -> Any:
    """The evidence inside KBS ``{"primary_evidence": ...}`` wrappers (any depth up to
    :data:`MAX_JSON_DEPTH`; a wrapped JSON string is parsed)."""
    for _ in range(MAX_JSON_DEPTH):
        if not (isinstance(document, Mapping) and "primary_evidence" in document):
            return document
        document = maybe_json_text(document["primary_evidence"], "primary_evidence")
    raise MalformedEvidenceError(
        f"evidence nests more than {MAX_JSON_DEPTH} primary_evidence wrappers deep")


@dataclass(frozen=True)
class TsmReport:
    """Linux configfs-tsm output as tools store it: ``{"outblob", "auxblob", "provider"}``
    (base64 or base64url blobs; Documentation/ABI/testing/configfs-tsm-report)."""

    outblob: bytes
    auxblob: bytes
    provider: str

    @classmethod
    def from_json(cls, document: Mapping[str, Any], *, provider: str) -> TsmReport:
        """Read the JSON form; a ``provider`` other than the TEE driver's is refused.

        Raises:
            MalformedEvidenceError: a blob does not decode or the provider is another TEE's.
        """
        named = document.get("provider")
        if isinstance(named, str) and named.strip() not in (provider, ""):
            raise MalformedEvidenceError(
                f"configfs-tsm provider is {named.strip()!r}, not {provider!r}")
        aux = document.get("auxblob")
        return cls(json_bytes(document.get("outblob"), "outblob"),
                   json_bytes(aux, "auxblob") if aux else b"", provider)

    def to_json(self) -> dict[str, str]:
        """The JSON form (base64url blobs; ``auxblob`` only when the kernel returned one)."""
        document = {"outblob": b64url(self.outblob), "provider": self.provider}
        if self.auxblob:
            document["auxblob"] = b64url(self.auxblob)
        return document
