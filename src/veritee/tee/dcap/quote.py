"""Intel DCAP ECDSA quotes — SGX v3, TDX v4, v5 — bytes ↔ fields. No crypto, no trust decisions.

Sources (intel-dcap.md §1): DCAP ``sgx_quote_3.h`` / ``sgx_quote_4.h`` / ``sgx_quote_5.h``
(``sgx_quote_header_t``, ``sgx_quote4_header_t``, ``sgx_report_body_t``, ``sgx_report2_body_t``,
``sgx_report2_body_v1_5_t``, ``sgx_ql_ecdsa_sig_data_t``, ``sgx_ecdsa_sig_data_v4_t``), QVL
``QuoteStructures.h``, ``QuoteConstants.h`` and ``Quote.cpp`` (``Quote::parse``,
``Quote::validate``), go-tdx-guest ``abi/abi.go``. All integers are little-endian; hashes, keys
and signatures are big-endian byte strings.

A quote is ``header (48) || [v5: body type u16, body size u32] || body || sig_data_len u32 ||
signature data``. The attestation key signs everything before ``sig_data_len``
(:attr:`Quote.signed_bytes`, §1.2). Lengths decide where the quote ends: zero padding or bytes a
tool appended after it are counted in :attr:`Quote.trailing_bytes` and otherwise ignored.

The signature data (§1.6) holds the quote signature, the attestation key and the *QE report
certification data* (QE report, its signature by the PCK key, the QE authentication data, and the
certification data that identifies the PCK certificate — type 5 is the PEM chain). Version 3
carries the QE part directly; versions 4 and 5 wrap it as certification data of type 6.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from veritee.errors import MalformedEvidenceError, MisuseError, UnsupportedVersionError
from veritee.tee._layout import FieldTable

# -- sizes and closed sets (QVL QuoteConstants.h, DCAP sgx_quote_*.h; §1.1, §1.2) ---------------

HEADER_SIZE: Final = 48
BODY_DESCRIPTOR_SIZE: Final = 6
SGX_REPORT_SIZE: Final = 384
TD_REPORT_10_SIZE: Final = 584
TD_REPORT_15_SIZE: Final = 648
#: Quotes larger than this are refused before parsing (dcap-qvl caps each field at 1 MiB).
MAX_QUOTE_BYTES: Final = 1 << 20

SUPPORTED_VERSIONS: Final = frozenset({3, 4, 5})

#: ``sgx_attestation_algorithm_id_t``: only ECDSA P-256 (2) is implemented by QVL, dcap-qvl and
#: go-tdx-guest; EPID (0) and ECDSA P-384 (3) are defined but unsupported.
ATT_KEY_EPID: Final = 0
ATT_KEY_ECDSA_P256: Final = 2
ATT_KEY_ECDSA_P384: Final = 3
_UNSUPPORTED_ATT_KEYS: Final = {ATT_KEY_EPID: "EPID", ATT_KEY_ECDSA_P384: "ECDSA P-384"}

TEE_TYPE_SGX: Final = 0x00000000
TEE_TYPE_TDX: Final = 0x00000081
TEE_NAMES: Final[Mapping[int, Literal["sgx", "tdx"]]] = {TEE_TYPE_SGX: "sgx", TEE_TYPE_TDX: "tdx"}

#: QVL ``INTEL_QE_VENDOR_ID``; the verifier compares, the parser only reads it.
INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

#: Body types of the v5 body descriptor (DCAP sgx_quote_5.h); v3 and v4 imply theirs.
BODY_SGX: Final = 1
BODY_TD10: Final = 2
BODY_TD15: Final = 3
BODY_NAMES: Final[Mapping[int, str]] = {BODY_SGX: "sgx", BODY_TD10: "td10", BODY_TD15: "td15"}
BODY_SIZES: Final[Mapping[int, int]] = {BODY_SGX: SGX_REPORT_SIZE, BODY_TD10: TD_REPORT_10_SIZE,
                                        BODY_TD15: TD_REPORT_15_SIZE}

#: Certification data types (DCAP ``sgx_ql_cert_key_type_t``; §1.6).
CERT_PPID_CLEARTEXT: Final = 1
CERT_PPID_RSA2048_OAEP: Final = 2
CERT_PPID_RSA3072_OAEP: Final = 3
CERT_PCK_LEAF: Final = 4
CERT_PCK_CHAIN: Final = 5
CERT_QE_REPORT: Final = 6
CERT_PLATFORM_MANIFEST: Final = 7
CERT_TYPE_NAMES: Final[Mapping[int, str]] = {
    CERT_PPID_CLEARTEXT: "PPID cleartext", CERT_PPID_RSA2048_OAEP: "PPID RSA-2048-OAEP",
    CERT_PPID_RSA3072_OAEP: "PPID RSA-3072-OAEP", CERT_PCK_LEAF: "PCK leaf certificate",
    CERT_PCK_CHAIN: "PCK certificate chain", CERT_QE_REPORT: "QE report certification data",
    CERT_PLATFORM_MANIFEST: "platform manifest",
}
#: What may identify the PCK certificate: the v3 certification data and the data nested in
#: type 6 (QVL ``Quote::validate``: types 1..5).
PCK_ID_TYPES: Final = frozenset(range(CERT_PPID_CLEARTEXT, CERT_PCK_CHAIN + 1))

# -- field tables (field, offset, size, struct code) ------------------------------------------

#: §1.1, ``sgx_quote_header_t`` / ``sgx_quote4_header_t``. Bytes 4..8 are ``att_key_data_0``
#: (reserved, zero) in v3. Bytes 8..12 are ``qe_svn``/``pce_svn`` in v3 and ``uint32
#: reserved`` in v4/v5, which QVL still reads as qe_svn/pce_svn: kept, never checked, and not
#: to be used for TCB matching (the PCK certificate's PCESVN is the one that counts).
HEADER: Final = FieldTable("quote header", (
    ("version", 0, 2, "H"),
    ("att_key_type", 2, 2, "H"),
    ("tee_type", 4, 4, "I"),
    ("qe_svn", 8, 2, "H"),
    ("pce_svn", 10, 2, "H"),
    ("qe_vendor_id", 12, 16, "s"),
    ("user_data", 28, 20, "s"),
), size=HEADER_SIZE)

#: §1.2, the 6 bytes after a v5 header (QVL ``BODY_BYTE_SIZE``).
BODY_DESCRIPTOR: Final = FieldTable("v5 body descriptor", (
    ("body_type", 0, 2, "H"),
    ("body_size", 2, 4, "I"),
), size=BODY_DESCRIPTOR_SIZE)

#: §1.3, ``sgx_report_body_t`` with the KSS fields; also the QE report. The reserved ranges
#: are kept as bytes and not checked: QVL ignores them and the KSS fields were carved out of
#: them once already.
SGX_REPORT: Final = FieldTable("SGX report body", (
    ("cpu_svn", 0, 16, "s"),
    ("misc_select", 16, 4, "I"),
    ("reserved1", 20, 12, "s"),
    ("isv_ext_prod_id", 32, 16, "s"),
    ("attributes", 48, 16, "s"),
    ("mr_enclave", 64, 32, "s"),
    ("reserved2", 96, 32, "s"),
    ("mr_signer", 128, 32, "s"),
    ("reserved3", 160, 32, "s"),
    ("config_id", 192, 64, "s"),
    ("isv_prod_id", 256, 2, "H"),
    ("isv_svn", 258, 2, "H"),
    ("config_svn", 260, 2, "H"),
    ("reserved4", 262, 42, "s"),
    ("isv_family_id", 304, 16, "s"),
    ("report_data", 320, 64, "s"),
), size=SGX_REPORT_SIZE)

_TD_REPORT_10_ROWS: Final = (
    ("tee_tcb_svn", 0, 16, "s"),
    ("mr_seam", 16, 48, "s"),
    ("mr_signer_seam", 64, 48, "s"),
    # MBZ in TDX 1.0 modules, but not checked: a v4 quote (TD report 1.0) also comes from
    # TDX 1.5 modules; the value is a claim.
    ("seam_attributes", 112, 8, "s"),
    ("td_attributes", 120, 8, "s"),
    ("xfam", 128, 8, "s"),
    ("mr_td", 136, 48, "s"),
    ("mr_config_id", 184, 48, "s"),
    ("mr_owner", 232, 48, "s"),
    ("mr_owner_config", 280, 48, "s"),
    ("rtmr0", 328, 48, "s"),
    ("rtmr1", 376, 48, "s"),
    ("rtmr2", 424, 48, "s"),
    ("rtmr3", 472, 48, "s"),
    ("report_data", 520, 64, "s"),
)
#: §1.4, ``sgx_report2_body_t`` (TD report 1.0).
TD_REPORT_10: Final = FieldTable("TD report 1.0 body", _TD_REPORT_10_ROWS, size=TD_REPORT_10_SIZE)
#: §1.4, ``sgx_report2_body_v1_5_t`` (TD report 1.5): 1.0 plus TEE_TCB_SVN2 and MRSERVICETD.
TD_REPORT_15: Final = FieldTable("TD report 1.5 body", (
    *_TD_REPORT_10_ROWS,
    ("tee_tcb_svn2", 584, 16, "s"),
    ("mr_service_td", 600, 48, "s"),
), size=TD_REPORT_15_SIZE)

#: §1.6, the fixed start of the signature data (all versions).
SIGNATURE_HEAD: Final = FieldTable("ECDSA signature data", (
    ("signature", 0, 64, "s"),
    ("attestation_key", 64, 64, "s"),
), size=128)

#: §1.6, the fixed start of the QE report certification data (the v3 signature data after
#: the attestation key; the content of certification data type 6 in v4/v5).
QE_CERTIFICATION_HEAD: Final = FieldTable("QE report certification data", (
    ("qe_report", 0, SGX_REPORT_SIZE, "s"),
    ("qe_report_signature", 384, 64, "s"),
    ("qe_auth_data_size", 448, 2, "H"),
), size=450)

#: §1.6, ``sgx_ql_certification_data_t``: type u16, size u32, then ``size`` bytes.
CERTIFICATION_HEAD: Final = FieldTable("certification data header", (
    ("cert_type", 0, 2, "H"),
    ("cert_size", 2, 4, "I"),
), size=6)

_U32: Final = struct.Struct("<I")
_U16: Final = struct.Struct("<H")


def _pack(table: FieldTable, item: object) -> bytes:
    return table.struct.pack(*(getattr(item, name) for name in table.names))


def pack_fields(table: FieldTable, values: Mapping[str, Any]) -> bytes:
    """Pack ``values`` into ``table``'s layout; fields not given are zero (for emulators).

    Raises:
        MalformedEvidenceError: a value does not fit its field.
    """
    full = {name: values.get(name, bytes(table.sizes[name]) if name in table.byte_fields else 0)
            for name in table.names}
    return table.pack(full)


# -- structures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The 48-byte header (§1.1); ``raw`` holds its exact bytes."""

    raw: bytes
    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    @property
    def tee(self) -> Literal["sgx", "tdx"]:
        return TEE_NAMES[self.tee_type]

    @property
    def qe_id(self) -> bytes:
        """The QE ID: the first 16 bytes of ``user_data`` (dcap-qvl ``Quote::qeid``)."""
        return self.user_data[:16]

    def to_bytes(self) -> bytes:
        return _pack(HEADER, self)


@dataclass(frozen=True, slots=True)
class SgxReport:
    """An SGX report body (§1.3): the enclave's in a v3 quote, or the QE report."""

    body_type: ClassVar[int] = BODY_SGX

    raw: bytes
    cpu_svn: bytes
    misc_select: int
    reserved1: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    reserved2: bytes
    mr_signer: bytes
    reserved3: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    reserved4: bytes
    isv_family_id: bytes
    report_data: bytes

    @property
    def attribute_flags(self) -> dict[str, bool]:
        return sgx_attribute_flags(self.attributes)

    def to_bytes(self) -> bytes:
        return _pack(SGX_REPORT, self)


@dataclass(frozen=True, slots=True)
class TdReport:
    """A TD report body (§1.4), 1.0 or — with ``tee_tcb_svn2`` and ``mr_service_td`` — 1.5."""

    raw: bytes
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def body_type(self) -> int:
        return BODY_TD10 if self.tee_tcb_svn2 is None else BODY_TD15

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3

    @property
    def attribute_flags(self) -> dict[str, bool]:
        return td_attribute_flags(self.td_attributes)

    def to_bytes(self) -> bytes:
        return _pack(TD_REPORT_10 if self.tee_tcb_svn2 is None else TD_REPORT_15, self)


Body = SgxReport | TdReport


@dataclass(frozen=True, slots=True)
class CertificationData:
    """``sgx_ql_certification_data_t``: a type and its exact payload (§1.6)."""

    cert_type: int
    data: bytes

    @property
    def type_name(self) -> str:
        return CERT_TYPE_NAMES.get(self.cert_type, "unknown")

    def to_bytes(self) -> bytes:
        return CERTIFICATION_HEAD.struct.pack(self.cert_type, len(self.data)) + self.data


@dataclass(frozen=True, slots=True)
class QeReportCertificationData:
    """QE report, its PCK signature, the QE authentication data and the PCK identification
    (§1.6; certification data type 6 in v4/v5, the tail of the signature data in v3)."""

    qe_report: SgxReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: CertificationData

    @property
    def qe_report_bytes(self) -> bytes:
        """The exact 384 bytes the PCK key signs."""
        return self.qe_report.raw

    def to_bytes(self) -> bytes:
        head = QE_CERTIFICATION_HEAD.struct.pack(
            self.qe_report.raw, self.qe_report_signature, len(self.qe_auth_data))
        return head + self.qe_auth_data + self.certification_data.to_bytes()


@dataclass(frozen=True, slots=True)
class SignatureData:
    """The signature data after ``sig_data_len`` (§1.6); ``raw`` holds its exact bytes."""

    raw: bytes
    signature: bytes
    """ECDSA P-256 ``r || s`` over :attr:`Quote.signed_bytes`."""
    attestation_key: bytes
    """The attestation public key ``x || y`` (no 0x04 prefix)."""
    qe: QeReportCertificationData
    wrapped: bool
    """True in v4/v5, where :attr:`qe` is the content of certification data type 6."""

    @property
    def certification_data(self) -> CertificationData:
        """What identifies the PCK certificate (types 1..5)."""
        return self.qe.certification_data

    @property
    def pck_chain(self) -> bytes | None:
        """The certification data payload when it is the PCK chain (type 5), else None.
        Real quotes carry PEM (leaf, intermediate, root; sometimes a final NUL); QVL's
        synthetic sample carries DER."""
        cert = self.qe.certification_data
        return cert.data if cert.cert_type == CERT_PCK_CHAIN else None

    @property
    def attestation_key_binding(self) -> bytes:
        """``attestation_key || qe_auth_data``: its SHA-256 is what the first 32 bytes of the
        QE report's REPORTDATA must hold (§2.4 step 14, QVL 4.1.2.4.13; go-tdx-guest also
        wants the other 32 to be zero). The verifier checks it."""
        return self.attestation_key + self.qe.qe_auth_data

    def to_bytes(self) -> bytes:
        qe = self.qe.to_bytes()
        if self.wrapped:
            qe = CertificationData(CERT_QE_REPORT, qe).to_bytes()
        return self.signature + self.attestation_key + qe


@dataclass(frozen=True, slots=True)
class Quote:
    """One parsed quote. ``raw`` holds its exact bytes up to the end of the signature data."""

    raw: bytes
    header: QuoteHeader
    body_type: int
    body: Body
    signature_data: SignatureData
    trailing_bytes: int = 0
    """Bytes after the quote in the input (zero padding, text a tool appended)."""

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def tee(self) -> Literal["sgx", "tdx"]:
        return self.header.tee

    @property
    def body_name(self) -> str:
        """``sgx``, ``td10`` or ``td15``."""
        return BODY_NAMES[self.body_type]

    @property
    def body_offset(self) -> int:
        return HEADER_SIZE + (BODY_DESCRIPTOR_SIZE if self.version == 5 else 0)

    @property
    def signed_length(self) -> int:
        return self.body_offset + BODY_SIZES[self.body_type]

    @property
    def signed_bytes(self) -> bytes:
        """header || [v5 body descriptor] || body: what the attestation key signs (§1.2)."""
        return self.raw[: self.signed_length]

    @property
    def report_data(self) -> bytes:
        return self.body.report_data

    def to_bytes(self) -> bytes:
        """Rebuild the quote from its fields; equals ``raw`` for every parsed quote."""
        descriptor = b""
        if self.version == 5:
            descriptor = BODY_DESCRIPTOR.struct.pack(self.body_type, BODY_SIZES[self.body_type])
        signature = self.signature_data.to_bytes()
        return (self.header.to_bytes() + descriptor + self.body.to_bytes()
                + _U32.pack(len(signature)) + signature)


# -- parsing ----------------------------------------------------------------------------------


def parse_quote(data: bytes) -> Quote:
    """Parse a quote from the start of ``data``; bytes after its end are counted, not read.

    Raises:
        UnsupportedVersionError: the version, the v5 body type or the attestation key type is
            outside the supported set.
        MalformedEvidenceError: too short or too long, a length pointing past the end, an
            unknown TEE type, a combination QVL's ``Quote::validate`` refuses, or parts that do
            not fill the signature data exactly.
    """
    if len(data) > MAX_QUOTE_BYTES:
        raise MalformedEvidenceError(
            f"quote is {len(data)} bytes, more than the limit of {MAX_QUOTE_BYTES}")
    header = parse_header(data)
    body_type, offset = _body_position(header, data)
    size = BODY_SIZES[body_type]
    body = parse_body(_take(data, offset, size, f"the {BODY_NAMES[body_type]} body"), body_type)
    (length,) = _U32.unpack(_take(data, offset + size, 4, "sig_data_len"))
    start = offset + size + 4
    signature = parse_signature_data(_take(data, start, length, "the signature data"),
                                     header.version)
    end = start + length
    return Quote(bytes(data[:end]), header, body_type, body, signature, len(data) - end)


def _take(data: bytes, start: int, size: int, what: str) -> bytes:
    end = start + size
    if end > len(data):
        raise MalformedEvidenceError(
            f"{what} needs bytes [{start}, {end}) but the quote ends at {len(data)}")
    return data[start:end]


def parse_header(data: bytes) -> QuoteHeader:
    """Parse and check the 48-byte header (§1.1, QVL ``Quote::validate``).

    Raises:
        UnsupportedVersionError: the version or attestation key type is not supported.
        MalformedEvidenceError: too short, or an unknown attestation key or TEE type.
    """
    header = QuoteHeader(bytes(data[:HEADER_SIZE]), **HEADER.unpack(data))
    if header.version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"quote version is {header.version}; supported are {sorted(SUPPORTED_VERSIONS)}")
    _check_att_key_type(header.att_key_type)
    _check_tee_type(header)
    return header


def _check_att_key_type(value: int) -> None:
    if value == ATT_KEY_ECDSA_P256:
        return
    if value in _UNSUPPORTED_ATT_KEYS:
        raise UnsupportedVersionError(
            f"att_key_type is {value} ({_UNSUPPORTED_ATT_KEYS[value]} attestation key): defined "
            f"by Intel but not supported; only {ATT_KEY_ECDSA_P256} (ECDSA P-256) is")
    raise MalformedEvidenceError(
        f"att_key_type is {value}, not an attestation key type Intel defines "
        f"(supported: {ATT_KEY_ECDSA_P256}, ECDSA P-256)")


def _check_tee_type(header: QuoteHeader) -> None:
    if header.version == 3 and header.tee_type != TEE_TYPE_SGX:
        raise MalformedEvidenceError(
            f"header bytes [4, 8) of a version 3 quote (att_key_data_0, reserved) must be zero, "
            f"found {header.tee_type:#x}; QVL accepts version 3 only for SGX")
    if header.tee_type not in TEE_NAMES:
        raise MalformedEvidenceError(
            f"tee_type is {header.tee_type:#x}; known are {TEE_TYPE_SGX:#x} (SGX) and "
            f"{TEE_TYPE_TDX:#x} (TDX)")


def _body_position(header: QuoteHeader, data: bytes) -> tuple[int, int]:
    """``(body type, body offset)``; v3 and v4 imply the type, v5 declares it (§1.2)."""
    if header.version != 5:
        return (BODY_TD10 if header.tee_type == TEE_TYPE_TDX else BODY_SGX), HEADER_SIZE
    descriptor = BODY_DESCRIPTOR.unpack(
        _take(data, HEADER_SIZE, BODY_DESCRIPTOR_SIZE, "the v5 body descriptor"))
    body_type, size = descriptor["body_type"], descriptor["body_size"]
    if body_type not in BODY_SIZES:
        known = ", ".join(f"{kind} ({name})" for kind, name in BODY_NAMES.items())
        raise UnsupportedVersionError(f"v5 body type is {body_type}; supported are {known}")
    if size != BODY_SIZES[body_type]:
        raise MalformedEvidenceError(
            f"v5 body size is {size}; a {BODY_NAMES[body_type]} body is {BODY_SIZES[body_type]}")
    if (body_type == BODY_SGX) != (header.tee_type == TEE_TYPE_SGX):
        raise MalformedEvidenceError(
            f"v5 body type {body_type} ({BODY_NAMES[body_type]}) does not fit tee_type "
            f"{header.tee_type:#x}")
    return body_type, HEADER_SIZE + BODY_DESCRIPTOR_SIZE


def parse_body(data: bytes, body_type: int) -> Body:
    """Parse a report body of ``body_type`` (1 SGX, 2 TD 1.0, 3 TD 1.5) from ``data``.

    Raises:
        MalformedEvidenceError: ``data`` is shorter than the body.
        UnsupportedVersionError: unknown body type.
    """
    if body_type == BODY_SGX:
        return parse_sgx_report(data)
    if body_type not in (BODY_TD10, BODY_TD15):
        raise UnsupportedVersionError(f"body type {body_type} is not supported")
    table = TD_REPORT_10 if body_type == BODY_TD10 else TD_REPORT_15
    return TdReport(bytes(data[: table.size]), **table.unpack(data))


def parse_sgx_report(data: bytes) -> SgxReport:
    """Parse the 384-byte SGX report body at the start of ``data`` (§1.3).

    Raises:
        MalformedEvidenceError: ``data`` is shorter than 384 bytes.
    """
    return SgxReport(bytes(data[:SGX_REPORT_SIZE]), **SGX_REPORT.unpack(data))


def parse_signature_data(data: bytes, version: int) -> SignatureData:
    """Parse the signature data of a ``version`` quote; its parts must fill ``data`` exactly.

    Raises:
        MalformedEvidenceError: too short, a size that disagrees with the bytes present, or a
            certification data type that is not allowed where it is (§1.2, QVL
            ``Quote::validate``: v3 types 1..5; v4/v5 type 6 holding 1..5).
    """
    head = SIGNATURE_HEAD.unpack(data)
    rest = data[SIGNATURE_HEAD.size :]
    if version == 3:
        qe = parse_qe_certification_data(rest)
    else:
        outer = parse_certification_data(rest, "outer certification data")
        if outer.cert_type != CERT_QE_REPORT:
            raise MalformedEvidenceError(
                f"outer certification data type is {outer.cert_type} ({outer.type_name}); a "
                f"version {version} quote needs {CERT_QE_REPORT} ({CERT_TYPE_NAMES[6]})")
        qe = parse_qe_certification_data(outer.data)
    return SignatureData(bytes(data), head["signature"], head["attestation_key"], qe,
                         wrapped=version != 3)


def parse_qe_certification_data(data: bytes) -> QeReportCertificationData:
    """Parse QE report certification data filling ``data`` exactly (§1.6).

    Raises:
        MalformedEvidenceError: too short, the QE authentication data or the nested
            certification data do not fit, or the nested type is not 1..5.
    """
    head = QE_CERTIFICATION_HEAD.unpack(data)
    auth_end = QE_CERTIFICATION_HEAD.size + head["qe_auth_data_size"]
    if auth_end > len(data):
        raise MalformedEvidenceError(
            f"qe_auth_data_size is {head['qe_auth_data_size']} but only "
            f"{len(data) - QE_CERTIFICATION_HEAD.size} bytes follow it")
    cert = parse_certification_data(data[auth_end:], "certification data")
    if cert.cert_type not in PCK_ID_TYPES:
        raise MalformedEvidenceError(
            f"certification data type is {cert.cert_type} ({cert.type_name}); here QVL allows "
            f"only types 1..5 (PPID or PCK certificate data)")
    return QeReportCertificationData(parse_sgx_report(head["qe_report"]),
                                     head["qe_report_signature"],
                                     bytes(data[QE_CERTIFICATION_HEAD.size : auth_end]), cert)


def parse_certification_data(data: bytes, what: str) -> CertificationData:
    """Parse ``type || size || payload`` whose payload must end exactly where ``data`` ends.

    Raises:
        MalformedEvidenceError: too short, an unknown type, or a size that disagrees with the
            bytes present.
    """
    if len(data) < CERTIFICATION_HEAD.size:
        raise MalformedEvidenceError(
            f"{what} header needs {CERTIFICATION_HEAD.size} bytes, {len(data)} are left")
    head = CERTIFICATION_HEAD.unpack(data)
    cert_type, size = head["cert_type"], head["cert_size"]
    if cert_type not in CERT_TYPE_NAMES:
        raise MalformedEvidenceError(f"{what} type is {cert_type}, which Intel does not define")
    present = len(data) - CERTIFICATION_HEAD.size
    if size != present:
        raise MalformedEvidenceError(
            f"{what} (type {cert_type}) declares {size} bytes but {present} bytes are there")
    return CertificationData(cert_type, bytes(data[CERTIFICATION_HEAD.size :]))


# -- building (for emulators and tests) --------------------------------------------------------


def build_signature_data(*, version: int, signature: bytes, attestation_key: bytes,
                         qe_report: bytes, qe_report_signature: bytes, qe_auth_data: bytes,
                         certification: CertificationData) -> bytes:
    """Signature data bytes for a ``version`` quote (no checks beyond field sizes)."""
    qe = QeReportCertificationData(parse_sgx_report(qe_report), qe_report_signature,
                                   qe_auth_data, certification)
    return SignatureData(b"", signature, attestation_key, qe, wrapped=version != 3).to_bytes()


def build_quote(header: bytes, body: bytes, signature_data: bytes) -> bytes:
    """``header || [v5 descriptor] || body || sig_data_len || signature_data``; a v5 quote's
    body type follows from the body's size (the three sizes differ)."""
    descriptor = b""
    if _U16.unpack_from(header)[0] == 5:
        kinds = [kind for kind, size in BODY_SIZES.items() if size == len(body)]
        if not kinds:
            raise MisuseError(f"a {len(body)}-byte body is none of {sorted(BODY_SIZES.values())}")
        descriptor = BODY_DESCRIPTOR.struct.pack(kinds[0], len(body))
    return header + descriptor + body + _U32.pack(len(signature_data)) + signature_data


# -- attribute bits (§1.5) -----------------------------------------------------------------------

#: TD_ATTRIBUTES bits (u64 LE; dcap-qvl ``TDAttributes::parse``). Bit 29 is MIGRATABLE in the
#: TDX 1.5 ABI; dcap-qvl treats it as reserved and refuses it.
TD_DEBUG: Final = 1 << 0
TD_SEPT_VE_DISABLE: Final = 1 << 28
TD_MIGRATABLE: Final = 1 << 29
TD_PKS: Final = 1 << 30
TD_KL: Final = 1 << 31
TD_PERFMON: Final = 1 << 63
TD_ATTRIBUTE_BITS: Final[Mapping[str, int]] = {
    "debug": TD_DEBUG, "sept_ve_disable": TD_SEPT_VE_DISABLE, "migratable": TD_MIGRATABLE,
    "pks": TD_PKS, "kl": TD_KL, "perfmon": TD_PERFMON,
}
#: Bits 1..27 and 32..62, which no ABI version named in the note defines.
TD_ATTRIBUTES_RESERVED: Final = ((1 << 64) - 1) & ~sum(TD_ATTRIBUTE_BITS.values())

#: SGX ATTRIBUTES flags (the first 8 bytes, u64 LE; bytes 8..16 are XFRM). INIT, DEBUG,
#: MODE64BIT and PROVISIONKEY per §1.5; EINITTOKEN_KEY and KSS per the Intel SDM (SECS).
SGX_INIT: Final = 1 << 0
SGX_DEBUG: Final = 1 << 1
SGX_MODE64BIT: Final = 1 << 2
SGX_PROVISIONKEY: Final = 1 << 4
SGX_EINITTOKEN_KEY: Final = 1 << 5
SGX_KSS: Final = 1 << 7
SGX_ATTRIBUTE_BITS: Final[Mapping[str, int]] = {
    "init": SGX_INIT, "debug": SGX_DEBUG, "mode64bit": SGX_MODE64BIT,
    "provisionkey": SGX_PROVISIONKEY, "einittoken_key": SGX_EINITTOKEN_KEY, "kss": SGX_KSS,
}


def _sized_int(raw: bytes, size: int, name: str) -> int:
    if len(raw) != size:
        raise MalformedEvidenceError(f"{name} is {len(raw)} bytes, expected {size}")
    return int.from_bytes(raw, "little")


def td_attributes_value(td_attributes: bytes) -> int:
    """TD_ATTRIBUTES (8 bytes) as the u64 it encodes."""
    return _sized_int(td_attributes, 8, "TD_ATTRIBUTES")


def td_attribute_flags(td_attributes: bytes) -> dict[str, bool]:
    """``{"debug", "sept_ve_disable", "migratable", "pks", "kl", "perfmon"}`` → set or not."""
    value = td_attributes_value(td_attributes)
    return {name: bool(value & bit) for name, bit in TD_ATTRIBUTE_BITS.items()}


def td_reserved_bits(td_attributes: bytes) -> int:
    """The TD_ATTRIBUTES bits that are set but not named in :data:`TD_ATTRIBUTE_BITS`."""
    return td_attributes_value(td_attributes) & TD_ATTRIBUTES_RESERVED


def sgx_attribute_flags(attributes: bytes) -> dict[str, bool]:
    """The named SGX ATTRIBUTES flags of a 16-byte ATTRIBUTES field → set or not."""
    flags = _sized_int(attributes, 16, "ATTRIBUTES") & ((1 << 64) - 1)
    return {name: bool(flags & bit) for name, bit in SGX_ATTRIBUTE_BITS.items()}


def sgx_xfrm(attributes: bytes) -> int:
    """XFRM: bytes 8..16 of a 16-byte ATTRIBUTES field, as a u64."""
    return _sized_int(attributes, 16, "ATTRIBUTES") >> 64
