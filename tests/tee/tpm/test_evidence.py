"""The four TPM evidence forms are recognised by content and taken apart; malformed ones are
refused with the malformed-evidence error."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from conftest import corpus_dir
from support.protobuf import pb
from veritee.errors import MalformedEvidenceError, UnrecognizedEvidenceError
from veritee.evidence import decode_evidence
from veritee.tee.tpm import proto
from veritee.tee.tpm.evidence import parse_pcr_blob, parse_tpm_evidence
from veritee.tee.tpm.structures import PcrSelection, build_attest

ATTEST = build_attest(qualified_signer=b"\0\x0b" + bytes(32), extra_data=b"n",
                      pcr_select=[PcrSelection("sha256", (0, 7)),
                                  PcrSelection("sha1", (3,))], pcr_digest=bytes(32))
SIG = bytes.fromhex("0014000b0004") + b"sigs"


def keylime() -> Path:
    return corpus_dir("ibm-tpm-gpu", "tpm", "keylime")


def keylime_string(folder: Path, names: tuple[str, str, str]) -> bytes:
    parts = [base64.b64encode((folder / n).read_bytes()) for n in names]
    return b"r" + b":".join(parts)


def pb_quote(bank_id: int, values: dict[int, bytes]) -> bytes:
    entries = b"".join(pb(2, pb(1, i) + pb(2, v)) for i, v in values.items())
    return pb(1, ATTEST) + pb(2, SIG) + pb(3, pb(1, bank_id) + entries)


def go_attestation(**extra: bytes) -> bytes:
    out = pb(1, b"TPMT_PUBLIC") + pb(2, pb_quote(0x000B, {0: bytes(32), 7: b"\7" * 32}))
    out += pb(2, pb_quote(0x0004, {3: bytes(20)}))
    for number, value in (("3", extra.get("log")), ("6", extra.get("cert"))):
        if value:
            out += pb(int(number), value)
    return out + pb(7, b"inter0") + pb(7, b"inter1")


# -- keylime -------------------------------------------------------------------------------


def test_keylime_corpus_string() -> None:
    text = keylime_string(keylime(), ("quote.bin", "sig.bin", "pcrblob.bin"))
    wire = parse_tpm_evidence(decode_evidence(text + b"\n"))
    assert wire.form == "keylime" and len(wire.quotes) == 1 and wire.ak_public is None
    assert wire.quotes[0].attest == (keylime() / "quote.bin").read_bytes()
    assert wire.quotes[0].pcrs["sha256"][16].hex().startswith("d471c067")


def test_keylime_swtpm_blob() -> None:
    blob = (corpus_dir("ibm-tpm-gpu", "tpm", "swtpm") / "quote.pcrs").read_bytes()
    assert sorted(parse_pcr_blob(blob)["sha256"]) == [0, 1, 7, 16]


def test_keylime_agent_json() -> None:
    text = keylime_string(keylime(), ("quote.bin", "sig.bin", "pcrblob.bin")).decode()
    log = (keylime() / "binary_bios_measurements").read_bytes()
    doc = {"code": 200, "results": {"quote": text, "hash_alg": "sha256",
                                    "mb_measurement_list": base64.b64encode(log).decode()}}
    wire = parse_tpm_evidence(decode_evidence(json.dumps(doc).encode()))
    assert wire.form == "keylime" and wire.event_log == log


@pytest.mark.parametrize(("text", "says"), [
    (b"r" + base64.b64encode(ATTEST) + b":AAAA", "3 ':'-separated"),
    (b"rAA!A:AAAA:AAAA", "not base64"),
    (b"r" + base64.b64encode(ATTEST) + b":" + base64.b64encode(SIG) + b":AAAA", "PCR blob"),
])
def test_keylime_malformed(text: bytes, says: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=says):
        parse_tpm_evidence(decode_evidence(text))


def _blob(*, count: int = 1, size: int = 3, lists: int = 1, digests: int = 4,
          length: int = 32, pad: int = 0) -> bytes:
    head = count.to_bytes(4, "little") + b"\x0b\x00" + bytes([size]) + b"\x83\x00\x01\x00\x00"
    head += bytes(8 * 15)
    body = lists.to_bytes(4, "little")
    for _ in range(lists):
        body += digests.to_bytes(4, "little")
        body += b"".join(length.to_bytes(2, "little") + bytes(64) for _ in range(8))
    return head + body + bytes(pad)


def test_pcr_blob_layout() -> None:
    assert sorted(parse_pcr_blob(_blob())["sha256"]) == [0, 1, 7, 16]


@pytest.mark.parametrize(("blob", "says"), [
    (_blob(count=17), "selection count"),
    (_blob(size=5), "sizeofSelect"),
    (_blob(digests=9), "count 9"),
    (_blob(digests=3), "selects 4 PCRs but holds 3"),
    (_blob(length=65), "size 65"),
    (_blob(length=20), "20 bytes, expected 32"),
    (_blob(pad=1), "bytes"),
    (_blob(lists=17), "digest lists"),
    (_blob()[:100], "shorter"),
])
def test_pcr_blob_malformed(blob: bytes, says: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=says):
        parse_pcr_blob(blob)


# -- Trustee ---------------------------------------------------------------------------------


def trustee(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "ak_public": base64.b64encode(b"spki").decode(),
        "tpm_quote": {"message": base64.b64encode(ATTEST).decode(),
                      "signature": base64.b64encode(SIG).decode(),
                      "pcrs": ["00" * 32, "07" * 32, "03" * 20]},
        "eventlog": base64.b64encode(b"log").decode()}
    doc.update(changes)
    return json.dumps(doc).encode()


def test_trustee_json() -> None:
    wire = parse_tpm_evidence(decode_evidence(trustee()))
    assert wire.form == "trustee" and wire.ak_public == b"spki" and wire.ak_public_form == "spki"
    assert wire.quotes[0].pcrs == {"sha256": {0: bytes(32), 7: b"\7" * 32},
                                   "sha1": {3: b"\3" * 20}}
    assert wire.event_log == b"log"
    wrapped = json.dumps({"primary_evidence": json.loads(trustee())}).encode()
    assert parse_tpm_evidence(decode_evidence(wrapped)) == wire


@pytest.mark.parametrize(("doc", "error", "says"), [
    (trustee(tpm_quote="x"), MalformedEvidenceError, "tpm_quote"),
    (trustee(tpm_quote={"message": "!!", "signature": "AA", "pcrs": []}),
     MalformedEvidenceError, "message"),
    (trustee(tpm_quote={"message": base64.b64encode(ATTEST).decode(), "signature": "AAAA",
                        "pcrs": ["00" * 32]}), MalformedEvidenceError, "selects 3"),
    (trustee(tpm_quote={"message": base64.b64encode(ATTEST).decode(), "signature": "AAAA",
                        "pcrs": "00"}), MalformedEvidenceError, "list"),
    (b'{"something": 1}', UnrecognizedEvidenceError, "neither"),
    (b"[1, 2]", UnrecognizedEvidenceError, "not an object"),
])
def test_trustee_malformed(doc: bytes, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        parse_tpm_evidence(decode_evidence(doc))


# -- go-tpm-tools -----------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [lambda b: b, base64.b64encode, base64.urlsafe_b64encode])
def test_go_tpm_tools(encode: object) -> None:
    raw = go_attestation(log=b"the log", cert=b"the cert")
    wire = parse_tpm_evidence(decode_evidence(encode(raw)))  # type: ignore[operator]
    assert wire.form == "go-tpm-tools" and wire.ak_public == b"TPMT_PUBLIC"
    assert wire.ak_public_form == "tpmt" and wire.ak_certificate == b"the cert"
    assert [q.pcrs for q in wire.quotes] == [
        {"sha256": {0: bytes(32), 7: b"\7" * 32}}, {"sha1": {3: bytes(20)}}]
    assert wire.intermediates == (b"inter0", b"inter1") and wire.event_log == b"the log"


@pytest.mark.parametrize(("raw", "says"), [
    (pb(2, pb_quote(0x000B, {})), "no ak_pub"),
    (pb(1, b"x") + pb(1, b"y") + pb(2, pb_quote(0x000B, {})), "singular"),
    (pb(1, 5) + pb(2, pb_quote(0x000B, {})), "wire type"),
    (pb(1, b"x") + pb(2, pb(1, ATTEST)), "raw_sig"),
    (pb(1, b"x") + pb(2, pb(1, ATTEST) + pb(2, SIG) + pb(3, pb(2, pb(1, 0)) * 2)), "twice"),
    (pb(1, b"x") + b"\x12\x7f", "past the end"),
    (b"\x0a" + b"\xff" * 11, "varint"),
    (b"\x0b", "group"),
])
def test_go_tpm_tools_malformed(raw: bytes, says: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=says):
        parse_tpm_evidence(decode_evidence(raw))


def test_go_unknown_bank() -> None:
    raw = pb(1, b"x") + pb(2, pb_quote(0x0012, {}))
    with pytest.raises(MalformedEvidenceError, match="0x0012"):
        parse_tpm_evidence(decode_evidence(raw))


def test_proto_depth_bounded() -> None:
    message = proto.read_message(b"", "m", depth=proto.MAX_DEPTH)
    with pytest.raises(MalformedEvidenceError, match="deeper"):
        message.child(b"", "inner")


# -- event logs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["binary_bios_measurements",
                                  "binary_bios_measurements-secureboot"])
def test_event_log(name: str) -> None:
    log = (keylime() / name).read_bytes()
    wire = parse_tpm_evidence(decode_evidence(log))
    assert wire.form == "eventlog" and wire.event_log == log and wire.quotes == ()


def test_malformed_event_log() -> None:
    log = (keylime() / "binary_bios_measurements").read_bytes()
    with pytest.raises(MalformedEvidenceError):
        parse_tpm_evidence(decode_evidence(log[:100]))


def test_unrecognized() -> None:
    with pytest.raises(UnrecognizedEvidenceError, match="not TPM evidence"):
        parse_tpm_evidence(decode_evidence(b"\x01\x02\x03 plainly not TPM evidence"))


def test_trustee_per_bank_json() -> None:
    ak = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    doc = {"ek_cert": None, "ak_pubkey": ak,
           "quote": {"SHA256": {"attest_body": base64.b64encode(ATTEST).decode(),
                                "attest_sig": base64.b64encode(SIG).decode(),
                                "pcrs": ["00" * 32, "07" * 32, "03" * 20]}},
           "eventlog": base64.b64encode(b"log").decode(), "aa_eventlog": "x"}
    wire = parse_tpm_evidence(decode_evidence(json.dumps(doc).encode()))
    assert wire.form == "trustee" and wire.ak_public is not None
    assert wire.ak_public.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert wire.quotes[0].pcrs["sha1"] == {3: b"\3" * 20} and wire.event_log == b"log"
    doc["quote"] = {}
    with pytest.raises(MalformedEvidenceError, match="banks"):
        parse_tpm_evidence(decode_evidence(json.dumps(doc).encode()))
    doc["quote"] = {"SHA256": "x"}
    with pytest.raises(MalformedEvidenceError, match="object"):
        parse_tpm_evidence(decode_evidence(json.dumps(doc).encode()))
