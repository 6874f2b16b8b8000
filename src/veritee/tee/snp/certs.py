"""VCEK / VLEK certificates: AMD's X.509 extensions and certificate roles.

Extensions under OID arc 1.3.6.1.4.1.3704.1 (AMD 57230 "VCEK Certificate and KDS Interface
Specification", Table 8; amd-sev.md §2.3). Values are DER (INTEGER, IA5String) except hwID,
which real VCEKs carry as raw bytes (an OCTET STRING wrapper is accepted too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509

from veritee.errors import ChainError
from veritee.x509 import Cert

_ARC: Final = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION: Final = f"{_ARC}.1"
OID_PRODUCT_NAME: Final = f"{_ARC}.2"
OID_BL_SPL: Final = f"{_ARC}.3.1"
OID_TEE_SPL: Final = f"{_ARC}.3.2"
OID_SNP_SPL: Final = f"{_ARC}.3.3"
OID_SPL_4_7: Final = tuple(f"{_ARC}.3.{i}" for i in range(4, 8))
OID_UCODE_SPL: Final = f"{_ARC}.3.8"
OID_FMC_SPL: Final = f"{_ARC}.3.9"
OID_HWID: Final = f"{_ARC}.4"
OID_CSP_ID: Final = f"{_ARC}.5"

def role_of(cert: Cert) -> str:
    """``ark``, ``ask``, ``asvk``, ``vcek``, ``vlek`` or ``other``, from the subject CN.

    Common names per amd-sev.md §2.2: ``ARK-{p}``, ``SEV-{p}``, ``SEV-VLEK-{p}``,
    ``SEV-VCEK``, ``SEV-VLEK`` (``{p}`` is Milan, Genoa or Turin).
    """
    cn = cert.subject_cn
    if cn in ("SEV-VCEK", "SEV-VLEK"):
        return cn[4:].lower()
    if cn.startswith("SEV-VLEK-"):
        return "asvk"
    if cn.startswith("ARK-"):
        return "ark"
    if cn.startswith("SEV-"):
        return "ask"
    return "other"


def product_of_ca(cert: Cert) -> str | None:
    """``milan`` / ``genoa`` / ``turin`` from an ARK, ASK or ASVK common name."""
    tail = cert.subject_cn.rsplit("-", 1)[-1].lower()
    return tail if tail in ("milan", "genoa", "turin") else None


@dataclass(frozen=True, slots=True)
class VekInfo:
    """What a VCEK or VLEK certifies."""

    struct_version: int | None
    product_name: str | None
    bootloader: int | None
    tee: int | None
    snp: int | None
    microcode: int | None
    fmc: int | None
    spl_4_7: tuple[int | None, ...]
    hwid: bytes | None
    csp_id: str | None

    def tcb(self) -> dict[str, int | None]:
        parts: dict[str, int | None] = {"bootloader": self.bootloader, "tee": self.tee,
                                        "snp": self.snp, "microcode": self.microcode}
        if self.fmc is not None:
            parts["fmc"] = self.fmc
        return parts


def vek_info(cert: Cert) -> VekInfo:
    """Read AMD's extensions from a VCEK or VLEK.

    Raises:
        ChainError: an extension is present but not encoded as AMD specifies.
    """
    raw: dict[str, bytes] = {}
    try:
        extensions = list(cert.cert.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # Extensions are parsed lazily, on first access.
        raise ChainError(f"the extensions of {cert.subject_cn!r} do not parse: {exc}") from exc
    for ext in extensions:
        oid = ext.oid.dotted_string
        if oid.startswith(_ARC + ".") and isinstance(ext.value, x509.UnrecognizedExtension):
            raw[oid] = ext.value.value
    return VekInfo(
        struct_version=_der_int(raw, OID_STRUCT_VERSION),
        product_name=_der_ia5(raw, OID_PRODUCT_NAME),
        bootloader=_der_int(raw, OID_BL_SPL),
        tee=_der_int(raw, OID_TEE_SPL),
        snp=_der_int(raw, OID_SNP_SPL),
        microcode=_der_int(raw, OID_UCODE_SPL),
        fmc=_der_int(raw, OID_FMC_SPL),
        spl_4_7=tuple(_der_int(raw, oid) for oid in OID_SPL_4_7),
        hwid=_hwid(raw.get(OID_HWID)),
        csp_id=_der_ia5(raw, OID_CSP_ID),
    )


def _der_int(raw: dict[str, bytes], oid: str) -> int | None:
    value = raw.get(oid)
    if value is None:
        return None
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[1] > 8:
        raise ChainError(f"certificate extension {oid} is not a small DER INTEGER: {value.hex()}")
    number = int.from_bytes(value[2:], "big", signed=True)
    if number < 0:
        raise ChainError(f"certificate extension {oid} is negative ({number})")
    return number


def _der_ia5(raw: dict[str, bytes], oid: str) -> str | None:
    value = raw.get(oid)
    if value is None:
        return None
    if len(value) < 2 or value[0] != 0x16 or value[1] != len(value) - 2:
        raise ChainError(f"certificate extension {oid} is not a DER IA5String: {value[:16].hex()}")
    try:
        return value[2:].decode("ascii")
    except UnicodeDecodeError as exc:
        raise ChainError(f"certificate extension {oid} is not ASCII") from exc


def _hwid(value: bytes | None) -> bytes | None:
    if value is None:
        return None
    if len(value) in (8, 64):
        return value
    if value[:1] == b"\x04" and len(value) - 2 in (8, 64) and value[1] == len(value) - 2:
        return value[2:]  # wrapped in an OCTET STRING (go-sev-guest accepts this too)
    raise ChainError(
        f"hwID extension is {len(value)} bytes; expected 64 (Milan, Genoa) or 8 (Turin)")
