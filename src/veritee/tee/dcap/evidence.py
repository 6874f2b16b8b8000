"""Every wire form of DCAP evidence seen in the wild, reduced to the quote bytes and, where the
form carries them, the event logs. No parsing of the quote itself, no crypto, no trust decision.

Forms (intel-dcap.md §1.2, §4; CONTRACT.md §1):

* the bare quote, raw / hex / base64 / base64url (padded or not), possibly followed by zero
  padding or bytes a tool appended (:func:`veritee.tee.dcap.quote.parse_quote` reads the
  quote's own lengths and ignores them);
* the Confidential Containers attester JSON — TDX ``{"cc_eventlog": <base64 | null>,
  "quote": <base64>}``, the older TDX form that trustee's verifier also read, with
  ``"aa_eventlog": <AA event log text | null>`` beside them, and SGX ``{"quote": <base64>}``
  — also inside KBS ``{"primary_evidence": ...}`` wrappers;
* Linux configfs-tsm output as JSON ``{"outblob", "auxblob", "provider": "tdx_guest"}``
  (the ``tdx_guest`` driver returns no auxblob; one given is ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from veritee.errors import MalformedEvidenceError, UnrecognizedEvidenceError
from veritee.evidence import (
    MAX_EVIDENCE_BYTES,
    Evidence,
    TsmReport,
    decode_evidence,
    json_bytes,
    unwrap_primary,
)
from veritee.tee.dcap.quote import HEADER_SIZE, MAX_QUOTE_BYTES

#: The configfs-tsm provider of TDX guests (the ``tdx_guest`` driver).
TSM_PROVIDER: Final = "tdx_guest"
#: Text longer than this cannot hold a quote within :data:`MAX_QUOTE_BYTES` (hex doubles it).
_MAX_QUOTE_TEXT: Final = 2 * MAX_QUOTE_BYTES + 16


@dataclass(frozen=True, slots=True)
class DcapEvidence:
    """The quote bytes of one piece of evidence (possibly followed by padding) and its logs."""

    quote: bytes
    form: str
    """``raw``, ``hex``, ``base64``, ``coco`` or ``configfs-tsm``."""
    cc_eventlog: bytes | None = None
    """The CCEL event log (the ACPI CCEL table's log area), when the evidence carries one."""
    aa_eventlog: str | None = None
    """The attestation agent's text event log of the older CoCo TDX form."""


def decode_dcap_evidence(blob: bytes) -> DcapEvidence:
    """:func:`parse_dcap_evidence` of the bytes of one file or HTTP field.

    Raises:
        MalformedEvidenceError: as :func:`parse_dcap_evidence`, or empty or oversized input.
        UnrecognizedEvidenceError: as :func:`parse_dcap_evidence`.
    """
    return parse_dcap_evidence(decode_evidence(blob))


def parse_dcap_evidence(evidence: Evidence) -> DcapEvidence:
    """Find the quote (and any event logs) in ``evidence``.

    Raises:
        MalformedEvidenceError: more than :data:`MAX_EVIDENCE_BYTES` in all or a quote of more
            than :data:`MAX_QUOTE_BYTES`; JSON that is not an object, nests too deep, or holds a
            field of the wrong type or encoding (the message names the field).
        UnrecognizedEvidenceError: bytes too short to be a quote, or JSON in none of the forms
            above.
    """
    if len(evidence.data) > MAX_EVIDENCE_BYTES:
        raise MalformedEvidenceError(
            f"evidence is {len(evidence.data)} bytes, more than the limit of "
            f"{MAX_EVIDENCE_BYTES}")
    if evidence.form == "json":
        return _from_json(evidence.json)
    return _from_binary(evidence.data, evidence.form)


def _from_binary(data: bytes, form: str) -> DcapEvidence:
    if form == "raw" and data.lstrip()[:1] in (b"{", b"["):
        raise MalformedEvidenceError(
            "evidence starts like JSON but is not valid JSON (or nests too deep to read)")
    if len(data) < HEADER_SIZE:
        raise UnrecognizedEvidenceError(
            f"{len(data)} bytes are no DCAP evidence veritee reads: a quote starts with a "
            f"{HEADER_SIZE}-byte header (raw, hex or base64), or JSON (truncated evidence also "
            "looks like this)")
    return DcapEvidence(_sized_quote(data, "quote"), form)


def _from_json(document: Any) -> DcapEvidence:
    wrapped = isinstance(document, Mapping) and "primary_evidence" in document
    document = unwrap_primary(document)
    if wrapped and isinstance(document, str | list):  # a wrapped quote as text or bytes
        return DcapEvidence(_quote_field(document, "primary_evidence"), "coco")
    if not isinstance(document, Mapping):
        raise MalformedEvidenceError(
            f"DCAP JSON evidence must be an object, got {type(document).__name__}")
    if "outblob" in document:
        tsm = TsmReport.from_json(document, provider=TSM_PROVIDER)
        return DcapEvidence(_sized_quote(tsm.outblob, "outblob"), "configfs-tsm")
    if "quote" in document:
        return _from_coco(document)
    raise UnrecognizedEvidenceError(
        "DCAP JSON evidence has none of the keys quote, outblob, primary_evidence (keys: "
        f"{sorted(map(str, document))[:10]}): not TDX or SGX evidence in a form veritee reads")


def _from_coco(document: Mapping[str, Any]) -> DcapEvidence:
    """trustee ``deps/verifier``: ``TdxEvidence {cc_eventlog, quote[, aa_eventlog]}``,
    ``SgxEvidence {quote}``; an empty event log is no event log, as trustee reads it."""
    quote = _quote_field(document["quote"], "quote")
    eventlog = document.get("cc_eventlog")
    ccel = json_bytes(eventlog, "cc_eventlog") if eventlog not in (None, "") else None
    return DcapEvidence(quote, "coco", ccel or None, _text_field(document, "aa_eventlog"))


def _quote_field(value: Any, name: str) -> bytes:
    if value in ("", []):
        raise MalformedEvidenceError(f"{name} is empty")
    if isinstance(value, str | list) and len(value) > _MAX_QUOTE_TEXT:
        raise MalformedEvidenceError(
            f"{name} is {len(value)} characters long, more than a quote of at most "
            f"{MAX_QUOTE_BYTES} bytes needs")
    return _sized_quote(json_bytes(value, name), name)


def _sized_quote(quote: bytes, name: str) -> bytes:
    if len(quote) > MAX_QUOTE_BYTES:
        raise MalformedEvidenceError(
            f"{name} is {len(quote)} bytes, more than the limit of {MAX_QUOTE_BYTES}")
    if len(quote) < HEADER_SIZE:
        raise MalformedEvidenceError(
            f"{name} is {len(quote)} bytes, shorter than a quote header ({HEADER_SIZE})")
    return quote


def _text_field(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedEvidenceError(
            f"{name} must be a string (the event log text), got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800")
        raise MalformedEvidenceError(f"{name} is not valid Unicode text") from exc
    return value


__all__ = ["TSM_PROVIDER", "DcapEvidence", "decode_dcap_evidence", "parse_dcap_evidence"]
