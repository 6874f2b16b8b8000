"""The SGX extension of a PCK certificate: what Intel certifies about the platform.

OID 1.2.840.113741.1.13.1 = SEQUENCE OF SEQUENCE { OID, value } (intel-dcap.md §2.2; QVL
``ParserUtils.h`` ``SGX_EXTENSION``, dcap-qvl ``src/oids.rs``, go-tdx-guest ``pcs/pcs.go``):

=========  =====================  ==============================================================
suffix     name                   value
=========  =====================  ==============================================================
.1         PPID                   OCTET STRING (16)
.2         TCB                    SEQUENCE of .2.1 … .2.16 COMP SVN (INTEGER 0..255),
                                  .2.17 PCESVN (INTEGER 0..65535), .2.18 CPUSVN (OCTET STRING 16)
.3         PCE-ID                 OCTET STRING (2)
.4         FMSPC                  OCTET STRING (6)
.5         SGX Type               ENUMERATED (0 Standard, 1 Scalable, 2 Scalable with integrity)
.6         Platform Instance ID   OCTET STRING (16), Platform CA certificates only
.7         Configuration          SEQUENCE { .7.1 dynamicPlatform, .7.2 cachedKeys,
                                  .7.3 SMTEnabled: BOOLEAN }, Platform CA certificates only
=========  =====================  ==============================================================

Read with the DER walker of :mod:`veritee._der`; any DER that does not fit raises
MalformedEvidenceError. No trust decision here: the verifier checks the chain first, and TCB
matching uses :attr:`PckTcb.comp_svns` and :attr:`PckTcb.pcesvn` (never the quote header's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from cryptography import x509

from veritee import _der
from veritee.errors import MalformedEvidenceError

SGX_EXTENSION_OID: Final = "1.2.840.113741.1.13.1"
SGX_TYPES: Final = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}

_SEQUENCE: Final = 0x30
_OID: Final = 0x06
_INTEGER: Final = 0x02
_ENUMERATED: Final = 0x0A
_OCTET_STRING: Final = 0x04
_BOOLEAN: Final = 0x01

_PPID, _TCB, _PCE_ID, _FMSPC, _SGX_TYPE, _INSTANCE_ID, _CONFIGURATION = range(1, 8)
_COMPONENTS: Final = 16
_PCESVN, _CPUSVN = 17, 18

T = TypeVar("T")
Element = tuple[int, int, int]  # (tag, start of content, end of content), as _der.tlv gives


_ARC: Final = _der.oid_content(SGX_EXTENSION_OID)
_TCB_ARC: Final = _der.oid_content(f"{SGX_EXTENSION_OID}.{_TCB}")
_CONFIGURATION_ARC: Final = _der.oid_content(f"{SGX_EXTENSION_OID}.{_CONFIGURATION}")


@dataclass(frozen=True, slots=True)
class PckTcb:
    """The platform's TCB as certified (§2.2, .2)."""

    comp_svns: tuple[int, ...]
    """SGX TCB COMP01..16 SVN, in order."""
    pcesvn: int
    cpusvn: bytes


@dataclass(frozen=True, slots=True)
class PckConfiguration:
    """The Configuration of Platform CA certificates (§2.2, .7); None where absent."""

    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class PckExtension:
    """The SGX extension of one PCK certificate."""

    ppid: bytes
    tcb: PckTcb
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    configuration: PckConfiguration | None = None

    @property
    def sgx_type_name(self) -> str:
        return SGX_TYPES.get(self.sgx_type, "unknown")


def pck_extension(cert: x509.Certificate) -> PckExtension:
    """The SGX extension of a PCK certificate.

    Raises:
        MalformedEvidenceError: the certificate's extensions do not parse, it has no SGX
            extension, or the extension is not encoded as §2.2 says.
    """
    oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
    try:
        extension = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound as exc:
        raise MalformedEvidenceError(
            f"the PCK certificate has no SGX extension (OID {SGX_EXTENSION_OID})") from exc
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # cryptography parses extensions lazily, on first access.
        raise MalformedEvidenceError(
            f"the PCK certificate's extensions do not parse: {exc}") from exc
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - cryptography
        raise MalformedEvidenceError("the SGX extension was decoded as a known extension")
    return parse_pck_extension(value.value)


def parse_pck_extension(der: bytes) -> PckExtension:
    """Parse the DER value of the SGX extension (the extension's OCTET STRING content).

    Raises:
        MalformedEvidenceError: not DER, a required entry missing or repeated, or a value of
            the wrong type, size or range (the message names the entry).
    """
    top = _element(der, 0, "the SGX extension")
    if top[2] != len(der):
        raise MalformedEvidenceError(
            f"the SGX extension is followed by {len(der) - top[2]} bytes that belong to nothing")
    entries = _entries(der, top, _ARC, "the SGX extension", known=range(1, 8))
    return PckExtension(
        ppid=_octets(der, _required(entries, _PPID, "PPID"), 16, "PPID"),
        tcb=_tcb(der, _required(entries, _TCB, "TCB")),
        pce_id=_octets(der, _required(entries, _PCE_ID, "PCE-ID"), 2, "PCE-ID"),
        fmspc=_octets(der, _required(entries, _FMSPC, "FMSPC"), 6, "FMSPC"),
        sgx_type=_number(der, _required(entries, _SGX_TYPE, "SGX Type"), _ENUMERATED, 0xFF,
                         "SGX Type"),
        platform_instance_id=_optional(entries.get(_INSTANCE_ID),
                                       lambda e: _octets(der, e, 16, "Platform Instance ID")),
        configuration=_optional(entries.get(_CONFIGURATION), lambda e: _configuration(der, e)),
    )


def ca_kind(issuer_cn: str) -> Literal["platform", "processor"] | None:
    """Which PCK CA issued a leaf, from its issuer CN (§2.2: selects ``pckcrl?ca=...``)."""
    if "Platform CA" in issuer_cn:
        return "platform"
    if "Processor CA" in issuer_cn:
        return "processor"
    return None


# -- the DER walk ---------------------------------------------------------------------------------


def _element(der: bytes, pos: int, what: str) -> Element:
    try:
        return _der.tlv(der, pos)
    except ValueError as exc:
        raise MalformedEvidenceError(f"{what} is not valid DER: {exc}") from exc


def _children(der: bytes, element: Element, what: str) -> list[Element]:
    if element[0] != _SEQUENCE:
        raise MalformedEvidenceError(
            f"{what} has DER tag {element[0]:#04x} where a SEQUENCE (0x30) belongs")
    try:
        return _der.children(der, element[1], element[2])
    except ValueError as exc:
        raise MalformedEvidenceError(f"{what} is not valid DER: {exc}") from exc


def _entries(der: bytes, element: Element, arc: bytes, what: str,
             known: range) -> dict[int, Element]:
    """``{last OID arc: value}`` of a SEQUENCE OF SEQUENCE { OID under ``arc``, value }.

    Entries under ``arc`` outside ``known`` are ignored (later additions by Intel); any other
    OID, a repeated entry or an entry that is not a pair is malformed.
    """
    found: dict[int, Element] = {}
    for index, entry in enumerate(_children(der, element, what)):
        parts = _children(der, entry, f"{what} entry {index}")
        if len(parts) != 2 or parts[0][0] != _OID:
            raise MalformedEvidenceError(f"{what} entry {index} is not a pair (OID, value)")
        oid = der[parts[0][1] : parts[0][2]]
        if len(oid) != len(arc) + 1 or not oid.startswith(arc) or oid[-1] > 0x7F:
            raise MalformedEvidenceError(f"{what} entry {index} has OID {oid.hex()} outside "
                                         f"its arc {arc.hex()}")
        if oid[-1] in found:
            raise MalformedEvidenceError(f"{what} holds entry .{oid[-1]} twice")
        if oid[-1] in known:
            found[oid[-1]] = parts[1]
    return found


def _required(entries: dict[int, Element], suffix: int, name: str) -> Element:
    element = entries.get(suffix)
    if element is None:
        raise MalformedEvidenceError(f"the SGX extension has no {name} (.{suffix})")
    return element


def _optional(element: Element | None, read: Callable[[Element], T]) -> T | None:
    return None if element is None else read(element)


def _tcb(der: bytes, element: Element) -> PckTcb:
    entries = _entries(der, element, _TCB_ARC, "the SGX extension's TCB", known=range(1, 19))
    missing = sorted(set(range(1, 19)) - set(entries))
    if missing:
        raise MalformedEvidenceError(
            f"the SGX extension's TCB lacks entries {', '.join(f'.2.{n}' for n in missing)}")
    comps = tuple(_number(der, entries[n], _INTEGER, 0xFF, f"SGX TCB COMP{n:02d} SVN")
                  for n in range(1, _COMPONENTS + 1))
    return PckTcb(comps, _number(der, entries[_PCESVN], _INTEGER, 0xFFFF, "PCESVN"),
                  _octets(der, entries[_CPUSVN], 16, "CPUSVN"))


def _configuration(der: bytes, element: Element) -> PckConfiguration:
    entries = _entries(der, element, _CONFIGURATION_ARC, "the SGX extension's Configuration",
                       known=range(1, 4))
    names = {1: "dynamicPlatform", 2: "cachedKeys", 3: "SMTEnabled"}
    flags = {n: _boolean(der, entries[n], names[n]) if n in entries else None for n in names}
    return PckConfiguration(flags[1], flags[2], flags[3])


def _octets(der: bytes, element: Element, size: int, name: str) -> bytes:
    tag, start, end = element
    if tag != _OCTET_STRING or end - start != size:
        raise MalformedEvidenceError(
            f"{name} must be an OCTET STRING of {size} bytes, found tag {tag:#04x} with "
            f"{end - start} bytes")
    return der[start:end]


def _number(der: bytes, element: Element, kind: int, maximum: int, name: str) -> int:
    tag, start, end = element
    label = "INTEGER" if kind == _INTEGER else "ENUMERATED"
    if tag != kind or not 0 < end - start <= 3:
        raise MalformedEvidenceError(
            f"{name} must be a small {label}, found tag {tag:#04x} with {end - start} bytes")
    value = int.from_bytes(der[start:end], "big", signed=True)
    if not 0 <= value <= maximum:
        raise MalformedEvidenceError(f"{name} is {value}, outside 0..{maximum}")
    return value


def _boolean(der: bytes, element: Element, name: str) -> bool:
    tag, start, end = element
    if tag != _BOOLEAN or end - start != 1 or der[start] not in (0x00, 0xFF):
        raise MalformedEvidenceError(
            f"{name} must be a DER BOOLEAN, found tag {tag:#04x}: {der[start:end][:4].hex()}")
    return der[start] == 0xFF


__all__ = ["SGX_EXTENSION_OID", "SGX_TYPES", "PckConfiguration", "PckExtension", "PckTcb",
           "ca_kind", "parse_pck_extension", "pck_extension"]
