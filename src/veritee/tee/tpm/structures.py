"""TPM 2.0 structures — TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC — bytes ↔ fields.

No trust decisions here: parsing, marshalling and the PCR digest only.

Sources: TCG TPM 2.0 Library Part 2 (Structures) rev 1.59 — §6.2 ``TPM_GENERATED_VALUE``,
§6.3 ``TPM_ALG_ID`` (Table 9), §6.9 ``TPM_ST`` (Table 19), §10.5.3 ``TPMS_PCR_SELECTION``,
§10.9.7 ``TPML_PCR_SELECTION``, §10.11.1 ``TPMS_CLOCK_INFO``, §10.12.4 ``TPMS_QUOTE_INFO``,
§10.12.3 ``TPMS_CERTIFY_INFO``, §10.12.12 ``TPMS_ATTEST`` (Table 131), §11.2.4
``TPMT_SIGNATURE``, §12.2.4 ``TPMT_PUBLIC``; research note se-pef-tpm-gpu.md §3.1 (the byte
layout checked against keylime's sample quote). Every integer is big-endian; a ``TPM2B_x``
is a u16 size followed by that many bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from veritee.errors import MalformedEvidenceError, MisuseError, UnsupportedVersionError

# -- constants (Part 2 §6) -----------------------------------------------------------------

#: ``TPM_GENERATED_VALUE`` ("\xffTCG"): the TPM puts it first in every structure it signs.
TPM_GENERATED_VALUE: Final = 0xFF544347
TPM_ST_ATTEST_CERTIFY: Final = 0x8017
TPM_ST_ATTEST_QUOTE: Final = 0x8018
ATTEST_TYPE_NAMES: Final[Mapping[int, str]] = {
    TPM_ST_ATTEST_CERTIFY: "TPM_ST_ATTEST_CERTIFY", TPM_ST_ATTEST_QUOTE: "TPM_ST_ATTEST_QUOTE"}

TPM_ALG_RSA: Final = 0x0001
TPM_ALG_SHA1: Final = 0x0004
TPM_ALG_HMAC: Final = 0x0005
TPM_ALG_AES: Final = 0x0006
TPM_ALG_KEYEDHASH: Final = 0x0008
TPM_ALG_SHA256: Final = 0x000B
TPM_ALG_SHA384: Final = 0x000C
TPM_ALG_SHA512: Final = 0x000D
TPM_ALG_NULL: Final = 0x0010
TPM_ALG_RSASSA: Final = 0x0014
TPM_ALG_RSAES: Final = 0x0015
TPM_ALG_RSAPSS: Final = 0x0016
TPM_ALG_OAEP: Final = 0x0017
TPM_ALG_ECDSA: Final = 0x0018
TPM_ALG_ECDH: Final = 0x0019
TPM_ALG_ECDAA: Final = 0x001A
TPM_ALG_ECSCHNORR: Final = 0x001C
TPM_ALG_KDF1_SP800_56A: Final = 0x0020
TPM_ALG_KDF2: Final = 0x0021
TPM_ALG_KDF1_SP800_108: Final = 0x0022
TPM_ALG_ECC: Final = 0x0023
TPM_ALG_SYMCIPHER: Final = 0x0025
TPM_ALG_CFB: Final = 0x0043

HASH_NAMES: Final[Mapping[int, str]] = {
    TPM_ALG_SHA1: "sha1", TPM_ALG_SHA256: "sha256", TPM_ALG_SHA384: "sha384",
    TPM_ALG_SHA512: "sha512"}
HASH_IDS: Final[Mapping[str, int]] = {name: alg for alg, name in HASH_NAMES.items()}
HASH_SIZES: Final[Mapping[str, int]] = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}

SignatureAlg = Literal["rsassa", "rsapss", "ecdsa"]
SIGNATURE_ALGS: Final[Mapping[int, SignatureAlg]] = {
    TPM_ALG_RSASSA: "rsassa", TPM_ALG_RSAPSS: "rsapss", TPM_ALG_ECDSA: "ecdsa"}
SIGNATURE_IDS: Final[Mapping[str, int]] = {name: alg for alg, name in SIGNATURE_ALGS.items()}

#: ``TPM_ECC_CURVE`` (Part 2 §6.4) of the NIST curves, with their coordinate sizes.
ECC_CURVES: Final[Mapping[int, tuple[type[ec.EllipticCurve], int]]] = {
    0x0003: (ec.SECP256R1, 32), 0x0004: (ec.SECP384R1, 48), 0x0005: (ec.SECP521R1, 66)}
_CURVE_IDS: Final[Mapping[str, int]] = {c().name: cid for cid, (c, _) in ECC_CURVES.items()}

#: ``TPMA_OBJECT`` bits (Part 2 §8.3).
FIXED_TPM: Final = 1 << 1
FIXED_PARENT: Final = 1 << 4
SENSITIVE_DATA_ORIGIN: Final = 1 << 5
USER_WITH_AUTH: Final = 1 << 6
ADMIN_WITH_POLICY: Final = 1 << 7
NO_DA: Final = 1 << 10
RESTRICTED: Final = 1 << 16
DECRYPT: Final = 1 << 17
SIGN_ENCRYPT: Final = 1 << 18
#: A restricted signing key made in the TPM: tpm2_createak's attributes (0x00050072).
AK_ATTRIBUTES: Final = (FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH
                        | RESTRICTED | SIGN_ENCRYPT)
#: The TCG EK template's attributes (EK Credential Profile 2.0 Template L-1: 0x000300b2).
EK_ATTRIBUTES: Final = (FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | ADMIN_WITH_POLICY
                        | RESTRICTED | DECRYPT)

# -- bounds (Part 2 / PC Client PTP implementation constants) ------------------------------

#: ``PCR_SELECT_MAX``: the bitmap of 32 PCRs at most.
PCR_SELECT_MAX: Final = 4
#: ``HASH_COUNT`` bound on the selections of a ``TPML_PCR_SELECTION``.
MAX_PCR_SELECTIONS: Final = 16
#: ``sizeof(TPMU_NAME)``: a nameAlg and a SHA-512 digest.
MAX_NAME: Final = 2 + 64
#: ``sizeof(TPMT_HA)`` bounds ``TPM2B_DATA``.
MAX_DATA: Final = 2 + 64
MAX_DIGEST: Final = 64
#: ``MAX_RSA_KEY_BYTES`` for 4096-bit keys.
MAX_RSA_KEY_BYTES: Final = 512
MAX_ECC_KEY_BYTES: Final = 66
#: A ``TPMS_ATTEST`` or ``TPMT_PUBLIC`` larger than this is refused before parsing.
MAX_STRUCTURE_BYTES: Final = 2048


_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


class Reader:
    """A big-endian cursor over one TPM structure; every short read is malformed evidence.

    Field names are only formatted into a message when a read fails, so they cost nothing on
    well-formed input."""

    __slots__ = ("data", "pos", "size", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.what = what
        self.pos = 0
        self.size = len(self.data)

    def _short(self, n: int, field_name: str) -> MalformedEvidenceError:
        return MalformedEvidenceError(
            f"{self.what} ends at byte {self.size} inside {field_name} "
            f"({n} bytes wanted at offset {self.pos:#x})")

    def take(self, n: int, field_name: str) -> bytes:
        pos = self.pos
        end = pos + n
        if end > self.size:
            raise self._short(n, field_name)
        self.pos = end
        return self.data[pos:end]

    def unpack(self, layout: struct.Struct, field_name: str) -> tuple[Any, ...]:
        """Fixed-size fields in one read, as ``layout`` declares them."""
        pos = self.pos
        if pos + layout.size > self.size:
            raise self._short(layout.size, field_name)
        self.pos = pos + layout.size
        return layout.unpack_from(self.data, pos)

    def u8(self, field_name: str) -> int:
        pos = self.pos
        if pos >= self.size:
            raise self._short(1, field_name)
        self.pos = pos + 1
        return self.data[pos]

    def _int(self, layout: struct.Struct, field_name: str) -> int:
        pos = self.pos
        if pos + layout.size > self.size:
            raise self._short(layout.size, field_name)
        self.pos = pos + layout.size
        value: int = layout.unpack_from(self.data, pos)[0]
        return value

    def u16(self, field_name: str) -> int:
        return self._int(_U16, field_name)

    def u32(self, field_name: str) -> int:
        return self._int(_U32, field_name)

    def u64(self, field_name: str) -> int:
        return self._int(_U64, field_name)

    def tpm2b(self, field_name: str, limit: int) -> bytes:
        pos = self.pos
        if pos + 2 > self.size:
            raise self._short(2, f"{field_name}.size")
        size = self.data[pos] << 8 | self.data[pos + 1]
        if size > limit:
            raise MalformedEvidenceError(
                f"{self.what} {field_name}.size is {size}, above the maximum {limit}")
        end = pos + 2 + size
        if end > self.size:
            self.pos = pos + 2
            raise self._short(size, field_name)
        self.pos = end
        return self.data[pos + 2:end]

    def end(self) -> None:
        if self.pos != self.size:
            raise MalformedEvidenceError(
                f"{self.what} has {self.size - self.pos} trailing bytes after offset "
                f"{self.pos:#x}")


def _bounded(data: bytes, what: str) -> Reader:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MisuseError(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > MAX_STRUCTURE_BYTES:
        raise MalformedEvidenceError(
            f"{what} is {len(data)} bytes, above the maximum {MAX_STRUCTURE_BYTES}")
    return Reader(data, what)


def _hash_name(alg: int, what: str) -> str:
    name = HASH_NAMES.get(alg)
    if name is None:
        raise UnsupportedVersionError(
            f"{what} is hash algorithm {alg:#06x}, not one of "
            f"{', '.join(f'{a:#06x} ({n})' for a, n in HASH_NAMES.items())}")
    return name


def _hash_id(name: str) -> int:
    try:
        return HASH_IDS[name]
    except KeyError:
        raise MisuseError(f"unknown hash {name!r}; expected one of {sorted(HASH_IDS)}") from None


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _tpm2b(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise MisuseError(f"a TPM2B holds at most 65535 bytes, not {len(data)}")
    return _u16(len(data)) + bytes(data)


# -- PCR selections (Part 2 §10.5.3, §10.9.7) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """The PCRs of one bank a quote covers, ascending.

    ``select_size`` is the ``sizeofSelect`` the structure carried (3 for TPMs with 24 PCRs);
    builders write ``max(3, needed)`` when it is ``None``. It takes no part in equality.
    """

    bank: str
    indices: tuple[int, ...]
    select_size: int | None = field(default=None, compare=False)

    def bitmap(self) -> bytes:
        need = (max(self.indices) // 8 + 1) if self.indices else 0
        size = self.select_size if self.select_size is not None else max(3, need)
        if not need <= size <= PCR_SELECT_MAX:
            raise MisuseError(f"PCR selection of {self.bank} {list(self.indices)} does not fit "
                              f"a {size}-byte bitmap")
        bits = bytearray(size)
        for i in self.indices:
            bits[i // 8] |= 1 << (i % 8)
        return bytes(bits)


#: ``_SELECTED[k][b]``: the PCR indices that bitmap byte ``k`` of value ``b`` selects
#: (bit ``j`` of byte ``k`` is PCR ``8k + j``, Part 2 §10.5.3), a constant table.
_SELECTED: Final = tuple(tuple(tuple(8 * k + j for j in range(8) if b >> j & 1)
                               for b in range(256)) for k in range(PCR_SELECT_MAX))
_SELECTION_HEAD: Final = struct.Struct(">HB")


def selected_indices(bits: bytes) -> tuple[int, ...]:
    """The PCR indices a ``pcrSelect`` bitmap of at most ``PCR_SELECT_MAX`` bytes selects,
    ascending."""
    if len(bits) == 3:  # sizeofSelect of a TPM with 24 PCRs (PC Client PTP), nearly all
        return _SELECTED[0][bits[0]] + _SELECTED[1][bits[1]] + _SELECTED[2][bits[2]]
    out: tuple[int, ...] = ()
    for k, b in enumerate(bits):
        out += _SELECTED[k][b]
    return out


def _read_pcr_selection(r: Reader) -> tuple[PcrSelection, ...]:
    count = r.u32("pcrSelect.count")
    if count > MAX_PCR_SELECTIONS:
        raise MalformedEvidenceError(
            f"{r.what} pcrSelect.count is {count}, above the maximum {MAX_PCR_SELECTIONS}")
    out: dict[str, PcrSelection] = {}
    for n in range(count):
        where = f"pcrSelections[{n}]"
        alg, size = r.unpack(_SELECTION_HEAD, f"{where}.hash, sizeofSelect")
        bank = HASH_NAMES.get(alg) or _hash_name(alg, f"{where}.hash")
        if size > PCR_SELECT_MAX:
            raise MalformedEvidenceError(
                f"{r.what} {where}.sizeofSelect is {size}, above the maximum {PCR_SELECT_MAX}")
        bits = r.take(size, f"{where}.pcrSelect")
        if bank in out:
            raise MalformedEvidenceError(f"{r.what} selects bank {bank} twice")
        out[bank] = PcrSelection(bank, selected_indices(bits), size)
    return tuple(out.values())


def marshal_pcr_selection(selections: Sequence[PcrSelection]) -> bytes:
    """A ``TPML_PCR_SELECTION``: u32 count, then ``{u16 hash, u8 sizeofSelect, bitmap}``."""
    out = [_u32(len(selections))]
    for s in selections:
        bits = s.bitmap()
        out.append(_u16(_hash_id(s.bank)) + bytes([len(bits)]) + bits)
    return b"".join(out)


_HASH_CONSTRUCTORS: Final = {"sha1": hashlib.sha1, "sha256": hashlib.sha256,
                              "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def pcr_digest(values: Sequence[bytes], hash: str) -> bytes:
    """``H(values[0] || values[1] || ...)``: a quote's ``pcrDigest`` for PCR values in
    selection order, with ``hash`` the *signature's* algorithm (note §3.2 pitfall 1)."""
    data = b"".join(values)
    constructor = _HASH_CONSTRUCTORS.get(hash)
    if constructor is not None:
        return constructor(data).digest()
    try:
        return hashlib.new(hash, data).digest()
    except (ValueError, TypeError) as exc:
        raise MisuseError(f"unknown hash {hash!r}") from exc


# -- TPMS_ATTEST (Part 2 §10.12.12) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attest:
    """A parsed ``TPMS_ATTEST`` of a quote or a certify, with the exact signed bytes."""

    raw: bytes
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    #: Quote: the PCRs covered, bank by bank; empty for a certify.
    pcr_select: tuple[PcrSelection, ...] = ()
    #: Quote: ``TPM2B_DIGEST`` contents; ``b""`` for a certify.
    pcr_digest: bytes = b""
    #: Certify: the certified object's Name and qualified Name; ``None`` for a quote.
    certified_name: bytes | None = None
    certified_qualified_name: bytes | None = None

    @property
    def is_quote(self) -> bool:
        return self.type == TPM_ST_ATTEST_QUOTE


#: ``TPMS_CLOCK_INFO`` (clock u64, resetCount u32, restartCount u32, safe u8; Part 2
#: §10.11.1) then ``firmwareVersion`` u64: the fixed part of a TPMS_ATTEST after extraData.
_CLOCK_FIRMWARE: Final = struct.Struct(">QIIBQ")
#: ``magic`` u32 and ``type`` u16, the head of every TPMS_ATTEST (Part 2 Table 131).
_MAGIC_TYPE: Final = struct.Struct(">IH")


def parse_attest(data: bytes) -> Attest:
    """Parse a ``TPMS_ATTEST`` of type ``TPM_ST_ATTEST_QUOTE`` or ``TPM_ST_ATTEST_CERTIFY``.

    Raises:
        MalformedEvidenceError: wrong magic or type, a size field out of bounds, the bytes
            end early or go on after the structure.
        UnsupportedVersionError: a PCR bank with a hash algorithm outside sha1/256/384/512.
    """
    r = _bounded(data, "TPMS_ATTEST")
    magic, kind = r.unpack(_MAGIC_TYPE, "magic, type")
    if magic != TPM_GENERATED_VALUE:
        raise MalformedEvidenceError(
            f"TPMS_ATTEST magic is {magic:#010x}, expected {TPM_GENERATED_VALUE:#010x} "
            "(TPM_GENERATED_VALUE)")
    if kind not in ATTEST_TYPE_NAMES:
        raise MalformedEvidenceError(
            f"TPMS_ATTEST type is {kind:#06x}, expected {TPM_ST_ATTEST_QUOTE:#06x} (quote) or "
            f"{TPM_ST_ATTEST_CERTIFY:#06x} (certify)")
    signer = r.tpm2b("qualifiedSigner", MAX_NAME)
    extra = r.tpm2b("extraData", MAX_DATA)
    clock, reset, restart, safe, firmware = r.unpack(_CLOCK_FIRMWARE,
                                                     "clockInfo, firmwareVersion")
    if safe > 1:
        raise MalformedEvidenceError(f"TPMS_ATTEST clockInfo.safe is {safe}, expected 0 or 1")
    if kind == TPM_ST_ATTEST_QUOTE:
        selection, digest = _read_pcr_selection(r), r.tpm2b("pcrDigest", MAX_DIGEST)
        name = qualified = None
    else:
        selection, digest = (), b""
        name = r.tpm2b("certified.name", MAX_NAME)
        qualified = r.tpm2b("certified.qualifiedName", MAX_NAME)
    r.end()
    return Attest(r.data, kind, signer, extra, clock, reset, restart, bool(safe), firmware,
                  selection, digest, name, qualified)


def build_attest(*, qualified_signer: bytes, extra_data: bytes, clock: int = 0,
                 reset_count: int = 0, restart_count: int = 0, safe: bool = True,
                 firmware_version: int = 0, pcr_select: Sequence[PcrSelection] = (),
                 pcr_digest: bytes = b"", type: int = TPM_ST_ATTEST_QUOTE,
                 certified_name: bytes = b"", certified_qualified_name: bytes = b"") -> bytes:
    """Marshal a ``TPMS_ATTEST`` (the inverse of :func:`parse_attest`), for emulators and
    tests. ``type`` may be any u16, so tests can build the wrong one."""
    head = (_u32(TPM_GENERATED_VALUE) + _u16(type) + _tpm2b(qualified_signer)
            + _tpm2b(extra_data) + struct.pack(">QIIB", clock, reset_count, restart_count,
                                               int(safe))
            + struct.pack(">Q", firmware_version))
    if type == TPM_ST_ATTEST_CERTIFY:
        return head + _tpm2b(certified_name) + _tpm2b(certified_qualified_name)
    return head + marshal_pcr_selection(pcr_select) + _tpm2b(pcr_digest)


def marshal_attest(attest: Attest) -> bytes:
    """The bytes of a parsed :class:`Attest` rebuilt from its fields (== ``attest.raw``)."""
    return build_attest(
        qualified_signer=attest.qualified_signer, extra_data=attest.extra_data,
        clock=attest.clock, reset_count=attest.reset_count, restart_count=attest.restart_count,
        safe=attest.safe, firmware_version=attest.firmware_version,
        pcr_select=attest.pcr_select, pcr_digest=attest.pcr_digest, type=attest.type,
        certified_name=attest.certified_name or b"",
        certified_qualified_name=attest.certified_qualified_name or b"")


# -- TPMT_SIGNATURE (Part 2 §11.2.4) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """A ``TPMT_SIGNATURE``. ``signature`` is what ``cryptography`` verifies: the raw RSA
    signature, or the DER ``ECDSA-Sig-Value`` of the TPM's ``r`` and ``s``."""

    alg: SignatureAlg
    hash: str
    signature: bytes
    raw: bytes


def parse_signature(data: bytes) -> Signature:
    """Parse a ``TPMT_SIGNATURE`` of RSASSA, RSAPSS or ECDSA.

    Raises:
        UnsupportedVersionError: another signature scheme (HMAC, ECDAA, SM2, NULL, ...) or
            hash algorithm.
        MalformedEvidenceError: the bytes end early, a size is out of bounds, or bytes follow.
    """
    r = _bounded(data, "TPMT_SIGNATURE")
    alg_id = r.u16("sigAlg")
    alg = SIGNATURE_ALGS.get(alg_id)
    if alg is None:
        raise UnsupportedVersionError(
            f"TPMT_SIGNATURE sigAlg is {alg_id:#06x}; supported: 0x0014 (RSASSA), "
            "0x0016 (RSAPSS), 0x0018 (ECDSA)")
    hash_name = _hash_name(r.u16("hash"), "TPMT_SIGNATURE hash")
    if alg == "ecdsa":
        sig_r = r.tpm2b("signatureR", MAX_ECC_KEY_BYTES)
        sig_s = r.tpm2b("signatureS", MAX_ECC_KEY_BYTES)
        r.end()
        der = encode_dss_signature(int.from_bytes(sig_r, "big"), int.from_bytes(sig_s, "big"))
        return Signature(alg, hash_name, der, r.data)
    sig = r.tpm2b("sig", MAX_RSA_KEY_BYTES)
    r.end()
    return Signature(alg, hash_name, sig, r.data)


def build_signature(alg: SignatureAlg, hash: str, signature: bytes) -> bytes:
    """Marshal a ``TPMT_SIGNATURE``. For ECDSA, ``signature`` is DER and ``r``, ``s`` are
    written at the curve's coordinate size (32, 48 or 66 bytes, inferred from the larger)."""
    if alg not in SIGNATURE_IDS:
        raise MisuseError(f"unknown signature algorithm {alg!r}")
    head = _u16(SIGNATURE_IDS[alg]) + _u16(_hash_id(hash))
    if alg != "ecdsa":
        return head + _tpm2b(signature)
    try:
        sig_r, sig_s = decode_dss_signature(signature)
    except ValueError as exc:
        raise MisuseError(f"ECDSA signature is not DER: {exc}") from exc
    bits = max(sig_r.bit_length(), sig_s.bit_length())
    size = 32 if bits <= 256 else 48 if bits <= 384 else 66
    return head + _tpm2b(sig_r.to_bytes(size, "big")) + _tpm2b(sig_s.to_bytes(size, "big"))


# -- TPMT_PUBLIC (Part 2 §12.2.4) ----------------------------------------------------------

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class TpmPublic:
    """A parsed ``TPMT_PUBLIC`` of an RSA or ECC key."""

    raw: bytes
    type: Literal["rsa", "ecc"]
    name_alg: str
    attributes: int
    auth_policy: bytes
    key: PublicKey
    #: The signing scheme fixed in the key (``"rsassa"``, ``"rsapss"``, ``"ecdsa"``, other
    #: algorithm ids as hex), ``None`` for ``TPM_ALG_NULL``; and its hash.
    scheme: str | None = None
    scheme_hash: str | None = None
    #: ``(algorithm, keyBits, mode)`` of the symmetric definition, ``None`` for NULL.
    symmetric: tuple[int, int, int] | None = None

    @property
    def name(self) -> bytes:
        """The object's Name: u16 nameAlg || H_nameAlg(TPMT_PUBLIC) (Part 1 §16)."""
        return _u16(HASH_IDS[self.name_alg]) + hashlib.new(self.name_alg, self.raw).digest()

    @property
    def restricted_signing(self) -> bool:
        flags = RESTRICTED | SIGN_ENCRYPT
        return self.attributes & flags == flags


#: Schemes whose details are a single hashAlg (Part 2 §11.2.1-11.2.3); ECDAA adds a count.
_HASHED_SCHEMES: Final = frozenset({TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_OAEP,
                                    TPM_ALG_ECDSA, TPM_ALG_ECDH, TPM_ALG_ECSCHNORR,
                                    TPM_ALG_HMAC, TPM_ALG_KDF1_SP800_56A, TPM_ALG_KDF2,
                                    TPM_ALG_KDF1_SP800_108})


def _read_symmetric(r: Reader) -> tuple[int, int, int] | None:
    alg = r.u16("parameters.symmetric.algorithm")
    if alg == TPM_ALG_NULL:
        return None
    return alg, r.u16("parameters.symmetric.keyBits"), r.u16("parameters.symmetric.mode")


def _read_scheme(r: Reader, what: str) -> tuple[str | None, str | None]:
    scheme = r.u16(f"{what}.scheme")
    if scheme == TPM_ALG_NULL:
        return None, None
    name = SIGNATURE_ALGS.get(scheme) or f"{scheme:#06x}"
    if scheme == TPM_ALG_RSAES:
        return name, None
    if scheme not in _HASHED_SCHEMES and scheme != TPM_ALG_ECDAA:
        raise UnsupportedVersionError(f"TPMT_PUBLIC {what} is scheme {scheme:#06x}, unknown")
    hash_name = _hash_name(r.u16(f"{what}.details.hashAlg"), f"TPMT_PUBLIC {what} hash")
    if scheme == TPM_ALG_ECDAA:
        r.u16(f"{what}.details.count")
    return name, hash_name


def _rsa_key(r: Reader) -> rsa.RSAPublicKey:
    bits = r.u16("parameters.keyBits")
    exponent = r.u32("parameters.exponent") or 65537
    n = r.tpm2b("unique.rsa", MAX_RSA_KEY_BYTES)
    modulus = int.from_bytes(n, "big")
    if modulus.bit_length() != bits or exponent < 3 or exponent % 2 == 0:
        raise MalformedEvidenceError(
            f"TPMT_PUBLIC RSA key has keyBits {bits}, a {modulus.bit_length()}-bit modulus and "
            f"exponent {exponent}")
    try:
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError as exc:
        raise MalformedEvidenceError(f"TPMT_PUBLIC RSA key is invalid: {exc}") from exc


def _ecc_key(r: Reader) -> tuple[ec.EllipticCurvePublicKey, str | None, str | None]:
    scheme = _read_scheme(r, "parameters.scheme")
    curve_id = r.u16("parameters.curveID")
    if curve_id not in ECC_CURVES:
        raise UnsupportedVersionError(
            f"TPMT_PUBLIC curveID is {curve_id:#06x}; supported: 0x0003 (P-256), 0x0004 "
            "(P-384), 0x0005 (P-521)")
    _read_scheme(r, "parameters.kdf")
    x = r.tpm2b("unique.ecc.x", MAX_ECC_KEY_BYTES)
    y = r.tpm2b("unique.ecc.y", MAX_ECC_KEY_BYTES)
    curve, _ = ECC_CURVES[curve_id]
    try:
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()).public_key()
    except ValueError as exc:
        raise MalformedEvidenceError(f"TPMT_PUBLIC ECC point is not on the curve: {exc}") from exc
    return key, *scheme


def parse_public(data: bytes) -> TpmPublic:
    """Parse a ``TPMT_PUBLIC`` of type ``TPM_ALG_RSA`` or ``TPM_ALG_ECC``.

    Raises:
        UnsupportedVersionError: another object type, name algorithm, scheme or curve.
        MalformedEvidenceError: the bytes end early, a size is out of bounds, bytes follow,
            or the key is not a valid public key.
    """
    r = _bounded(data, "TPMT_PUBLIC")
    kind = r.u16("type")
    if kind not in (TPM_ALG_RSA, TPM_ALG_ECC):
        raise UnsupportedVersionError(
            f"TPMT_PUBLIC type is {kind:#06x}; supported: 0x0001 (RSA), 0x0023 (ECC)")
    name_alg = _hash_name(r.u16("nameAlg"), "TPMT_PUBLIC nameAlg")
    attributes = r.u32("objectAttributes")
    policy = r.tpm2b("authPolicy", MAX_DIGEST)
    symmetric = _read_symmetric(r)
    key: PublicKey
    if kind == TPM_ALG_RSA:
        scheme, scheme_hash = _read_scheme(r, "parameters.scheme")
        key = _rsa_key(r)
    else:
        key, scheme, scheme_hash = _ecc_key(r)
    r.end()
    return TpmPublic(r.data, "rsa" if kind == TPM_ALG_RSA else "ecc", name_alg, attributes,
                     policy, key, scheme, scheme_hash, symmetric)


def parse_public_2b(data: bytes) -> TpmPublic:
    """Parse a ``TPM2B_PUBLIC``: a u16 size, then exactly that many bytes of ``TPMT_PUBLIC``."""
    r = _bounded(data, "TPM2B_PUBLIC")
    inner = r.tpm2b("publicArea", MAX_STRUCTURE_BYTES)
    r.end()
    return parse_public(inner)


def build_public(key: PublicKey, *, attributes: int = AK_ATTRIBUTES, name_alg: str = "sha256",
                 auth_policy: bytes = b"",
                 scheme: SignatureAlg | Literal["null"] | None = None,
                 scheme_hash: str = "sha256",
                 symmetric: tuple[int, int, int] | None = None) -> bytes:
    """Marshal the ``TPMT_PUBLIC`` of ``key`` (the inverse of :func:`parse_public`).

    ``scheme=None`` picks what a TPM key of these ``attributes`` carries: ``rsassa`` or
    ``ecdsa`` (with ``scheme_hash``) for a restricted signing key, else NULL. ``"null"``
    forces NULL. ``symmetric`` is ``(alg, keyBits, mode)``, e.g. ``(TPM_ALG_AES, 128,
    TPM_ALG_CFB)`` for an EK or storage key; ``None`` writes NULL. An RSA exponent of 65537 is
    written as 0, as TPMs do.
    """
    is_rsa = isinstance(key, rsa.RSAPublicKey)
    if scheme is None:
        signing = attributes & (RESTRICTED | SIGN_ENCRYPT) == RESTRICTED | SIGN_ENCRYPT
        scheme = ("rsassa" if is_rsa else "ecdsa") if signing else "null"
    out = [_u16(TPM_ALG_RSA if is_rsa else TPM_ALG_ECC), _u16(_hash_id(name_alg)),
           _u32(attributes), _tpm2b(auth_policy)]
    out.append(_u16(TPM_ALG_NULL) if symmetric is None else
               _u16(symmetric[0]) + _u16(symmetric[1]) + _u16(symmetric[2]))
    out.append(_u16(TPM_ALG_NULL) if scheme == "null" else
               _u16(SIGNATURE_IDS[scheme]) + _u16(_hash_id(scheme_hash)))
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        size = (key.key_size + 7) // 8
        out += [_u16(key.key_size), _u32(0 if numbers.e == 65537 else numbers.e),
                _tpm2b(numbers.n.to_bytes(size, "big"))]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve_id = _CURVE_IDS.get(key.curve.name)
        if curve_id is None:
            raise MisuseError(f"curve {key.curve.name} has no TPM curve ID here")
        size = ECC_CURVES[curve_id][1]
        point = key.public_numbers()
        out += [_u16(curve_id), _u16(TPM_ALG_NULL), _tpm2b(point.x.to_bytes(size, "big")),
                _tpm2b(point.y.to_bytes(size, "big"))]
    else:
        raise MisuseError(f"a TPM key is RSA or EC, not {type(key).__name__}")
    return b"".join(out)


def name_of(public_raw: bytes, name_alg: str = "sha256") -> bytes:
    """The Name of a marshalled ``TPMT_PUBLIC``: u16 nameAlg || H_nameAlg(bytes)."""
    return _u16(_hash_id(name_alg)) + hashlib.new(name_alg, public_raw).digest()


__all__ = [
    "AK_ATTRIBUTES", "ECC_CURVES", "EK_ATTRIBUTES", "HASH_IDS", "HASH_NAMES", "HASH_SIZES",
    "MAX_PCR_SELECTIONS", "PCR_SELECT_MAX", "RESTRICTED", "SIGNATURE_ALGS", "SIGN_ENCRYPT",
    "TPM_ALG_AES", "TPM_ALG_CFB", "TPM_ALG_ECC", "TPM_ALG_ECDSA", "TPM_ALG_NULL",
    "TPM_ALG_RSA", "TPM_ALG_RSAPSS", "TPM_ALG_RSASSA", "TPM_ALG_SHA1", "TPM_ALG_SHA256",
    "TPM_ALG_SHA384", "TPM_ALG_SHA512", "TPM_GENERATED_VALUE", "TPM_ST_ATTEST_CERTIFY",
    "TPM_ST_ATTEST_QUOTE", "Attest", "PcrSelection", "PublicKey", "Reader", "Signature",
    "SignatureAlg", "TpmPublic", "build_attest", "build_public", "build_signature",
    "marshal_attest", "marshal_pcr_selection", "name_of", "parse_attest", "parse_public",
    "parse_public_2b", "parse_signature", "pcr_digest",
]
