"""SVSM vTPM evidence as guests send it, reduced to its parts (no crypto, no trust decision).

The JSON form for KBS guests (veritee's own; field names follow go-tpm-tools'
``SevSnpSvsmAttestation`` where it has one), also inside KBS ``{"primary_evidence": ...}``::

    {
      "sev_snp_attestation": <SNP evidence in any form ``--tee snp`` reads: the report
                              (hex / base64, optionally followed by its certificate table),
                              configfs-tsm JSON, the CoCo attester JSON, ...>,
      "vcek": <optional: the VCEK, base64 DER or PEM, when the SNP evidence has none>,
      "vtpm_service_manifest": <base64: the single-service vTPM manifest = EK TPMT_PUBLIC>,
      "vtpm_service_manifest_version": 0,                 (integer or "0"; default 0)
      "nonce": <optional hex: the 64-byte SVSM nonce; else ``report_data`` is used>,
      "ak_public": <base64 TPMT_PUBLIC of the AK (its name is what the credential binds)>,
      "tpm_quote": {"message": <base64 TPMS_ATTEST>, "signature": <base64 TPMT_SIGNATURE>,
                    "pcrs": [<hex of each selected PCR, in selection order>]},
                                                          (Trustee's TPM attester shape)
      "activation": {"nonce": <the KBS challenge nonce, as text>,
                     "credential": <base64: what TPM2_ActivateCredential returned>}
    }

Every byte field takes hex or base64 (standard or URL-safe) text, or a list of byte values.
``activation`` may be absent (no broker challenge): the AK is then not proven and the
verdict is at best ``undecided``.

go-tpm-tools' ``SevSnpSvsmAttestation`` protobuf (``gotpm attest svsm``; raw, hex or base64):
1 ``attestation`` (``attest.Attestation``, read by the ``tpm`` room's
:func:`~veritee.tee.tpm.proto.parse_attestation`: ``ak_pub``, one ``quotes`` entry per bank),
2 ``sev_snp_attestation`` (go-sev-guest ``sevsnp.Attestation``: 1 ``report`` as named fields,
2 ``certificate_chain``), 3 ``vtpm_service_manifest``, 4 ``vtpm_service_manifest_version``
(a string, ``"0"``), 5 ``launch_endorsement`` (not read). The field numbers are taken to
follow the declaration order of the proto's fields (not checked against a released
``attest.proto``). This form carries no activation (go-tpm-tools proves the AK with TCG's
EK-based key attestation instead), so its verdict is at best ``undecided``; its quotes'
nonce is go-tpm-tools' own, separate from the 64-byte TEE nonce (``quote_nonce_bound``
False: every quote must carry the same one, which is reported, not compared).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from veritee.errors import MalformedEvidenceError, UnrecognizedEvidenceError
from veritee.evidence import Evidence, json_bytes, unwrap_primary
from veritee.tee.snp import certtable
from veritee.tee.snp.layout import REPORT_SIZE
from veritee.tee.svsm.manifest import MAX_MANIFEST_BYTES, NONCE_SIZE
from veritee.tee.tpm import proto
from veritee.tee.tpm.structures import HASH_NAMES

#: Bounds on the parts (real ones: a TPMS_ATTEST ~150 bytes, a signature ~260, a PCR 64).
MAX_MESSAGE: Final = 4096
MAX_SIGNATURE: Final = 2048
MAX_PCRS: Final = 24 * 4
MAX_PUBLIC: Final = 2048
MAX_VCEK: Final = 16 * 1024
MAX_NONCE_TEXT: Final = 1024
MAX_CREDENTIAL: Final = 64
#: The key that tells this form from other JSON evidence.
MARKER: Final = "vtpm_service_manifest"


@dataclass(frozen=True, slots=True)
class Quote:
    message: bytes
    """The TPMS_ATTEST the AK signed."""
    signature: bytes
    """The TPMT_SIGNATURE."""
    pcrs: tuple[bytes, ...] = ()
    """The selected PCR values, in the quote's selection order (Trustee's shape)."""
    pcr_map: Mapping[str, Mapping[int, bytes]] | None = None
    """Or: ``{bank: {index: value}}`` (go-tpm-tools' ``PCRs``)."""


@dataclass(frozen=True, slots=True)
class Activation:
    nonce: bytes
    """The KBS challenge nonce the credential was made for (its UTF-8 bytes)."""
    credential: bytes
    """The credential the vTPM's TPM2_ActivateCredential returned."""


@dataclass(frozen=True, slots=True)
class SvsmEvidence:
    snp: Evidence
    """The SNP evidence, for :class:`~veritee.tee.snp.verify.SnpVerifier`."""
    manifest: bytes
    manifest_version: int
    ak_public: bytes
    quotes: tuple[Quote, ...]
    nonce: bytes | None = None
    activation: Activation | None = None
    form: str = "veritee-json"
    """``veritee-json`` or ``go-tpm-tools``."""
    quote_nonce_bound: bool = True
    """True: each quote's extraData is SHA-256 of the SVSM nonce; False: go-tpm-tools' own
    quote nonce (reported, not bound)."""


def parse_svsm_evidence(evidence: Evidence) -> SvsmEvidence:
    """Read SVSM vTPM evidence.

    Raises:
        UnrecognizedEvidenceError: not JSON, or JSON without ``vtpm_service_manifest``.
        MalformedEvidenceError: a part is missing, of the wrong type or encoding, or too large
            (the message names it).
    """
    if evidence.form != "json":
        return _from_protobuf(evidence)
    document = unwrap_primary(evidence.json)
    if not isinstance(document, Mapping) or MARKER not in document:
        keys = sorted(map(str, document))[:10] if isinstance(document, Mapping) else []
        raise UnrecognizedEvidenceError(
            f"SVSM vTPM JSON evidence needs the key {MARKER!r} (keys: {keys})")
    return _from_json(document)


def _from_json(doc: Mapping[str, Any]) -> SvsmEvidence:
    nonce = None
    if doc.get("nonce") is not None:
        nonce = _bytes(doc["nonce"], "nonce", NONCE_SIZE, exact=True)
    return SvsmEvidence(
        snp=_snp(doc),
        manifest=_bytes(_field(doc, MARKER), MARKER, MAX_MANIFEST_BYTES),
        manifest_version=_version(doc.get("vtpm_service_manifest_version", 0)),
        ak_public=_bytes(_field(doc, "ak_public"), "ak_public", MAX_PUBLIC),
        quotes=(_quote(_field(doc, "tpm_quote")),),
        nonce=nonce,
        activation=_activation(doc.get("activation")),
    )


def _field(doc: Mapping[str, Any], name: str) -> Any:
    if doc.get(name) is None:
        raise MalformedEvidenceError(f"SVSM vTPM evidence has no {name!r}")
    return doc[name]


def _bytes(value: Any, name: str, limit: int, *, exact: bool = False) -> bytes:
    data = json_bytes(value, name, limit if exact else None)
    if exact and len(data) != limit:
        raise MalformedEvidenceError(f"{name} is {len(data)} bytes; it must be {limit}")
    return _sized(data, name, limit)


def _version(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise MalformedEvidenceError(
        f"vtpm_service_manifest_version must be a non-negative integer, got {value!r}")


def _snp(doc: Mapping[str, Any]) -> Evidence:
    value = _field(doc, "sev_snp_attestation")
    snp = Evidence.from_json(value)
    vcek = doc.get("vcek")
    if vcek is None:
        return snp
    if snp.form == "json":
        raise MalformedEvidenceError(
            "vcek is given beside JSON SNP evidence; put it in that evidence's certificates")
    raw = json_bytes(vcek, "vcek")
    if len(raw) > MAX_VCEK:
        raise MalformedEvidenceError(f"vcek is {len(raw)} bytes; at most {MAX_VCEK}")
    return Evidence(data=snp.data[:REPORT_SIZE] + certtable.vcek_table(raw), form="raw")


def _quote(value: Any) -> Quote:
    if not isinstance(value, Mapping):
        raise MalformedEvidenceError(
            f"tpm_quote must be an object {{message, signature, pcrs}}, got "
            f"{type(value).__name__}")
    pcrs = value.get("pcrs", [])
    if not isinstance(pcrs, list) or len(pcrs) > MAX_PCRS:
        raise MalformedEvidenceError(f"tpm_quote.pcrs must be a list of at most {MAX_PCRS} "
                                     "PCR values")
    return Quote(
        message=_bytes(_field(value, "message"), "tpm_quote.message", MAX_MESSAGE),
        signature=_bytes(_field(value, "signature"), "tpm_quote.signature", MAX_SIGNATURE),
        pcrs=tuple(_bytes(p, f"tpm_quote.pcrs[{i}]", 64) for i, p in enumerate(pcrs)),
    )


def _activation(value: Any) -> Activation | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MalformedEvidenceError(
            f"activation must be an object {{nonce, credential}}, got {type(value).__name__}")
    nonce = value.get("nonce")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_TEXT:
        raise MalformedEvidenceError(
            f"activation.nonce must be the challenge's nonce text (1 to {MAX_NONCE_TEXT} "
            "characters)")
    try:
        nonce_bytes = nonce.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEvidenceError("activation.nonce is not Unicode text") from exc
    credential = _bytes(_field(value, "credential"), "activation.credential", MAX_CREDENTIAL)
    return Activation(nonce_bytes, credential)


# -- go-tpm-tools' SevSnpSvsmAttestation -------------------------------------------------------

#: ``SevSnpSvsmAttestation`` field numbers (declaration order; see the module docstring).
PB_ATTESTATION: Final = 1
PB_SEV_SNP_ATTESTATION: Final = 2
PB_MANIFEST: Final = 3
PB_MANIFEST_VERSION: Final = 4
#: go-sev-guest ``sevsnp.Report`` fields by number (proto/sevsnp.proto), and which are bytes.
REPORT_FIELDS: Final = (
    "version", "guest_svn", "policy", "family_id", "image_id", "vmpl", "signature_algo",
    "current_tcb", "platform_info", "signer_info", "report_data", "measurement", "host_data",
    "id_key_digest", "author_key_digest", "report_id", "report_id_ma", "reported_tcb",
    "chip_id", "committed_tcb", "current_build", "current_minor", "current_major",
    "committed_build", "committed_minor", "committed_major", "launch_tcb", "signature",
    "cpuid1eax_fms", "launch_mit_vector", "current_mit_vector")
_REPORT_BYTES: Final = frozenset({
    "family_id", "image_id", "report_data", "measurement", "host_data", "id_key_digest",
    "author_key_digest", "report_id", "report_id_ma", "chip_id", "signature"})
#: ``sevsnp.CertificateChain``: the certificates the snp room reads, by field number.
_CHAIN_FIELDS: Final = {1: "vcekCert", 2: "askCert", 3: "arkCert", 6: "vlekCert"}


def _from_protobuf(evidence: Evidence) -> SvsmEvidence:
    try:
        top = proto.read_message(evidence.data, "SevSnpSvsmAttestation")
        attestation = top.bytes_field(PB_ATTESTATION, "attestation")
        snp = top.bytes_field(PB_SEV_SNP_ATTESTATION, "sev_snp_attestation")
        shown = top.bytes_field(PB_MANIFEST, "vtpm_service_manifest")
    except MalformedEvidenceError as exc:
        raise _not_svsm(evidence) from exc
    if attestation is None or snp is None or shown is None:
        raise _not_svsm(evidence)
    version = top.bytes_field(PB_MANIFEST_VERSION, "vtpm_service_manifest_version")
    tpm = proto.parse_attestation(attestation)
    quotes = tuple(Quote(q.quote, q.raw_sig, pcr_map={_bank(q.hash): q.pcrs})
                   for q in tpm.quotes)
    return SvsmEvidence(
        snp=_snp_from_proto(proto.read_message(snp, "sev_snp_attestation")),
        manifest=_sized(shown, MARKER, MAX_MANIFEST_BYTES),
        manifest_version=_version(_text(version) if version else 0), ak_public=tpm.ak_pub,
        quotes=quotes, form="go-tpm-tools", quote_nonce_bound=False)


def _sized(data: bytes, name: str, limit: int) -> bytes:
    if not data or len(data) > limit:
        raise MalformedEvidenceError(f"{name} is {len(data)} bytes; 1 to {limit}")
    return data


def _not_svsm(evidence: Evidence) -> UnrecognizedEvidenceError:
    return UnrecognizedEvidenceError(
        f"{len(evidence.data)} bytes of {evidence.form} data are no SVSM vTPM evidence veritee "
        "reads: send the JSON form (an object with vtpm_service_manifest, "
        "sev_snp_attestation, ak_public, tpm_quote and activation) or go-tpm-tools' "
        "SevSnpSvsmAttestation protobuf")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedEvidenceError("vtpm_service_manifest_version is not ASCII") from exc


def _bank(alg: int) -> str:
    bank = HASH_NAMES.get(alg)
    if bank is None:
        raise MalformedEvidenceError(f"a quote's PCRs.hash is {alg:#06x}, no known bank")
    return bank


def _snp_from_proto(message: proto.Message) -> Evidence:
    """go-sev-guest's ``sevsnp.Attestation`` as its protojson, for the snp room to read."""
    report = message.message(1, "report")
    if report is None:
        raise MalformedEvidenceError("sev_snp_attestation has no report (field 1)")
    fields: dict[str, Any] = {}
    for number, name in enumerate(REPORT_FIELDS, start=1):
        if name in _REPORT_BYTES:
            raw = report.bytes_field(number, name)
            fields[name] = list(raw if raw is not None else b"")
        else:
            fields[name] = report.uint(number, name) or 0
    _expand_fms(fields)
    chain = message.message(2, "certificate_chain")
    certs: dict[str, Any] = {}
    for number, name in _CHAIN_FIELDS.items():
        raw = chain.bytes_field(number, name) if chain is not None else None
        if raw:
            certs[name] = base64.b64encode(raw).decode()
    return Evidence.from_json({"report": fields, "certificateChain": certs})


def _expand_fms(fields: dict[str, Any]) -> None:
    """``cpuid1eax_fms`` (CPUID(1).EAX & 0x0fff0fff, go-sev-guest) → the report's
    CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP bytes (family = base + extended family, model =
    extended model << 4 | base model)."""
    eax = fields.pop("cpuid1eax_fms")
    if not isinstance(eax, int) or not eax:
        return
    fields["cpuid_fam_id"] = ((eax >> 8) & 0xF) + ((eax >> 20) & 0xFF)
    fields["cpuid_mod_id"] = ((eax >> 12) & 0xF0) | ((eax >> 4) & 0xF)
    fields["cpuid_step"] = eax & 0xF


__all__ = ["Activation", "Quote", "SvsmEvidence", "parse_svsm_evidence"]
