"""Trustee's Azure vTPM evidence JSON, every version, for SNP and TDX machines, reduced to
its parts. No parsing of the parts, no crypto, no trust decision.

Forms (trustee ``deps/verifier/src/az_{snp,tdx}_vtpm/compat.rs``; CONTRACT.md §1.1), told
apart by their content:

* v0, no ``version``: SNP ``{"quote": {signature, message, pcrs}, "report": [bytes],
  "vcek": "<PEM>"}``, TDX ``{"tpm_quote": {...}, "hcl_report": [bytes], "td_quote":
  [bytes]}`` — every byte string a JSON list of byte values (serde's ``Vec<u8>``); the
  other name of each pair is accepted too;
* v1 and v2: ``{"version": 1|2, "tpm_quote": {"signature": hex, "message": hex, "pcrs":
  [24 × hex]}, "hcl_report": base64url, "vcek": base64url DER}`` (SNP) or ``"td_quote":
  base64url`` (TDX). v2 has the same shape; its HCL variable data carries ``user-data``.

Also inside KBS ``{"primary_evidence": ...}`` wrappers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from veritee.encoding import b64decode_any
from veritee.errors import (
    MalformedEvidenceError,
    UnrecognizedEvidenceError,
    UnsupportedVersionError,
)
from veritee.evidence import Evidence, json_bytes, unwrap_primary
from veritee.tee.dcap.quote import MAX_QUOTE_BYTES

Machine = Literal["snp", "tdx"]
SUPPORTED_VERSIONS: Final = frozenset({0, 1, 2})
PCR_COUNT: Final = 24
PCR_SIZE: Final = 32
#: Bounds on the parts (the real ones: message ~150 bytes, signature 256, report 2600).
MAX_MESSAGE: Final = 4096
MAX_SIGNATURE: Final = 1024
MAX_HCL_REPORT: Final = 256 * 1024
MAX_VCEK: Final = 16 * 1024
#: The TEE names of the two machines, for messages that send the user to the other one.
TEE_OF: Final[Mapping[Machine, str]] = {"snp": "az-snp-vtpm", "tdx": "az-tdx-vtpm"}


@dataclass(frozen=True, slots=True)
class TpmQuote:
    message: bytes
    """The TPMS_ATTEST the AK signed."""
    signature: bytes
    """The raw RSASSA signature (not a TPMT_SIGNATURE)."""
    pcrs: tuple[bytes, ...]
    """The 24 SHA-256 PCRs, PCR 0 first."""


@dataclass(frozen=True, slots=True)
class AzureEvidence:
    version: int
    machine: Machine
    tpm_quote: TpmQuote
    hcl_report: bytes
    vcek: bytes | None = None
    """SNP: the VCEK as the evidence holds it (PEM in v0, DER later)."""
    td_quote: bytes | None = None
    """TDX: the TD quote."""

    @property
    def form(self) -> str:
        return f"trustee-v{self.version}"


def parse_azure_evidence(evidence: Evidence, *, machine: Machine) -> AzureEvidence:
    """Read Trustee's Azure evidence for ``machine``.

    Raises:
        UnrecognizedEvidenceError: not JSON, not Azure vTPM evidence, or the other machine's
            (the message names the TEE to verify it with).
        UnsupportedVersionError: a ``version`` other than 1 or 2.
        MalformedEvidenceError: a part is missing, of the wrong type or encoding, or too large
            (the message names it).
    """
    if evidence.form != "json":
        raise UnrecognizedEvidenceError(
            f"{TEE_OF[machine]} evidence is Trustee's JSON ({{tpm_quote, hcl_report, "
            f"{'vcek' if machine == 'snp' else 'td_quote'}}}); these are {len(evidence.data)} "
            "bytes of another form (a bare HCL report carries no TPM quote)")
    document = unwrap_primary(evidence.json)
    if not isinstance(document, Mapping):
        raise UnrecognizedEvidenceError(
            f"{TEE_OF[machine]} evidence must be a JSON object, got {type(document).__name__}")
    found = _machine_of(document)
    if found != machine:
        raise UnrecognizedEvidenceError(
            f"this is Azure {found.upper()} vTPM evidence (it holds "
            f"{'a vcek' if found == 'snp' else 'a td_quote'}); verify it with --tee "
            f"{TEE_OF[found]}")
    version = _version(document)
    if version == 0:
        return _v0(document, machine)
    return _v1(document, machine, version)


def _machine_of(document: Mapping[str, Any]) -> Machine:
    has = {name for name in ("quote", "tpm_quote", "report", "hcl_report", "vcek", "td_quote")
           if name in document}
    quote, report = has & {"quote", "tpm_quote"}, has & {"report", "hcl_report"}
    if quote and report and ("vcek" in has) != ("td_quote" in has):
        return "snp" if "vcek" in has else "tdx"
    raise UnrecognizedEvidenceError(
        "not Azure vTPM evidence: it needs tpm_quote (or quote), hcl_report (or report) and "
        f"one of vcek (SNP) or td_quote (TDX); keys: {sorted(map(str, document))[:10]}")


def _version(document: Mapping[str, Any]) -> int:
    value = document.get("version", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvidenceError(
            f"version must be an integer, got {type(value).__name__}")
    if value not in SUPPORTED_VERSIONS or ("version" in document and value == 0):
        raise UnsupportedVersionError(
            f"Azure vTPM evidence version is {value}; supported are 1 and 2 (and v0, which "
            "has no version member)")
    return value


def _v0(document: Mapping[str, Any], machine: Machine) -> AzureEvidence:
    quote = _member(document, "tpm_quote", "quote")
    report = _member(document, "hcl_report", "report")
    fields = _object(quote, "tpm_quote")
    tpm = TpmQuote(
        message=_bytes(json_bytes(fields.get("message"), "tpm_quote.message"),
                       "tpm_quote.message", MAX_MESSAGE),
        signature=_bytes(json_bytes(fields.get("signature"), "tpm_quote.signature"),
                         "tpm_quote.signature", MAX_SIGNATURE),
        pcrs=_pcrs(fields.get("pcrs"), lambda v, n: json_bytes(v, n, PCR_SIZE)))
    hcl = _bytes(json_bytes(report, "hcl_report"), "hcl_report", MAX_HCL_REPORT)
    if machine == "snp":
        vcek = _bytes(json_bytes(document["vcek"], "vcek"), "vcek", MAX_VCEK)
        return AzureEvidence(0, machine, tpm, hcl, vcek=vcek)
    td = _bytes(json_bytes(document["td_quote"], "td_quote"), "td_quote", MAX_QUOTE_BYTES)
    return AzureEvidence(0, machine, tpm, hcl, td_quote=td)


def _v1(document: Mapping[str, Any], machine: Machine, version: int) -> AzureEvidence:
    fields = _object(document.get("tpm_quote"), "tpm_quote")
    tpm = TpmQuote(
        message=_bytes(_hex(fields.get("message"), "tpm_quote.message"), "tpm_quote.message",
                       MAX_MESSAGE),
        signature=_bytes(_hex(fields.get("signature"), "tpm_quote.signature"),
                         "tpm_quote.signature", MAX_SIGNATURE),
        pcrs=_pcrs(fields.get("pcrs"), _hex))
    hcl = _bytes(_b64(document.get("hcl_report"), "hcl_report"), "hcl_report", MAX_HCL_REPORT)
    if machine == "snp":
        vcek = _bytes(_b64(document["vcek"], "vcek"), "vcek", MAX_VCEK)
        return AzureEvidence(version, machine, tpm, hcl, vcek=vcek)
    td = _bytes(_b64(document["td_quote"], "td_quote"), "td_quote", MAX_QUOTE_BYTES)
    return AzureEvidence(version, machine, tpm, hcl, td_quote=td)


def _member(document: Mapping[str, Any], name: str, other: str) -> Any:
    if name in document and other in document:
        raise MalformedEvidenceError(f"the evidence holds both {name} and {other}")
    return document[name] if name in document else document[other]


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedEvidenceError(f"{name} must be an object, got {type(value).__name__}")
    return value


def _pcrs(value: Any, decode: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise MalformedEvidenceError(
            f"tpm_quote.pcrs must be a list of {PCR_COUNT} PCR values, got "
            f"{type(value).__name__}")
    if len(value) != PCR_COUNT:
        raise MalformedEvidenceError(
            f"tpm_quote.pcrs holds {len(value)} values; the vTPM quotes {PCR_COUNT} SHA-256 "
            "PCRs")
    pcrs = _hex_pcrs(value) if decode is _hex else None
    if pcrs is None:
        pcrs = tuple(decode(item, f"tpm_quote.pcrs[{i}]") for i, item in enumerate(value))
    elif list(map(len, pcrs)).count(PCR_SIZE) == PCR_COUNT:
        return pcrs
    for index, pcr in enumerate(pcrs):
        if len(pcr) != PCR_SIZE:
            raise MalformedEvidenceError(
                f"tpm_quote.pcrs[{index}] is {len(pcr)} bytes; a SHA-256 PCR is {PCR_SIZE}")
    return pcrs


def _hex_pcrs(values: list[Any]) -> tuple[bytes, ...] | None:
    """Every value decoded as :func:`_hex` decodes it; None when one does not decode (the
    slow path then names it)."""
    try:
        return tuple(map(bytes.fromhex, values))
    except (TypeError, ValueError):
        return None


def _hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedEvidenceError(f"{name} must be hex text, got {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise MalformedEvidenceError(f"{name} is not hex text") from exc


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedEvidenceError(
            f"{name} must be base64url text, got {type(value).__name__}")
    decoded = b64decode_any(value)
    if decoded is None:
        raise MalformedEvidenceError(f"{name} is not base64url text")
    return decoded


def _bytes(value: bytes, name: str, limit: int) -> bytes:
    if not value:
        raise MalformedEvidenceError(f"{name} is empty")
    if len(value) > limit:
        raise MalformedEvidenceError(f"{name} is {len(value)} bytes, more than {limit}")
    return value


__all__ = ["PCR_COUNT", "SUPPORTED_VERSIONS", "TEE_OF", "AzureEvidence", "Machine",
           "TpmQuote", "parse_azure_evidence"]
