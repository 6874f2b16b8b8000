"""DCAP quote layouts: every real quote of ../shared/corpus/intel parses, round-trips and carries
the values its MANIFEST lists; synthetic quotes of every version and body type do too; and each
defect of a table of defects raises its own error (STYLE §16, §17).

The list of real quotes comes from the MANIFEST (entries whose ``expected`` names a version),
never from this file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from conftest import corpus_dir, manifest
from veritee.errors import MalformedEvidenceError, UnsupportedVersionError
from veritee.evidence import decode_evidence
from veritee.tee.dcap.quote import (
    BODY_SGX,
    BODY_SIZES,
    BODY_TD10,
    BODY_TD15,
    CERT_PCK_CHAIN,
    CERT_PPID_CLEARTEXT,
    HEADER,
    INTEL_QE_VENDOR_ID,
    MAX_QUOTE_BYTES,
    SGX_REPORT,
    TD_REPORT_10,
    TD_REPORT_15,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    Quote,
    SgxReport,
    TdReport,
    build_quote,
    build_signature_data,
    pack_fields,
    parse_quote,
    sgx_attribute_flags,
    sgx_xfrm,
    td_attribute_flags,
    td_reserved_bits,
)

# -- real quotes -----------------------------------------------------------------------------------

QUOTES = [e for e in manifest("intel") if "version" in (e.get("expected") or {})]


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    """One case per entry; without the corpus, one case that skips and says why."""
    if entries:
        return [pytest.param(e, id=e["file"]) for e in entries]
    return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
        reason="corpus folder intel is absent (set VERITEE_CORPUS)"))]


def corpus_quote(entry: dict[str, Any]) -> bytes:
    """The quote bytes of a corpus file (the ``.hex`` files hold hex text)."""
    return decode_evidence((corpus_dir("intel") / entry["file"]).read_bytes()).data


def _show(value: object) -> object:
    return value.hex() if isinstance(value, bytes) else value


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_every_corpus_quote_parses_and_round_trips(entry: dict[str, Any]) -> None:
    data = corpus_quote(entry)
    quote = parse_quote(data)
    expected = entry["expected"]
    assert quote.to_bytes() == quote.raw == data[: len(quote.raw)]
    assert len(quote.raw) + quote.trailing_bytes == len(data)
    assert quote.trailing_bytes == expected["trailing_bytes"]
    assert len(quote.signed_bytes) == quote.signed_length == expected["signed_data_len"]
    assert quote.version == expected["version"]
    assert quote.header.tee_type == int(expected["tee_type"], 16)
    assert quote.body_name == expected["body_type"]
    assert quote.header.qe_vendor_id.hex() == expected["qe_vendor_id"]


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_corpus_report_values_match_the_manifest(entry: dict[str, Any]) -> None:
    quote = parse_quote(corpus_quote(entry))
    expected = entry["expected"]
    for name, value in expected["report"].items():
        assert _show(getattr(quote.body, name)) == value, name
    qe_report = quote.signature_data.qe.qe_report
    for name, value in expected["qe_report"].items():
        assert _show(getattr(qe_report, name)) == value, name


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_corpus_attribute_flags_match_the_manifest(entry: dict[str, Any]) -> None:
    quote = parse_quote(corpus_quote(entry))
    expected = entry["expected"]
    if isinstance(quote.body, TdReport):
        flags = quote.body.attribute_flags
        manifest_names = {"bit29": "migratable"}
        for name, value in expected["td_attributes_flags"].items():
            assert flags[manifest_names.get(name, name)] is value, name
        nonzero = quote.body.mr_service_td is not None and any(quote.body.mr_service_td)
        assert nonzero is expected["mr_service_td_nonzero"]
    else:
        assert quote.body.attribute_flags["debug"] is expected["sgx_debug_enclave"]


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_corpus_signature_data_is_bound_where_the_note_says(entry: dict[str, Any]) -> None:
    quote = parse_quote(corpus_quote(entry))
    signature = quote.signature_data
    assert signature.wrapped is (quote.version != 3)
    assert len(signature.signature) == len(signature.attestation_key) == 64
    assert signature.qe.qe_report_bytes == signature.qe.qe_report.raw
    assert len(signature.qe.qe_report_bytes) == 384
    assert signature.attestation_key_binding == signature.attestation_key + (
        signature.qe.qe_auth_data)
    assert signature.raw == quote.raw[quote.signed_length + 4 :]
    if signature.certification_data.cert_type == CERT_PCK_CHAIN:
        assert signature.pck_chain is not None
    else:
        assert signature.pck_chain is None


def test_real_pck_chains_are_pem_and_qvl_sample_chain_is_der() -> None:
    folder = corpus_dir("intel")
    real = parse_quote((folder / "dcap-qvl/sample/tdx_quote").read_bytes())
    assert real.signature_data.pck_chain is not None
    assert real.signature_data.pck_chain.startswith(b"-----BEGIN CERTIFICATE-----")
    qvl = folder / "qvl/Src/AttestationApp/sampleData/tdx/quote.dat"
    if not qvl.is_file():
        pytest.skip("QVL synthetic TDX sample is absent")
    sample = parse_quote(qvl.read_bytes())
    assert sample.to_bytes() == qvl.read_bytes()
    assert sample.signature_data.pck_chain is not None
    assert sample.signature_data.pck_chain[:1] == b"\x30"  # DER, not PEM (intel-dcap.md §4.1)
    assert sample.signature_data.qe.qe_auth_data == b""


def test_qvl_sgx_sample_carries_ppid_cleartext() -> None:
    path = corpus_dir("intel") / "qvl/Src/AttestationApp/sampleData/quote.dat"
    if not path.is_file():
        pytest.skip("QVL synthetic SGX sample is absent")
    quote = parse_quote(path.read_bytes())
    cert = quote.signature_data.certification_data
    assert cert.cert_type == CERT_PPID_CLEARTEXT and cert.type_name == "PPID cleartext"
    assert quote.signature_data.pck_chain is None
    assert quote.to_bytes() == path.read_bytes()


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_every_truncation_of_a_corpus_quote_is_malformed(entry: dict[str, Any]) -> None:
    data = corpus_quote(entry)
    end = len(parse_quote(data).raw)
    for length in range(end):
        with pytest.raises(MalformedEvidenceError) as info:
            parse_quote(data[:length])
        assert type(info.value) is MalformedEvidenceError, (length, info.value)


# -- synthetic quotes of every version and body type -----------------------------------------------

PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\x00"


def synthetic(version: int = 4, body_type: int = BODY_TD10, *,
              certification: CertificationData | None = None,
              qe_auth_data: bytes = bytes(range(32))) -> bytes:
    """A well-formed (unsigned) quote of ``version`` with a body of ``body_type``."""
    tee = TEE_TYPE_SGX if body_type == BODY_SGX else TEE_TYPE_TDX
    header = pack_fields(HEADER, {"version": version, "att_key_type": 2, "tee_type": tee,
                                  "qe_vendor_id": INTEL_QE_VENDOR_ID,
                                  "user_data": bytes(range(20))})
    table = {BODY_SGX: SGX_REPORT, BODY_TD10: TD_REPORT_10, BODY_TD15: TD_REPORT_15}[body_type]
    body = pack_fields(table, {"report_data": b"\x5a" * 64})
    qe_report = pack_fields(SGX_REPORT, {"isv_prod_id": 2, "isv_svn": 7,
                                         "report_data": b"\x77" * 64})
    signature_data = build_signature_data(
        version=version, signature=b"\x01" * 64, attestation_key=b"\x02" * 64,
        qe_report=qe_report, qe_report_signature=b"\x03" * 64, qe_auth_data=qe_auth_data,
        certification=certification or CertificationData(CERT_PCK_CHAIN, PEM))
    return build_quote(header, body, signature_data)


SHAPES = [(3, BODY_SGX), (4, BODY_TD10), (4, BODY_SGX), (5, BODY_SGX), (5, BODY_TD10),
          (5, BODY_TD15)]


@pytest.mark.parametrize(("version", "body_type"), SHAPES)
def test_synthetic_quotes_of_every_shape_round_trip(version: int, body_type: int) -> None:
    data = synthetic(version, body_type)
    quote = parse_quote(data)
    assert quote.to_bytes() == data and quote.trailing_bytes == 0
    assert quote.body_type == quote.body.body_type == body_type
    assert quote.tee == ("sgx" if body_type == BODY_SGX else "tdx")
    descriptor = 6 if version == 5 else 0
    assert quote.signed_length == 48 + descriptor + BODY_SIZES[body_type]
    assert quote.report_data == b"\x5a" * 64
    assert quote.signature_data.pck_chain == PEM
    assert quote.header.qe_id == bytes(range(16))
    expected_body = SgxReport if body_type == BODY_SGX else TdReport
    assert isinstance(quote.body, expected_body)
    if isinstance(quote.body, TdReport):
        assert (quote.body.mr_service_td is None) is (body_type == BODY_TD10)
        assert quote.body.rtmrs == (bytes(48),) * 4


@pytest.mark.parametrize("tail", [bytes(70), bytes(3065),
                                  b"\nextra bytes(only for testing purpose)\n"])
def test_padding_and_appended_bytes_are_counted_not_read(tail: bytes) -> None:
    data = synthetic(5, BODY_TD15)
    quote = parse_quote(data + tail)
    assert quote.trailing_bytes == len(tail)
    assert quote.raw == quote.to_bytes() == data


@pytest.mark.parametrize("cert_type", [1, 2, 3, 4])
def test_other_pck_identifications_are_kept_raw(cert_type: int) -> None:
    payload = bytes(range(34))
    for version in (3, 4):
        body = BODY_SGX if version == 3 else BODY_TD10
        quote = parse_quote(synthetic(version, body, certification=CertificationData(
            cert_type, payload)))
        assert quote.signature_data.certification_data == CertificationData(cert_type, payload)
        assert quote.signature_data.pck_chain is None


def test_empty_qe_auth_data_parses() -> None:
    quote = parse_quote(synthetic(4, BODY_TD10, qe_auth_data=b""))
    assert quote.signature_data.qe.qe_auth_data == b""


# -- defects, each with its error ------------------------------------------------------------------


def _offsets(data: bytes) -> dict[str, int]:
    """Where the length and type fields of ``data`` (a well-formed quote) are."""
    quote = parse_quote(data)
    sig = quote.signed_length + 4
    qe = sig + 128 + (6 if quote.signature_data.wrapped else 0)
    auth = qe + 448
    inner = auth + 2 + len(quote.signature_data.qe.qe_auth_data)
    return {"sig_len": quote.signed_length, "outer": sig + 128, "auth": auth, "inner": inner}


def _put(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _at(field: str, fmt: str, value: int | Callable[[int], int]) -> Callable[[bytes], bytes]:
    """Mutation: set the ``fmt`` value at ``field`` (an offset or a name of :func:`_offsets`,
    with ``+n`` for the size after a type) to ``value`` (or to ``value(old)``)."""
    def mutate(data: bytes) -> bytes:
        name, _, extra = field.partition("+")
        offset = int(name) if name.isdigit() else _offsets(data)[name]
        offset += int(extra or 0)
        old = struct.unpack_from(fmt, data, offset)[0]
        return _put(data, offset, fmt, value(old) if callable(value) else value)
    return mutate


V3, V4, V4_SGX, V5_TD15 = (3, BODY_SGX), (4, BODY_TD10), (4, BODY_SGX), (5, BODY_TD15)

DEFECTS: list[tuple[str, tuple[int, int], Callable[[bytes], bytes], type[Exception], str]] = [
    ("version 2", V4, _at("0", "<H", 2), UnsupportedVersionError, "version is 2"),
    ("version 6", V5_TD15, _at("0", "<H", 6), UnsupportedVersionError, "version is 6"),
    ("version 0xffff", V3, _at("0", "<H", 0xFFFF), UnsupportedVersionError, "supported"),
    ("att_key_type 3 (P-384)", V4, _at("2", "<H", 3), UnsupportedVersionError, "P-384"),
    ("att_key_type 0 (EPID)", V3, _at("2", "<H", 0), UnsupportedVersionError, "EPID"),
    ("att_key_type 1", V4, _at("2", "<H", 1), MalformedEvidenceError, "att_key_type is 1"),
    ("att_key_type 0xffff", V5_TD15, _at("2", "<H", 0xFFFF), MalformedEvidenceError,
     "att_key_type"),
    ("tee_type 0x80", V4, _at("4", "<I", 0x80), MalformedEvidenceError, "tee_type is 0x80"),
    ("tee_type 0x81 in v3", V3, _at("4", "<I", 0x81), MalformedEvidenceError, "version 3"),
    ("v4 SGX tee_type on a TD body", V4, _at("4", "<I", 0), MalformedEvidenceError, ""),
    ("v5 body type 0", V5_TD15, _at("48", "<H", 0), UnsupportedVersionError, "body type is 0"),
    ("v5 body type 4", V5_TD15, _at("48", "<H", 4), UnsupportedVersionError, "body type is 4"),
    ("v5 body type 2 with a 648-byte size", V5_TD15, _at("48", "<H", 2),
     MalformedEvidenceError, "body size is 648"),
    ("v5 body size 649", V5_TD15, _at("50", "<I", 649), MalformedEvidenceError,
     "body size is 649"),
    ("v5 SGX body under a TDX tee_type", V5_TD15,
     lambda d: _at("50", "<I", 384)(_at("48", "<H", 1)(d)), MalformedEvidenceError,
     "does not fit tee_type"),
    ("sig_data_len past the end", V4, _at("sig_len", "<I", 1 << 20), MalformedEvidenceError,
     "the quote ends"),
    ("sig_data_len one short", V4, _at("sig_len", "<I", lambda n: n - 1),
     MalformedEvidenceError, "declares"),
    ("sig_data_len 0", V3, _at("sig_len", "<I", 0), MalformedEvidenceError,
     "ECDSA signature data is 0 bytes"),
    ("outer certification type 5 in v4", V4, _at("outer", "<H", 5), MalformedEvidenceError,
     "needs 6"),
    ("outer certification type 0", V5_TD15, _at("outer", "<H", 0), MalformedEvidenceError,
     "does not define"),
    ("outer certification type 8", V4_SGX, _at("outer", "<H", 8), MalformedEvidenceError,
     "does not define"),
    ("outer size one more", V4, _at("outer+2", "<I", lambda n: n + 1), MalformedEvidenceError,
     "declares"),
    ("outer size one less", V5_TD15, _at("outer+2", "<I", lambda n: n - 1),
     MalformedEvidenceError, "declares"),
    ("outer size past the end", V4, _at("outer+2", "<I", 0xFFFFFFFF), MalformedEvidenceError,
     "declares"),
    ("qe_auth_data_size past the end", V4, _at("auth", "<H", 0xFFFF), MalformedEvidenceError,
     "qe_auth_data_size is 65535"),
    ("qe_auth_data_size one more", V3, _at("auth", "<H", 33), MalformedEvidenceError, ""),
    ("inner certification type 6", V4, _at("inner", "<H", 6), MalformedEvidenceError,
     "only types 1..5"),
    ("inner certification type 7", V5_TD15, _at("inner", "<H", 7), MalformedEvidenceError,
     "platform manifest"),
    ("inner certification type 0", V4, _at("inner", "<H", 0), MalformedEvidenceError,
     "does not define"),
    ("v3 certification type 6", V3, _at("inner", "<H", 6), MalformedEvidenceError,
     "only types 1..5"),
    ("inner size one more", V4, _at("inner+2", "<I", lambda n: n + 1), MalformedEvidenceError,
     "declares"),
    ("inner size one less", V3, _at("inner+2", "<I", lambda n: n - 1), MalformedEvidenceError,
     "declares"),
    ("quote over 1 MiB", V4, lambda d: d + bytes(MAX_QUOTE_BYTES), MalformedEvidenceError,
     "limit"),
]


@pytest.mark.parametrize(("name", "shape", "mutate", "error", "text"), DEFECTS,
                         ids=[d[0] for d in DEFECTS])
def test_defects(name: str, shape: tuple[int, int], mutate: Callable[[bytes], bytes],
                 error: type[Exception], text: str) -> None:
    with pytest.raises(MalformedEvidenceError) as info:
        parse_quote(mutate(synthetic(*shape)))
    assert type(info.value) is error, info.value
    assert text in info.value.detail


@pytest.mark.parametrize(("version", "body_type"), SHAPES)
def test_every_truncation_of_a_synthetic_quote_is_malformed(version: int,
                                                           body_type: int) -> None:
    data = synthetic(version, body_type)
    for length in range(len(data)):
        with pytest.raises(MalformedEvidenceError) as info:
            parse_quote(data[:length])
        assert type(info.value) is MalformedEvidenceError, (length, info.value)


def test_quote_type_is_the_dataclass() -> None:
    assert isinstance(parse_quote(synthetic()), Quote)


# -- attribute bits (§1.5) -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "names"), [
    ("0000001000000000", {"sept_ve_disable"}),
    ("0000000000000000", set()),
    ("0100001000000000", {"debug", "sept_ve_disable"}),
    ("0000004000000000", {"pks"}),
    ("0000002000000000", {"migratable"}),
    ("0000008000000000", {"kl"}),
    ("0000001000000080", {"sept_ve_disable", "perfmon"}),
])
def test_td_attribute_flags(raw: str, names: set[str]) -> None:
    flags = td_attribute_flags(bytes.fromhex(raw))
    assert {name for name, value in flags.items() if value} == names
    assert td_reserved_bits(bytes.fromhex(raw)) == 0


def test_td_reserved_bits_are_the_unnamed_ones() -> None:
    assert td_reserved_bits(bytes.fromhex("0200000000000000")) == 1 << 1
    assert td_reserved_bits(bytes.fromhex("0000000001000000")) == 1 << 32


@pytest.mark.parametrize(("raw", "names", "xfrm"), [
    ("0500000000000000e700000000000000", {"init", "mode64bit"}, 0xE7),
    ("0700000000000000e700000000000000", {"init", "debug", "mode64bit"}, 0xE7),
    ("1500000000000000e700000000000000", {"init", "mode64bit", "provisionkey"}, 0xE7),
    ("8500000000000000" "0300000000000000", {"init", "mode64bit", "kss"}, 3),
])
def test_sgx_attribute_flags(raw: str, names: set[str], xfrm: int) -> None:
    flags = sgx_attribute_flags(bytes.fromhex(raw))
    assert {name for name, value in flags.items() if value} == names
    assert sgx_xfrm(bytes.fromhex(raw)) == xfrm


@pytest.mark.parametrize("helper", [td_attribute_flags, sgx_attribute_flags, sgx_xfrm,
                                    td_reserved_bits])
def test_attribute_helpers_refuse_wrong_sizes(helper: Callable[[bytes], object]) -> None:
    with pytest.raises(MalformedEvidenceError, match="expected"):
        helper(bytes(9))
