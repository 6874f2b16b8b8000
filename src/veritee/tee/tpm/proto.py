"""A small, strict protobuf wire-format reader, and go-tpm-tools' attestation messages read
by field number.

Wire format (protobuf "Encoding" guide): a message is a run of ``tag`` varints
(``field_number << 3 | wire_type``) each followed by its value — wire type 0 a varint, 1 eight
bytes, 2 a varint length and that many bytes, 5 four bytes; 3 and 4 (groups) are refused.
Varints are at most 10 bytes. Strict where protobuf is lenient: a singular field that occurs
twice, a field of the wrong wire type, and a map key that occurs twice are malformed (two
readers could otherwise see two different messages). Unknown fields are skipped.

go-tpm-tools messages (google/go-tpm-tools ``proto/attest.proto``, ``proto/tpm.proto``):

- ``attest.Attestation``: 1 ``ak_pub`` (TPMT_PUBLIC), 2 ``quotes`` (repeated ``tpm.Quote``),
  3 ``event_log`` (raw TCG log), 4 ``instance_info`` (``GCEInstanceInfo``),
  5 ``canonical_event_log``, 6 ``ak_cert`` (DER), 7 ``intermediate_certs`` (repeated DER),
  oneof ``tee_attestation``: 8 ``sev_snp_attestation``, 9 ``tdx_attestation``.
- ``tpm.Quote``: 1 ``quote`` (TPMS_ATTEST), 2 ``raw_sig`` (TPMT_SIGNATURE), 3 ``pcrs``.
- ``tpm.PCRs``: 1 ``hash`` (``HashAlgo``, the TPM_ALG_ID), 2 ``pcrs``
  (``map<uint32, bytes>``: entries with key 1 and value 2).
- ``GCEInstanceInfo``: 1 zone, 2 project_id, 3 project_number, 4 instance_name,
  5 instance_id.

The SVSM room reads ``SevSnpSvsmAttestation`` with :func:`read_message` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from veritee.errors import MalformedEvidenceError

WIRE_VARINT: Final = 0
WIRE_I64: Final = 1
WIRE_LEN: Final = 2
WIRE_I32: Final = 5
_WIRE_NAMES: Final = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start group",
                      4: "end group", 5: "32-bit"}
MAX_VARINT_BYTES: Final = 10
#: A message larger than this is refused (a GCE attestation with its log is ~50 KiB).
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
#: Fields one message may hold.
MAX_FIELDS: Final = 4096
#: How deep :func:`read_message` callers may nest (checked by :class:`Message.message`).
MAX_DEPTH: Final = 8

Value = int | bytes


def read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """The varint at ``pos`` and the offset after it.

    Raises:
        MalformedEvidenceError: it runs past the end or past 10 bytes, or exceeds 64 bits.
    """
    value = 0
    for n in range(MAX_VARINT_BYTES):
        if pos + n >= len(data):
            raise MalformedEvidenceError(f"{what}: a varint runs past the end at byte {pos + n}")
        byte = data[pos + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            if value >> 64:
                raise MalformedEvidenceError(f"{what}: a varint at byte {pos} exceeds 64 bits")
            return value, pos + n + 1
    raise MalformedEvidenceError(f"{what}: a varint at byte {pos} is longer than 10 bytes")


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message: {field number: [(wire type, value), ...]} in wire order."""

    what: str
    fields: Mapping[int, list[tuple[int, Value]]]
    depth: int = 0

    def _values(self, number: int, wire: int, name: str) -> list[Value]:
        found = self.fields.get(number, [])
        for kind, _ in found:
            if kind != wire:
                raise MalformedEvidenceError(
                    f"{self.what}.{name} (field {number}) has wire type {_WIRE_NAMES[kind]}, "
                    f"expected {_WIRE_NAMES[wire]}")
        return [v for _, v in found]

    def _single(self, number: int, wire: int, name: str) -> Value | None:
        values = self._values(number, wire, name)
        if len(values) > 1:
            raise MalformedEvidenceError(
                f"{self.what}.{name} (field {number}) occurs {len(values)} times; it is "
                "singular")
        return values[0] if values else None

    def bytes_field(self, number: int, name: str) -> bytes | None:
        """A singular ``bytes``/``string`` field; None when absent."""
        value = self._single(number, WIRE_LEN, name)
        assert value is None or isinstance(value, bytes)
        return value

    def repeated_bytes(self, number: int, name: str) -> list[bytes]:
        return [v for v in self._values(number, WIRE_LEN, name) if isinstance(v, bytes)]

    def uint(self, number: int, name: str) -> int | None:
        """A singular varint field (uint32/uint64/enum/bool); None when absent."""
        value = self._single(number, WIRE_VARINT, name)
        assert value is None or isinstance(value, int)
        return value

    def message(self, number: int, name: str) -> Message | None:
        raw = self.bytes_field(number, name)
        return None if raw is None else self.child(raw, name)

    def messages(self, number: int, name: str) -> list[Message]:
        return [self.child(raw, f"{name}[{i}]")
                for i, raw in enumerate(self.repeated_bytes(number, name))]

    def child(self, raw: bytes, name: str) -> Message:
        if self.depth + 1 > MAX_DEPTH:
            raise MalformedEvidenceError(f"{self.what}.{name} nests deeper than {MAX_DEPTH}")
        return read_message(raw, f"{self.what}.{name}", depth=self.depth + 1)


def read_message(data: bytes, what: str, *, depth: int = 0) -> Message:
    """Decode one message's fields (not their contents).

    Raises:
        MalformedEvidenceError: it is too large, a tag or length is truncated or out of
            range, a field number is 0, a group or an unknown wire type occurs.
    """
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedEvidenceError(
            f"{what} is {len(data)} bytes, over the limit of {MAX_MESSAGE_BYTES}")
    fields: dict[int, list[tuple[int, Value]]] = {}
    pos, count = 0, 0
    while pos < len(data):
        count += 1
        if count > MAX_FIELDS:
            raise MalformedEvidenceError(f"{what} has more than {MAX_FIELDS} fields")
        tag, pos = read_varint(data, pos, what)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise MalformedEvidenceError(f"{what}: field number {number} is out of range")
        value, pos = _read_value(data, pos, wire, f"{what} field {number}")
        fields.setdefault(number, []).append((wire, value))
    return Message(what, fields, depth)


def _read_value(data: bytes, pos: int, wire: int, what: str) -> tuple[Value, int]:
    if wire == WIRE_VARINT:
        return read_varint(data, pos, what)
    if wire in (WIRE_I64, WIRE_I32):
        size = 8 if wire == WIRE_I64 else 4
        if pos + size > len(data):
            raise MalformedEvidenceError(f"{what}: {size}-byte value runs past the end")
        return int.from_bytes(data[pos:pos + size], "little"), pos + size
    if wire == WIRE_LEN:
        size, pos = read_varint(data, pos, what)
        if size > len(data) - pos:
            raise MalformedEvidenceError(
                f"{what}: length {size} runs past the end ({len(data) - pos} bytes left)")
        return data[pos:pos + size], pos + size
    raise MalformedEvidenceError(
        f"{what} has wire type {wire} ({_WIRE_NAMES.get(wire, 'unknown')}), which is refused")


# -- go-tpm-tools ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoQuote:
    """``tpm.Quote``: TPMS_ATTEST, TPMT_SIGNATURE and the bank's PCR values."""

    quote: bytes
    raw_sig: bytes
    #: ``PCRs.hash``: the TPM_ALG_ID of the bank (0 when absent).
    hash: int
    pcrs: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class GoAttestation:
    """``attest.Attestation``: what the verifier reads of it."""

    ak_pub: bytes
    quotes: tuple[GoQuote, ...]
    event_log: bytes | None = None
    canonical_event_log: bytes | None = None
    ak_cert: bytes | None = None
    intermediate_certs: tuple[bytes, ...] = ()
    #: ``GCEInstanceInfo`` as JSON-ready values, when present.
    instance_info: dict[str, str | int] | None = None
    #: Raw ``sevsnp.Attestation`` and TD quote (``QuoteV4``) messages, when present (not read here).
    sev_snp_attestation: bytes | None = None
    tdx_attestation: bytes | None = None


def parse_pcrs(message: Message) -> tuple[int, dict[int, bytes]]:
    """``tpm.PCRs``: (hash algorithm id, {index: value}).

    Raises:
        MalformedEvidenceError: a map entry lacks its key or value, or a key repeats.
    """
    pcrs: dict[int, bytes] = {}
    for entry in message.messages(2, "pcrs"):
        index, value = entry.uint(1, "key"), entry.bytes_field(2, "value")
        if index is None:
            raise MalformedEvidenceError(f"{entry.what} has no key")
        if index in pcrs:
            raise MalformedEvidenceError(f"{message.what} gives PCR {index} twice")
        pcrs[index] = value if value is not None else b""
    return message.uint(1, "hash") or 0, pcrs


def parse_quote(message: Message) -> GoQuote:
    quote, sig = message.bytes_field(1, "quote"), message.bytes_field(2, "raw_sig")
    if not quote or not sig:
        raise MalformedEvidenceError(f"{message.what} lacks its quote or raw_sig")
    pcrs = message.message(3, "pcrs")
    alg, values = parse_pcrs(pcrs) if pcrs is not None else (0, {})
    return GoQuote(quote, sig, alg, values)


def _instance_info(message: Message | None) -> dict[str, str | int] | None:
    if message is None:
        return None
    out: dict[str, str | int] = {}
    for number, name in ((1, "zone"), (2, "project_id"), (4, "instance_name")):
        raw = message.bytes_field(number, name)
        if raw is not None:
            try:
                out[name] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedEvidenceError(f"{message.what}.{name} is not UTF-8") from exc
    for number, name in ((3, "project_number"), (5, "instance_id")):
        value = message.uint(number, name)
        if value is not None:
            out[name] = value
    return out


def parse_attestation(data: bytes) -> GoAttestation:
    """Decode a go-tpm-tools ``attest.Attestation``.

    Raises:
        MalformedEvidenceError: the bytes are not such a message, or it has no ``ak_pub`` or
            no quote.
    """
    top = read_message(data, "Attestation")
    ak_pub = top.bytes_field(1, "ak_pub")
    quotes = tuple(parse_quote(q) for q in top.messages(2, "quotes"))
    if not ak_pub or not quotes:
        raise MalformedEvidenceError("Attestation has no ak_pub (field 1) or no quotes "
                                     "(field 2)")
    return GoAttestation(
        ak_pub=ak_pub, quotes=quotes, event_log=top.bytes_field(3, "event_log") or None,
        canonical_event_log=top.bytes_field(5, "canonical_event_log") or None,
        ak_cert=top.bytes_field(6, "ak_cert") or None,
        intermediate_certs=tuple(top.repeated_bytes(7, "intermediate_certs")),
        instance_info=_instance_info(top.message(4, "instance_info")),
        sev_snp_attestation=top.bytes_field(8, "sev_snp_attestation"),
        tdx_attestation=top.bytes_field(9, "tdx_attestation"))


__all__ = ["MAX_DEPTH", "GoAttestation", "GoQuote", "Message", "parse_attestation",
           "parse_pcrs", "parse_quote", "read_message", "read_varint"]
