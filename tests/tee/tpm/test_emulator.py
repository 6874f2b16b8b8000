"""The emulated TPM (``veritee.testing.tpm``): its event log, quotes and evidence forms are
checked with ``cryptography``, ``veritee.eventlog`` and small independent readers (a protobuf
wire reader here, keylime's PCR-file parser); every form parses with the verifier's
``parse_tpm_evidence``; genuine evidence verifies with ``TpmVerifier`` given the AK's public
key (or, for go-tpm-tools, the AK CA), and each defect knob is refused with the error
:data:`KNOB_ERRORS` names; ``TPM_EMULATOR`` refuses what it cannot do."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from conftest import corpus_dir
from veritee import errors, eventlog
from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee.tpm import replay, structures
from veritee.tee.tpm.evidence import parse_tpm_evidence
from veritee.tee.tpm.policy import init_data_pcr8
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing.tpm import (
    AK_KINDS,
    FORM_ONLY_KNOBS,
    FORMS,
    KNOB_ERRORS,
    PCR_COUNT,
    TPM_EMULATOR,
    TpmEmulator,
    ca_certificate,
    emulated_anchors,
    emulated_ca_pem,
    knob_error,
    parse_selection,
    pcr_blob,
    read_pcr_blob,
)

NONCE = bytes(range(32))
NOW = datetime(2026, 6, 1, tzinfo=UTC)


# -- a protobuf wire reader (independent of the verifier's) --------------------------------------


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def pb_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field number, value)`` of a message: ints for varints, bytes for length-delimited."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            size, at = _varint(data, at)
            yield number, data[at:at + size]
            at += size
        else:
            raise AssertionError(f"wire type {wire}")


def pb_all(data: bytes, number: int) -> list[Any]:
    return [value for n, value in pb_fields(data) if n == number]


# -- helpers ---------------------------------------------------------------------------------------


def _verify(blob: bytes, *endorsements: bytes, report_data: bytes | None = NONCE) -> Any:
    return TpmVerifier().verify(decode_evidence(blob), report_data=report_data,
                                collateral=CollateralSource.of(*endorsements), now=NOW)


def _emulate(*knobs: str, report_data: bytes | None = NONCE,
             host_data: bytes | None = None) -> tuple[bytes, list[bytes]]:
    made = TPM_EMULATOR.emulate(report_data=report_data, host_data=host_data, knobs=knobs)
    return made.evidence, [data for _, data in made.endorsements]


def _public(key_pem: bytes) -> Any:
    return serialization.load_pem_public_key(key_pem)


def _check_signature(pem: bytes, attest: bytes, signature: bytes) -> None:
    """The TPMT_SIGNATURE verifies over the attest with cryptography (raises otherwise)."""
    parsed = structures.parse_signature(signature)
    key, algorithm = _public(pem), getattr(hashes, parsed.hash.upper())()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(parsed.signature, attest, ec.ECDSA(algorithm))
    elif parsed.alg == "rsapss":
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(parsed.signature, attest,
                   padding.PSS(padding.MGF1(algorithm), algorithm.digest_size), algorithm)
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(parsed.signature, attest, padding.PKCS1v15(), algorithm)


# -- the event log ---------------------------------------------------------------------------------


@pytest.mark.parametrize("banks", [("sha1", "sha256"), ("sha256",), ("sha256", "sha384")])
def test_the_event_log_replays_to_the_tpms_pcrs_in_every_bank(banks: tuple[str, ...]) -> None:
    emulator = TpmEmulator(banks=banks, selection=((banks[-1], tuple(range(24))),))
    parsed = eventlog.parse(emulator.event_log())
    assert parsed.spec_id is not None
    assert [a.name for a in parsed.spec_id.algorithms] == list(banks)
    replayed = replay.replay_pcrs(parsed)
    assert sorted(replayed) == sorted(banks)
    for bank in banks:
        assert set(replayed[bank]) == {0, 4, 5, 6, 7, 1, 2, 3, 8, 9}
        for index, value in replayed[bank].items():
            assert emulator.pcrs[bank][index] == value
        assert emulator.pcrs[bank][17] == b"\xff" * structures.HASH_SIZES[bank]


def test_the_log_has_the_typical_events_and_their_data_is_what_was_measured() -> None:
    events = {(e["index"], e["type_name"]): e
              for e in replay.events_json(TpmEmulator().event_log())}
    for key in [(0, "EV_S_CRTM_VERSION"), (7, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
                (7, "EV_SEPARATOR"), (4, "EV_EFI_BOOT_SERVICES_APPLICATION"), (8, "EV_IPL"),
                (9, "EV_IPL")]:
        assert key in events, key
    assert events[(8, "EV_IPL")]["data_verified"] is True
    assert events[(7, "EV_EFI_VARIABLE_DRIVER_CONFIG")]["data_verified"] is True
    assert replay.secure_boot(TpmEmulator().event_log()) is True
    assert replay.secure_boot(TpmEmulator(secure_boot=False).event_log()) is False


@pytest.mark.parametrize("locality", [0, 3])
def test_startup_locality_sets_pcr0s_start(locality: int) -> None:
    emulator = TpmEmulator(locality=locality)
    first = eventlog.parse(emulator.event_log()).events[1]
    assert first.type == eventlog.EV_NO_ACTION and first.data[16] == locality
    start = bytes(31) + bytes([locality])
    s_crtm = hashlib.sha256("veritee emulated firmware 1.0\0".encode("utf-16-le")).digest()
    expected = hashlib.sha256(start + s_crtm).digest()
    blob = hashlib.sha256(b"veritee emulated firmware volume").digest()
    expected = hashlib.sha256(expected + blob).digest()
    expected = hashlib.sha256(expected + hashlib.sha256(bytes(4)).digest()).digest()
    assert emulator.pcrs["sha256"][0] == expected
    assert replay.replay_pcrs(emulator.event_log())["sha256"][0] == expected


def test_init_data_is_the_only_pcr8_extension() -> None:
    digest = hashlib.sha384(b"init data").digest()
    emulator = TpmEmulator(init_data=digest)
    assert emulator.pcrs["sha256"][8] == init_data_pcr8(digest)
    assert emulator.pcrs["sha256"][8] == hashlib.sha256(bytes(32) + digest[:32]).digest()
    assert TpmEmulator().pcrs["sha256"][8] != init_data_pcr8(digest)


# -- quotes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", AK_KINDS)
def test_a_quote_is_a_signed_tpms_attest_over_the_selected_pcrs(kind: Any) -> None:
    emulator = TpmEmulator(ak=kind, selection=(("sha256", (0, 7, 8)), ("sha1", (0,))))
    quote = emulator.quote(NONCE)
    _check_signature(emulator.ak_pem, quote.attest, quote.signature)
    attest = structures.parse_attest(quote.attest)
    assert attest.extra_data == NONCE and attest.is_quote
    assert attest.pcr_select == (structures.PcrSelection("sha256", (0, 7, 8)),
                                 structures.PcrSelection("sha1", (0,)))
    values = [emulator.pcrs["sha256"][i] for i in (0, 7, 8)] + [emulator.pcrs["sha1"][0]]
    assert quote.values == values
    assert attest.pcr_digest == hashlib.sha256(b"".join(values)).digest()
    public = structures.parse_public(emulator.ak_public)
    assert public.restricted_signing and public.name == emulator.ak_name
    assert public.scheme == {"rsa": "rsassa", "rsa-pss": "rsapss", "ecdsa": "ecdsa"}[kind]
    assert public.key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo) == \
        emulator.ak_pem
    assert structures.parse_signature(quote.signature).alg == public.scheme


def test_the_pcr_file_has_tpm2_tools_layout() -> None:
    emulator = TpmEmulator(selection=(("sha1", (0, 8)), ("sha256", tuple(range(24)))))
    quote = emulator.quote(NONCE)
    blob = quote.pcr_blob()
    # u32 count + 16 selections of 8 bytes, u32 list count, 4 lists (26 values, 8 a list).
    assert len(blob) == 4 + 16 * 8 + 4 + 4 * (4 + 8 * 66)
    assert struct.unpack_from("<I", blob, 0) == (2,)
    assert blob[4:12] == bytes.fromhex("0400" "03" "010100" "00" "00")
    assert read_pcr_blob(blob) == list(quote.pcrs)
    assert pcr_blob(quote.selection, quote.values) == blob


@pytest.mark.parametrize(("folder", "name"), [("swtpm", "quote.pcrs"),
                                            ("keylime", "pcrblob.bin")])
def test_the_pcr_file_encoder_rebuilds_real_tpm2_tools_files(folder: str, name: str) -> None:
    blob = (corpus_dir("ibm-tpm-gpu", "tpm", folder) / name).read_bytes()
    values = read_pcr_blob(blob)
    selection = [(bank, tuple(i for b, i, _ in values if b == bank))
                 for bank in dict.fromkeys(b for b, _, _ in values)]
    assert pcr_blob(selection, [v for _, _, v in values]) == blob


def test_the_ak_certificate_chains_to_the_ak_ca() -> None:
    emulator = TpmEmulator()
    ca = x509.load_der_x509_certificate(ca_certificate())
    cert = x509.load_der_x509_certificate(emulator.ak_cert())
    cert.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    assert cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        emulator.ak_pem
    assert x509.load_pem_x509_certificate(emulated_ca_pem()) == ca
    assert ca_certificate() == ca_certificate.__wrapped__()  # the same in every run


# -- evidence forms --------------------------------------------------------------------------------


def test_the_keylime_form_is_r_b64_colon_b64_colon_b64() -> None:
    evidence, _ = _emulate("form=keylime")
    assert evidence[:1] == b"r"
    attest, signature, blob = (base64.b64decode(p) for p in evidence[1:].split(b":"))
    assert structures.parse_attest(attest).extra_data == NONCE
    assert structures.parse_signature(signature).alg == "rsassa"
    assert len(read_pcr_blob(blob)) == PCR_COUNT


def test_the_trustee_form_has_the_attester_fields() -> None:
    evidence, (ak_pem,) = _emulate()
    document = json.loads(evidence)
    assert set(document) == {"ak_public", "tpm_quote", "eventlog"}
    assert set(document["tpm_quote"]) == {"message", "signature", "pcrs"}
    spki = serialization.load_der_public_key(base64.b64decode(document["ak_public"]))
    assert spki.public_bytes(serialization.Encoding.PEM,
                             serialization.PublicFormat.SubjectPublicKeyInfo) == ak_pem
    assert len(document["tpm_quote"]["pcrs"]) == PCR_COUNT
    assert eventlog.parse(base64.b64decode(document["eventlog"])).events


def test_the_go_tpm_tools_form_holds_one_quote_per_bank() -> None:
    evidence, (ca_pem,) = _emulate("form=go-tpm-tools")
    assert ca_pem == emulated_ca_pem()
    emulator = TpmEmulator()
    assert pb_all(evidence, 1) == [emulator.ak_public]
    quotes = pb_all(evidence, 2)
    assert len(quotes) == 2
    for bank, quote in zip(("sha1", "sha256"), quotes, strict=True):
        attest, = pb_all(quote, 1)
        signature, = pb_all(quote, 2)
        pcrs, = pb_all(quote, 3)
        assert pb_all(pcrs, 1) == [structures.HASH_IDS[bank]]
        entries = [dict(pb_fields(entry)) for entry in pb_all(pcrs, 2)]
        assert [e[1] for e in entries] == list(range(PCR_COUNT))
        assert [e[2] for e in entries] == emulator.pcrs[bank]
        parsed = structures.parse_attest(attest)
        assert parsed.pcr_select == (structures.PcrSelection(bank, tuple(range(24))),)
        assert parsed.pcr_digest == hashlib.sha256(b"".join(emulator.pcrs[bank])).digest()
        _check_signature(emulator.ak_pem, attest, signature)
    assert pb_all(evidence, 3) == [emulator.event_log()]
    assert pb_all(evidence, 6) == [emulator.ak_cert()]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_parses_with_the_verifiers_reader(form: str) -> None:
    evidence, _ = _emulate(f"form={form}")
    assert parse_tpm_evidence(decode_evidence(evidence)).form == form


# -- through the verifier --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["trustee", "keylime", "go-tpm-tools"])
@pytest.mark.parametrize("kind", AK_KINDS)
def test_genuine_evidence_verifies_with_its_endorsement(form: str, kind: str) -> None:
    evidence, endorsements = _emulate(f"form={form}", f"ak={kind}")
    claims = _verify(evidence, *endorsements).to_dict()
    assert claims["extra_data"] == NONCE.hex()
    emulator = TpmEmulator(ak=kind)  # type: ignore[arg-type]
    sha256 = claims["pcrs"]["sha256"]
    assert sha256 == {str(i): v.hex() for i, v in enumerate(emulator.pcrs["sha256"])}
    assert claims["signer"] == hashlib.sha256(
        _public(emulator.ak_pem).public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()
    if form != "keylime":
        assert claims["eventlog_pcrs"]["sha256"]["8"] == sha256["8"]
    if form == "go-tpm-tools":
        assert [q["pcr_select"] for q in claims["quotes"]] == [
            {"sha1": list(range(24))}, {"sha256": list(range(24))}]


def test_init_data_and_locality_verify_and_show_in_the_claims() -> None:
    digest = hashlib.sha256(b"init data").digest()
    evidence, endorsements = _emulate("locality=3", host_data=digest)
    claims = _verify(evidence, *endorsements).to_dict()
    assert claims["pcrs"]["sha256"]["8"] == init_data_pcr8(digest).hex()
    assert claims["eventlog_pcrs"]["sha256"]["0"] == claims["pcrs"]["sha256"]["0"]


def test_the_event_log_form_alone_is_undecided() -> None:
    evidence, _ = _emulate("form=eventlog")
    with pytest.raises(errors.UndecidedError):
        _verify(evidence)


@pytest.mark.parametrize("form", ["trustee", "keylime", "go-tpm-tools"])
def test_without_a_trusted_ak_genuine_evidence_is_undecided(form: str) -> None:
    evidence, _ = _emulate(f"form={form}")
    with pytest.raises(errors.UndecidedError):
        _verify(evidence)


def _knob_cases() -> Iterator[Any]:
    for knob in KNOB_ERRORS:
        forms: Sequence[str] = ((FORM_ONLY_KNOBS[knob],) if knob in FORM_ONLY_KNOBS
                                else ("trustee", "keylime", "go-tpm-tools"))
        for form in forms:
            if knob == "tampered_eventlog" and form == "keylime":
                continue  # keylime's quote string carries no event log
            yield pytest.param(knob, form, knob_error(knob, form), id=f"{knob}-{form}")


@pytest.mark.parametrize(("knob", "form", "error"), list(_knob_cases()))
def test_each_knob_is_refused_with_its_error(knob: str, form: str,
                                             error: type[Exception]) -> None:
    evidence, endorsements = _emulate(f"form={form}", knob)
    genuine, _ = _emulate(f"form={form}")
    assert evidence != genuine
    with pytest.raises(error):
        _verify(evidence, *endorsements)
    with pytest.raises(error):  # and when the emulated anchors are trusted instead
        TpmVerifier().with_roots(emulated_anchors()).verify(
            decode_evidence(evidence), report_data=NONCE, collateral=CollateralSource(),
            now=NOW)


@pytest.mark.parametrize("form", ["trustee", "keylime", "go-tpm-tools"])
@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_emulated_anchors_trust_the_emulator_and_say_so(form: str, kind: str) -> None:
    evidence, _ = _emulate(f"form={form}", f"ak={kind}")
    verifier = TpmVerifier().with_roots(emulated_anchors())
    assert verifier.roots and all(root.emulated for root in verifier.roots)
    claims = verifier.verify(decode_evidence(evidence), report_data=NONCE,
                             collateral=CollateralSource(), now=NOW).to_dict()
    assert claims["emulated"] is True
    with pytest.raises(errors.UndecidedError):
        _verify(evidence)
    foreign, _ = _emulate(f"form={form}", "foreign_ak")
    with pytest.raises(errors.EvidenceError):
        verifier.verify(decode_evidence(foreign), report_data=NONCE,
                        collateral=CollateralSource(), now=NOW)


def test_a_foreign_ak_is_refused_even_without_report_data() -> None:
    evidence, endorsements = _emulate("foreign_ak")
    with pytest.raises(errors.EvidenceError):
        _verify(evidence, *endorsements, report_data=None)


# -- the ``veritee emulate`` object ----------------------------------------------------------------


def test_tpm_emulator_is_an_emulator_and_lists_every_knob() -> None:
    emulator = TPM_EMULATOR
    assert emulator.tee == "tpm"
    assert set(KNOB_ERRORS) <= set(emulator.knobs)
    made = emulator.emulate(report_data=None, host_data=None, knobs=())
    assert made.form == "trustee" and [s for s, _ in made.endorsements] == [".ak.pem"]
    suffixes = {form: [s for s, _ in emulator.emulate(
        report_data=None, host_data=None, knobs=[f"form={form}"]).endorsements]
        for form in FORMS}
    assert suffixes == {"trustee": [".ak.pem"], "keylime": [".ak.pem"],
                        "go-tpm-tools": [".ca.pem"], "eventlog": []}
    extra = structures.parse_attest(base64.b64decode(
        json.loads(made.evidence)["tpm_quote"]["message"])).extra_data
    assert extra == bytes(32)


@pytest.mark.parametrize(("knobs", "report_data", "host_data", "message"), [
    (["nonsense"], None, None, "unknown knob"),
    (["form=xml"], None, None, "unknown knob"),
    (["ak=dsa"], None, None, "unknown knob"),
    (["locality=9"], None, None, "unknown knob"),
    (["select=sha256:24"], None, None, "0-23"),
    (["select=md5:1"], None, None, "BANK:INDICES"),
    (["banks=sha256", "select=sha1:0"], None, None, "lacks"),
    (["bad_signature", "wrong_nonce"], None, None, "one defect knob"),
    (["split_nonce"], None, None, "form=go-tpm-tools"),
    (["foreign_ca", "form=keylime"], None, None, "form=go-tpm-tools"),
    (["tampered_eventlog", "form=keylime"], None, None, "needs evidence with an event log"),
    (["tampered_eventlog", "no_eventlog"], None, None, "needs evidence with an event log"),
    ([], bytes(65), None, "at most 64"),
    ([], None, b"", "1-64"),
])
def test_tpm_emulator_refuses_what_it_cannot_do(knobs: list[str], report_data: bytes | None,
                                                host_data: bytes | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TPM_EMULATOR.emulate(report_data=report_data, host_data=host_data, knobs=knobs)


def test_selections_parse_as_tpm2_tools_writes_them() -> None:
    assert parse_selection("sha256:0,1,7+sha1:0-2") == (("sha256", (0, 1, 7)),
                                                        ("sha1", (0, 1, 2)))
