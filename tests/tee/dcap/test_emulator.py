"""The emulated Intel DCAP platform (``veritee.testing.dcap``), checked with ``cryptography``
and small independent readers only: every quote parses and round-trips, its signatures,
binding, PCK chain and SGX extension hold; collateral is in PCS's exact shape and verifies;
CRLs verify; each knob breaks exactly the one thing it names; the fake PCS serves Intel's URLs
with their headers; the ``veritee emulate`` objects refuse what they cannot do; the event log
replays to the RTMRs."""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import subprocess
import sys
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee import errors
from veritee.collateral.base import Fetcher
from veritee.tee.dcap.evidence import decode_dcap_evidence
from veritee.tee.dcap.pck import PckConfiguration, PckExtension, PckTcb, pck_extension
from veritee.tee.dcap.quote import (
    BODY_SGX,
    BODY_TD10,
    BODY_TD15,
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    Quote,
    SgxReport,
    TdReport,
    parse_quote,
)
from veritee.testing import Emulated
from veritee.testing.dcap import (
    CA_CN,
    FMSPC,
    KNOB_ERRORS,
    OTHER_FMSPC,
    PCK_CN,
    PCS_BASE_URL,
    QE,
    QE_AUTH_DATA,
    ROOT_CA_CRL_URL,
    ROOT_CN,
    SGX_EMULATOR,
    TCB_SIGNING_CN,
    TDX_EMULATOR,
    DcapEmulator,
    FakePcs,
    PcsResponse,
    SignedDocument,
    ca_cert,
    default_events,
    emulated_root_pem,
    emulated_roots,
    knob_errors,
    rtmrs_of,
    tcb_signing_cert,
)

NONCE = bytes(range(64))
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
#: (tee, version, body, ca): every quote shape the emulator makes, under both PCK CAs.
SHAPES = [(tee, version, body, ca)
          for tee, version, body in (("tdx", 4, None), ("tdx", 5, "td10"), ("tdx", 5, "td15"),
                                     ("sgx", 3, None), ("sgx", 5, None))
          for ca in ("platform", "processor")]
BODY_TYPES = {("tdx", 4): BODY_TD10, ("tdx", 5): BODY_TD15, ("sgx", 3): BODY_SGX,
              ("sgx", 5): BODY_SGX}


@functools.cache
def emulator(tee: str = "tdx", knob: str | None = None, **settings: Any) -> DcapEmulator:
    """One emulator per combination for the whole module, at a fixed instant."""
    return DcapEmulator(tee=tee, knob=knob, now=NOW, **settings)  # type: ignore[arg-type]


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def verifies(key: Any, raw: bytes, data: bytes) -> bool:
    """ECDSA P-256 / SHA-256 of a raw ``r || s`` signature (intel-dcap.md §1.6)."""
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                     int.from_bytes(raw[32:], "big"))
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def attestation_key(xy: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)


def chain_of(quote: Quote) -> list[x509.Certificate]:
    pem = quote.signature_data.pck_chain
    assert pem is not None
    return x509.load_pem_x509_certificates(pem)


def links_verify(leaf: x509.Certificate, ca: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
        ca.verify_directly_issued_by(root)
        root.verify_directly_issued_by(root)
    except (InvalidSignature, ValueError):
        return False
    return True


def pcs_instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# -- a tiny CC event log reader, independent of veritee's ---------------------------------------


def tiny_replay(log: bytes) -> list[bytes]:
    """RTMR0–3 from a crypto-agile log: Spec ID record, then TCG_PCR_EVENT2 records until
    0xFF padding; RTMR[i] extends MR index i + 1 (intel-dcap.md §3.2)."""
    (spec_size,) = struct.unpack_from("<I", log, 28)
    spec = log[32:32 + spec_size]
    assert spec.startswith(b"Spec ID Event03\0")
    (count,) = struct.unpack_from("<I", spec, 24)
    sizes = dict(struct.unpack_from("<HH", spec, 28 + 4 * i) for i in range(count))
    rtmrs, pos = [bytes(48)] * 4, 32 + spec_size
    while pos + 12 <= len(log) and log[pos:pos + 4] != b"\xff" * 4:
        mr, event_type, digests = struct.unpack_from("<III", log, pos)
        pos += 12
        found = {}
        for _ in range(digests):
            (alg,) = struct.unpack_from("<H", log, pos)
            found[alg] = log[pos + 2:pos + 2 + sizes[alg]]
            pos += 2 + sizes[alg]
        (size,) = struct.unpack_from("<I", log, pos)
        pos += 4 + size
        if event_type != 3:
            rtmrs[mr - 1] = hashlib.sha384(rtmrs[mr - 1] + found[0x000C]).digest()
    assert set(log[pos:]) <= {0xFF}
    return rtmrs


# -- a tiny TCB matcher (QVL's rule, §2.5), independent of veritee's -------------------------------


def tiny_tcb_status(info: dict[str, Any], ext: PckExtension, body: SgxReport | TdReport) -> str:
    for level in info["tcbLevels"]:
        tcb = level["tcb"]
        sgx = [c["svn"] for c in tcb["sgxtcbcomponents"]]
        if not (all(a >= b for a, b in zip(ext.tcb.comp_svns, sgx, strict=True))
                and ext.tcb.pcesvn >= tcb["pcesvn"]):
            continue
        if isinstance(body, SgxReport):
            return str(level["tcbStatus"])
        tdx = [c["svn"] for c in tcb["tdxtcbcomponents"]]
        start = 2 if body.tee_tcb_svn[1] > 0 else 0
        if all(body.tee_tcb_svn[i] >= tdx[i] for i in range(start, 16)):
            return str(level["tcbStatus"])
    return "TcbNotSupported"


def tiny_isv_status(levels: list[dict[str, Any]], isvsvn: int) -> str:
    return next((str(lv["tcbStatus"]) for lv in levels if isvsvn >= lv["tcb"]["isvsvn"]),
                "NotSupported")


def qe_matches(identity: dict[str, Any], report: SgxReport) -> bool:
    mask = bytes.fromhex(identity["attributesMask"])
    masked = bytes(a & m for a, m in zip(report.attributes, mask, strict=True))
    return (masked == bytes.fromhex(identity["attributes"])
            and report.mr_signer == bytes.fromhex(identity["mrsigner"])
            and report.isv_prod_id == identity["isvprodid"]
            and report.misc_select & int(identity["miscselectMask"], 16)
            == int(identity["miscselect"], 16))


def checks(emu: DcapEmulator, blob: bytes) -> dict[str, Any]:
    """Every property a correct verifier checks, computed independently of veritee."""
    quote = parse_quote(blob)
    sig = quote.signature_data
    leaf, ca, root = chain_of(quote)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    ext = pck_extension(leaf)
    crl = x509.load_der_x509_crl(emu.pck_crl())
    info = emu.tcb_info.value
    identity = emu.qe_identity.value
    out: dict[str, Any] = {
        "quote_signature": verifies(attestation_key(sig.attestation_key), sig.signature,
                                    quote.signed_bytes),
        "qe_report_signature": verifies(leaf.public_key(), sig.qe.qe_report_signature,
                                        sig.qe.qe_report_bytes),
        "qe_binding": sig.qe.qe_report.report_data
        == hashlib.sha256(sig.attestation_key_binding).digest() + bytes(32),
        "chain": links_verify(leaf, ca, root),
        "trusted_root": der(root) == der(emulated_roots()[0]),
        "pck_not_revoked": crl.is_signature_valid(ca_key)
        and crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is None,
        "tcb_info_current": pcs_instant(info["issueDate"]) <= emu.now
        <= pcs_instant(info["nextUpdate"]),
        "tcb_info_fmspc": bytes.fromhex(info["fmspc"]) == ext.fmspc,
        "tcb_status": tiny_tcb_status(info, ext, quote.body),
        "qe_identity": qe_matches(identity, sig.qe.qe_report),
        "qe_status": tiny_isv_status(identity["tcbLevels"], sig.qe.qe_report.isv_svn),
        "rtmr_replay": True,
    }
    if isinstance(quote.body, TdReport):
        out["rtmr_replay"] = tiny_replay(emu.event_log()) == list(quote.body.rtmrs)
        module = info["tdxModuleIdentities"][0]
        out["module_status"] = tiny_isv_status(module["tcbLevels"], quote.body.tee_tcb_svn[0])
    return out


BASELINE = {"quote_signature": True, "qe_report_signature": True, "qe_binding": True,
            "chain": True, "trusted_root": True, "pck_not_revoked": True,
            "tcb_info_current": True, "tcb_info_fmspc": True, "tcb_status": "UpToDate",
            "qe_identity": True, "qe_status": "UpToDate", "rtmr_replay": True}
TDX_BASELINE = {**BASELINE, "module_status": "UpToDate"}

#: What each defect knob breaks (and nothing else), and the error it is documented to map to.
BROKEN: dict[str, tuple[dict[str, Any], type[errors.VeriteeError]]] = {
    "bad_qe_binding": ({"qe_binding": False}, errors.BindingError),
    "wrong_attestation_key": ({"quote_signature": False}, errors.SignatureError),
    "tampered": ({"quote_signature": False}, errors.SignatureError),
    "bad_qe_signature": ({"qe_report_signature": False}, errors.SignatureError),
    "revoked_pck": ({"pck_not_revoked": False}, errors.RevokedError),
    "expired_collateral": ({"tcb_info_current": False}, errors.ExpiredError),
    "tcb_revoked": ({"tcb_status": "Revoked"}, errors.RevokedError),
    "wrong_fmspc": ({"tcb_info_fmspc": False}, errors.CollateralMissingError),
    "untrusted_root": ({"trusted_root": False}, errors.UntrustedRootError),
    "tampered_event": ({"rtmr_replay": False}, errors.BindingError),
}


# -- quotes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tee", "version", "body", "ca"), SHAPES)
def test_every_shape_parses_round_trips_and_verifies(tee: str, version: int, body: str | None,
                                                     ca: str) -> None:
    emu = emulator(tee, version=version, body=body, ca=ca)
    blob = emu.quote(NONCE)
    quote = parse_quote(blob)
    assert quote.to_bytes() == blob and quote.trailing_bytes == 0
    assert (quote.version, quote.tee) == (version, tee)
    assert quote.body_type == (BODY_TD10 if body == "td10" else BODY_TYPES[tee, version])
    assert quote.report_data == NONCE
    assert quote.header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert quote.signature_data.wrapped == (version != 3)
    assert quote.signature_data.certification_data.cert_type == CERT_PCK_CHAIN
    assert quote.signature_data.qe.qe_auth_data == QE_AUTH_DATA
    assert checks(emu, blob) == (TDX_BASELINE if tee == "tdx" else BASELINE)
    leaf, intermediate, _ = chain_of(quote)
    assert der(leaf) == der(emu.pck_chain[0]) and der(intermediate) == der(ca_cert(ca))


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_the_body_holds_what_was_set(tee: str) -> None:
    emu = emulator(tee)
    quote = parse_quote(emu.quote(NONCE))
    qe = quote.signature_data.qe.qe_report
    want = QE[tee]  # type: ignore[index]
    assert (qe.mr_signer, qe.isv_prod_id, qe.isv_svn) == (want.mr_signer, want.isv_prod_id,
                                                          want.isv_svn)
    assert qe.cpu_svn == pck_extension(emu.pck_chain[0]).tcb.cpusvn
    body = quote.body
    if isinstance(body, TdReport):
        assert body.tee_tcb_svn[:3] == bytes([4, 1, 7]) and body.mr_signer_seam == bytes(48)
        assert body.seam_attributes == bytes(8) and body.mr_td == emu.mr_td
        assert body.attribute_flags["sept_ve_disable"] and not body.attribute_flags["debug"]
        assert body.rtmrs == emu.rtmrs and body.rtmr3 == bytes(48)
    else:
        assert isinstance(body, SgxReport)
        assert (body.mr_enclave, body.mr_signer) == (emu.mr_enclave, emu.mr_signer)
        flags = body.attribute_flags
        assert flags["init"] and flags["mode64bit"] and not flags["debug"]
        assert quote.header.pce_svn == 13 and quote.header.qe_svn == QE["sgx"].isv_svn


def test_v3_header_and_v5_td15_fields() -> None:
    v5 = parse_quote(emulator("tdx", version=5).quote())
    assert isinstance(v5.body, TdReport)
    assert v5.body.tee_tcb_svn2 == v5.body.tee_tcb_svn and v5.body.mr_service_td == bytes(48)
    v4 = parse_quote(emulator("tdx").quote())
    assert (v4.header.qe_svn, v4.header.pce_svn) == (0, 0)  # reserved in v4/v5 (§1.1)


def test_quotes_and_certificates_are_deterministic() -> None:
    one, two = DcapEmulator(now=NOW), DcapEmulator(now=NOW)
    assert one.quote(NONCE) == two.quote(NONCE)
    assert one.tcb_info.body == two.tcb_info.body and one.root_crl == two.root_crl
    code = ("import hashlib; from veritee.testing.dcap import root_cert, DcapEmulator; "
            "from cryptography.hazmat.primitives.serialization import Encoding; "
            "print(hashlib.sha256(root_cert().public_bytes(Encoding.DER)).hexdigest()); "
            "print(hashlib.sha256(DcapEmulator().quote()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == [hashlib.sha256(der(emulated_roots()[0])).hexdigest(),
                   hashlib.sha256(one.quote()).hexdigest()]


def test_wrong_report_data_size_is_refused() -> None:
    with pytest.raises(ValueError, match="63 bytes"):
        emulator().quote(bytes(63))


# -- the test PKI ------------------------------------------------------------------------------


@pytest.mark.parametrize("ca", ["platform", "processor"])
def test_pck_extension_parses_to_what_was_set(ca: str) -> None:
    emu = emulator("tdx", ca=ca)
    facts = emu.facts
    platform = ca == "platform"
    assert pck_extension(emu.pck_chain[0]) == PckExtension(
        ppid=facts.ppid, tcb=PckTcb(facts.comp_svns, 13, bytes(facts.comp_svns)),
        pce_id=bytes(2), fmspc=FMSPC["tdx"], sgx_type=1 if platform else 0,
        platform_instance_id=facts.platform_instance_id,
        configuration=PckConfiguration(False, True, True) if platform else None)


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.parametrize("ca", ["platform", "processor"])
def test_certificates_have_intels_names_and_profile(ca: str) -> None:
    leaf, intermediate, root = emulator("tdx", ca=ca).pck_chain
    signer = tcb_signing_cert()
    names = {ROOT_CN: root, CA_CN[ca]: intermediate, PCK_CN: leaf,  # type: ignore[index]
             TCB_SIGNING_CN: signer}
    issuers = {leaf: intermediate, intermediate: root, root: root, signer: root}
    for cn, cert in names.items():
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn
        # Intel's RDN order and values (CN first, as the real root encodes them, §2.1).
        assert [a.value for a in cert.subject] == [cn, "Intel Corporation", "Santa Clara",
                                                   "CA", "US"]
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        aki = _extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier
        assert aki == _extension(issuers[cert], x509.SubjectKeyIdentifier).value.digest
        assert _extension(cert, x509.CRLDistributionPoints)
        assert _extension(cert, x509.KeyUsage).critical
        constraints = _extension(cert, x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca == (cert in (root, intermediate))
    signer.verify_directly_issued_by(root)
    crl_dp = _extension(leaf, x509.CRLDistributionPoints).value[0].full_name[0].value
    assert crl_dp == f"{PCS_BASE_URL}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"


def test_emulated_roots_and_pem() -> None:
    (root,) = emulated_roots()
    assert x509.load_pem_x509_certificates(emulated_root_pem()) == [root]
    untrusted = emulator("tdx", "untrusted_root").pck_chain
    assert der(untrusted[2]) != der(root) and untrusted[2].subject == root.subject
    assert der(untrusted[0]) == der(emulator("tdx").pck_chain[0])  # the same genuine leaf


def _crl_checks(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert crl.issuer == issuer.subject and crl.is_signature_valid(key)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _extension(issuer, x509.SubjectKeyIdentifier).value.digest
    assert crl.next_update_utc is not None and crl.last_update_utc < NOW < crl.next_update_utc


def test_crls_verify_and_list_only_the_revoked_leaf() -> None:
    emu = emulator("tdx")
    _crl_checks(x509.load_der_x509_crl(emu.root_crl), emulated_roots()[0])
    for ca in ("platform", "processor"):
        crl = x509.load_der_x509_crl(emu.pck_crl(ca))
        _crl_checks(crl, ca_cert(ca))
        assert len(crl) == 0
    revoked = emulator("tdx", "revoked_pck")
    crl = x509.load_der_x509_crl(revoked.pck_crl())
    assert [r.serial_number for r in crl] == [revoked.pck_chain[0].serial_number]
    assert len(x509.load_der_x509_crl(revoked.pck_crl("processor"))) == 0


# -- collateral ------------------------------------------------------------------------------------


def _pairs(body: bytes) -> list[tuple[str, Any]]:
    return json.loads(body, object_pairs_hook=list)  # type: ignore[no-any-return]


def _signed_ok(document: SignedDocument, member: str) -> None:
    pairs = _pairs(document.body)
    assert [k for k, _ in pairs] == [member, "signature"]
    raw = document.body.decode()
    inner = raw[len(f'{{"{member}":'):raw.rindex(',"signature":')]
    assert inner == document.text == json.dumps(json.loads(inner), separators=(",", ":"),
                                                ensure_ascii=False)
    signature = pairs[1][1]
    assert len(signature) == 128 and signature == signature.lower()
    assert verifies(tcb_signing_cert().public_key(), bytes.fromhex(signature), inner.encode())


TDX_TCB_KEYS = ["id", "version", "issueDate", "nextUpdate", "fmspc", "pceId", "tcbType",
                "tcbEvaluationDataNumber", "tdxModule", "tdxModuleIdentities", "tcbLevels"]


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_tcb_info_is_pcs_shaped_and_signed(tee: str) -> None:
    emu = emulator(tee)
    _signed_ok(emu.tcb_info, "tcbInfo")
    info = json.loads(emu.tcb_info.text, object_pairs_hook=dict)
    keys = TDX_TCB_KEYS if tee == "tdx" else [k for k in TDX_TCB_KEYS if "tdx" not in k]
    assert list(info) == keys
    assert (info["id"], info["version"], info["fmspc"], info["pceId"]) == (
        tee.upper(), 3, FMSPC[tee].hex().upper(), "0000")  # type: ignore[index]
    issued, next_update = pcs_instant(info["issueDate"]), pcs_instant(info["nextUpdate"])
    assert issued < NOW < next_update and (next_update - issued).days == 30
    levels = info["tcbLevels"]
    assert [lv["tcbStatus"] for lv in levels] == ["UpToDate", "OutOfDate", "Revoked"]
    assert [lv["tcb"]["pcesvn"] for lv in levels] == sorted(
        (lv["tcb"]["pcesvn"] for lv in levels), reverse=True)
    for level in levels:
        assert ("advisoryIDs" in level) == (level["tcbStatus"] != "UpToDate")
        assert len(level["tcb"]["sgxtcbcomponents"]) == 16
        assert ("tdxtcbcomponents" in level["tcb"]) == (tee == "tdx")
    if tee == "tdx":
        assert list(info["tdxModule"]) == ["mrsigner", "attributes", "attributesMask"]
        (identity,) = info["tdxModuleIdentities"]
        assert identity["id"] == "TDX_01" and len(levels[0]["tcb"]["tdxtcbcomponents"]) == 16


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_qe_identity_is_pcs_shaped_signed_and_matches_the_qe(tee: str) -> None:
    emu = emulator(tee)
    _signed_ok(emu.qe_identity, "enclaveIdentity")
    identity = emu.qe_identity.value
    assert list(identity) == ["id", "version", "issueDate", "nextUpdate",
                              "tcbEvaluationDataNumber", "miscselect", "miscselectMask",
                              "attributes", "attributesMask", "mrsigner", "isvprodid",
                              "tcbLevels"]
    assert (identity["id"], identity["version"]) == ("TD_QE" if tee == "tdx" else "QE", 2)
    assert qe_matches(identity, parse_quote(emu.quote()).signature_data.qe.qe_report)
    assert "advisoryIDs" in identity["tcbLevels"][1]


def test_combined_collateral_has_dcap_qvls_fields() -> None:
    emu = emulator("tdx")
    combined = emu.combined_collateral()
    assert list(combined) == ["pck_crl_issuer_chain", "root_ca_crl", "pck_crl",
                              "tcb_info_issuer_chain", "tcb_info", "tcb_info_signature",
                              "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature"]
    assert bytes.fromhex(combined["root_ca_crl"]) == emu.root_crl
    assert bytes.fromhex(combined["pck_crl"]) == emu.pck_crl()
    assert combined["tcb_info"] == emu.tcb_info.text
    assert bytes.fromhex(combined["qe_identity_signature"]) == emu.qe_identity.signature
    chain = x509.load_pem_x509_certificates(combined["tcb_info_issuer_chain"].encode())
    assert chain == [tcb_signing_cert(), emulated_roots()[0]]
    pck_chain = x509.load_pem_x509_certificates(combined["pck_crl_issuer_chain"].encode())
    assert pck_chain == [ca_cert("platform"), emulated_roots()[0]]


def test_pcs_files_pair_each_body_with_its_chain() -> None:
    files = dict(emulator("sgx").pcs_files())
    assert sorted(files) == sorted([
        ".tcb-sgx-eeee0a000000.json", ".tcb-sgx-eeee0a000000.json.issuer-chain.pem",
        ".qe-identity-sgx.json", ".qe-identity-sgx.json.issuer-chain.pem",
        ".pckcrl-processor.der", ".pckcrl-processor.der.issuer-chain.pem", ".rootcacrl.der"])
    assert _pairs(files[".qe-identity-sgx.json"])[0][0] == "enclaveIdentity"


# -- knobs -----------------------------------------------------------------------------------------


def test_the_knob_table_is_complete_and_pinned() -> None:
    assert set(BROKEN) == set(KNOB_ERRORS)
    assert {k: e for k, (_, e) in BROKEN.items()} == dict(KNOB_ERRORS)
    assert set(knob_errors("sgx")) == set(KNOB_ERRORS) - {"tampered_event"}


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
@pytest.mark.parametrize("knob", sorted(BROKEN))
def test_each_knob_breaks_exactly_its_one_thing(knob: str, tee: str) -> None:
    if knob not in knob_errors(tee):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown knob"):
            DcapEmulator(tee=tee, knob=knob)  # type: ignore[arg-type]
        return
    emu = emulator(tee, knob)
    baseline = TDX_BASELINE if tee == "tdx" else BASELINE
    assert checks(emu, emu.quote(NONCE)) == {**baseline, **BROKEN[knob][0]}


def test_bad_qe_binding_binds_another_key_with_both_signatures_good() -> None:
    good = parse_quote(emulator("tdx").quote())
    bad = parse_quote(emulator("tdx", "bad_qe_binding").quote())
    assert bad.signature_data.attestation_key == good.signature_data.attestation_key
    assert bad.signature_data.qe.qe_report.report_data[:32] != \
        good.signature_data.qe.qe_report.report_data[:32]


def test_wrong_fmspc_serves_tcb_info_for_another_fmspc() -> None:
    emu = emulator("tdx", "wrong_fmspc")
    assert emu.tcb_info.value["fmspc"] == OTHER_FMSPC.hex().upper()
    assert pck_extension(emu.pck_chain[0]).fmspc == FMSPC["tdx"]


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_settings_change_claims_not_validity(tee: str) -> None:
    debug = emulator(tee, debug=True)
    quote = parse_quote(debug.quote())
    assert quote.body.attribute_flags["debug"]
    baseline = TDX_BASELINE if tee == "tdx" else BASELINE
    assert checks(debug, debug.quote()) == baseline
    stale = emulator(tee, tcb_out_of_date=True)
    assert checks(stale, stale.quote()) == {**baseline, "tcb_status": "OutOfDate"}
    assert stale.tcb_status == "OutOfDate"
    level = stale.tcb_info.value["tcbLevels"][1]
    assert level["tcbStatus"] == "OutOfDate" and level["advisoryIDs"] == ["INTEL-SA-00837"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"tee": "snp"}, "emulated are"),
    ({"version": 3}, "version 4 or 5"),
    ({"tee": "sgx", "version": 4}, "version 3 or 5"),
    ({"body": "td15"}, "td15 needs version=5"),
    ({"tee": "sgx", "version": 5, "body": "td10"}, "does not apply"),
    ({"mr_td": bytes(32)}, "mr_td is 32 bytes"),
    ({"mr_config_id": bytes(49)}, "mr_config_id is 49 bytes"),
    ({"knob": "nope"}, "unknown knob"),
    ({"ca": "root"}, "platform or processor"),
])
def test_the_emulator_refuses_what_it_cannot_make(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DcapEmulator(**changes)


# -- the event log ---------------------------------------------------------------------------------


def test_event_log_replays_to_the_rtmrs() -> None:
    emu = emulator("tdx")
    log = emu.event_log()
    assert len(log) % 4096 == 0
    quote = parse_quote(emu.quote())
    assert isinstance(quote.body, TdReport)
    assert tiny_replay(log) == list(quote.body.rtmrs) == list(rtmrs_of(default_events()))
    assert quote.body.rtmr3 == bytes(48) and all(r != bytes(48) for r in quote.body.rtmrs[:3])
    measured = [e for e in default_events() if e.event_type in (0x80000001, 4, 0x80000007, 0xD)]
    assert measured and all(hashlib.sha384(e.data).digest() == e.digest for e in measured)


def test_tampered_event_changes_one_digest_only() -> None:
    good, bad = emulator("tdx").event_log(), emulator("tdx", "tampered_event").event_log()
    assert len(good) == len(bad) and sum(a != b for a, b in zip(good, bad, strict=True)) == 1
    replayed = tiny_replay(bad)
    assert [r == q for r, q in zip(replayed, emulator("tdx").rtmrs, strict=True)] == [
        True, True, False, True]


# -- the fake PCS ----------------------------------------------------------------------------------


@functools.cache
def pcs() -> FakePcs:
    fake = FakePcs()
    fake.add(emulator("tdx"))
    fake.add(emulator("sgx"))
    return fake


def _unquoted_chain(value: str) -> list[x509.Certificate]:
    assert "-----BEGIN%20CERTIFICATE-----%0A" in value  # URL-encoded PEM (§2.3)
    return x509.load_pem_x509_certificates(urllib.parse.unquote(value).encode())


V4 = f"{PCS_BASE_URL}/{{}}/certification/v4"


@pytest.mark.parametrize(("url", "header", "body", "signer"), [
    (V4.format("tdx") + "/tcb?fmspc=eeee0f000000", "TCB-Info-Issuer-Chain",
     lambda: emulator("tdx").tcb_info.body, tcb_signing_cert),
    (V4.format("tdx") + "/tcb?fmspc=EEEE0F000000&update=standard", "TCB-Info-Issuer-Chain",
     lambda: emulator("tdx").tcb_info.body, tcb_signing_cert),
    (V4.format("sgx") + "/tcb?fmspc=eeee0a000000", "TCB-Info-Issuer-Chain",
     lambda: emulator("sgx").tcb_info.body, tcb_signing_cert),
    (V4.format("tdx") + "/qe/identity", "SGX-Enclave-Identity-Issuer-Chain",
     lambda: emulator("tdx").qe_identity.body, tcb_signing_cert),
    (V4.format("sgx") + "/qe/identity", "SGX-Enclave-Identity-Issuer-Chain",
     lambda: emulator("sgx").qe_identity.body, tcb_signing_cert),
    (V4.format("sgx") + "/pckcrl?ca=platform&encoding=der", "SGX-PCK-CRL-Issuer-Chain",
     lambda: emulator("tdx").pck_crl("platform"), lambda: ca_cert("platform")),
    (V4.format("sgx") + "/pckcrl?ca=processor&encoding=der", "SGX-PCK-CRL-Issuer-Chain",
     lambda: emulator("sgx").pck_crl("processor"), lambda: ca_cert("processor")),
    (ROOT_CA_CRL_URL, None, lambda: emulator("sgx").root_crl, None),
])
def test_fake_pcs_serves_each_url_with_its_headers(url: str, header: str | None, body: Any,
                                                   signer: Any) -> None:
    fetcher: Fetcher = pcs()
    response = fetcher.get(url)
    assert isinstance(response, PcsResponse)
    assert (response.status, response.body) == (200, body())
    if header is None:
        assert not any(name.endswith("Issuer-Chain") for name in response.headers)
        return
    assert _unquoted_chain(response.headers[header]) == [signer(), emulated_roots()[0]]


def test_fake_pcs_serves_pem_crls_without_encoding_der() -> None:
    response = pcs().get(V4.format("sgx") + "/pckcrl?ca=processor")
    assert response.status == 200
    assert x509.load_pem_x509_crl(response.body).public_bytes(
        serialization.Encoding.DER) == emulator("sgx").pck_crl("processor")


@pytest.mark.parametrize(("url", "status"), [
    (V4.format("tdx") + "/tcb?fmspc=eeee0b000000", 404),   # an FMSPC it has no TCB Info for
    (V4.format("tdx") + "/tcb?fmspc=eeee0a000000", 404),   # the SGX FMSPC, asked of TDX
    (V4.format("tdx") + "/tcb?fmspc=zz", 400),
    (V4.format("tdx") + "/tcb", 400),
    (V4.format("sgx") + "/pckcrl?ca=other&encoding=der", 400),
    (V4.format("sgx") + "/qve/identity", 404),
    ("https://pccs.example.test/sgx/certification/v4/qe/identity", 404),
])
def test_fake_pcs_refuses_what_it_does_not_have(url: str, status: int) -> None:
    assert pcs().get(url).status == status


def test_fake_pcs_records_fails_and_can_be_overridden() -> None:
    fake = FakePcs(fail_status=503)
    assert fake.get(ROOT_CA_CRL_URL).status == 503 and fake.requests == [ROOT_CA_CRL_URL]
    fake = FakePcs(base_url="https://pccs.example.test")
    wrong = emulator("tdx", "wrong_fmspc")
    fake.add(wrong)
    asked = "https://pccs.example.test/tdx/certification/v4/tcb?fmspc="
    assert fake.get(asked + FMSPC["tdx"].hex()).status == 404
    assert fake.get(asked + OTHER_FMSPC.hex()).body == wrong.tcb_info.body
    fake.serve(asked + OTHER_FMSPC.hex(), None)
    assert fake.get(asked + OTHER_FMSPC.hex()).status == 404
    with pytest.raises(ValueError, match="not a URL"):
        fake.serve("https://elsewhere.test/x", None)


# -- ``veritee emulate`` ---------------------------------------------------------------------------


def test_knob_lists() -> None:
    tdx, sgx = TDX_EMULATOR.knobs, SGX_EMULATOR.knobs
    assert {"debug", "tcb_out_of_date", "version=N", "body=NAME", "mr_td=HEX", "form=NAME",
            "collateral=MODE", *KNOB_ERRORS} <= set(tdx)
    assert "tampered_event" not in sgx and "body=NAME" not in sgx and "mr_enclave=HEX" in sgx
    assert tdx["revoked_pck"].endswith("RevokedError")
    assert (TDX_EMULATOR.tee, SGX_EMULATOR.tee) == ("tdx", "sgx")


@pytest.mark.parametrize(("cli", "kwargs", "message"), [
    (TDX_EMULATOR, {"knobs": ["nope"]}, "unknown knob 'nope'"),
    (TDX_EMULATOR, {"knobs": ["debug=1"]}, "unknown knob"),
    (TDX_EMULATOR, {"knobs": ["tampered", "revoked_pck"]}, "one defect knob at a time"),
    (TDX_EMULATOR, {"knobs": ["version=6"]}, "choose one of 4, 5"),
    (TDX_EMULATOR, {"knobs": ["body=td15"]}, "td15 needs version=5"),
    (TDX_EMULATOR, {"knobs": ["mr_td=zz"]}, "not hex"),
    (TDX_EMULATOR, {"knobs": ["mr_td=00"]}, "mr_td is 1 bytes"),
    (TDX_EMULATOR, {"knobs": ["form=pdf"]}, "choose one of coco, raw, configfs-tsm"),
    (TDX_EMULATOR, {"report_data": bytes(63)}, "--report-data is 63 bytes"),
    (TDX_EMULATOR, {"host_data": bytes(32)}, "--host-data is 32 bytes; TDX MRCONFIGID is 48"),
    (SGX_EMULATOR, {"host_data": bytes(48)}, "no init-data field"),
    (SGX_EMULATOR, {"knobs": ["tampered_event"]}, "unknown knob"),
    (SGX_EMULATOR, {"knobs": ["form=configfs-tsm"]}, "choose one of raw, coco"),
    (SGX_EMULATOR, {"knobs": ["body=td10"]}, "unknown knob"),
    (SGX_EMULATOR, {"knobs": ["version=4"]}, "choose one of 3, 5"),
])
def test_the_cli_objects_refuse_bad_knobs_and_sizes(cli: Any, kwargs: dict[str, Any],
                                                    message: str) -> None:
    args = {"report_data": None, "host_data": None, "knobs": [], **kwargs}
    with pytest.raises(ValueError, match=message):
        cli.emulate(**args)


@pytest.mark.parametrize(("cli", "form"), [(TDX_EMULATOR, "coco"), (TDX_EMULATOR, "raw"),
                                           (TDX_EMULATOR, "configfs-tsm"),
                                           (SGX_EMULATOR, "raw"), (SGX_EMULATOR, "coco")])
def test_the_cli_objects_emit_each_wire_form(cli: Any, form: str) -> None:
    host = bytes(range(48)) if cli.tee == "tdx" else None
    made = cli.emulate(report_data=NONCE, host_data=host, knobs=[f"form={form}", "debug"])
    assert isinstance(made, Emulated) and made.form == form
    evidence = decode_dcap_evidence(made.evidence)
    assert evidence.form == form
    quote = parse_quote(evidence.quote)
    assert quote.report_data == NONCE and quote.tee == cli.tee
    assert quote.body.attribute_flags["debug"]
    if isinstance(quote.body, TdReport):
        assert quote.body.mr_config_id == host
    assert (evidence.cc_eventlog is not None) == (cli.tee == "tdx" and form == "coco")
    ((suffix, combined),) = made.endorsements
    assert suffix == ".collateral.json" and "tcb_info_signature" in json.loads(combined)


def test_the_cli_settings_reach_the_quote_and_collateral_modes() -> None:
    made = TDX_EMULATOR.emulate(report_data=None, host_data=None, knobs=[
        "version=5", "body=td10", "ca=processor", "form=raw", "collateral=pcs",
        "mr_td=" + "ab" * 48, "revoked_pck"])
    quote = parse_quote(made.evidence)
    assert (quote.version, quote.body_type) == (5, BODY_TD10)
    assert isinstance(quote.body, TdReport) and quote.body.mr_td == bytes([0xAB]) * 48
    assert quote.report_data == bytes(64)
    assert chain_of(quote)[1].subject == ca_cert("processor").subject
    files = dict(made.endorsements)
    assert len(files) == 7
    crl = x509.load_der_x509_crl(files[".pckcrl-processor.der"])
    assert crl.get_revoked_certificate_by_serial_number(chain_of(quote)[0].serial_number)
    none = SGX_EMULATOR.emulate(report_data=None, host_data=None,
                                knobs=["collateral=none", "mr_signer=" + "cd" * 32])
    assert none.endorsements == ()
    body = parse_quote(none.evidence).body
    assert isinstance(body, SgxReport) and body.mr_signer == bytes([0xCD]) * 32
