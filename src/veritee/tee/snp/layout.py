"""SEV-SNP ATTESTATION_REPORT: bytes ↔ fields. No crypto, no trust decisions.

Source: AMD "SEV Secure Nested Paging Firmware ABI Specification" (56860), Table 23
("ATTESTATION_REPORT Structure"), report versions 2–5, cross-read with go-sev-guest
``abi/abi.go`` and virtee/sev ``firmware/guest/types/snp.rs`` (research note amd-sev.md §1.1).

The report is 0x4A0 bytes, little-endian. The signature (ECDSA P-384, SHA-384) covers
``[0x000, 0x2A0)``; R and S are 72-byte little-endian integers at 0x2A0 and 0x2E8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from veritee.errors import MalformedEvidenceError, UnsupportedVersionError
from veritee.tee._layout import FieldTable

REPORT_SIZE: Final = 0x4A0
SIGNED_SIZE: Final = 0x2A0
SUPPORTED_VERSIONS: Final = frozenset({2, 3, 4, 5})
SIG_ALGO_ECDSA_P384_SHA384: Final = 1

Product = Literal["milan", "genoa", "turin"]

# (field, offset, size, struct code[, since]) — one row per field of Table 23, in offset
# order. Code "x" marks a reserved range that must be zero; a row with ``since`` is reserved
# (and must be zero) in earlier report versions.
LAYOUT: Final = FieldTable("SNP report", (
    ("version", 0x000, 4, "I"),
    ("guest_svn", 0x004, 4, "I"),
    ("policy", 0x008, 8, "Q"),
    ("family_id", 0x010, 16, "s"),
    ("image_id", 0x020, 16, "s"),
    ("vmpl", 0x030, 4, "I"),
    ("signature_algo", 0x034, 4, "I"),
    ("current_tcb", 0x038, 8, "s"),
    ("platform_info", 0x040, 8, "Q"),
    ("signer_info", 0x048, 4, "I"),
    ("_reserved_04c", 0x04C, 4, "x"),
    ("report_data", 0x050, 64, "s"),
    ("measurement", 0x090, 48, "s"),
    ("host_data", 0x0C0, 32, "s"),
    ("id_key_digest", 0x0E0, 48, "s"),
    ("author_key_digest", 0x110, 48, "s"),
    ("report_id", 0x140, 32, "s"),
    ("report_id_ma", 0x160, 32, "s"),
    ("reported_tcb", 0x180, 8, "s"),
    ("cpuid_fam_id", 0x188, 1, "B", 3),
    ("cpuid_mod_id", 0x189, 1, "B", 3),
    ("cpuid_step", 0x18A, 1, "B", 3),
    ("_reserved_18b", 0x18B, 21, "x"),
    ("chip_id", 0x1A0, 64, "s"),
    ("committed_tcb", 0x1E0, 8, "s"),
    ("current_build", 0x1E8, 1, "B"),
    ("current_minor", 0x1E9, 1, "B"),
    ("current_major", 0x1EA, 1, "B"),
    ("_reserved_1eb", 0x1EB, 1, "x"),
    ("committed_build", 0x1EC, 1, "B"),
    ("committed_minor", 0x1ED, 1, "B"),
    ("committed_major", 0x1EE, 1, "B"),
    ("_reserved_1ef", 0x1EF, 1, "x"),
    ("launch_tcb", 0x1F0, 8, "s"),
    ("launch_mit_vector", 0x1F8, 8, "Q", 5),
    ("current_mit_vector", 0x200, 8, "Q", 5),
    ("_reserved_208", 0x208, 0x98, "x"),
    ("signature_r", 0x2A0, 72, "s"),
    ("signature_s", 0x2E8, 72, "s"),
    # With SIGNATURE_ALGO 1 (the only one), the rest of the signature area is reserved.
    ("_reserved_330", 0x330, 368, "x"),
), size=REPORT_SIZE)

FIELD_NAMES: Final = LAYOUT.names
#: Size in bytes of every named field.
FIELD_SIZES: Final = LAYOUT.sizes


def pack_fields(values: dict[str, int | bytes]) -> bytes:
    """Pack named field values into report bytes; reserved ranges become zero.

    Raises:
        MalformedEvidenceError: a value is missing or does not fit its field.
    """
    return LAYOUT.pack(values)


# SIGNER_INFO (a.k.a. KEY_INFO, 0x048) bits, Table 23.
SIGNER_AUTHOR_KEY_EN: Final = 1 << 0
SIGNER_MASK_CHIP_KEY: Final = 1 << 1
SIGNING_KEYS: Final = {0: "vcek", 1: "vlek", 7: "none"}

# POLICY bits (Table 9 "Guest Policy Structure"); bit 17 is reserved and must be 1.
POLICY_BITS: Final = {
    16: "smt",
    18: "migrate_ma",
    19: "debug",
    20: "single_socket",
    21: "cxl_allow",
    22: "mem_aes_256_xts",
    23: "rapl_dis",
    24: "ciphertext_hiding",
    25: "page_swap_disable",
}
POLICY_RESERVED_ONE: Final = 1 << 17
POLICY_MBZ_MASK: Final = ~((1 << 26) - 1) & 0xFFFF_FFFF_FFFF_FFFF

# PLATFORM_INFO bits (Table 23 note); unknown bits are kept as claims, never rejected.
PLATFORM_INFO_BITS: Final = {
    0: "smt_en",
    1: "tsme_en",
    2: "ecc_en",
    3: "rapl_dis",
    4: "ciphertext_hiding_en",
    5: "alias_check_complete",
    6: "iommu_write_safe",
    7: "tio_en",
}


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """A TCB_VERSION (8 bytes), decoded for its product family (amd-sev.md §1.5).

    Milan/Genoa: ``[BL, TEE, 0, 0, 0, 0, SNP, UCODE]``;
    Turin: ``[FMC, BL, TEE, SNP, 0, 0, 0, UCODE]``.
    """

    raw: bytes
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None
    reserved: bytes = b""

    @classmethod
    def decode(cls, raw: bytes, *, turin: bool) -> TcbVersion:
        if len(raw) != 8:
            raise MalformedEvidenceError(f"TCB_VERSION is 8 bytes, got {len(raw)}")
        if turin:
            return cls(raw, bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7],
                       fmc=raw[0], reserved=raw[4:7])
        return cls(raw, bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7],
                   reserved=raw[2:6])

    @classmethod
    def compose(cls, *, bootloader: int, tee: int, snp: int, microcode: int,
                fmc: int | None = None) -> TcbVersion:
        if fmc is None:
            raw = bytes([bootloader, tee, 0, 0, 0, 0, snp, microcode])
        else:
            raw = bytes([fmc, bootloader, tee, snp, 0, 0, 0, microcode])
        return cls.decode(raw, turin=fmc is not None)

    @property
    def value(self) -> int:
        return int.from_bytes(self.raw, "little")

    def components(self) -> dict[str, int]:
        parts = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp,
                 "microcode": self.microcode}
        if self.fmc is not None:
            parts["fmc"] = self.fmc
        return parts

    def __le__(self, other: object) -> bool:
        """Component-wise order (go-sev-guest ``kds.TCBPartsLE``), never a u64 compare."""
        if not isinstance(other, TcbVersion):
            return NotImplemented
        mine, theirs = self.components(), other.components()
        return all(mine[k] <= theirs.get(k, 0) for k in mine)


@dataclass(frozen=True, slots=True)
class SnpReport:
    """One parsed ATTESTATION_REPORT. ``raw`` holds the exact 0x4A0 bytes."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: bytes
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: bytes
    cpuid_fam_id: int
    cpuid_mod_id: int
    cpuid_step: int
    chip_id: bytes
    committed_tcb: bytes
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: bytes
    launch_mit_vector: int
    current_mit_vector: int
    signature_r: bytes
    signature_s: bytes

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_SIZE]

    @property
    def signing_key(self) -> str:
        """``vcek``, ``vlek`` or ``none`` (SIGNER_INFO bits 4:2)."""
        return SIGNING_KEYS[(self.signer_info >> 2) & 7]

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & SIGNER_AUTHOR_KEY_EN)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.signer_info & SIGNER_MASK_CHIP_KEY)

    @property
    def has_cpuid(self) -> bool:
        return self.version >= 3

    @property
    def signature_rs(self) -> tuple[int, int]:
        return (int.from_bytes(self.signature_r, "little"),
                int.from_bytes(self.signature_s, "little"))

    def to_bytes(self) -> bytes:
        """Rebuild the report from its fields; equals ``raw`` for every parsed report."""
        return LAYOUT.struct.pack(*(getattr(self, n) for n in FIELD_NAMES))


def parse_report(data: bytes) -> SnpReport:
    """Parse the first 0x4A0 bytes of ``data`` (trailing bytes are ignored).

    Raises:
        MalformedEvidenceError: too short, a must-be-zero range is not zero, an unknown
            signing key or signature algorithm, or policy bits that the ABI forbids.
        UnsupportedVersionError: VERSION is not 2, 3, 4 or 5.
    """
    values = LAYOUT.unpack(data)
    raw = bytes(data[:REPORT_SIZE])
    version = values["version"]
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"SNP report VERSION is {version}; supported are {sorted(SUPPORTED_VERSIONS)}"
        )
    report = SnpReport(raw=raw, **values)
    _check_reserved(report)
    return report


def _check_reserved(report: SnpReport) -> None:
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise MalformedEvidenceError(
            f"SIGNATURE_ALGO is {report.signature_algo}; only 1 (ECDSA P-384 with SHA-384) exists"
        )
    LAYOUT.check_zero(report.raw, report.version)
    if report.signer_info >> 5:
        raise MalformedEvidenceError(
            f"SIGNER_INFO bits 31:5 must be zero, got {report.signer_info:#x}")
    if (report.signer_info >> 2) & 7 not in SIGNING_KEYS:
        raise MalformedEvidenceError(
            f"SIGNER_INFO.SIGNING_KEY is {(report.signer_info >> 2) & 7}, reserved by the ABI"
        )
    if not report.policy & POLICY_RESERVED_ONE:
        raise MalformedEvidenceError(f"POLICY bit 17 must be 1, policy is {report.policy:#x}")
    if report.policy & POLICY_MBZ_MASK:
        raise MalformedEvidenceError(
            f"POLICY bits 63:26 must be zero, policy is {report.policy:#x}")


def product_from_cpuid(family: int, model: int) -> Product | None:
    """Product line from CPUID family/model (virtee/sev ``Generation::identify_cpu``)."""
    if family == 0x19:
        if model <= 0x0F:
            return "milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "genoa"
    if family == 0x1A and model <= 0x11:
        return "turin"
    return None


def product_hint(report: SnpReport) -> Product | None:
    """The product line the report itself names: from CPUID (v3+), else a Turin-shaped
    CHIP_ID; None when it names none (the certificates then decide)."""
    if report.has_cpuid:
        product = product_from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id)
        if product is not None:
            return product
    if chip_id_looks_turin(report.chip_id):
        return "turin"
    return None


def chip_id_looks_turin(chip_id: bytes) -> bool:
    """Turin chip ids use only the first 8 bytes (virtee ``chip_id_is_turin_like``)."""
    return any(chip_id[:8]) and not any(chip_id[8:])


def decode_bits(value: int, names: dict[int, str]) -> dict[str, bool]:
    return {name: bool(value >> bit & 1) for bit, name in names.items()}
