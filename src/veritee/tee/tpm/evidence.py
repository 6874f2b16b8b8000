"""Every wire form of TPM evidence, reduced to quotes (TPMS_ATTEST, TPMT_SIGNATURE, PCR
values), the AK as the evidence gives it, its certificates and the event log. No signature
is checked and nothing is trusted here.

Forms (CONTRACT.md §1.1 ``tpm``; research note se-pef-tpm-gpu.md §3.2), recognised by content:

1. ``keylime``: the quote string ``r<b64 TPMS_ATTEST>:<b64 TPMT_SIGNATURE>:<b64 PCR blob>``
   (keylime ``tpm_main.py`` ``_get_quote_parameters``), bare or as the ``quote`` of the
   agent's JSON answer (``{"quote": ...}`` or ``{"results": {"quote": ...}}``, with
   ``mb_measurement_list`` as the event log). The PCR blob is tpm2-tools' in-memory
   ``tpm2_pcrs`` that keylime reads, little-endian: :func:`parse_pcr_blob`.
2. ``trustee``: the Confidential Containers TPM attester's JSON ``{"ak_public": b64 DER SPKI,
   "tpm_quote": {"message", "signature", "pcrs": [hex, in selection order]}, "eventlog"?}``,
   or its newer form with one quote per bank (:func:`parse_trustee_banks`), also inside
   ``primary_evidence`` wrappers.
3. ``go-tpm-tools``: the ``attest.Attestation`` protobuf of GCE (:mod:`.proto`), binary or
   base64.
4. ``eventlog``: a bare TCG PC Client event log (:mod:`veritee.eventlog`), nothing to verify it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from veritee import eventlog
from veritee.encoding import b64decode_any
from veritee.errors import MalformedEvidenceError, UnrecognizedEvidenceError
from veritee.evidence import Evidence, json_bytes, maybe_json_text, unwrap_primary
from veritee.tee.tpm import proto
from veritee.tee.tpm.structures import (
    HASH_NAMES,
    HASH_SIZES,
    PCR_SELECT_MAX,
    parse_attest,
    selected_indices,
)

Form = Literal["keylime", "trustee", "go-tpm-tools", "eventlog"]
#: {bank: {index: value}}.
PcrValues = dict[str, dict[int, bytes]]

#: tpm2-tools ``tpm2_pcrs`` as keylime reads it (CONTRACT.md §1.1): a TPML_PCR_SELECTION of
#: 16 slots ``{u16le hash, u8 sizeofSelect, u8[4] pcrSelect, u8 pad}``, then a count of
#: TPML_DIGESTs, each ``u32le count, 8 × {u16le size, u8[64] buffer}``.
_BLOB_SELECTIONS: Final = 16
_BLOB_SLOT: Final = struct.Struct("<HB4sx")
_BLOB_HEAD: Final = 4 + _BLOB_SELECTIONS * _BLOB_SLOT.size
_BLOB_DIGESTS: Final = 8
_BLOB_DIGEST_SIZE: Final = 64
_BLOB_LIST: Final = 4 + _BLOB_DIGESTS * (2 + _BLOB_DIGEST_SIZE)
#: One TPML_DIGEST's count and its 8 sizes, buffers skipped.
_BLOB_SIZES: Final = struct.Struct("<I" + f"H{_BLOB_DIGEST_SIZE}x" * _BLOB_DIGESTS)
#: For each digest size of a bank: the 8 values of a TPML_DIGEST whose digests are all of
#: that size, read at once (each buffer's first ``size`` bytes).
_BLOB_VALUES: Final = {size: struct.Struct(
    "<4x" + f"2x{size}s{_BLOB_DIGEST_SIZE - size}x" * _BLOB_DIGESTS)
    for size in HASH_SIZES.values()}
#: A blob holds at most this many TPML_DIGESTs (4 banks × 32 PCRs / 8 per list).
_BLOB_MAX_LISTS: Final = 16
#: Base64 text of one keylime part longer than this cannot hold a bounded structure.
_MAX_PART: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class TpmQuote:
    """One quote: the signed TPMS_ATTEST, its TPMT_SIGNATURE and the PCR values given."""

    attest: bytes
    signature: bytes
    pcrs: PcrValues = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TpmEvidence:
    form: Form
    quotes: tuple[TpmQuote, ...] = ()
    #: The AK as the evidence gives it (never trusted by itself), in :attr:`ak_public_form`:
    #: ``spki`` (DER, or PEM text) or ``tpmt`` (a TPMT_PUBLIC).
    ak_public: bytes | None = None
    ak_public_form: Literal["spki", "tpmt"] | None = None
    ak_certificate: bytes | None = None
    intermediates: tuple[bytes, ...] = ()
    event_log: bytes | None = None


def parse_tpm_evidence(evidence: Evidence) -> TpmEvidence:
    """Recognise the form of ``evidence`` and take it apart.

    Raises:
        MalformedEvidenceError: a form is recognised but its parts do not decode.
        UnrecognizedEvidenceError: the evidence is in none of the four forms.
    """
    if evidence.form == "json":
        return _from_json(unwrap_primary(evidence.json))
    data = evidence.data
    if data.lstrip()[:1] == b"r" and data.find(b":", 0, _MAX_PART) >= 0:
        return parse_keylime(data.strip())
    if data[:4] == b"\0\0\0\0":
        return TpmEvidence("eventlog", event_log=_event_log(data))
    try:
        attestation = proto.parse_attestation(data)
    except MalformedEvidenceError as exc:
        raise UnrecognizedEvidenceError(
            "not TPM evidence: neither a keylime quote string, Trustee TPM JSON, a "
            f"go-tpm-tools Attestation protobuf ({exc.detail}) nor a TCG event log") from exc
    return _from_go(attestation)


# -- keylime -------------------------------------------------------------------------------


def parse_keylime(text: bytes | str, *, event_log: bytes | None = None) -> TpmEvidence:
    """Read keylime's ``r<quote>:<signature>:<pcr blob>`` string.

    Raises:
        MalformedEvidenceError: it lacks the ``r`` or a part, a part is not base64, or the PCR
            blob is malformed (:func:`parse_pcr_blob`).
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    if raw[:1] != b"r":
        raise MalformedEvidenceError(
            f"a keylime quote starts with 'r' (uncompressed), not {raw[:1]!r}")
    parts = raw.split(b":")  # the "r" is cut from the first part, not copied off the whole
    if len(parts) != 3:
        raise MalformedEvidenceError(
            f"a keylime quote has 3 ':'-separated parts, this one {len(parts)}")
    attest = _b64(parts[0][1:], "keylime quote TPMS_ATTEST")
    signature = _b64(parts[1], "keylime quote TPMT_SIGNATURE")
    blob = _b64(parts[2], "keylime quote PCR blob")
    return TpmEvidence("keylime", (TpmQuote(attest, signature, parse_pcr_blob(blob)),),
                       event_log=event_log)


def _b64(text: bytes, name: str) -> bytes:
    if len(text) > _MAX_PART:
        raise MalformedEvidenceError(f"{name} is {len(text)} characters, over {_MAX_PART}")
    decoded = b64decode_any(text)
    if not decoded:
        raise MalformedEvidenceError(f"{name} is not base64 (or empty)")
    return decoded


def parse_pcr_blob(blob: bytes) -> PcrValues:
    """The PCR values of tpm2-tools' ``tpm2_pcrs`` blob, assigned to its own selection bank by
    bank, index ascending.

    Raises:
        MalformedEvidenceError: a size or count is out of bounds, the blob's length is not the
            one its counts give, a hash is unknown, the number of values is not the number of
            selected PCRs, or a value's size is not its bank's digest size.
    """
    if len(blob) < _BLOB_HEAD + 4:
        raise MalformedEvidenceError(f"PCR blob is {len(blob)} bytes, shorter than "
                                     f"{_BLOB_HEAD + 4}")
    slots = _blob_selection(blob)
    lists = int.from_bytes(blob[_BLOB_HEAD:_BLOB_HEAD + 4], "little")
    if lists > _BLOB_MAX_LISTS or len(blob) != _BLOB_HEAD + 4 + lists * _BLOB_LIST:
        raise MalformedEvidenceError(
            f"PCR blob declares {lists} digest lists, so {_BLOB_HEAD + 4 + lists * _BLOB_LIST} "
            f"bytes (at most {_BLOB_MAX_LISTS} lists), but is {len(blob)} bytes")
    sizes, values = _blob_values(blob, lists)
    wanted = sum(len(indices) for _, indices in slots)
    if len(values) != wanted:
        raise MalformedEvidenceError(
            f"PCR blob selects {wanted} PCRs but holds {len(values)} values")
    out: PcrValues = {}
    pos = 0
    for bank, indices in slots:
        expected, end = HASH_SIZES[bank], pos + len(indices)
        if sizes[pos:end].count(expected) != len(indices):
            k = next(k for k in range(pos, end) if sizes[k] != expected)
            raise MalformedEvidenceError(
                f"PCR blob value of {bank}:{indices[k - pos]} is {sizes[k]} bytes, expected "
                f"{expected}")
        if indices:
            out[bank] = dict(zip(indices, values[pos:end], strict=True))
        pos = end
    return out


def _blob_selection(blob: bytes) -> list[tuple[str, tuple[int, ...]]]:
    count = int.from_bytes(blob[:4], "little")
    if count > _BLOB_SELECTIONS:
        raise MalformedEvidenceError(
            f"PCR blob selection count is {count}, above {_BLOB_SELECTIONS}")
    slots: dict[str, tuple[int, ...]] = {}
    for n in range(count):
        alg, size, bits = _BLOB_SLOT.unpack_from(blob, 4 + n * _BLOB_SLOT.size)
        bank = HASH_NAMES.get(alg)
        if bank is None or size > PCR_SELECT_MAX:
            raise MalformedEvidenceError(
                f"PCR blob selection {n} has hash {alg:#06x} and sizeofSelect {size}")
        if bank in slots:
            raise MalformedEvidenceError(f"PCR blob selects bank {bank} twice")
        slots[bank] = selected_indices(bits[:size])
    return list(slots.items())


def _blob_values(blob: bytes, lists: int) -> tuple[list[int], list[bytes]]:
    """The sizes and the values of every digest of the blob's TPML_DIGESTs, in order."""
    sizes: list[int] = []
    values: list[bytes] = []
    for n in range(lists):
        base = _BLOB_HEAD + 4 + n * _BLOB_LIST
        count, *list_sizes = _BLOB_SIZES.unpack_from(blob, base)
        if count > _BLOB_DIGESTS:
            raise MalformedEvidenceError(
                f"PCR blob digest list {n} has count {count}, above {_BLOB_DIGESTS}")
        del list_sizes[count:]
        if not list_sizes:
            continue
        same = _BLOB_VALUES.get(list_sizes[0])
        if same is not None and list_sizes.count(list_sizes[0]) == count:
            # every digest of the list has one size: the values in one read
            values += same.unpack_from(blob, base)[:count]
        else:
            values += _mixed_values(blob, base, n, list_sizes)
        sizes += list_sizes
    return sizes, values


def _mixed_values(blob: bytes, base: int, n: int, list_sizes: list[int]) -> list[bytes]:
    """The values of TPML_DIGEST ``n`` (at ``base``) whose digests differ in size."""
    out = []
    for k, size in enumerate(list_sizes):
        if size > _BLOB_DIGEST_SIZE:
            raise MalformedEvidenceError(
                f"PCR blob digest {n}.{k} has size {size}, above {_BLOB_DIGEST_SIZE}")
        start = base + 4 + k * (2 + _BLOB_DIGEST_SIZE) + 2
        out.append(blob[start:start + size])
    return out


# -- JSON: Trustee, keylime's agent ------------------------------------------------------------


def _from_json(document: Any) -> TpmEvidence:
    if not isinstance(document, Mapping):
        raise UnrecognizedEvidenceError("TPM evidence JSON is not an object")
    if "tpm_quote" in document:
        return parse_trustee(document)
    if "ak_pubkey" in document and isinstance(document.get("quote"), Mapping):
        return parse_trustee_banks(document)
    results = document.get("results")
    holder = results if isinstance(results, Mapping) and "quote" in results else document
    quote = holder.get("quote")
    if isinstance(quote, str) and quote.startswith("r"):
        log = holder.get("mb_measurement_list")
        return parse_keylime(quote, event_log=json_bytes(log, "mb_measurement_list")
                             if log else None)
    raise UnrecognizedEvidenceError(
        "TPM evidence JSON has neither tpm_quote (Trustee) nor a keylime quote string; keys: "
        f"{sorted(str(k) for k in document)[:8]}")


def parse_trustee(document: Mapping[str, Any]) -> TpmEvidence:
    """Read the Trustee TPM attester's JSON.

    Raises:
        MalformedEvidenceError: a field is missing or does not decode, or the number of PCR
            values is not the number of PCRs the quote selects.
    """
    quote = maybe_json_text(document.get("tpm_quote"), "tpm_quote")
    if not isinstance(quote, Mapping):
        raise MalformedEvidenceError("tpm_quote must be an object {message, signature, pcrs}")
    attest = json_bytes(quote.get("message"), "tpm_quote.message")
    signature = json_bytes(quote.get("signature"), "tpm_quote.signature")
    pcrs = _selection_values(attest, quote.get("pcrs", []))
    ak = document.get("ak_public")
    log = document.get("eventlog") or document.get("event_log")
    return TpmEvidence(
        "trustee", (TpmQuote(attest, signature, pcrs),),
        ak_public=json_bytes(ak, "ak_public") if ak else None,
        ak_public_form="spki" if ak else None,
        event_log=json_bytes(log, "eventlog") if log else None)


def parse_trustee_banks(document: Mapping[str, Any]) -> TpmEvidence:
    """Read the guest-components TPM attester's newer JSON: ``{"ak_pubkey": PEM, "quote":
    {bank: {"attest_body": b64, "attest_sig": b64, "pcrs": [hex]}}, "eventlog"?: b64,
    "ek_cert"?, "aa_eventlog"?}`` — one quote per bank, in the map's order.

    Raises:
        MalformedEvidenceError: as :func:`parse_trustee`; or the map is empty or too large.
    """
    banks = document["quote"]
    if not banks or len(banks) > 8:
        raise MalformedEvidenceError(f"quote holds {len(banks)} banks; expected 1 to 8")
    quotes = []
    for bank, quote in banks.items():
        if not isinstance(quote, Mapping):
            raise MalformedEvidenceError(f"quote[{bank!r}] must be an object")
        attest = json_bytes(quote.get("attest_body"), f"quote[{bank!r}].attest_body")
        signature = json_bytes(quote.get("attest_sig"), f"quote[{bank!r}].attest_sig")
        quotes.append(TpmQuote(attest, signature, _selection_values(attest, quote.get("pcrs"))))
    log = document.get("eventlog")
    return TpmEvidence("trustee", tuple(quotes),
                       ak_public=json_bytes(document.get("ak_pubkey"), "ak_pubkey"),
                       ak_public_form="spki",
                       event_log=json_bytes(log, "eventlog") if log else None)


def _selection_values(attest: bytes, values: Any) -> PcrValues:
    """Values listed in selection order, keyed by the quote's own selection (parsed only to
    name them; the signature over it is checked later)."""
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise MalformedEvidenceError("tpm_quote.pcrs must be a list of hex strings")
    selection = [(s.bank, i) for s in parse_attest(attest).pcr_select for i in s.indices]
    if len(values) != len(selection):
        raise MalformedEvidenceError(
            f"tpm_quote.pcrs has {len(values)} values; the quote selects {len(selection)} PCRs")
    out: PcrValues = {}
    for n, ((bank, i), value) in enumerate(zip(selection, values, strict=True)):
        out.setdefault(bank, {})[i] = json_bytes(value, f"tpm_quote.pcrs[{n}]",
                                                 HASH_SIZES[bank])
    return out


# -- go-tpm-tools, event logs ------------------------------------------------------------------


def _from_go(attestation: proto.GoAttestation) -> TpmEvidence:
    quotes = []
    for n, q in enumerate(attestation.quotes):
        bank = HASH_NAMES.get(q.hash)
        if bank is None:
            raise MalformedEvidenceError(
                f"Attestation.quotes[{n}].pcrs.hash is {q.hash:#06x}, not a known bank")
        quotes.append(TpmQuote(q.quote, q.raw_sig, {bank: dict(q.pcrs)}))
    return TpmEvidence("go-tpm-tools", tuple(quotes), ak_public=attestation.ak_pub,
                       ak_public_form="tpmt", ak_certificate=attestation.ak_cert,
                       intermediates=attestation.intermediate_certs,
                       event_log=attestation.event_log)


def _event_log(data: bytes) -> bytes:
    eventlog.parse(data)  # recognise it here: a malformed log is refused as such
    return data


__all__ = ["Form", "PcrValues", "TpmEvidence", "TpmQuote", "parse_keylime", "parse_pcr_blob",
           "parse_tpm_evidence", "parse_trustee", "parse_trustee_banks"]
