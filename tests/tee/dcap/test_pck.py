"""The PCK certificate's SGX extension (intel-dcap.md §2.2): the leaf of every corpus quote's PCK
chain carries the FMSPC, PCE-ID, SGX type, CPUSVN, PCESVN and component SVNs its MANIFEST lists;
extensions built here from their ASN.1 parse; and each encoding defect raises
MalformedEvidenceError naming the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import corpus_dir, manifest
from veritee.errors import MalformedEvidenceError
from veritee.evidence import decode_evidence
from veritee.tee.dcap.pck import (
    SGX_EXTENSION_OID,
    PckConfiguration,
    PckExtension,
    ca_kind,
    parse_pck_extension,
    pck_extension,
)
from veritee.tee.dcap.quote import parse_quote
from veritee.x509 import split_pem_or_der

FUZZ = settings(deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

WITH_PCK = [e for e in manifest("intel") if "pck" in (e.get("expected") or {})]


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    if entries:
        return [pytest.param(e, id=e["file"]) for e in entries]
    return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
        reason="corpus folder intel is absent (set VERITEE_CORPUS)"))]


def _leaf(entry: dict[str, Any]) -> x509.Certificate:
    data = decode_evidence((corpus_dir("intel") / entry["file"]).read_bytes()).data
    chain = parse_quote(data).signature_data.pck_chain
    assert chain is not None
    certs, _ = split_pem_or_der(chain)
    assert len(certs) == 3, "leaf, intermediate, root"
    return x509.load_der_x509_certificate(certs[0])


def _issuer_cn(cert: x509.Certificate) -> str:
    return str(cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


@pytest.mark.parametrize("entry", _params(WITH_PCK))
def test_corpus_pck_extensions_match_the_manifest(entry: dict[str, Any]) -> None:
    leaf = _leaf(entry)
    found = pck_extension(leaf)
    expected = entry["expected"]["pck"]
    assert found.fmspc.hex() == expected["fmspc"]
    assert found.pce_id.hex() == expected["pceid"]
    assert found.sgx_type == expected["sgx_type"]
    assert found.tcb.cpusvn.hex() == expected["cpusvn"]
    assert found.tcb.pcesvn == expected["pcesvn"]
    assert list(found.tcb.comp_svns) == expected["sgx_tcb_comp_svn"]
    assert ca_kind(_issuer_cn(leaf)) == expected["issuer_ca"]
    assert len(found.ppid) == 16
    # Platform CA leaves carry the platform instance and its configuration; Processor CA
    # leaves carry neither (§2.2).
    platform = expected["issuer_ca"] == "platform"
    assert (found.platform_instance_id is not None) is platform
    assert (found.configuration is not None) is platform


@pytest.mark.parametrize(("path", "fmspc"), [
    ("qvl/Src/AttestationApp/sampleData/pckCert.pem", "00707f000000"),
    ("qvl/Src/AttestationApp/sampleData/tdx/pckCert.pem", "ed742af8adf5"),
])
def test_qvl_synthetic_pck_certificates_parse(path: str, fmspc: str) -> None:
    file = corpus_dir("intel") / path
    if not file.is_file():
        pytest.skip(f"{path} is absent")
    found = pck_extension(x509.load_pem_x509_certificate(file.read_bytes()))
    assert found.fmspc.hex() == fmspc and found.sgx_type_name == "Standard"


# -- extensions built here -------------------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk, value = [arc & 0x7F], arc >> 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def integer(value: int, tag: int = 0x02) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return _tlv(tag, value.to_bytes(size, "big", signed=True))


def octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def boolean(value: bool) -> bytes:
    return _tlv(0x01, b"\xff" if value else b"\x00")


def entry(suffix: str, value: bytes) -> bytes:
    return seq(oid(f"{SGX_EXTENSION_OID}.{suffix}"), value)


COMPS = (4, 4, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 255)


def tcb(comps: tuple[int, ...] = COMPS, pcesvn: int = 13, cpusvn: bytes = bytes(range(16)),
        extra: tuple[bytes, ...] = (), skip: tuple[int, ...] = ()) -> bytes:
    parts = [entry(f"2.{n}", integer(svn)) for n, svn in enumerate(comps, 1) if n not in skip]
    if 17 not in skip:
        parts.append(entry("2.17", integer(pcesvn)))
    if 18 not in skip:
        parts.append(entry("2.18", octets(cpusvn)))
    return seq(*parts, *extra)


CONFIG = seq(entry("7.1", boolean(True)), entry("7.2", boolean(False)),
             entry("7.3", boolean(True)))


def extension(**replace: bytes | None) -> bytes:
    """An SGX extension (Platform CA shape); ``replace`` maps an entry suffix ``_1`` .. ``_7``
    to its new value, or to None to drop the entry."""
    entries: dict[str, bytes | None] = {
        "_1": octets(b"\x11" * 16), "_2": tcb(), "_3": octets(b"\x00\x00"),
        "_4": octets(bytes.fromhex("90c06f000000")), "_5": integer(1, tag=0x0A),
        "_6": octets(b"\x66" * 16), "_7": CONFIG}
    entries.update(replace)
    return seq(*(entry(key[1:], value) for key, value in entries.items() if value is not None))


def test_an_extension_built_from_its_asn1_parses() -> None:
    found = parse_pck_extension(extension())
    assert found == PckExtension(
        ppid=b"\x11" * 16, tcb=found.tcb, pce_id=b"\x00\x00",
        fmspc=bytes.fromhex("90c06f000000"), sgx_type=1, platform_instance_id=b"\x66" * 16,
        configuration=PckConfiguration(dynamic_platform=True, cached_keys=False,
                                       smt_enabled=True))
    assert found.tcb.comp_svns == COMPS and found.tcb.pcesvn == 13
    assert found.tcb.cpusvn == bytes(range(16)) and found.sgx_type_name == "Scalable"


def test_processor_ca_shape_has_no_platform_entries() -> None:
    found = parse_pck_extension(extension(_6=None, _7=None))
    assert found.platform_instance_id is None and found.configuration is None


def test_a_partial_configuration_is_accepted() -> None:
    found = parse_pck_extension(extension(_7=seq(entry("7.2", boolean(True)))))
    assert found.configuration == PckConfiguration(cached_keys=True)


def test_later_entries_under_the_arc_are_ignored() -> None:
    found = parse_pck_extension(seq(_content(extension()), entry("8", octets(b"new"))))
    assert found == parse_pck_extension(extension())


def _content(der: bytes) -> bytes:
    """The content octets of the outer SEQUENCE ``der``."""
    if der[1] < 0x80:
        return der[2:]
    return der[2 + (der[1] & 0x7F) :]


def _dup(der: bytes) -> bytes:
    return seq(_content(der), entry("4", octets(bytes(6))))


# (name, extension DER, text the message holds)
DEFECTS: list[tuple[str, Callable[[], bytes], str]] = [
    ("no PPID", lambda: extension(_1=None), "no PPID"),
    ("no TCB", lambda: extension(_2=None), "no TCB"),
    ("no PCE-ID", lambda: extension(_3=None), "no PCE-ID"),
    ("no FMSPC", lambda: extension(_4=None), "no FMSPC"),
    ("no SGX Type", lambda: extension(_5=None), "no SGX Type"),
    ("PPID of 15 bytes", lambda: extension(_1=octets(bytes(15))), "PPID must be"),
    ("FMSPC of 5 bytes", lambda: extension(_4=octets(bytes(5))), "FMSPC must be"),
    ("FMSPC of 7 bytes", lambda: extension(_4=octets(bytes(7))), "FMSPC must be"),
    ("FMSPC as an INTEGER", lambda: extension(_4=integer(5)), "FMSPC must be an OCTET"),
    ("PCE-ID of 3 bytes", lambda: extension(_3=octets(bytes(3))), "PCE-ID"),
    ("SGX Type as an INTEGER", lambda: extension(_5=integer(1)), "SGX Type must be"),
    ("SGX Type negative", lambda: extension(_5=integer(-1, tag=0x0A)), "SGX Type is -1"),
    ("SGX Type empty", lambda: extension(_5=_tlv(0x0A, b"")), "SGX Type must be"),
    ("TCB not a SEQUENCE", lambda: extension(_2=octets(b"\x00")), "SEQUENCE"),
    ("TCB without COMP07", lambda: extension(_2=tcb(skip=(7,))), "lacks entries .2.7"),
    ("TCB without PCESVN", lambda: extension(_2=tcb(skip=(17,))), ".2.17"),
    ("TCB without CPUSVN", lambda: extension(_2=tcb(skip=(18,))), ".2.18"),
    ("TCB with COMP03 twice", lambda: extension(_2=tcb(extra=(entry("2.3", integer(1)),))),
     "twice"),
    ("COMP01 of 256", lambda: extension(_2=tcb(comps=(256, *COMPS[1:]))), "COMP01 SVN is 256"),
    ("COMP16 negative", lambda: extension(_2=tcb(comps=(*COMPS[:15], -1))), "COMP16 SVN is -1"),
    ("PCESVN of 65536", lambda: extension(_2=tcb(pcesvn=65536)), "PCESVN is 65536"),
    ("PCESVN of 4 bytes", lambda: extension(_2=tcb(pcesvn=1 << 30)), "PCESVN must be"),
    ("CPUSVN of 15 bytes", lambda: extension(_2=tcb(cpusvn=bytes(15))), "CPUSVN must be"),
    ("TCB entry outside its arc", lambda: extension(
        _2=tcb(extra=(seq(oid("1.2.3.4"), integer(1)),))), "outside its arc"),
    ("Platform Instance ID of 8 bytes", lambda: extension(_6=octets(bytes(8))),
     "Platform Instance ID"),
    ("Configuration BOOLEAN 0x01", lambda: extension(
        _7=seq(entry("7.1", _tlv(0x01, b"\x01")))), "dynamicPlatform must be a DER BOOLEAN"),
    ("Configuration not a SEQUENCE", lambda: extension(_7=boolean(True)), "SEQUENCE"),
    ("FMSPC twice", lambda: _dup(extension()), "entry .4 twice"),
    ("an entry of three parts", lambda: seq(seq(oid(f"{SGX_EXTENSION_OID}.1"),
                                                octets(bytes(16)), octets(b""))), "not a pair"),
    ("an entry without an OID", lambda: seq(seq(octets(b"x"), octets(b"y"))), "not a pair"),
    ("an entry outside the arc", lambda: seq(seq(oid("1.2.840.113741.1.13.2"), octets(b""))),
     "outside its arc"),
    ("an entry that is not a SEQUENCE", lambda: seq(octets(b"x")), "entry 0 has DER tag 0x04"),
    ("not a SEQUENCE", lambda: octets(b"x"), "DER tag 0x04"),
    ("trailing bytes", lambda: extension() + b"\x00", "followed by 1 bytes"),
    ("a length past the end", lambda: b"\x30\x84\x7f\xff\xff\xff", "not valid DER"),
    ("an indefinite length", lambda: b"\x30\x80" + _content(extension()) + b"\x00\x00",
     "not valid DER"),
    ("empty", lambda: b"", "not valid DER"),
]


@pytest.mark.parametrize(("name", "build", "text"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_defects(name: str, build: Callable[[], bytes], text: str) -> None:
    with pytest.raises(MalformedEvidenceError) as info:
        parse_pck_extension(build())
    assert type(info.value) is MalformedEvidenceError
    assert text in info.value.detail, info.value.detail


def test_every_truncation_is_malformed() -> None:
    good = extension()
    for length in range(len(good)):
        with pytest.raises(MalformedEvidenceError) as info:
            parse_pck_extension(good[:length])
        assert type(info.value) is MalformedEvidenceError, length


@FUZZ
@given(st.binary(max_size=700))
def test_random_bytes_are_malformed(blob: bytes) -> None:
    with pytest.raises(MalformedEvidenceError):
        parse_pck_extension(blob)


@FUZZ
@given(st.data())
def test_mutated_extensions_parse_or_are_malformed(data: st.DataObject) -> None:
    mutated = bytearray(extension())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    try:
        found = parse_pck_extension(bytes(mutated))
    except MalformedEvidenceError as exc:
        assert type(exc) is MalformedEvidenceError and exc.detail
        return
    assert len(found.tcb.comp_svns) == 16 and len(found.fmspc) == 6


# -- the certificate path --------------------------------------------------------------------------


def _certificate(value: bytes | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Intel SGX PCK Certificate")])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(7)
               .not_valid_before(now).not_valid_after(now + timedelta(days=1)))
    if value is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier(SGX_EXTENSION_OID), value), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_a_certificate_with_the_extension() -> None:
    assert pck_extension(_certificate(extension())) == parse_pck_extension(extension())


def test_a_certificate_without_the_extension_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError, match="no SGX extension"):
        pck_extension(_certificate(None))


def test_a_certificate_with_a_broken_extension_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError, match="not valid DER"):
        pck_extension(_certificate(b"\x30\x05\x01"))


@pytest.mark.parametrize(("cn", "kind"), [
    ("Intel SGX PCK Platform CA", "platform"), ("Intel SGX PCK Processor CA", "processor"),
    ("Intel SGX Root CA", None), ("", None),
])
def test_ca_kind(cn: str, kind: str | None) -> None:
    assert ca_kind(cn) == kind
