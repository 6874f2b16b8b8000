"""Every wire form of SNP evidence seen in the wild, reduced to (report bytes, cert table).

Forms (amd-sev.md §1.6, §4; service-anchors.md §1.2):

* the bare 1184-byte report, raw / hex / base64 (snpguest, go-sev-guest ``attestation.bin``),
  possibly followed by a certificate table (extended report) or by bytes a tool appended;
* an Azure HCL report (``HCLA`` header, report at 0x20);
* Linux configfs-tsm JSON: ``{"outblob", "auxblob", "provider"}`` (base64 or base64url);
* the Confidential Containers attester JSON: ``{"attestation_report": {...}, "cert_chain":
  [{"cert_type", "data"}]}`` — the report as the serde fields of virtee/sev's
  ``AttestationReport`` — also wrapped in a KBS ``{"primary_evidence": ...}``;
* go-sev-guest's ``Attestation`` protojson (``{"report": {...}, "certificateChain": {...}}``).

No crypto and no trust decision here: the verifier decides what the certificates are worth.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from veritee.errors import MalformedEvidenceError, MisuseError, UnrecognizedEvidenceError
from veritee.evidence import (
    MAX_JSON_DEPTH,
    Evidence,
    TsmReport,
    json_bytes,
    maybe_json_text,
    textproto_bytes,
)
from veritee.tee import platforms
from veritee.tee.snp import certtable
from veritee.tee.snp.layout import (
    FIELD_NAMES,
    FIELD_SIZES,
    REPORT_SIZE,
    SnpReport,
    TcbVersion,
    pack_fields,
    parse_report,
    product_from_cpuid,
)

HCL_MAGIC = b"HCLA"
HCL_REPORT_OFFSET = 0x20
#: The configfs-tsm provider of SEV guests (the ``sev-guest`` driver).
TSM_PROVIDER = "sev_guest"


@dataclass(frozen=True, slots=True)
class SnpEvidence:
    report: SnpReport
    certs: tuple[certtable.CertEntry, ...] = ()
    form: str = "report"
    """``report``, ``extended-report``, ``hcl``, ``configfs-tsm``, ``coco``, ``go-sev-guest``."""


def parse_snp_evidence(evidence: Evidence) -> SnpEvidence:
    """Find the report and any certificates in ``evidence``.

    Raises:
        MalformedEvidenceError: no report could be found or it does not parse.
        UnsupportedVersionError: the report's VERSION is not supported.
    """
    if evidence.form == "json":
        return _from_json(evidence.json, 0)
    if TEXTPROTO_REPORT in evidence.data[:1 << 20]:
        return _from_textproto(evidence.data)
    return _from_binary(evidence.data)


#: Project Oak's evidence is protobuf text: ``root_layer { remote_attestation_report: "..." }``.
TEXTPROTO_REPORT = b"remote_attestation_report:"


def _from_textproto(data: bytes) -> SnpEvidence:
    reports = textproto_bytes(data, "remote_attestation_report")
    if not reports:
        raise MalformedEvidenceError("protobuf text evidence holds no remote_attestation_report")
    found = _from_binary(reports[0])
    return SnpEvidence(found.report, found.certs, form="textproto")


def _from_binary(data: bytes) -> SnpEvidence:
    if data[:4] == HCL_MAGIC:
        if len(data) < HCL_REPORT_OFFSET + REPORT_SIZE:
            raise MalformedEvidenceError(
                f"HCL report is {len(data)} bytes; the SNP report inside needs "
                f"{HCL_REPORT_OFFSET + REPORT_SIZE}"
            )
        return SnpEvidence(parse_report(data[HCL_REPORT_OFFSET:]), form="hcl")
    if len(data) < REPORT_SIZE:
        raise UnrecognizedEvidenceError(
            f"{len(data)} bytes are no SNP evidence veritee reads: a report is {REPORT_SIZE} "
            "bytes (raw, hex or base64), or JSON (truncated evidence also looks like this)")
    report = parse_report(data)
    trailing = data[REPORT_SIZE:]
    if len(trailing) >= certtable.ENTRY_SIZE:
        try:
            certs = certtable.parse_cert_table(trailing)
        except MalformedEvidenceError:
            certs = ()  # bytes a tool appended that are not a certificate table
        if any(c.kind != "other" for c in certs):
            return SnpEvidence(report, certs, form="extended-report")
    return SnpEvidence(report)


def _from_json(document: Any, depth: int) -> SnpEvidence:
    if not isinstance(document, Mapping):
        raise MalformedEvidenceError(
            f"SNP JSON evidence must be an object, got {type(document).__name__}")
    if depth > MAX_JSON_DEPTH:
        raise MalformedEvidenceError(
            f"SNP JSON evidence nests more than {MAX_JSON_DEPTH} wrappers deep")
    if "primary_evidence" in document:
        inner = maybe_json_text(document["primary_evidence"], "primary_evidence")
        return _from_json(inner, depth + 1)
    if "outblob" in document:
        return _from_configfs_tsm(document)
    if "attestation_report" in document:
        return _from_coco(document)
    if "report" in document:
        return _from_go_sev_guest(document)
    if "tpm_quote" in document or "hcl_report" in document:
        raise UnrecognizedEvidenceError(_vtpm_hint(document))
    for key in ("quote", "evidence", "snp_report", "hw_report"):
        if key in document:
            return _from_json_value(document[key], depth + 1)
    raise UnrecognizedEvidenceError(
        "SNP JSON evidence has none of the keys outblob, attestation_report, report, "
        f"primary_evidence (keys: {sorted(map(str, document))[:10]}): not SNP evidence in "
        "a form veritee reads"
    )


def _vtpm_hint(document: Mapping[str, Any]) -> str:
    """What to say of Trustee's Azure vTPM evidence v1/v2 (``tpm_quote``, ``hcl_report``):
    its vTPM quote and binding are another platform's to verify. That platform is found in
    the registry (a platform built on this room whose room or title says Azure; other
    composites, such as an SVSM vTPM, reuse this room too), so this room names no other
    TEE."""
    if "td_quote" in document:
        return ("this is Azure vTPM evidence around a TD quote (tpm_quote, hcl_report, "
                "td_quote), not SNP evidence: verify it with the Azure vTPM verifier of "
                "Intel machines (`veritee verify --help` lists the TEEs)")
    try:
        names = [p.tee for p in platforms()
                 if ROOM in p.reuses and "azure" in f"{p.room} {p.title}".lower()]
    except MisuseError:  # a broken registry must not hide what the evidence is
        names = []
    where = " or ".join(f"--tee {name}" for name in names) or "the Azure vTPM verifier"
    return ("this is Azure vTPM evidence (tpm_quote, hcl_report, vcek): the SNP report inside "
            "is bound to a vTPM quote that --tee snp does not check; verify it with "
            f"{where}")


#: This room's folder name (what composite platforms list in ``reuses``).
ROOM = "snp"


def _from_json_value(value: Any, depth: int) -> SnpEvidence:
    if isinstance(value, Mapping):
        return _from_json(value, depth)
    return _from_binary(json_bytes(value, "report"))


def _from_configfs_tsm(document: Mapping[str, Any]) -> SnpEvidence:
    tsm = TsmReport.from_json(document, provider=TSM_PROVIDER)
    certs = certtable.parse_cert_table(tsm.auxblob) if tsm.auxblob else ()
    return SnpEvidence(parse_report(tsm.outblob), certs, form="configfs-tsm")


#: virtee/sev ``CertType`` names (serde): ``Empty``, ``ARK``, ``ASK``, ``VCEK``, ``VLEK``, ``CRL``,
#: ``{"OTHER": "<uuid>"}``; ``ASVK`` as some tools write it.
_COCO_CERT_TYPES = {"vcek": "vcek", "vlek": "vlek", "ask": "ask", "ark": "ark", "asvk": "ask",
                    "crl": "crl"}


def _from_coco(document: Mapping[str, Any]) -> SnpEvidence:
    value = document["attestation_report"]
    if isinstance(value, Mapping):
        report = parse_report(report_from_fields(value))
    else:
        report = parse_report(json_bytes(value, "attestation_report"))
    certs: list[certtable.CertEntry] = []
    chain = document.get("cert_chain") or []
    if not isinstance(chain, list):
        raise MalformedEvidenceError("cert_chain must be a list")
    for index, item in enumerate(chain):
        if not isinstance(item, Mapping):
            raise MalformedEvidenceError(f"cert_chain[{index}] must be an object")
        if str(item.get("cert_type")).lower() == "empty":
            continue
        kind, guid = _coco_cert_type(item.get("cert_type"))
        data = json_bytes(item.get("data"), f"cert_chain[{index}].data")
        certs.append(certtable.CertEntry(kind, guid, data))
    return SnpEvidence(report, tuple(certs), form="coco")


def _coco_cert_type(value: Any) -> tuple[str, uuid.UUID]:
    if isinstance(value, Mapping) and len(value) == 1:  # {"OTHER": "<uuid>"}
        try:
            guid = uuid.UUID(str(next(iter(value.values()))))
        except ValueError as exc:
            raise MalformedEvidenceError(f"cert_type {value!r} holds no UUID") from exc
        return certtable.KNOWN.get(guid, "other"), guid
    if isinstance(value, str):
        kind = _COCO_CERT_TYPES.get(value.lower())
        if kind is not None:
            return kind, certtable.GUID_OF[kind]
        try:
            guid = uuid.UUID(value)
        except ValueError:
            pass
        else:
            return certtable.KNOWN.get(guid, "other"), guid
    raise MalformedEvidenceError(f"unknown cert_type {value!r}")


_GSG_CERTS = {"vcekCert": "vcek", "vlekCert": "vlek", "askCert": "ask", "arkCert": "ark",
              "vcek_cert": "vcek", "vlek_cert": "vlek", "ask_cert": "ask", "ark_cert": "ark"}


def _from_go_sev_guest(document: Mapping[str, Any]) -> SnpEvidence:
    value = document["report"]
    if isinstance(value, Mapping):
        report = parse_report(report_from_fields(value))
    else:
        found = _from_binary(json_bytes(value, "report"))
        if "vcek" in document:  # Azure vTPM evidence: {quote, report (HCL), vcek (PEM)}
            vcek = json_bytes(document["vcek"], "vcek")
            return SnpEvidence(found.report, (certtable.CertEntry(
                "vcek", certtable.GUID_OF["vcek"], vcek),), form=f"azure-{found.form}")
        report = found.report
    chain = document.get("certificateChain") or document.get("certificate_chain") or {}
    certs: list[certtable.CertEntry] = []
    if isinstance(chain, Mapping):
        for key, kind in _GSG_CERTS.items():
            if chain.get(key):
                certs.append(certtable.CertEntry(kind, certtable.GUID_OF[kind],
                                                 json_bytes(chain[key], key)))
    return SnpEvidence(report, tuple(certs), form="go-sev-guest")


# --- a report from its named fields (serde JSON of virtee/sev, protojson of go-sev-guest) ---

_ALIASES = {
    "sig_algo": "signature_algo",
    "signature_algo": "signature_algo",
    "plat_info": "platform_info",
    "key_info": "signer_info",
    "_author_key_en": "signer_info",
    "author_key_en": "signer_info",
    "signer_info": "signer_info",
    "cpuid1eax_fms": "cpuid_fms",
    "launch_mitigation_vector": "launch_mit_vector",
    "current_mitigation_vector": "current_mit_vector",
}
_TCB_FIELDS = ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")


def report_from_fields(fields: Mapping[str, Any]) -> bytes:
    """Rebuild the 1184 report bytes from a mapping of its fields.

    Accepts snake_case or camelCase names, integers as numbers or decimal/hex strings,
    byte fields as byte lists, hex or base64, TCBs as objects (``{"bootloader", "tee",
    "snp", "microcode"[, "fmc"]}``), integers or 8 bytes, and the signature as
    ``{"r", "s"}`` or 512 bytes.

    Raises:
        MalformedEvidenceError: a field is missing, of the wrong type or the wrong size.
    """
    norm = {_ALIASES.get(_snake(k), _snake(k)): v for k, v in fields.items()}
    _expand_versions(norm)
    values: dict[str, Any] = {}
    turin = _is_turin(norm)
    for name in FIELD_NAMES:
        if name in ("signature_r", "signature_s"):
            continue
        size = FIELD_SIZES[name]
        raw = norm.get(name)
        if raw is None:
            if name in ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "launch_mit_vector",
                        "current_mit_vector", "committed_tcb", "launch_tcb") or name.startswith(
                            ("committed_", "current_b", "current_m")):
                values[name] = bytes(size) if name in _TCB_FIELDS else 0
                continue
            raise MalformedEvidenceError(f"report field {name!r} is missing")
        if name in _TCB_FIELDS:
            values[name] = _tcb_bytes(raw, name, turin=turin)
        elif name in _BYTE_FIELDS:
            values[name] = _sized(json_bytes(raw, name, size), size, name)
        else:
            values[name] = _int_field(raw, name, size)
    values["signature_r"], values["signature_s"] = _signature(norm.get("signature"))
    return _overlay_reserved(pack_fields(values), norm)


def _expand_versions(norm: dict[str, Any]) -> None:
    """``"current": {"major", "minor", "build"}`` (newer virtee/sev) → ``current_major`` ..."""
    for prefix in ("current", "committed"):
        value = norm.get(prefix)
        if isinstance(value, Mapping):
            for part in ("major", "minor", "build"):
                norm.setdefault(f"{prefix}_{part}", value.get(part))


# Reserved arrays of older virtee/sev serde output that hold fields of later report
# versions: ``_reserved_1`` (24 bytes at 0x188: CPUID of v3+), ``_reserved_4`` (168 bytes at
# 0x1F8: mitigation vectors of v5+). Used only when the named fields are absent.
_RESERVED_ARRAYS = (("_reserved_1", 0x188, 24, ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step")),
                    ("_reserved_4", 0x1F8, 168, ("launch_mit_vector", "current_mit_vector")))


def _overlay_reserved(report: bytes, norm: Mapping[str, Any]) -> bytes:
    out = bytearray(report)
    for name, offset, size, named in _RESERVED_ARRAYS:
        value = norm.get(name)
        if value is None or any(norm.get(n) is not None for n in named):
            continue
        out[offset : offset + size] = _sized(json_bytes(value, name, size), size, name)
    return bytes(out)


_BYTE_FIELDS = frozenset({
    "family_id", "image_id", "report_data", "measurement", "host_data", "id_key_digest",
    "author_key_digest", "report_id", "report_id_ma", "chip_id",
})


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _is_turin(norm: Mapping[str, Any]) -> bool:
    fam, model = norm.get("cpuid_fam_id"), norm.get("cpuid_mod_id")
    if isinstance(fam, int) and isinstance(model, int):
        return product_from_cpuid(fam, model) == "turin"
    tcb = norm.get("reported_tcb")
    return isinstance(tcb, Mapping) and tcb.get("fmc") is not None


def _int_field(value: Any, name: str, size: int) -> int:
    if isinstance(value, Mapping):  # bitfield newtypes serialised as {"0": n} or similar
        inner = list(value.values())
        if len(inner) == 1:
            value = inner[0]
    if isinstance(value, bool):
        raise MalformedEvidenceError(f"report field {name} must be an integer, got a boolean")
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError as exc:
            raise MalformedEvidenceError(
                f"report field {name} is not an integer: {value[:40]!r}") from exc
    if not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise MalformedEvidenceError(
            f"report field {name} is not a {8 * size}-bit unsigned integer")
    return value


def _sized(data: bytes, size: int, name: str) -> bytes:
    if len(data) != size:
        raise MalformedEvidenceError(f"report field {name} is {len(data)} bytes, expected {size}")
    return data


def _tcb_bytes(value: Any, name: str, *, turin: bool) -> bytes:
    if isinstance(value, Mapping):
        parts = {_snake(k): v for k, v in value.items()}
        try:
            comp = {k: _int_field(parts[k], f"{name}.{k}", 1)
                    for k in ("bootloader", "tee", "snp", "microcode")}
        except KeyError as exc:
            raise MalformedEvidenceError(f"{name} lacks component {exc}") from exc
        fmc = parts.get("fmc")
        if turin or fmc is not None:
            return TcbVersion.compose(**comp, fmc=_int_field(fmc or 0, f"{name}.fmc", 1)).raw
        return TcbVersion.compose(**comp).raw
    if isinstance(value, int | str) and not _is_byte_text(value):
        return _int_field(value, name, 8).to_bytes(8, "little")
    return _sized(json_bytes(value, name, 8), 8, name)


def _is_byte_text(value: Any) -> bool:
    """A TCB given as text: decimal or ``0x`` text is a u64, anything else is bytes."""
    return isinstance(value, str) and not (value.isdigit() or value.lower().startswith("0x"))


def _signature(value: Any) -> tuple[bytes, bytes]:
    if isinstance(value, Mapping):
        r = json_bytes(value.get("r"), "signature.r", 72)
        s = json_bytes(value.get("s"), "signature.s", 72)
        return _sized(r, 72, "signature.r"), _sized(s, 72, "signature.s")
    raw = json_bytes(value, "signature")
    if len(raw) < 144:
        raise MalformedEvidenceError(f"signature is {len(raw)} bytes, expected at least 144")
    return raw[:72], raw[72:144]
