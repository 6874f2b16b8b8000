"""Just enough DER (ITU-T X.690) to read what ``cryptography`` would only give with side
effects: a certificate's serial number, the common names of its subject and issuer, and the
issuer of a CRL.

Why: ``cryptography`` warns (``CryptographyDeprecationWarning``) when it loads a certificate
whose serial number is zero or negative, as AMD's VCEKs and VLEKs are (amd-sev.md §2.5), and
building ``x509.Name`` objects may warn about odd attribute values. Silencing those warnings
means changing the process-wide warning filters, which is neither thread-safe nor ours to
change. So the few facts are read here, and a certificate with such a serial is handed to
``cryptography`` with the serial's first byte replaced (same length) — see
:func:`positive_serial_copy`; the original bytes stay the ones that are hashed and whose
signature is checked.

Standard library only. Every function returns None (or raises ``ValueError``) on input that is
not the DER it expects; callers decide what that means.
"""

from __future__ import annotations

from typing import Final

_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_INTEGER: Final = 0x02
_OID: Final = 0x06
_VERSION: Final = 0xA0  # [0] EXPLICIT Version
#: id-at-commonName (2.5.4.3), DER-encoded.
_CN_OID: Final = bytes.fromhex("550403")
_STRING_TAGS: Final = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1",
                       0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """``(tag, start of content, end of content)`` of the element at ``pos``.

    Raises:
        ValueError: truncated, indefinite length, or a length beyond the data.
    """
    if pos + 2 > len(data):
        raise ValueError("truncated DER element")
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if not 0 < count <= 4 or pos + 2 + count > len(data):
            raise ValueError("bad DER length")
        start, length = pos + 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    end = start + length
    if end > len(data):
        raise ValueError("DER element runs past the data")
    return tag, start, end


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The elements between ``start`` and ``end`` (the content of a constructed element)."""
    out = []
    pos = start
    while pos < end:
        element = tlv(data, pos)
        out.append(element)
        pos = element[2]
    if pos != end:
        raise ValueError("DER elements overrun their container")
    return out


def _expect(element: tuple[int, int, int], tag: int) -> tuple[int, int, int]:
    if element[0] != tag:
        raise ValueError(f"DER tag {element[0]:#x} where {tag:#x} was expected")
    return element


def _tbs_fields(der: bytes) -> list[tuple[int, int, int]]:
    outer = _expect(tlv(der, 0), _SEQUENCE)
    tbs = _expect(tlv(der, outer[1]), _SEQUENCE)
    return children(der, tbs[1], tbs[2])


def certificate_facts(der: bytes) -> tuple[int, int, str, str]:
    """``(serial, offset of the serial's content, subject CN, issuer CN)`` of a certificate.

    Raises:
        ValueError: not a DER X.509 certificate.
    """
    fields = _tbs_fields(der)
    index = 1 if fields and fields[0][0] == _VERSION else 0
    serial = _expect(fields[index], _INTEGER)
    issuer, subject = fields[index + 2], fields[index + 4]
    value = int.from_bytes(der[serial[1] : serial[2]], "big", signed=True)
    return value, serial[1], common_name(der, subject), common_name(der, issuer)


def crl_issuer_cn(der: bytes) -> str:
    """The issuer CN of a DER CRL (``TBSCertList``: version?, signature, issuer, ...).

    Raises:
        ValueError: not a DER CRL.
    """
    fields = _tbs_fields(der)
    index = 1 if fields and fields[0][0] == _INTEGER else 0
    return common_name(der, fields[index + 1])


def common_name(der: bytes, name: tuple[int, int, int]) -> str:
    """The first commonName of a ``Name`` (``""`` when it has none)."""
    _expect(name, _SEQUENCE)
    for rdn in children(der, name[1], name[2]):
        for attribute in children(der, rdn[1], rdn[2]):
            parts = children(der, attribute[1], attribute[2])
            oid = parts[0] if len(parts) == 2 else None
            if oid is not None and oid[0] == _OID and der[oid[1] : oid[2]] == _CN_OID:
                tag, start, end = parts[1]
                return der[start:end].decode(_STRING_TAGS.get(tag, "latin-1"), errors="replace")
    return ""


def positive_serial_copy(der: bytes, serial: int, offset: int) -> bytes:
    """``der`` with a zero or negative serial made positive in place (same length), so that a
    parser that refuses such serials reads every other field as it is."""
    if serial > 0:
        return der
    replacement = 0x01 if serial == 0 else 0x7F
    return der[:offset] + bytes([replacement]) + der[offset + 1 :]


__all__ = ["certificate_facts", "children", "common_name", "crl_issuer_cn",
           "positive_serial_copy", "tlv"]


def oid_content(dotted: str) -> bytes:
    """The content octets of a DER OBJECT IDENTIFIER (X.690 §8.19), from its dotted form."""
    first, second, *rest = (int(part) for part in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk, value = [arc & 0x7F], arc >> 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out.extend(reversed(chunk))
    return bytes(out)
