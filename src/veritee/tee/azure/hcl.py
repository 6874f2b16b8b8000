"""The Azure HCL report (what the paravisor writes to vTPM NV index 0x01400001): bytes ↔
fields, and its variable data. No crypto beyond hashing, no trust decisions.

Layout (se-pef-tpm-gpu.md §3.6; kinvolk/azure-cvm-tooling ``az-cvm-vtpm/src/hcl``), all
little-endian:

==========  =====  ==============================================================
offset      size   field
==========  =====  ==============================================================
0x000       32     header: signature ``"HCLA"`` (u32 0x414C4348), version, report_size,
                   request_type, status, 12 reserved bytes
0x020       1184   the hardware report: an SNP ATTESTATION_REPORT (1184 bytes) or a
                   TDREPORT (1024 bytes, then zero padding)
0x4C0       20     IgvmRequestData: data_size, version, report_type (2 SNP, 4 TDX),
                   report_data_hash_type (1 SHA-256), variable_data_size
0x4D4       var    the variable data: UTF-8 JSON ``{"keys": [JWK, ...],
                   "vm-configuration": {...}, "user-data": "<hex>"}``
==========  =====  ==============================================================

Bytes after the variable data (the NV index is larger than the report) are kept, not read.
The hardware report binds the variable data: its REPORT_DATA starts with
``H(variable data)``, H named by report_data_hash_type.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.encoding import b64url, b64url_decode
from veritee.errors import MalformedEvidenceError, UnsupportedVersionError
from veritee.memo import BoundedMemo
from veritee.tee._layout import FieldTable

HCL_SIGNATURE: Final = 0x414C4348
"""``"HCLA"`` read as a little-endian u32."""
HEADER_SIZE: Final = 0x20
HW_REPORT_OFFSET: Final = 0x20
HW_REPORT_SIZE: Final = 1184
"""The larger of the SNP report (1184) and the TDREPORT (1024)."""
TD_REPORT_SIZE: Final = 1024
IGVM_OFFSET: Final = HW_REPORT_OFFSET + HW_REPORT_SIZE
IGVM_SIZE: Final = 20
VAR_DATA_OFFSET: Final = IGVM_OFFSET + IGVM_SIZE
#: Header versions seen in Azure's reports (1 on SNP machines, 2 on TDX ones).
SUPPORTED_VERSIONS: Final = frozenset({1, 2})
REPORT_TYPES: Final[Mapping[int, Literal["snp", "tdx"]]] = {2: "snp", 4: "tdx"}
REPORT_TYPE_CODES: Final[Mapping[str, int]] = {v: k for k, v in REPORT_TYPES.items()}
#: IgvmHashType: 0 invalid, 1 SHA-256, 2 SHA-384, 3 SHA-512. Azure (and Trustee) use SHA-256.
HASH_SHA256: Final = 1
#: Variable data longer than this is refused (Azure's is about 1.5 KiB).
MAX_VAR_DATA: Final = 64 * 1024
#: RSA moduli longer than this are refused before any arithmetic (Azure's AK is RSA-2048).
MAX_RSA_BITS: Final = 8192
AK_KID: Final = "HCLAkPub"
EK_KID: Final = "HCLEkPub"
#: The ``vm-configuration`` members with a fixed JSON type.
VM_CONFIG_BOOLS: Final = ("secure-boot", "tpm-enabled", "console-enabled")
VM_CONFIG_STRINGS: Final = ("vmUniqueId",)

HEADER: Final = FieldTable("HCL report header", (
    ("signature", 0x00, 4, "I"),
    ("version", 0x04, 4, "I"),
    ("report_size", 0x08, 4, "I"),
    ("request_type", 0x0C, 4, "I"),
    ("status", 0x10, 4, "I"),
    # reserved[3]: kept, not required to be zero (no source says the HCL zeroes it).
    ("reserved", 0x14, 12, "s"),
), size=HEADER_SIZE)

IGVM_REQUEST_DATA: Final = FieldTable("IgvmRequestData", (
    ("data_size", 0x00, 4, "I"),
    ("version", 0x04, 4, "I"),
    ("report_type", 0x08, 4, "I"),
    ("report_data_hash_type", 0x0C, 4, "I"),
    ("variable_data_size", 0x10, 4, "I"),
), size=IGVM_SIZE)


@dataclass(frozen=True, slots=True)
class HclReport:
    """One parsed HCL report; ``raw`` holds its exact bytes (trailing bytes included)."""

    raw: bytes
    version: int
    report_size: int
    request_type: int
    status: int
    reserved: bytes
    hw_report: bytes
    """The 1184-byte hardware-report area."""
    data_size: int
    igvm_version: int
    report_type_code: int
    hash_type: int
    var_data: bytes

    @property
    def report_type(self) -> Literal["snp", "tdx"]:
        return REPORT_TYPES[self.report_type_code]

    @property
    def td_report(self) -> bytes:
        """The TDREPORT (the first 1024 bytes of the hardware-report area)."""
        return self.hw_report[:TD_REPORT_SIZE]

    @property
    def var_data_sha256(self) -> bytes:
        return hashlib.sha256(self.var_data).digest()

    @property
    def trailing(self) -> bytes:
        return self.raw[VAR_DATA_OFFSET + len(self.var_data):]

    def to_bytes(self) -> bytes:
        """Rebuild the report from its fields; equals ``raw`` for every parsed report."""
        header = HEADER.pack({"signature": HCL_SIGNATURE, "version": self.version,
                              "report_size": self.report_size,
                              "request_type": self.request_type, "status": self.status,
                              "reserved": self.reserved})
        igvm = IGVM_REQUEST_DATA.pack({
            "data_size": self.data_size, "version": self.igvm_version,
            "report_type": self.report_type_code,
            "report_data_hash_type": self.hash_type,
            "variable_data_size": len(self.var_data)})
        return header + self.hw_report + igvm + self.var_data + self.trailing


def parse_hcl_report(data: bytes) -> HclReport:
    """Parse an HCL report (bytes after its variable data are kept, not read).

    Raises:
        MalformedEvidenceError: too short, not ``HCLA``, an unknown report type, or a
            variable-data size that does not fit (the message names the field).
        UnsupportedVersionError: a header version or hash type outside the closed sets.
    """
    if len(data) < VAR_DATA_OFFSET:
        raise MalformedEvidenceError(
            f"HCL report is {len(data)} bytes; its header, hardware report and "
            f"IgvmRequestData take {VAR_DATA_OFFSET} ({VAR_DATA_OFFSET:#x})")
    head = HEADER.unpack(data)
    if head["signature"] != HCL_SIGNATURE:
        raise MalformedEvidenceError(
            f"HCL report signature is {head['signature']:#010x}, expected "
            f"{HCL_SIGNATURE:#010x} ('HCLA')")
    if head["version"] not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"HCL report version is {head['version']}; supported are "
            f"{sorted(SUPPORTED_VERSIONS)}")
    igvm = IGVM_REQUEST_DATA.unpack(data[IGVM_OFFSET:])
    _check_igvm(igvm, len(data))
    end = VAR_DATA_OFFSET + igvm["variable_data_size"]
    return HclReport(
        raw=bytes(data), version=head["version"], report_size=head["report_size"],
        request_type=head["request_type"], status=head["status"], reserved=head["reserved"],
        hw_report=bytes(data[HW_REPORT_OFFSET:IGVM_OFFSET]), data_size=igvm["data_size"],
        igvm_version=igvm["version"], report_type_code=igvm["report_type"],
        hash_type=igvm["report_data_hash_type"], var_data=bytes(data[VAR_DATA_OFFSET:end]))


def _check_igvm(igvm: Mapping[str, int], total: int) -> None:
    if igvm["report_type"] not in REPORT_TYPES:
        known = ", ".join(f"{k} ({v.upper()})" for k, v in REPORT_TYPES.items())
        raise MalformedEvidenceError(
            f"HCL IgvmRequestData.report_type is {igvm['report_type']}; known: {known}")
    if igvm["report_data_hash_type"] != HASH_SHA256:
        raise UnsupportedVersionError(
            f"HCL IgvmRequestData.report_data_hash_type is "
            f"{igvm['report_data_hash_type']}; only {HASH_SHA256} (SHA-256) is supported")
    size = igvm["variable_data_size"]
    if size > MAX_VAR_DATA or VAR_DATA_OFFSET + size > total:
        raise MalformedEvidenceError(
            f"HCL IgvmRequestData.variable_data_size is {size}, but "
            f"{max(0, total - VAR_DATA_OFFSET)} bytes follow it (at most {MAX_VAR_DATA})")


# -- the variable data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VarData:
    """The HCL report's variable data, read."""

    ak_public: rsa.RSAPublicKey
    """The vTPM's attestation key (JWK ``HCLAkPub``)."""
    ak_spki: bytes
    """``ak_public`` as DER SubjectPublicKeyInfo."""
    key_ids: tuple[str, ...]
    """The ``kid`` of every key, in order."""
    vm_configuration: dict[str, Any]
    """The ``vm-configuration`` members whose values are JSON scalars."""
    user_data: bytes | None
    """``user-data`` (hex in the JSON), when present."""
    ek_spki: bytes | None = None
    """The endorsement key (JWK ``HCLEkPub``) as DER SPKI, when present and RSA."""


class JwkKeys:
    """RSA keys read from JWKs, kept by their exact ``n`` and ``e`` text: the same VM's
    HCLAkPub and HCLEkPub come back on every attestation, and reading a key (base64url,
    the modulus checks, the key object, its SPKI) is a pure function of that text. Held by a
    verifier, never by the module; bounded."""

    __slots__ = ("_keys",)
    LIMIT: ClassVar[int] = 256

    def __init__(self) -> None:
        self._keys: BoundedMemo[tuple[rsa.RSAPublicKey, bytes]] = BoundedMemo(self.LIMIT)

    def load(self, jwk: Mapping[str, Any], what: str) -> tuple[rsa.RSAPublicKey, bytes]:
        """:func:`rsa_jwk` of ``jwk`` and its :func:`spki`.

        Raises:
            MalformedEvidenceError: as :func:`rsa_jwk`.
        """
        n, e = jwk.get("n"), jwk.get("e")

        def read() -> tuple[rsa.RSAPublicKey, bytes]:
            key = rsa_jwk(jwk, what)
            return key, spki(key)

        if jwk.get("kty") != "RSA" or not isinstance(n, str) or not isinstance(e, str):
            return read()  # raises, naming the defect
        return self._keys.get((n, e), read)


def parse_var_data(raw: bytes, keys: JwkKeys | None = None) -> VarData:
    """Read the variable data; ``keys`` keeps the RSA keys read before (none: read afresh).

    Raises:
        MalformedEvidenceError: not UTF-8 JSON, nesting too deep, no ``HCLAkPub`` RSA key,
            or a member of the wrong type (the message names it).
    """
    document = _json_object(raw)
    jwks = document.get("keys")
    if not isinstance(jwks, list) or not all(isinstance(k, Mapping) for k in jwks):
        raise MalformedEvidenceError("HCL variable data: 'keys' must be a list of JWK objects")
    by_kid = {str(k.get("kid")): k for k in jwks if isinstance(k.get("kid"), str)}
    if AK_KID not in by_kid:
        raise MalformedEvidenceError(
            f"HCL variable data holds no key with kid {AK_KID!r} (kids: {sorted(by_kid)})")
    memo = keys if keys is not None else JwkKeys()
    ak, ak_spki = memo.load(by_kid[AK_KID], AK_KID)
    ek = by_kid.get(EK_KID)
    ek_spki = memo.load(ek, EK_KID)[1] if ek is not None and ek.get("kty") == "RSA" else None
    return VarData(ak_public=ak, ak_spki=ak_spki,
                   key_ids=tuple(str(k.get("kid")) for k in jwks),
                   vm_configuration=_vm_configuration(document.get("vm-configuration")),
                   user_data=_user_data(document.get("user-data")),
                   ek_spki=ek_spki)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedEvidenceError(f"HCL variable data is not UTF-8 JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedEvidenceError(
            f"HCL variable data must be a JSON object, got {type(document).__name__}")
    return document


def rsa_jwk(jwk: Mapping[str, Any], what: str) -> rsa.RSAPublicKey:
    """The RSA public key of a JWK (RFC 7518 §6.3.1: ``n`` and ``e``, base64url).

    Raises:
        MalformedEvidenceError: not an RSA JWK, or ``n``/``e`` do not decode or are unusable.
    """
    if jwk.get("kty") != "RSA":
        raise MalformedEvidenceError(f"JWK {what}: kty is {jwk.get('kty')!r}, expected 'RSA'")
    n, e = (_b64url_int(jwk.get(name), f"JWK {what}.{name}") for name in ("n", "e"))
    if n.bit_length() > MAX_RSA_BITS or n.bit_length() < 1024:
        raise MalformedEvidenceError(
            f"JWK {what}: the modulus is {n.bit_length()} bits (1024 to {MAX_RSA_BITS})")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise MalformedEvidenceError(f"JWK {what} is not a usable RSA key: {exc}") from exc


def _b64url_int(value: Any, name: str) -> int:
    raw = b64url_decode(value) if isinstance(value, str) else None
    if not raw:
        raise MalformedEvidenceError(f"{name} is not base64url text")
    return int.from_bytes(raw, "big")


def spki(key: rsa.RSAPublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _vm_configuration(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEvidenceError(
            f"HCL variable data: 'vm-configuration' must be an object, got "
            f"{type(value).__name__}")
    out = {str(k): v for k, v in value.items()
           if v is None or isinstance(v, bool | int | float | str)}
    for names, kind in ((VM_CONFIG_BOOLS, bool), (VM_CONFIG_STRINGS, str)):
        for name in names:
            if name in value and not isinstance(value[name], kind):
                raise MalformedEvidenceError(
                    f"vm-configuration.{name} must be a {kind.__name__}, got "
                    f"{type(value[name]).__name__}")
    return out


def _user_data(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvidenceError(
            f"HCL variable data: 'user-data' must be hex text, got {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise MalformedEvidenceError("HCL variable data: 'user-data' is not hex text") from exc


# -- builders (for the emulator and tests) -------------------------------------------------


def jwk_of(key: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    """``key`` as the HCL writes it: an RSA JWK with ``kid`` and ``key_ops``."""
    numbers = key.public_numbers()

    def encode(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {"kid": kid, "key_ops": ["sign"] if kid == AK_KID else ["encrypt"], "kty": "RSA",
            "e": encode(numbers.e), "n": encode(numbers.n)}


def build_var_data(ak: rsa.RSAPublicKey, *, ek: rsa.RSAPublicKey | None = None,
                   vm_configuration: Mapping[str, Any] | None = None,
                   user_data: bytes | None = None) -> bytes:
    """Variable data in the HCL's shape (compact UTF-8 JSON)."""
    keys = [jwk_of(ak, AK_KID)] + ([jwk_of(ek, EK_KID)] if ek is not None else [])
    document: dict[str, Any] = {"keys": keys}
    if vm_configuration is not None:
        document["vm-configuration"] = dict(vm_configuration)
    if user_data is not None:
        document["user-data"] = user_data.hex().upper()
    return json.dumps(document, separators=(",", ":")).encode()


def build_hcl_report(hw_report: bytes, var_data: bytes, *, report_type: Literal["snp", "tdx"],
                     version: int | None = None, size: int = 2600,
                     hash_type: int = HASH_SHA256) -> bytes:
    """An HCL report around ``hw_report`` (zero-padded to 1184 bytes) and ``var_data``,
    zero-padded to ``size`` bytes as the NV index holds it."""
    if len(hw_report) > HW_REPORT_SIZE:
        raise ValueError(f"the hardware report is {len(hw_report)} bytes; at most 1184")
    body_size = IGVM_SIZE + len(var_data)
    header = HEADER.pack({
        "signature": HCL_SIGNATURE, "version": version or (1 if report_type == "snp" else 2),
        "report_size": HEADER_SIZE + HW_REPORT_SIZE + body_size, "request_type": 2, "status": 0,
        "reserved": bytes(12)})
    igvm = IGVM_REQUEST_DATA.pack({
        "data_size": body_size, "version": 1, "report_type": REPORT_TYPE_CODES[report_type],
        "report_data_hash_type": hash_type, "variable_data_size": len(var_data)})
    out = header + hw_report.ljust(HW_REPORT_SIZE, b"\0") + igvm + var_data
    return out.ljust(size, b"\0")


def hcl_report_b64url(data: bytes) -> str:
    """Padded base64url, as Trustee's attester writes ``hcl_report`` (serde_with UrlSafe)."""
    return base64.urlsafe_b64encode(data).decode("ascii")


__all__ = ["AK_KID", "EK_KID", "HCL_SIGNATURE", "HW_REPORT_SIZE", "IGVM_OFFSET",
           "REPORT_TYPES", "VAR_DATA_OFFSET", "HclReport", "JwkKeys", "VarData", "build_hcl_report",
           "build_var_data", "hcl_report_b64url", "jwk_of", "parse_hcl_report",
           "parse_var_data", "rsa_jwk", "spki"]
