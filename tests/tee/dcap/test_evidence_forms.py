"""Every wire form of DCAP evidence decodes to the same quote bytes: raw, hex, base64 and
base64url (padded or not), the CoCo attester JSON of TDX (current and older) and of SGX, KBS
wrappers and configfs-tsm JSON. Bad input gives a malformed or unrecognised evidence error that
names the field (STYLE §8, §9).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import corpus_dir, manifest
from veritee.errors import MalformedEvidenceError, UnrecognizedEvidenceError
from veritee.evidence import MAX_EVIDENCE_BYTES, Evidence, decode_evidence
from veritee.tee.dcap.evidence import DcapEvidence, decode_dcap_evidence, parse_dcap_evidence
from veritee.tee.dcap.quote import MAX_QUOTE_BYTES, parse_quote

FUZZ = settings(deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

QUOTES = [e for e in manifest("intel") if "version" in (e.get("expected") or {})]
#: Stands in for a quote where the corpus is absent: evidence decoding never parses the quote.
FAKE_QUOTE = bytes([4, 0, 2, 0, 0x81]) + bytes(range(200)) * 5


def _params(entries: list[dict[str, Any]]) -> list[Any]:
    if entries:
        return [pytest.param(e, id=e["file"]) for e in entries]
    return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
        reason="corpus folder intel is absent (set VERITEE_CORPUS)"))]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


# (form name, expected DcapEvidence.form, blob from quote bytes)
FORMS: list[tuple[str, str, Callable[[bytes], bytes]]] = [
    ("raw", "raw", lambda q: q),
    ("hex", "hex", lambda q: q.hex().encode()),
    ("hex upper with 0x and newline", "hex", lambda q: b"0x" + q.hex().upper().encode() + b"\n"),
    ("hex wrapped in lines", "hex",
     lambda q: b"\n".join(q.hex().encode()[i : i + 64] for i in range(0, 2 * len(q), 64))),
    ("base64", "base64", lambda q: _b64(q).encode()),
    ("base64 unpadded", "base64", lambda q: _b64(q).rstrip("=").encode()),
    ("base64 in MIME lines", "base64", base64.encodebytes),
    ("base64url", "base64", lambda q: _b64url(q).encode()),
    ("base64url unpadded", "base64", lambda q: _b64url(q).rstrip("=").encode()),
    ("coco tdx", "coco", lambda q: json.dumps({"cc_eventlog": None, "quote": _b64(q)}).encode()),
    ("coco tdx without the event log key", "coco", lambda q: json.dumps({"quote": _b64(q)})
     .encode()),
    ("coco tdx with an empty event log", "coco",
     lambda q: json.dumps({"cc_eventlog": "", "quote": _b64(q)}).encode()),
    ("coco older tdx form", "coco", lambda q: json.dumps(
        {"cc_eventlog": None, "quote": _b64(q), "aa_eventlog": None}).encode()),
    ("coco sgx", "coco", lambda q: json.dumps({"quote": _b64(q)}).encode()),
    ("coco quote as base64url", "coco", lambda q: json.dumps({"quote": _b64url(q)}).encode()),
    ("coco quote as a byte list", "coco", lambda q: json.dumps({"quote": list(q)}).encode()),
    ("coco quote as hex", "coco", lambda q: json.dumps({"quote": q.hex()}).encode()),
    ("kbs primary_evidence", "coco", lambda q: json.dumps(
        {"primary_evidence": {"cc_eventlog": None, "quote": _b64(q)}}).encode()),
    ("kbs primary_evidence as a JSON string", "coco", lambda q: json.dumps(
        {"primary_evidence": json.dumps({"quote": _b64(q)})}).encode()),
    ("kbs primary_evidence as quote text", "coco", lambda q: json.dumps(
        {"primary_evidence": _b64(q)}).encode()),
    ("configfs-tsm", "configfs-tsm", lambda q: json.dumps(
        {"outblob": _b64url(q), "provider": "tdx_guest"}).encode()),
    ("configfs-tsm without provider", "configfs-tsm", lambda q: json.dumps(
        {"outblob": _b64(q)}).encode()),
    ("configfs-tsm provider with newline", "configfs-tsm", lambda q: json.dumps(
        {"outblob": _b64(q), "provider": "tdx_guest\n", "auxblob": ""}).encode()),
]


@pytest.mark.parametrize(("name", "form", "build"), FORMS, ids=[f[0] for f in FORMS])
def test_every_form_of_a_fake_quote(name: str, form: str,
                                    build: Callable[[bytes], bytes]) -> None:
    evidence = decode_dcap_evidence(build(FAKE_QUOTE))
    assert evidence.quote == FAKE_QUOTE and evidence.form == form, name
    assert evidence.cc_eventlog is None and evidence.aa_eventlog is None


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_every_form_of_every_corpus_quote(entry: dict[str, Any]) -> None:
    quote = decode_evidence((corpus_dir("intel") / entry["file"]).read_bytes()).data
    reference = parse_quote(quote).to_bytes()
    for name, form, build in FORMS:
        evidence = decode_dcap_evidence(build(quote))
        assert evidence.form == form, name
        assert evidence.quote == quote, name
        assert parse_quote(evidence.quote).to_bytes() == reference, name


@pytest.mark.parametrize("entry", _params(QUOTES))
def test_the_corpus_file_as_it_is(entry: dict[str, Any]) -> None:
    blob = (corpus_dir("intel") / entry["file"]).read_bytes()
    evidence = decode_dcap_evidence(blob)
    assert evidence.form == ("hex" if entry["file"].endswith(".hex") else "raw")
    assert parse_quote(evidence.quote).version == entry["expected"]["version"]


def test_the_real_ccel_rides_with_its_quote() -> None:
    folder = corpus_dir("intel") / "go-tdx-guest/testing/testdata/ccel"
    quote, ccel = (folder / "cos-113-tdx-quote.dat").read_bytes(), (
        folder / "ccel_data.dat").read_bytes()
    document = {"cc_eventlog": _b64(ccel), "quote": _b64(quote)}
    evidence = decode_dcap_evidence(json.dumps(document).encode())
    assert evidence == DcapEvidence(quote, "coco", ccel, None)
    kbs = parse_dcap_evidence(Evidence.from_json({"primary_evidence": document}))
    assert kbs.cc_eventlog == ccel and kbs.quote == quote


def test_the_older_form_keeps_the_aa_eventlog_text() -> None:
    aael = "INIT sha384/" + "00" * 48 + "\ngithub.com/confidential-containers PullImage {}\n"
    document = {"cc_eventlog": _b64(b"\x01\x02\x03"), "quote": _b64(FAKE_QUOTE),
                "aa_eventlog": aael}
    evidence = decode_dcap_evidence(json.dumps(document).encode())
    assert evidence == DcapEvidence(FAKE_QUOTE, "coco", b"\x01\x02\x03", aael)


def test_a_parsed_kbs_document_is_read_as_it_is() -> None:
    evidence = parse_dcap_evidence(Evidence.from_json({"quote": _b64(FAKE_QUOTE)}))
    assert evidence.quote == FAKE_QUOTE
    assert parse_dcap_evidence(Evidence.from_json(_b64(FAKE_QUOTE))).form == "base64"


# -- bad input -------------------------------------------------------------------------------------

Q = _b64(FAKE_QUOTE)


def _doc(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# (name, blob, exact error, text the message holds)
BAD: list[tuple[str, bytes, type[Exception], str]] = [
    ("empty", b"", MalformedEvidenceError, "empty"),
    ("more than 4 MiB", b"\x04" * (MAX_EVIDENCE_BYTES + 1), MalformedEvidenceError, "limit"),
    ("raw quote over 1 MiB", FAKE_QUOTE + bytes(MAX_QUOTE_BYTES), MalformedEvidenceError,
     "limit"),
    ("too short to be a quote", b"\x04\x00\x02\x00" * 5, UnrecognizedEvidenceError,
     "48-byte header"),
    ("not JSON after a brace", b'{"quote": ', MalformedEvidenceError, "not valid JSON"),
    ("JSON nested beyond reading", b"[" * 100_000, MalformedEvidenceError, "not valid JSON"),
    ("a JSON list", b"[1, 2, 3]", MalformedEvidenceError, "must be an object, got list"),
    ("deep primary_evidence", b'{"primary_evidence":' * 20 + b"{}" + b"}" * 20,
     MalformedEvidenceError, "primary_evidence"),
    ("primary_evidence holding a number", _doc(primary_evidence=5), MalformedEvidenceError,
     "must be an object, got int"),
    ("another TEE's JSON", _doc(attestation_report={"version": 2}, cert_chain=[]),
     UnrecognizedEvidenceError, "attestation_report"),
    ("an empty object", b"{}", UnrecognizedEvidenceError, "none of the keys"),
    ("quote empty", _doc(quote=""), MalformedEvidenceError, "quote is empty"),
    ("quote an empty list", _doc(quote=[]), MalformedEvidenceError, "quote is empty"),
    ("quote null", _doc(quote=None), MalformedEvidenceError, "quote must be a string"),
    ("quote a number", _doc(quote=5), MalformedEvidenceError, "quote must be a string"),
    ("quote an object", _doc(quote={"a": 1}), MalformedEvidenceError, "got dict"),
    ("quote a boolean", _doc(quote=True), MalformedEvidenceError, "got bool"),
    ("quote not base64", _doc(quote="!!!!"), MalformedEvidenceError, "quote is neither"),
    ("quote with a byte over 255", _doc(quote=[256] * 60), MalformedEvidenceError, "quote"),
    ("quote short", _doc(quote=_b64(bytes(40))), MalformedEvidenceError,
     "shorter than a quote header"),
    ("quote decoding to over 1 MiB", _doc(quote=_b64(bytes(MAX_QUOTE_BYTES + 1))),
     MalformedEvidenceError, "quote is 1048577 bytes"),
    ("quote text longer than any quote", _doc(quote="A" * (3 * MAX_QUOTE_BYTES)),
     MalformedEvidenceError, "characters long"),
    ("quote with a lone surrogate", b'{"quote": "\\ud800"}', MalformedEvidenceError,
     "quote holds non-ASCII"),
    ("cc_eventlog a number", _doc(quote=Q, cc_eventlog=7), MalformedEvidenceError,
     "cc_eventlog must be"),
    ("cc_eventlog not base64", _doc(quote=Q, cc_eventlog="%%%"), MalformedEvidenceError,
     "cc_eventlog is neither"),
    ("cc_eventlog an object", _doc(quote=Q, cc_eventlog={}), MalformedEvidenceError,
     "cc_eventlog"),
    ("cc_eventlog with a lone surrogate", b'{"quote": "' + Q.encode() +
     b'", "cc_eventlog": "\\udfff"}', MalformedEvidenceError, "cc_eventlog"),
    ("aa_eventlog a list", _doc(quote=Q, aa_eventlog=["a"]), MalformedEvidenceError,
     "aa_eventlog must be a string"),
    ("aa_eventlog with a lone surrogate", b'{"quote": "' + Q.encode() +
     b'", "aa_eventlog": "x\\ud800"}', MalformedEvidenceError, "aa_eventlog is not valid"),
    ("configfs-tsm of another TEE", _doc(outblob=Q, provider="sev_guest"),
     MalformedEvidenceError, "provider is 'sev_guest'"),
    ("configfs-tsm outblob null", _doc(outblob=None, provider="tdx_guest"),
     MalformedEvidenceError, "outblob must be"),
    ("configfs-tsm outblob short", _doc(outblob=_b64(bytes(10))), MalformedEvidenceError,
     "outblob is 10 bytes"),
    ("configfs-tsm outblob over 1 MiB", _doc(outblob=_b64(bytes(MAX_QUOTE_BYTES + 1))),
     MalformedEvidenceError, "outblob is 1048577 bytes"),
]


@pytest.mark.parametrize(("name", "blob", "error", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(name: str, blob: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(MalformedEvidenceError) as info:
        decode_dcap_evidence(blob)
    assert type(info.value) is error, info.value
    assert text in info.value.detail, info.value.detail


def test_an_oversized_parsed_document_is_refused() -> None:
    evidence = Evidence.from_json({"quote": "A" * (MAX_EVIDENCE_BYTES + 1)})
    with pytest.raises(MalformedEvidenceError, match="limit") as info:
        parse_dcap_evidence(evidence)
    assert type(info.value) is MalformedEvidenceError


JSON_GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from([Q, "", _b64(bytes(47)), "0x" + FAKE_QUOTE.hex()]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["quote", "cc_eventlog", "aa_eventlog", "outblob", "auxblob",
                         "provider", "primary_evidence", "x"]), children, max_size=4),
    max_leaves=20,
)


def _refused_or_read(blob: bytes) -> None:
    try:
        evidence = decode_dcap_evidence(blob)
    except MalformedEvidenceError as exc:
        assert exc.detail
        return
    assert isinstance(evidence.quote, bytes) and 48 <= len(evidence.quote) <= MAX_QUOTE_BYTES
    assert evidence.cc_eventlog is None or isinstance(evidence.cc_eventlog, bytes)
    assert evidence.aa_eventlog is None or isinstance(evidence.aa_eventlog, str)


@FUZZ
@given(JSON_GARBAGE)
def test_json_garbage_is_refused_or_read(document: Any) -> None:
    _refused_or_read(json.dumps(document).encode())
    _refused_or_read(json.dumps({"primary_evidence": document}).encode())
    _refused_or_read(json.dumps({"primary_evidence": json.dumps(document)}).encode())


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_are_refused_or_read(blob: bytes) -> None:
    _refused_or_read(blob)


@FUZZ
@given(st.text(max_size=300))
def test_random_text_is_refused_or_read(text: str) -> None:
    _refused_or_read(text.encode("utf-8", "surrogatepass"))
