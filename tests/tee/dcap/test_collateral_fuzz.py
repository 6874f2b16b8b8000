"""Bad DCAP collateral gives only its specific typed error (STYLE §8; DESIGN "done" item 6):
random and mutated PCS bodies, combined JSON and CRLs; a wrong value in every field of a TCB
Info and an enclave identity (the message names the field); deep nesting, lone surrogates,
duplicate keys, NaN, oversized input. Never a crash, a hang, a pass or another error class.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.collateral import CollateralFile
from veritee.errors import (
    ChainError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UnsupportedVersionError,
    UntrustedRootError,
)
from veritee.tee.dcap import collateral as col
from veritee.x509 import parse_cert

FUZZ = settings(deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PARSE_ERRORS = (MalformedEvidenceError, UnsupportedVersionError)
T0 = datetime(2025, 6, 1, tzinfo=UTC)

LEVEL = {"tcb": {"sgxtcbcomponents": [{"svn": 2, "category": "BIOS"}] * 16, "pcesvn": 11,
                 "tdxtcbcomponents": [{"svn": 5}] * 16},
         "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate",
         "advisoryIDs": ["INTEL-SA-00615"]}
MODULE = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
TCB_INFO: dict[str, Any] = {
    "id": "TDX", "version": 3, "issueDate": "2025-06-01T00:00:00Z",
    "nextUpdate": "2025-07-01T00:00:00Z", "fmspc": "00806F050000", "pceId": "0000",
    "tcbType": 0, "tcbEvaluationDataNumber": 17, "tdxModule": MODULE,
    "tdxModuleIdentities": [{**MODULE, "id": "TDX_01", "tcbLevels": [
        {"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}]}],
    "tcbLevels": [LEVEL]}
IDENTITY: dict[str, Any] = {
    "id": "TD_QE", "version": 2, "issueDate": "2025-06-01T00:00:00Z",
    "nextUpdate": "2025-07-01T00:00:00Z", "tcbEvaluationDataNumber": 17,
    "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
    "attributes": "11000000000000000000000000000000",
    "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000", "mrsigner": "DC" * 32,
    "isvprodid": 2, "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                                   "tcbStatus": "UpToDate", "advisoryIDs": ["X"]}]}
WRONG_VALUES: list[Any] = [None, True, -1, 1.5, "", "zz", "\udfff", [], {}, 2**70, [1], {"a": 1}]


def _body(member: str, value: Any) -> bytes:
    return json.dumps({member: value, "signature": "00" * 64}).encode()


# -- every field, every wrong value -----------------------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (one representative list element)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key)
            yield from _paths(child, (*path, key))
    elif isinstance(value, list) and value:
        yield (*path, 0)
        yield from _paths(value[0], (*path, 0))


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if new is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return copy


class _Delete:
    def __repr__(self) -> str:
        return "<deleted>"        # a stable test id (pytest-xdist workers compare them)


_DELETE = _Delete()
#: Labels veritee does not read, and members that may be absent.
_UNREAD = {"category"}
_OPTIONAL = {"category", "advisoryIDs", "tdxModuleIdentities"}


def _field_cases(document: dict[str, Any]) -> list[Any]:
    return [pytest.param(path, new, id=f"{'.'.join(map(str, path))}={new!r}"[:80])
            for path in _paths(document) for new in [*WRONG_VALUES, _DELETE]]


@pytest.mark.parametrize(("path", "new"), _field_cases(TCB_INFO))
def test_every_tcb_info_field(path: tuple[Any, ...], new: Any) -> None:
    _check_field(path, new, TCB_INFO, "tcbInfo", col.parse_tcb_info)


@pytest.mark.parametrize(("path", "new"), _field_cases(IDENTITY))
def test_every_identity_field(path: tuple[Any, ...], new: Any) -> None:
    _check_field(path, new, IDENTITY, "enclaveIdentity", col.parse_enclave_identity)


def _check_field(path: tuple[Any, ...], new: Any, document: dict[str, Any], member: str,
                 parse: Any) -> None:
    """Through the body parser (surrogates, depth), then the field parser: a typed error that
    names the field, or a parse; null and a missing required member never parse."""
    data = json.dumps({member: _set(document, path, new), "signature": "00" * 64}).encode()
    names = [p for p in path if isinstance(p, str)]
    try:
        parse(col.signed_json_from_body(data, member).value)
    except PARSE_ERRORS as exc:
        expected = "not Unicode" if new == "\udfff" else None
        assert (expected or "") in str(exc)
        assert expected or any(name in str(exc) for name in names[-2:]), str(exc)
        return
    if new is _DELETE:  # an optional member, or an advisory ID (an empty list is fine)
        optional = names[-1] in (_OPTIONAL if isinstance(path[-1], str) else {"advisoryIDs"})
        assert optional, f"{path} may not be absent"
    elif new is None:
        assert names[-1] in _UNREAD, f"{path} may not be null"


def test_the_valid_documents_parse() -> None:
    assert col.parse_tcb_info(TCB_INFO).id == "TDX"
    assert col.parse_enclave_identity(IDENTITY).id == "TD_QE"


# -- JSON hazards -----------------------------------------------------------------------------


HAZARDS: list[tuple[str, bytes, str]] = [
    ("deeply_nested_list", b'{"tcbInfo":' + b"[" * 200_000 + b"]" * 200_000 + b"}",
     "nests JSON"),
    ("thirteen_levels", b'{"tcbInfo":{"a":' + b'{"a":' * 12 + b"1" + b"}" * 13
     + b',"signature":"' + b"00" * 64 + b'"}', "more than 12 levels"),
    ("lone_surrogate_value", b'{"tcbInfo":{"id":"\\udfff"},"signature":"' + b"00" * 64 + b'"}',
     "not Unicode"),
    ("lone_surrogate_key", b'{"tcbInfo":{"\\ud800":1},"signature":"' + b"00" * 64 + b'"}',
     "not Unicode"),
    ("duplicate_key", b'{"tcbInfo":{"id":"SGX","id":"TDX"},"signature":"' + b"00" * 64 + b'"}',
     "repeats the key 'id'"),
    ("duplicate_top_level_key", b'{"tcbInfo":{},"tcbInfo":{},"signature":""}', "repeats"),
    ("nan", b'{"tcbInfo":{"version":NaN},"signature":"' + b"00" * 64 + b'"}', "NaN"),
    ("infinity", b'{"tcbInfo":{"version":-Infinity},"signature":""}', "Infinity"),
    ("not_utf8", b'{"tcbInfo":{"id":"\xff"},"signature":""}', "not UTF-8"),
    ("bom", b'\xef\xbb\xbf{"tcbInfo":{},"signature":""}', "expected at 0"),
    ("trailing_text", b'{"tcbInfo":{},"signature":"' + b"00" * 64 + b'"} x', "after its JSON"),
    ("trailing_comma", b'{"tcbInfo":{},"signature":"' + b"00" * 64 + b'",}', "member name"),
    ("not_an_object", b'["tcbInfo"]', "'{' was expected"),
    ("member_not_an_object", b'{"tcbInfo":[],"signature":"' + b"00" * 64 + b'"}',
     "not an object"),
    ("no_signature", b'{"tcbInfo":{}}', "no 'signature'"),
    ("short_signature", b'{"tcbInfo":{},"signature":"00"}', "1 bytes"),
    ("signature_not_hex", b'{"tcbInfo":{},"signature":"' + b"zz" * 64 + b'"}', "not hex"),
    ("signature_a_number", b'{"tcbInfo":{},"signature":7}', "a number"),
    ("huge_integer", b'{"tcbInfo":{"v":' + b"9" * 5000 + b'},"signature":""}', "not JSON"),
    ("oversized", b'{"tcbInfo":{"a":"' + b"a" * (1 << 20) + b'"},"signature":""}',
     "more than the limit"),
    ("empty", b"", "'{' was expected"),
    ("truncated", _body("tcbInfo", TCB_INFO)[:-7], "not JSON"),
]


@pytest.mark.parametrize(("name", "data", "match"), HAZARDS, ids=[h[0] for h in HAZARDS])
def test_json_hazards(name: str, data: bytes, match: str) -> None:
    start = time.monotonic()
    with pytest.raises(MalformedEvidenceError, match=match):
        col.signed_json_from_body(data, "tcbInfo")
    with pytest.raises(MalformedEvidenceError):
        col.read_pcs_body(data)
    assert time.monotonic() - start < 5


COMBINED_HAZARDS: list[tuple[str, dict[str, Any], str]] = [
    ("tcb_info_not_text", {"tcb_info": 5}, "not JSON text"),
    ("tcb_info_not_json", {"tcb_info": "{", "tcb_info_signature": "00" * 64}, "not JSON"),
    ("tcb_info_a_list", {"tcb_info": "[]", "tcb_info_signature": "00" * 64}, "not a JSON object"),
    ("signature_bad_hex", {"tcb_info": "{}", "tcb_info_signature": "0g" * 64}, "not hex"),
    ("signature_bytes_out_of_range", {"tcb_info": "{}", "tcb_info_signature": [256] * 64},
     "list of byte values"),
    ("root_crl_bad_hex", {"tcb_info": "{}", "tcb_info_signature": "00" * 64,
                          "root_ca_crl": "zz"}, "holds no CRL"),
    ("pck_crl_not_a_crl", {"tcb_info": "{}", "tcb_info_signature": "00" * 64,
                           "pck_crl": "3003020100"}, "holds no CRL"),
    ("chain_not_text", {"tcb_info": "{}", "tcb_info_signature": "00" * 64,
                        "tcb_info_issuer_chain": 1}, "not PEM text"),
    ("chain_without_certificates", {"tcb_info": "{}", "tcb_info_signature": "00" * 64,
                                    "tcb_info_issuer_chain": "-----BEGIN CERTIFICATE-----"},
     "holds no certificate"),
    ("whole_body_without_signature", {"tcb_info": '{"tcbInfo":{}}'}, "no 'signature'"),
    ("no_tcb_info", {"qe_identity": "{}"}, "no 'tcb_info'"),
]


@pytest.mark.parametrize(("name", "document", "match"), COMBINED_HAZARDS,
                         ids=[h[0] for h in COMBINED_HAZARDS])
def test_combined_json_hazards(name: str, document: dict[str, Any], match: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=match):
        col.read_combined_json(json.dumps(document).encode())


# -- random and mutated input -----------------------------------------------------------------


def _only_parse_errors(call: Any, *args: Any) -> None:
    with contextlib.suppress(PARSE_ERRORS):
        call(*args)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_a_pcs_body(data: bytes) -> None:
    _only_parse_errors(col.read_pcs_body, data)
    _only_parse_errors(col.read_combined_json, data)


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(), lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=30))
def test_random_json_values_as_collateral(value: Any) -> None:
    for member in ("tcbInfo", "enclaveIdentity"):
        data = json.dumps({member: value, "signature": "ab" * 64}).encode()
        try:
            signed = col.signed_json_from_body(data, member)
        except PARSE_ERRORS:
            continue
        parse = col.parse_tcb_info if member == "tcbInfo" else col.parse_enclave_identity
        _only_parse_errors(parse, signed.value)
    _only_parse_errors(col.read_combined_json, json.dumps({"tcb_info": value}).encode())


VALID_BODY = _body("tcbInfo", TCB_INFO)


@FUZZ
@given(st.data())
def test_mutated_pcs_bodies(data: st.DataObject) -> None:
    body = bytearray(VALID_BODY)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    for candidate in (bytes(body), bytes(body[:cut])):
        try:
            raw = col.read_pcs_body(candidate)
        except PARSE_ERRORS:
            continue
        for signed in raw.tcb_infos + raw.identities:
            parse = (col.parse_tcb_info if signed.member == "tcbInfo"
                     else col.parse_enclave_identity)
            _only_parse_errors(parse, signed.value)


# -- signature verification of mutated collateral ---------------------------------------------


def _pki() -> tuple[ec.EllipticCurvePrivateKey, Any, ec.EllipticCurvePrivateKey, Any]:
    root_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())

    def issue(cn: str, key: Any, issuer_cn: str, issuer_key: Any, serial: int) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)])
        der = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(T0 - timedelta(days=9)).not_valid_after(T0 + timedelta(days=9))
               .sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        return parse_cert(der)

    root = issue("Intel SGX Root CA", root_key, "Intel SGX Root CA", root_key, 1)
    return root_key, root, signer_key, issue("Intel SGX TCB Signing", signer_key,
                                             "Intel SGX Root CA", root_key, 2)


PKI = _pki()


def _signed_body() -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    text = json.dumps(TCB_INFO, separators=(",", ":")).encode()
    r, s = decode_dss_signature(PKI[2].sign(text, ec.ECDSA(hashes.SHA256())))
    signature = (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex().encode()
    return b'{"tcbInfo":' + text + b',"signature":"' + signature + b'"}'


SIGNED_BODY = _signed_body()
VERIFY_ERRORS = (*PARSE_ERRORS, SignatureError, ExpiredError)


def test_the_signed_body_verifies() -> None:
    signed = col.signed_json_from_body(SIGNED_BODY, "tcbInfo")
    assert col.verify_tcb_info(signed, (PKI[3], PKI[1]), now=T0, roots=(PKI[1],)).id == "TDX"


@FUZZ
@given(st.integers(0, len(SIGNED_BODY) - 1), st.integers(1, 255))
def test_a_changed_byte_never_verifies(at: int, delta: int) -> None:
    body = bytearray(SIGNED_BODY)
    body[at] = (body[at] + delta) % 256
    try:
        signed = col.signed_json_from_body(bytes(body), "tcbInfo")
        col.verify_tcb_info(signed, (PKI[3], PKI[1]), now=T0, roots=(PKI[1],))
    except VERIFY_ERRORS:
        return
    # Only a change the JSON text does not carry may still verify: white space (none here)
    # or an escape that decodes to the same text.
    assert json.loads(bytes(body))["tcbInfo"] == TCB_INFO


# -- CRLs -------------------------------------------------------------------------------------


def _crl() -> bytes:
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA")])
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
               .last_update(T0 - timedelta(days=1)).next_update(T0 + timedelta(days=1))
               .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(7)
                                        .revocation_date(T0 - timedelta(days=1)).build()))
    return builder.sign(PKI[0], hashes.SHA256()).public_bytes(serialization.Encoding.DER)


CRL = _crl()
CRL_ERRORS = (MalformedEvidenceError, ChainError, ExpiredError, UntrustedRootError)


def test_the_crl_verifies() -> None:
    crl = col.load_crl(CRL, "crl")
    assert col.verify_root_crl(crl, now=T0, roots=(PKI[1],)) is crl


@FUZZ
@given(st.data())
def test_mutated_crls(data: st.DataObject) -> None:
    blob = bytearray(CRL)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    encoding = data.draw(st.sampled_from(["der", "hex", "truncated"]))
    candidate = {"der": bytes(blob), "hex": bytes(blob).hex().encode(),
                 "truncated": bytes(blob[: data.draw(st.integers(0, len(blob)))])}[encoding]
    try:
        crl = col.load_crl(candidate, "crl")
        col.verify_root_crl(crl, now=T0, roots=(PKI[1],))
        col.check_not_revoked(crl, PKI[3], T0, "signer")
    except CRL_ERRORS:
        return
    # It verified: what the root signed is what it signed.
    assert crl.crl.tbs_certlist_bytes == x509.load_der_x509_crl(CRL).tbs_certlist_bytes


@FUZZ
@given(st.data())
def test_mutated_crl_files(data: st.DataObject) -> None:
    blob = bytearray(CRL)
    at = data.draw(st.integers(0, len(blob) - 1))
    blob[at] = data.draw(st.integers(0, 255))
    origin = data.draw(st.sampled_from(["collateral", "directory"]))
    try:
        raw = col.read_collateral([CollateralFile("crl", bytes(blob), origin)])  # type: ignore[arg-type]
    except (MalformedEvidenceError, MisuseError):
        assert origin == "collateral"
        return
    for crl in raw.crls:
        with contextlib.suppress(*CRL_ERRORS):
            col.verify_root_crl(crl, now=T0, roots=(PKI[1],))


CHAIN_ERRORS = (ChainError, ExpiredError, SignatureError, MalformedEvidenceError,
                UntrustedRootError)


@FUZZ
@given(st.data())
def test_mutated_signing_certificates(data: st.DataObject) -> None:
    der = bytearray(PKI[3].der)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(der) - 1))
        der[at] = data.draw(st.integers(0, 255))
    signed = col.signed_json_from_body(SIGNED_BODY, "tcbInfo")
    try:
        chain = (*col.load_chain(bytes(der), "chain"), PKI[1])
        col.verify_tcb_info(signed, chain, now=T0, roots=(PKI[1],))
    except CHAIN_ERRORS:
        return
    # It verified: the certificate still says what the root signed.
    cert = parse_cert(bytes(der))
    assert cert is not None and cert.tbs == PKI[3].tbs


@FUZZ
@given(st.binary(max_size=1024))
def test_random_bytes_as_a_crl_or_a_chain(data: bytes) -> None:
    for call in (col.load_crl, col.load_chain):
        with contextlib.suppress(MalformedEvidenceError):
            call(data, "input")


@FUZZ
@given(st.binary(max_size=512), st.sampled_from(["collateral", "directory"]))
def test_random_files(data: bytes, origin: str) -> None:
    try:
        col.read_collateral([CollateralFile("f", data, origin)])  # type: ignore[arg-type]
    except (MalformedEvidenceError, UnsupportedVersionError, MisuseError):
        assert origin == "collateral"
