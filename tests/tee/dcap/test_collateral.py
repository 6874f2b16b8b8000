"""DCAP collateral: parsing, signatures over signed JSON, chains to the pinned Intel root, CRLs,
input forms and dates (intel-dcap.md §2.1, §2.3, §2.4 steps 1–4, §2.7).

Real collateral is read in place from ../shared/corpus/intel through its MANIFEST (the list of
files comes from the MANIFEST, never from this file); every synthetic case is built here with a
throw-away P-256 PKI whose names are Intel's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from conftest import corpus_dir, manifest
from veritee.collateral import CollateralFile
from veritee.errors import (
    ChainError,
    CollateralMissingError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    RevokedError,
    SignatureError,
    UnsupportedVersionError,
    UntrustedRootError,
)
from veritee.tee.dcap import collateral as col
from veritee.x509 import Cert, Crl, parse_cert

T0 = datetime(2025, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
FMSPC = bytes.fromhex("00906ed50000")


# -- a throw-away PKI with Intel's names -----------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation")])


def _issue(cn: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, Any], *,
           ca: bool, serial: int, not_after: datetime = T0 + 3650 * DAY) -> Cert:
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer[0])
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(T0 - 365 * DAY).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    der = builder.sign(issuer[1], hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    parsed = parse_cert(der)
    assert parsed is not None
    return parsed


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    root: Cert
    signer_key: ec.EllipticCurvePrivateKey
    signer: Cert
    ca_key: ec.EllipticCurvePrivateKey
    ca: Cert

    @property
    def chain(self) -> tuple[Cert, ...]:
        return (self.signer, self.root)


@functools.cache
def pki() -> Pki:
    root_key, signer_key, ca_key = _key(), _key(), _key()
    root = _issue("Intel SGX Root CA", root_key, (_name("Intel SGX Root CA"), root_key),
                  ca=True, serial=1)
    issuer = (_name("Intel SGX Root CA"), root_key)
    return Pki(root_key, root, signer_key, _issue("Intel SGX TCB Signing", signer_key, issuer,
                                                  ca=False, serial=2),
               ca_key, _issue("Intel SGX PCK Platform CA", ca_key, issuer, ca=True, serial=3))


def pem(*certs: Cert) -> bytes:
    return b"".join(x509.load_der_x509_certificate(c.der).public_bytes(
        serialization.Encoding.PEM) for c in certs)


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()


def body(member: str, value: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None, *,
         indent: int | None = None) -> bytes:
    """A PCS body whose signature covers the compact text of ``value``."""
    text = json.dumps(value, separators=(",", ":")).encode()
    signature = sign(key or pki().signer_key, text)
    if indent is not None:
        return json.dumps({member: value, "signature": signature}, indent=indent).encode()
    return b'{"' + member.encode() + b'":' + text + b',"signature":"' + signature.encode() + b'"}'


def make_crl(issuer: Cert, key: ec.EllipticCurvePrivateKey, *, revoked: tuple[int, ...] = (),
             last: datetime = T0 - DAY, nxt: datetime = T0 + 29 * DAY,
             revoked_at: datetime = T0 - 2 * DAY) -> bytes:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.cert.subject).last_update(last).next_update(nxt))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(revoked_at).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def tcb_info_value(**changes: Any) -> dict[str, Any]:
    """A valid SGX TCB Info v3 (field order as Intel serves it)."""
    level = {"tcb": {"sgxtcbcomponents": [{"svn": 2}] * 16, "pcesvn": 11},
             "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
    value = {"id": "SGX", "version": 3, "issueDate": "2025-06-01T00:00:00Z",
             "nextUpdate": "2025-07-01T00:00:00Z", "fmspc": FMSPC.hex().upper(), "pceId": "0000",
             "tcbType": 0, "tcbEvaluationDataNumber": 17,
             "tcbLevels": [level, {**level, "tcbStatus": "OutOfDate",
                                   "advisoryIDs": ["INTEL-SA-00615"],
                                   "tcb": {**level["tcb"], "pcesvn": 5}}]}
    value.update(changes)
    return value


def identity_value(**changes: Any) -> dict[str, Any]:
    value = {"id": "QE", "version": 2, "issueDate": "2025-06-01T00:00:00Z",
             "nextUpdate": "2025-07-01T00:00:00Z", "tcbEvaluationDataNumber": 17,
             "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
             "attributes": "11000000000000000000000000000000",
             "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000", "mrsigner": "8C" * 32,
             "isvprodid": 1, "tcbLevels": [{"tcb": {"isvsvn": 8}, "tcbDate": "2024-03-13T00:00:00Z",
                                            "tcbStatus": "UpToDate"}]}
    value.update(changes)
    return value


def verify_tcb(data: bytes, chain: tuple[Cert, ...] | None = None, **kwargs: Any) -> col.TcbInfo:
    kwargs.setdefault("now", T0)
    kwargs.setdefault("roots", (pki().root,))
    signed = col.signed_json_from_body(data, "tcbInfo")
    return col.verify_tcb_info(signed, pki().chain if chain is None else chain, **kwargs)


# -- the pinned root -------------------------------------------------------------------------------


def test_builtin_root_is_the_pinned_intel_root() -> None:
    pem_file = Path(col.__file__).with_name("intel_roots.pem").read_bytes()
    loaded = x509.load_pem_x509_certificates(pem_file)
    assert len(loaded) == 1
    der = loaded[0].public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == col.INTEL_ROOT_SHA256
    (root,) = col.intel_roots()
    assert root.der == der and root.subject_cn == root.issuer_cn == "Intel SGX Root CA"


ROOT_FILES = [e for e in manifest("intel") if e.get("description", "").startswith(
    "Intel SGX Root CA") and "CRL" not in e["description"]]


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["file"]) for e in ROOT_FILES] or [
    pytest.param(None, marks=pytest.mark.skip(reason="corpus folder intel is absent"))])
def test_corpus_root_files_are_the_builtin_root(entry: dict[str, Any]) -> None:
    data = (corpus_dir("intel") / entry["file"]).read_bytes()
    (root,) = col.intel_roots()
    assert col.load_chain(data, entry["file"]) == (root,)


# -- real collateral -------------------------------------------------------------------------------


def _real_files() -> list[CollateralFile]:
    """Every real (not synthetic) non-quote file of the corpus, as a collateral directory."""
    base = corpus_dir("intel")
    entries = [e for e in manifest("intel") if "SYNTHETIC" not in e.get("description", "")
               and "version" not in (e.get("expected") or {})]
    return [CollateralFile(e["file"], (base / e["file"]).read_bytes(), "directory")
            for e in entries]


@functools.cache
def real() -> col.RawCollateral:
    return col.read_collateral(_real_files())


def _issued(signed: col.SignedJson) -> datetime:
    return datetime.fromisoformat(signed.value["issueDate"])


def _signed_params(kind: str) -> list[Any]:
    try:
        found = getattr(real(), kind)
    except pytest.skip.Exception:
        return [pytest.param(None, marks=pytest.mark.skip(reason="corpus intel is absent"))]
    return [pytest.param(s, id=f"{s.source}:{s.value.get('id')}") for s in found]


def test_the_corpus_holds_the_collateral_its_manifest_names() -> None:
    raw = real()
    assert {s.value["id"] for s in raw.tcb_infos} == {"SGX", "TDX"}
    assert {s.value["id"] for s in raw.identities} == {"QE", "TD_QE"}
    assert len(raw.tcb_infos) == 5 and len(raw.identities) == 4
    assert {c.subject_cn for c in raw.certs} >= {"Intel SGX Root CA", "Intel SGX TCB Signing",
                                                 "Intel SGX PCK Platform CA",
                                                 "Intel SGX PCK Processor CA"}


@pytest.mark.parametrize("signed", _signed_params("tcb_infos"))
def test_every_corpus_tcb_info_verifies_at_its_issue_date(signed: col.SignedJson) -> None:
    """Signed by a TCB Signing certificate of the corpus (the 2025 one where the 2018 one has
    expired: same key) that chains to the pinned root."""
    info = col.verify_tcb_info(signed, real().certs, now=_issued(signed))
    assert info.id == signed.value["id"] and info.fmspc.hex() == signed.value["fmspc"].lower()
    assert len(info.tcb_levels) == len(signed.value["tcbLevels"])
    assert (info.tdx_module is not None) == (info.id == "TDX")


@pytest.mark.parametrize("signed", _signed_params("identities"))
def test_every_corpus_qe_identity_verifies_at_its_issue_date(signed: col.SignedJson) -> None:
    identity = col.verify_enclave_identity(signed, real().certs, now=_issued(signed))
    assert identity.id == signed.value["id"] and identity.miscselect_mask == 0xFFFFFFFF


@pytest.mark.parametrize("signed", _signed_params("tcb_infos") + _signed_params("identities"))
def test_pretty_printed_copies_verify_over_the_compact_form(signed: col.SignedJson) -> None:
    """§2.3: a pretty-printed copy keeps its key order; its bytes differ from what Intel
    signed, the compact re-serialisation does not."""
    pretty = json.dumps({signed.member: signed.value, "signature": signed.signature.hex()},
                        indent=2).encode()
    copy = col.signed_json_from_body(pretty, signed.member)
    raw, compacted = copy.signed_forms()
    assert raw != compacted and compacted == signed.raw
    col.verify_signed_json(copy, real().certs, now=_issued(signed))


def _tampered(signed: col.SignedJson, how: str) -> col.SignedJson:
    if how == "one byte of a status":
        at = signed.raw.index(b'"tcbStatus":"') + len(b'"tcbStatus":"')
        raw = signed.raw[:at] + signed.raw[at : at + 1].swapcase() + signed.raw[at + 1 :]
        return col.signed_json_from_parts(raw, signed.signature, signed.member)
    if how == "a reordered key":
        value = dict(signed.value)
        value = {"nextUpdate": value.pop("nextUpdate"), **value}
        return col.signed_json_from_parts(json.dumps(value, separators=(",", ":")),
                                          signed.signature, signed.member)
    other = next(s for s in real().identities + real().tcb_infos if s.raw != signed.raw)
    return col.SignedJson(signed.member, signed.raw, signed.value, other.signature)


@pytest.mark.parametrize("how", ["one byte of a status", "a reordered key",
                                 "a swapped signature"])
@pytest.mark.parametrize("kind", ["tcb_infos", "identities"])
def test_tampered_collateral_is_a_signature_error(kind: str, how: str) -> None:
    for signed in getattr(real(), kind):
        with pytest.raises(SignatureError, match="does not verify"):
            col.verify_signed_json(_tampered(signed, how), real().certs, now=_issued(signed))


def test_every_corpus_crl_verifies_at_its_this_update() -> None:
    raw = real()
    assert len(raw.crls) >= 6
    for crl in raw.crls:
        now = crl.crl.last_update_utc
        if crl.issuer_cn == "Intel SGX Root CA":
            assert col.verify_root_crl(crl, now=now) is crl
        else:
            assert col.verify_pck_crl(crl, raw.certs, now=now) is crl


@pytest.mark.parametrize("path", ["qvl/Src/AttestationApp/sampleData/tdx",
                                  "qvl/Src/AttestationApp/sampleData"])
def test_the_synthetic_qvl_collateral_is_untrusted(path: str) -> None:
    folder = corpus_dir("intel") / path
    signed = col.signed_json_from_body((folder / "tcbInfo.json").read_bytes(), "tcbInfo")
    chain = col.load_chain((folder / "tcbSignChain.pem").read_bytes(), "tcbSignChain.pem")
    now = _issued(signed)
    with pytest.raises(UntrustedRootError, match="not a pinned Intel root"):
        col.verify_tcb_info(signed, chain, now=now)
    own = col.load_chain((folder / "trustedRootCaCert.pem").read_bytes(), "trustedRootCaCert")
    col.verify_signed_json(signed, chain, now=now, roots=own)  # its own root: it verifies
    if signed.value["version"] != 3:
        with pytest.raises(UnsupportedVersionError, match="version is 2"):
            col.verify_tcb_info(signed, chain, now=now, roots=own)


def test_synthetic_files_in_a_directory_do_not_hide_the_real_chain() -> None:
    base = corpus_dir("intel")
    synthetic = [CollateralFile(e["file"], (base / e["file"]).read_bytes(), "directory")
                 for e in manifest("intel") if "SYNTHETIC" in e.get("description", "")]
    mixed = col.read_collateral([*synthetic, *_real_files()])
    assert len(mixed.certs) > len(real().certs)
    for signed in real().tcb_infos:
        col.verify_tcb_info(signed, mixed.certs, now=_issued(signed))


def test_corpus_dates_are_checked_against_now() -> None:
    signed = next(s for s in real().tcb_infos if s.value["id"] == "SGX")
    info = col.parse_tcb_info(signed.value)
    with pytest.raises(ExpiredError, match="out of date: its nextUpdate is"):
        col.verify_tcb_info(signed, real().certs, now=info.next_update + timedelta(seconds=1))
    with pytest.raises(ExpiredError, match="was issued at"):
        col.verify_tcb_info(signed, real().certs, now=info.issue_date - timedelta(seconds=1))
    assert col.verify_tcb_info(signed, real().certs, now=info.next_update) == info


# -- manifest bundles ------------------------------------------------------------------------------


def _bundles() -> list[Any]:
    cases = []
    for entry in manifest("intel"):
        for verdict in (entry.get("expected") or {}).get("verdicts") or []:
            files = verdict["collateral_files"]
            if files["kind"] in ("dcap-qvl", "pcs"):
                cases.append(pytest.param(entry, verdict, id=verdict["case"]))
    return cases or [pytest.param(None, None, marks=pytest.mark.skip(reason="no corpus"))]


def bundle_files(verdict: dict[str, Any]) -> list[CollateralFile]:
    """The files a MANIFEST verdict names, plus every issuer chain beside its chains (the
    PCS set names the TCB Info and QE identity chains, not the PCK CRL's)."""
    base = corpus_dir("intel")
    named = verdict["collateral_files"]
    paths = [base / named["path"]] if named["kind"] == "dcap-qvl" else [
        base / named[k] for k in ("tcb_info", "qe_identity", "root_crl", "pck_crl")]
    if "tcb_chain" in named:
        paths += sorted((base / named["tcb_chain"]).parent.glob("*.pem"))
    return [CollateralFile(str(p.relative_to(base)), p.read_bytes(), "collateral") for p in paths]


@pytest.mark.parametrize(("entry", "verdict"), _bundles())
def test_manifest_bundles_verify_inside_their_window(entry: dict[str, Any],
                                                     verdict: dict[str, Any]) -> None:
    raw = col.read_collateral(bundle_files(verdict))
    pck = entry["expected"]["pck"]
    start, end = (datetime.fromisoformat(t) for t in verdict["verify_time_window"])
    kwargs: dict[str, Any] = {"tcb_id": verdict["tcb_info"]["id"],
                              "fmspc": bytes.fromhex(pck["fmspc"]), "pck_ca": pck["issuer_ca"]}
    if verdict["verify_time_window_empty"]:
        with pytest.raises(ExpiredError):
            col.verify_collateral(raw, now=start, **kwargs)
        return
    for now in (start, end):
        bundle = col.verify_collateral(raw, now=now, **kwargs)
        assert bundle.root_ca_crl is not None and bundle.pck_crl is not None
        assert bundle.qe_identity is not None
        assert bundle.collateral_expiration == end and not bundle.expired
        assert bundle.latest_issue_date == start
    with pytest.raises(ExpiredError):
        col.verify_collateral(raw, now=end + timedelta(seconds=1), **kwargs)
    late = col.verify_collateral(raw, now=end + timedelta(seconds=1), grace=DAY, **kwargs)
    assert late.expired and late.collateral_expiration == end


def test_pcs_bodies_with_url_encoded_issuer_chain_headers() -> None:
    base = corpus_dir("intel") / "go-tdx-guest/testing"
    header = urllib.parse.quote((base / "issuer_chains/tcbInfoIssuerChain.pem").read_bytes())
    assert "%0A" in header
    raw = col.read_pcs_body((base / "testdata/sample_tcbInfo_response").read_bytes(),
                            issuer_chain=header)
    (signed,) = raw.tcb_infos
    assert [c.subject_cn for c in raw.certs] == ["Intel SGX TCB Signing", "Intel SGX Root CA"]
    assert col.verify_tcb_info(signed, raw.certs, now=_issued(signed)).id == "TDX"


# -- synthetic: chains, roots, signatures ----------------------------------------------------------


def _untrusted_pki_chain() -> tuple[Cert, ...]:
    other = _key()
    root = _issue("Intel SGX Root CA", other, (_name("Intel SGX Root CA"), other), ca=True,
                  serial=9)
    return (_issue("Intel SGX TCB Signing", pki().signer_key, (_name("Intel SGX Root CA"), other),
                   ca=False, serial=10), root)


def _wrongly_signed_chain() -> tuple[Cert, ...]:
    other = _key()
    return (_issue("Intel SGX TCB Signing", pki().signer_key, (_name("Intel SGX Root CA"), other),
                   ca=False, serial=11), pki().root)


def _expired_signer_chain() -> tuple[Cert, ...]:
    issuer = (_name("Intel SGX Root CA"), pki().root_key)
    return (_issue("Intel SGX TCB Signing", pki().signer_key, issuer, ca=False, serial=12,
                   not_after=T0 - DAY), pki().root)


CHAIN_CASES: list[tuple[str, Callable[[], tuple[Cert, ...]], dict[str, Any], type, str]] = [
    ("pinned_root_in_chain", lambda: pki().chain, {}, type(None), ""),
    ("root_only_among_anchors", lambda: (pki().signer,), {}, type(None), ""),
    ("default_roots_refuse_a_test_root", lambda: pki().chain, {"roots": None},
     UntrustedRootError, "not a pinned Intel root"),
    ("unpinned_root_in_chain", _untrusted_pki_chain, {}, UntrustedRootError, "not a pinned"),
    ("unpinned_root_beside_the_pinned_one", lambda: (_untrusted_pki_chain()[1], *pki().chain),
     {}, type(None), ""),
    ("no_tcb_signing_certificate", lambda: (pki().ca, pki().root), {}, ChainError,
     "holds no Intel SGX TCB Signing"),
    ("signer_not_signed_by_the_root", _wrongly_signed_chain, {}, ChainError, "does not verify"),
    ("expired_signing_certificate", _expired_signer_chain, {}, ExpiredError, "expired at"),
    ("signing_certificate_revoked_by_the_root_crl", lambda: pki().chain,
     {"root_crl": "revoking"}, RevokedError, "was revoked on"),
    ("revocation_after_now_is_not_yet_a_revocation", lambda: pki().chain,
     {"root_crl": "revoking_later"}, type(None), ""),
    ("naive_verification_time", lambda: pki().chain, {"now": T0.replace(tzinfo=None)},
     MisuseError, "timezone-aware"),
]


@pytest.mark.parametrize(("name", "chain", "kwargs", "error", "match"), CHAIN_CASES,
                         ids=[c[0] for c in CHAIN_CASES])
def test_chains(name: str, chain: Callable[[], tuple[Cert, ...]], kwargs: dict[str, Any],
                error: type, match: str) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("root_crl") in ("revoking", "revoking_later"):
        when = T0 - DAY if kwargs["root_crl"] == "revoking" else T0 + DAY
        der = make_crl(pki().root, pki().root_key, revoked=(pki().signer.serial,),
                       revoked_at=when)
        kwargs["root_crl"] = col.verify_root_crl(col.load_crl(der, "root CRL"), now=T0,
                                                 roots=(pki().root,))
    data = body("tcbInfo", tcb_info_value())
    if error is type(None):
        assert verify_tcb(data, chain(), **kwargs).id == "SGX"
        return
    with pytest.raises(error, match=match):
        verify_tcb(data, chain(), **kwargs)


def test_a_rotated_signing_certificate_with_the_same_key_is_used_when_the_old_one_expired() -> None:
    chain = _expired_signer_chain() + pki().chain
    assert verify_tcb(body("tcbInfo", tcb_info_value()), chain).id == "SGX"


SIGNATURE_CASES: list[tuple[str, Callable[[], bytes]]] = [
    ("signed_by_another_key", lambda: body("tcbInfo", tcb_info_value(), _key())),
    ("a_status_changed", lambda: body("tcbInfo", tcb_info_value()).replace(
        b'"UpToDate"', b'"UpToDatE"')),
    ("an_svn_changed", lambda: body("tcbInfo", tcb_info_value()).replace(
        b'"svn":2', b'"svn":3', 1)),
    ("the_signature_bit_flipped", lambda: _flip_signature(body("tcbInfo", tcb_info_value()))),
    ("pretty_printed_and_changed", lambda: body("tcbInfo", tcb_info_value(), indent=1).replace(
        b'"UpToDate"', b'"UpToDatE"')),
]


def _flip_signature(data: bytes) -> bytes:
    start = data.index(b'"signature":"') + 13
    digit = b"1" if data[start : start + 1] != b"1" else b"2"
    return data[:start] + digit + data[start + 1 :]


@pytest.mark.parametrize(("name", "build"), SIGNATURE_CASES, ids=[c[0] for c in SIGNATURE_CASES])
def test_signatures(name: str, build: Callable[[], bytes]) -> None:
    with pytest.raises(SignatureError, match="does not verify under Intel SGX TCB Signing"):
        verify_tcb(build())


def test_pretty_printed_synthetic_bodies_verify() -> None:
    assert verify_tcb(body("tcbInfo", tcb_info_value(), indent=4)).tcb_evaluation_data_number == 17


def test_signed_text_with_escapes_verifies_over_the_raw_bytes() -> None:
    """A signer that escaped characters (``\\u0041``) signed those bytes: the raw substring is
    checked first, so such documents verify although their compact form differs."""
    value = tcb_info_value()
    text = json.dumps(value, separators=(",", ":")).replace('"SGX"', '"\\u0053GX"').encode()
    data = b'{"tcbInfo":' + text + b',"signature":"' + sign(pki().signer_key, text).encode() + b'"}'
    signed = col.signed_json_from_body(data, "tcbInfo")
    assert signed.signed_forms()[0] != signed.signed_forms()[1]
    assert verify_tcb(data).id == "SGX"


# -- synthetic: fields and versions ----------------------------------------------------------------


def test_tcb_info_fields() -> None:
    info = col.parse_tcb_info(tcb_info_value())
    assert (info.id, info.version, info.fmspc, info.pce_id, info.tcb_type) == (
        "SGX", 3, FMSPC, b"\0\0", 0)
    assert info.issue_date == T0 and info.next_update == T0 + 30 * DAY
    first, second = info.tcb_levels
    assert first.sgx_components == (2,) * 16 and first.pce_svn == 11
    assert first.tdx_components is None and first.advisory_ids == ()
    assert second.status == "OutOfDate" and second.advisory_ids == ("INTEL-SA-00615",)


def test_tdx_tcb_info_fields() -> None:
    level = {"tcb": {"sgxtcbcomponents": [{"svn": 2, "category": "BIOS"}] * 16, "pcesvn": 11,
                     "tdxtcbcomponents": [{"svn": 5, "type": "TDX Module"}] * 16},
             "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
    module = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
    value = tcb_info_value(id="TDX", tcbLevels=[level], tdxModule=module, tdxModuleIdentities=[
        {**module, "id": "TDX_01", "tcbLevels": [{"tcb": {"isvsvn": 4},
                                                  "tcbDate": "2024-03-13T00:00:00Z",
                                                  "tcbStatus": "UpToDate"}]}])
    info = col.parse_tcb_info(value)
    assert info.tcb_levels[0].tdx_components == (5,) * 16
    assert info.tdx_module == col.TdxModule(bytes(48), bytes(8), b"\xff" * 8)
    (identity,) = info.tdx_module_identities
    assert identity.id == "TDX_01" and identity.tcb_levels[0].isv_svn == 4
    without = dict(value)
    del without["tdxModuleIdentities"]
    assert col.parse_tcb_info(without).tdx_module_identities == ()
    del without["tdxModule"]
    with pytest.raises(MalformedEvidenceError, match=r"tcbInfo\.tdxModule is missing"):
        col.parse_tcb_info(without)


def test_enclave_identity_fields() -> None:
    identity = col.parse_enclave_identity(identity_value(miscselect="0000000F"))
    assert identity.miscselect == 0x0F and identity.miscselect_mask == 0xFFFFFFFF
    assert identity.attributes == bytes.fromhex("11" + "00" * 15)
    assert identity.mrsigner == b"\x8c" * 32 and identity.isv_prod_id == 1
    assert identity.tcb_levels == (col.IsvLevel(8, datetime(2024, 3, 13, tzinfo=UTC),
                                                "UpToDate"),)


VERSION_CASES: list[tuple[str, Callable[[], Any], type, str]] = [
    ("tcb_info_v2", lambda: col.parse_tcb_info(tcb_info_value(version=2)),
     UnsupportedVersionError, r"tcbInfo\.version is 2"),
    ("tcb_info_v4", lambda: col.parse_tcb_info(tcb_info_value(version=4)),
     UnsupportedVersionError, "version is 4"),
    ("tcb_type_1", lambda: col.parse_tcb_info(tcb_info_value(tcbType=1)),
     UnsupportedVersionError, "tcbType is 1"),
    ("identity_v1", lambda: col.parse_enclave_identity(identity_value(version=1)),
     UnsupportedVersionError, r"enclaveIdentity\.version is 1"),
    ("unknown_tcb_info_id", lambda: col.parse_tcb_info(tcb_info_value(id="SEV")),
     MalformedEvidenceError, "not SGX or TDX"),
    ("unknown_identity_id", lambda: col.parse_enclave_identity(identity_value(id="TDQE")),
     MalformedEvidenceError, "not QE, QVE or TD_QE"),
    ("unknown_identity_status", lambda: col.parse_enclave_identity(identity_value(tcbLevels=[
        {"tcb": {"isvsvn": 1}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "Fine"}])),
     MalformedEvidenceError, r"tcbLevels\[0\]\.tcbStatus is 'Fine'"),
]


@pytest.mark.parametrize(("name", "call", "error", "match"), VERSION_CASES,
                         ids=[c[0] for c in VERSION_CASES])
def test_versions_and_closed_sets(name: str, call: Callable[[], Any], error: type,
                                  match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_expiry_grace_and_issue_date() -> None:
    data = body("tcbInfo", tcb_info_value())
    late = T0 + 30 * DAY + timedelta(seconds=1)
    with pytest.raises(ExpiredError, match="nextUpdate is 2025-07-01"):
        verify_tcb(data, now=late)
    assert verify_tcb(data, now=late, grace=DAY).id == "SGX"
    with pytest.raises(ExpiredError, match=r"\+ a grace period"):
        verify_tcb(data, now=late + DAY, grace=DAY)
    with pytest.raises(ExpiredError, match="was issued at"):
        verify_tcb(data, now=T0 - timedelta(seconds=1))


# -- synthetic: CRLs -------------------------------------------------------------------------------


def _crl(der: bytes) -> Crl:
    return col.load_crl(der, "test CRL")


def test_crl_encodings() -> None:
    der = make_crl(pki().root, pki().root_key)
    as_pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    for blob in (der, as_pem, der.hex().encode(), der.hex().upper(), base64.b64encode(der),
                 b"0x" + der.hex().encode() + b"\n"):
        assert _crl(blob).der == der
    with pytest.raises(MalformedEvidenceError, match="holds no CRL"):
        col.load_crl(pem(pki().root), "a certificate")


PCK_CRL_CASES: list[tuple[str, Callable[[], tuple[bytes, tuple[Cert, ...], bytes | None]],
                          type, str]] = [
    ("valid", lambda: (make_crl(pki().ca, pki().ca_key), (pki().ca, pki().root), None),
     type(None), ""),
    ("issuer_not_in_chain", lambda: (make_crl(pki().ca, pki().ca_key), (pki().root,), None),
     ChainError, "holds no certificate for Intel SGX PCK Platform CA"),
    ("signed_by_another_key", lambda: (make_crl(pki().ca, _key()), (pki().ca, pki().root),
                                       None), ChainError, "is not signed by"),
    ("out_of_date", lambda: (make_crl(pki().ca, pki().ca_key, nxt=T0 - timedelta(hours=1)),
                             (pki().ca, pki().root), None), ExpiredError, "verification time"),
    ("ca_revoked_by_the_root_crl", lambda: (
        make_crl(pki().ca, pki().ca_key), (pki().ca, pki().root),
        make_crl(pki().root, pki().root_key, revoked=(pki().ca.serial,))),
     RevokedError, "PCK CA certificate"),
    ("issued_by_the_root_itself", lambda: (make_crl(pki().root, pki().root_key),
                                          (pki().root,), None), ChainError, "holds no certificate"),
]


@pytest.mark.parametrize(("name", "build", "error", "match"), PCK_CRL_CASES,
                         ids=[c[0] for c in PCK_CRL_CASES])
def test_pck_crls(name: str, build: Callable[[], tuple[bytes, tuple[Cert, ...], bytes | None]],
                  error: type, match: str) -> None:
    der, chain, root_der = build()
    roots = (pki().root,)
    root_crl = (col.verify_root_crl(_crl(root_der), now=T0, roots=roots)
                if root_der else None)
    if error is type(None):
        crl = col.verify_pck_crl(_crl(der), chain, now=T0, roots=roots, root_crl=root_crl)
        assert crl.issuer_cn == "Intel SGX PCK Platform CA"
        return
    with pytest.raises(error, match=match):
        col.verify_pck_crl(_crl(der), chain, now=T0, roots=roots, root_crl=root_crl)


def test_root_crls() -> None:
    roots = (pki().root,)
    good = _crl(make_crl(pki().root, pki().root_key))
    assert col.verify_root_crl(good, now=T0, roots=roots) is good
    with pytest.raises(UntrustedRootError, match="not a pinned Intel root"):
        col.verify_root_crl(_crl(make_crl(pki().ca, pki().ca_key)), now=T0, roots=roots)
    with pytest.raises(ChainError, match="is not signed by"):
        col.verify_root_crl(_crl(make_crl(pki().root, _key())), now=T0, roots=roots)
    late = T0 + 29 * DAY + timedelta(seconds=1)
    with pytest.raises(ExpiredError):
        col.verify_root_crl(good, now=late, roots=roots)
    assert col.verify_root_crl(good, now=late, roots=roots, grace=DAY) is good
    with pytest.raises(ExpiredError):
        col.verify_root_crl(good, now=T0 - 2 * DAY, roots=roots, grace=DAY)


def test_check_not_revoked() -> None:
    crl = _crl(make_crl(pki().ca, pki().ca_key, revoked=(77,)))
    leaf = _issue("Intel SGX PCK Certificate", _key(), (_name("Intel SGX PCK Platform CA"),
                                                        pki().ca_key), ca=False, serial=77)
    with pytest.raises(RevokedError, match="PCK leaf"):
        col.check_not_revoked(crl, leaf, T0, "the PCK leaf")
    col.check_not_revoked(crl, pki().signer, T0, "another certificate")
    col.check_not_revoked(None, leaf, T0, "no CRL: not checked")


# -- synthetic: input forms and bundles ------------------------------------------------------------


def _directory(**extra: bytes) -> list[CollateralFile]:
    files = {
        "tcb-sgx-00906ed50000.json": body("tcbInfo", tcb_info_value()),
        "tcb-sgx-00906ed50000.json.issuer-chain.pem": urllib.parse.quote(
            pem(*pki().chain)).encode(),
        "qe-identity-sgx.json": body("enclaveIdentity", identity_value()),
        "qe-identity-sgx.json.issuer-chain.pem": pem(*pki().chain),
        "pckcrl-platform.der": make_crl(pki().ca, pki().ca_key),
        "pckcrl-platform.der.issuer-chain.pem": pem(pki().ca, pki().root),
        "rootcacrl.hex": make_crl(pki().root, pki().root_key).hex().encode(),
        "README": b"notes, not collateral",
    }
    files.update(extra)
    return [CollateralFile(name, data, "directory") for name, data in files.items()]


def _verify_dir(files: list[CollateralFile], **kwargs: Any) -> col.Collateral:
    kwargs = {"tcb_id": "SGX", "fmspc": FMSPC, "pck_ca": "platform", "now": T0,
              "roots": (pki().root,), **kwargs}
    return col.verify_collateral(col.read_collateral(files), **kwargs)


def test_an_offline_directory_is_read_by_content() -> None:
    bundle = _verify_dir(_directory())
    assert bundle.tcb_info.id == "SGX" and bundle.qe_identity is not None
    assert bundle.pck_crl is not None and bundle.root_ca_crl is not None
    assert bundle.collateral_expiration == T0 + 29 * DAY  # the CRLs' nextUpdate comes first
    assert bundle.earliest_issue_date == T0 - DAY and bundle.latest_issue_date == T0
    assert set(bundle.next_updates) == {"tcb_info", "qe_identity", "root_ca_crl", "pck_crl"}


def test_the_newest_candidate_that_verifies_is_used() -> None:
    newer = body("tcbInfo", tcb_info_value(issueDate="2025-06-01T00:00:01Z",
                                           tcbEvaluationDataNumber=18))
    forged = body("tcbInfo", tcb_info_value(issueDate="2025-06-01T00:00:02Z"), _key())
    bundle = _verify_dir(_directory(newer=newer, forged=forged), now=T0 + DAY)
    assert bundle.tcb_info.tcb_evaluation_data_number == 18
    with pytest.raises(SignatureError):
        _verify_dir([f for f in _directory(forged=forged) if not f.name.startswith("tcb-")],
                    now=T0 + DAY)


BUNDLE_CASES: list[tuple[str, Callable[[], list[CollateralFile]], dict[str, Any], type,
                         str]] = [
    ("no_tcb_info_for_the_fmspc", _directory, {"fmspc": bytes(6)}, CollateralMissingError,
     "no SGX TCB Info for FMSPC 000000000000"),
    ("no_tcb_info_for_the_tee", _directory, {"tcb_id": "TDX"}, CollateralMissingError,
     "no TDX TCB Info"),
    ("no_qe_identity", lambda: [f for f in _directory() if not f.name.startswith("qe-")], {},
     CollateralMissingError, "no QE identity"),
    ("no_chain_for_the_pck_crl", lambda: [
        f for f in _directory() if f.name != "pckcrl-platform.der.issuer-chain.pem"], {},
     ChainError, "holds no certificate for Intel SGX PCK Platform CA"),
    ("expired_root_crl", lambda: _directory(**{"rootcacrl.hex": make_crl(
        pki().root, pki().root_key, nxt=T0 - DAY).hex().encode()}), {}, ExpiredError,
     "Intel SGX Root CA CRL"),
    ("expired_tcb_info", lambda: _directory(**{"tcb-sgx-00906ed50000.json": body(
        "tcbInfo", tcb_info_value(issueDate="2025-05-01T00:00:00Z",
                                  nextUpdate="2025-05-31T00:00:00Z"))}), {}, ExpiredError,
     "the SGX TCB Info for FMSPC 00906ed50000 is out of date"),
    ("tcb_info_within_grace", lambda: _directory(**{"tcb-sgx-00906ed50000.json": body(
        "tcbInfo", tcb_info_value(issueDate="2025-05-01T00:00:00Z",
                                  nextUpdate="2025-05-31T00:00:00Z"))}), {"grace": DAY},
     type(None), ""),
]


@pytest.mark.parametrize(("name", "files", "kwargs", "error", "match"), BUNDLE_CASES,
                         ids=[c[0] for c in BUNDLE_CASES])
def test_bundles(name: str, files: Callable[[], list[CollateralFile]], kwargs: dict[str, Any],
                 error: type, match: str) -> None:
    if error is type(None):
        assert _verify_dir(files(), **kwargs).tcb_info.id == "SGX"
        return
    with pytest.raises(error, match=match):
        _verify_dir(files(), **kwargs)


def test_an_optional_qe_identity() -> None:
    files = [f for f in _directory() if not f.name.startswith("qe-")]
    bundle = _verify_dir(files, require_qe_identity=False)
    assert bundle.qe_identity is None and "qe_identity" not in bundle.next_updates


def test_files_the_operator_named_must_be_collateral() -> None:
    with pytest.raises(MisuseError, match="holds no Intel collateral"):
        col.read_collateral([CollateralFile("notes.txt", b"hello", "collateral")])
    with pytest.raises(MisuseError, match="neither a PCS body nor a collateral object"):
        col.read_collateral([CollateralFile("x.json", b'{"a": 1}', "collateral")])
    with pytest.raises(MalformedEvidenceError, match=r"x\.json"):
        col.read_collateral([CollateralFile("x.json", b'{"tcbInfo": 1}', "collateral")])
    skipped = col.read_collateral([CollateralFile("x.json", b'{"tcbInfo": 1}', "directory"),
                                   CollateralFile("y", b"\x00\x01", "directory")])
    assert skipped == col.RawCollateral()


def _combined(**changes: Any) -> dict[str, Any]:
    tcb = json.dumps(tcb_info_value(), separators=(",", ":"))
    qe = json.dumps(identity_value(), separators=(",", ":"))
    doc: dict[str, Any] = {
        "pck_crl_issuer_chain": pem(pki().ca, pki().root).decode(),
        "root_ca_crl": make_crl(pki().root, pki().root_key).hex(),
        "pck_crl": make_crl(pki().ca, pki().ca_key).hex(),
        "tcb_info_issuer_chain": pem(*pki().chain).decode(), "tcb_info": tcb,
        "tcb_info_signature": sign(pki().signer_key, tcb.encode()),
        "qe_identity_issuer_chain": pem(*pki().chain).decode(), "qe_identity": qe,
        "qe_identity_signature": sign(pki().signer_key, qe.encode()),
    }
    doc.update(changes)
    return doc


COMBINED_CASES: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("dcap_qvl_hex", _combined),
    ("serde_byte_arrays", lambda: {**_combined(), "tcb_info_signature": list(bytes.fromhex(
        _combined()["tcb_info_signature"])), "pck_crl": list(bytes.fromhex(
            _combined()["pck_crl"]))}),
    ("with_pck_certificate_chain", lambda: _combined(pck_certificate_chain=pem(
        pki().ca, pki().root).decode())),
    ("qve_collateral_whole_bodies", lambda: {
        **{k: v for k, v in _combined().items() if not k.endswith("_signature")},
        "tcb_info": body("tcbInfo", tcb_info_value()).decode(),
        "qe_identity": body("enclaveIdentity", identity_value()).decode(),
        "version": 3, "tee_type": 0}),
]


@pytest.mark.parametrize(("name", "build"), COMBINED_CASES, ids=[c[0] for c in COMBINED_CASES])
def test_combined_collateral_json(name: str, build: Callable[[], dict[str, Any]]) -> None:
    data = json.dumps(build()).encode()
    raw = col.read_collateral([CollateralFile("collateral.json", data, "collateral")])
    bundle = col.verify_collateral(raw, tcb_id="SGX", fmspc=FMSPC, pck_ca="platform", now=T0,
                                   roots=(pki().root,))
    assert bundle.qe_identity is not None and bundle.pck_crl is not None
    assert bool(raw.pck_chain) == (name == "with_pck_certificate_chain")
