"""Bad SNP input of every kind gives an evidence error (rejected) or, where a needed input is
missing, an undecided one: never a misuse error, a crash, a hang or a pass.

Random bytes, every truncation, every single-bit flip, mutated certificate tables, broken
certificates in the table and among the endorsements, and JSON evidence with a wrong value
in every field (STYLE §8, DESIGN "done" item 6).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.collateral import CollateralSource
from veritee.errors import (
    ChainError,
    EvidenceError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UndecidedError,
)
from veritee.evidence import MAX_EVIDENCE_BYTES, decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp import certtable
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.layout import REPORT_SIZE, SIGNED_SIZE
from veritee.tee.snp.verify import SnpVerifier
from veritee.testing.snp import SnpEmulator

FUZZ = settings(deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIGNATURE_END = SIGNED_SIZE + 144  # R and S; reserved (must be zero) after them


@functools.cache
def verifier() -> SnpVerifier:
    v = get_verifier("snp", trust_emulated=True)
    assert isinstance(v, SnpVerifier)
    return v


@functools.cache
def emulator(product: str = "genoa", signer: str = "vcek", version: int = 5) -> SnpEmulator:
    return SnpEmulator(product=product, signer=signer, version=version)  # type: ignore[arg-type]


@functools.cache
def valid(product: str = "genoa", signer: str = "vcek", version: int = 5) -> tuple[bytes, bytes]:
    """(report, certificate table) of one emulated guest; the pair verifies."""
    emu = emulator(product, signer, version)
    return emu.report(bytes(range(64))), emu.cert_table()


Failure = EvidenceError | UndecidedError


def outcome(blob: bytes, blobs: tuple[bytes, ...] = (), *,
            emu: SnpEmulator | None = None) -> Failure | SnpClaims:
    """The evidence or undecided error verification raises, or the claims; anything else
    (a misuse error, any other exception) fails the test."""
    emu = emu or emulator()
    try:
        claims = verifier().verify(decode_evidence(blob), report_data=None,
                                   collateral=CollateralSource.of(*blobs), now=emu.now)
    except (EvidenceError, UndecidedError) as exc:
        return exc
    assert isinstance(claims, SnpClaims)
    return claims


def with_endorsements(report: bytes, blobs: tuple[bytes, ...]) -> Failure | SnpClaims | None:
    """:func:`outcome` for operator files, which may also be refused as unusable: None when
    the verifier named an endorsement file that holds nothing it can read."""
    try:
        return outcome(report, blobs)
    except MisuseError as exc:
        assert "endorsement file endorsement[" in exc.detail, exc.detail
        assert "holds no certificate or CRL" in exc.detail, exc.detail
        return None


def refused(blob: bytes, blobs: tuple[bytes, ...] = ()) -> Failure:
    result = outcome(blob, blobs)
    assert isinstance(result, EvidenceError | UndecidedError), "bad evidence verified"
    return result


def test_the_unmutated_input_verifies() -> None:
    report, table = valid()
    assert isinstance(outcome(report + table), SnpClaims)


# -- random bytes and truncations ----------------------------------------------------------------

INTERESTING_LENGTHS = (0, 1, 4, 23, 24, 47, 0x2A0, SIGNATURE_END, REPORT_SIZE - 1, REPORT_SIZE,
                       REPORT_SIZE + 1, REPORT_SIZE + 23, REPORT_SIZE + 24, REPORT_SIZE + 48,
                       2 * REPORT_SIZE, 8192)


@FUZZ
@given(st.sampled_from(INTERESTING_LENGTHS).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)))
def test_random_bytes_of_interesting_lengths(blob: bytes) -> None:
    refused(blob)


@FUZZ
@given(st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE + 256))
def test_random_bytes_behind_a_valid_header(tail: bytes) -> None:
    # Keep VERSION, POLICY and SIGNATURE_ALGO plausible so parsing reaches the crypto.
    report, _ = valid()
    blob = report[:0x10] + tail[0x10:0x34] + report[0x34:0x38] + tail[0x38:]
    refused(blob)


@FUZZ
@given(st.binary(max_size=REPORT_SIZE + 64))
def test_decode_evidence_only_raises_malformed(blob: bytes) -> None:
    with contextlib.suppress(MalformedEvidenceError):
        decode_evidence(blob)


def test_decode_evidence_refuses_oversize() -> None:
    with pytest.raises(MalformedEvidenceError, match="limit"):
        decode_evidence(b"\x02" * (MAX_EVIDENCE_BYTES + 1))


def test_every_truncation_of_a_report() -> None:
    report, _ = valid()
    for length in range(REPORT_SIZE):
        error = refused(report[:length])
        assert isinstance(error, MalformedEvidenceError), (length, error)


def test_every_truncation_of_an_extended_report() -> None:
    report, table = valid()
    blob = report + table
    for length in range(REPORT_SIZE, len(blob)):
        refused(blob[:length])


@pytest.mark.parametrize("field", ["outblob", "auxblob"])
def test_every_truncation_of_configfs_tsm_blobs(field: str) -> None:
    emu = emulator()
    report, table = valid()
    full = {"outblob": report, "auxblob": table}[field]
    for length in range(0, len(full), 7):
        document = {"outblob": base64.b64encode(report).decode(),
                    "auxblob": base64.b64encode(table).decode(), "provider": "sev_guest"}
        document[field] = base64.b64encode(full[:length]).decode()
        result = outcome(json.dumps(document).encode(), emu=emu)
        if field == "auxblob" and length == 0:
            continue  # no certificate table at all: undecided, tested elsewhere
        assert isinstance(result, EvidenceError | UndecidedError), length


# -- every single-bit flip ------------------------------------------------------------------------


@pytest.mark.parametrize(("product", "signer", "stride"),
                         [("genoa", "vcek", 1), ("turin", "vlek", 7), ("milan", "vcek", 11)])
def test_every_bit_flip_of_a_report(product: str, signer: str, stride: int) -> None:
    # Every one of the 9,472 flips for one guest (about 4 s of ECDSA); a sample for others.
    report, table = valid(product, signer)
    emu = emulator(product, signer)
    for bit in range(0, REPORT_SIZE * 8, stride):
        flipped = bytearray(report)
        flipped[bit // 8] ^= 1 << (bit % 8)
        result = outcome(bytes(flipped) + table, emu=emu)
        offset = bit // 8
        assert isinstance(result, EvidenceError | UndecidedError), (
            f"flip of bit {bit % 8} at {offset:#x} verified")
        if SIGNED_SIZE <= offset < SIGNATURE_END:
            assert type(result) is SignatureError, (offset, result)
        elif offset >= SIGNATURE_END:
            assert type(result) is MalformedEvidenceError, (offset, result)


# -- certificate tables -----------------------------------------------------------------------

GUIDS = st.sampled_from([g.bytes for g in certtable.KNOWN] + [bytes(16), b"\xff" * 16])


@FUZZ
@given(st.lists(st.tuples(GUIDS, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                max_size=5),
       st.binary(max_size=300), st.booleans())
def test_random_certificate_tables(entries: list[tuple[bytes, int, int]], body: bytes,
                                   terminate: bool) -> None:
    header = b"".join(g + o.to_bytes(4, "little") + n.to_bytes(4, "little")
                      for g, o, n in entries)
    table = header + (bytes(24) if terminate else b"") + body
    report, _ = valid()
    refused(report + table)
    emu = emulator()
    document = {"outblob": base64.b64encode(report).decode(),
                "auxblob": base64.b64encode(table).decode()}
    assert isinstance(outcome(json.dumps(document).encode(), emu=emu),
                      EvidenceError | UndecidedError)


@FUZZ
@given(st.data())
def test_mutated_certificate_table_header(data: st.DataObject) -> None:
    report, table = valid()
    header_size = 4 * certtable.ENTRY_SIZE
    mutated = bytearray(table)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, header_size - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    result = outcome(report + bytes(mutated))
    if isinstance(result, SnpClaims):
        # Only a mutation the table survives may pass: the report itself is untouched.
        assert result.report.raw == report


def _table(vek: bytes, ask: bytes, ark: bytes, *, signer: str = "vcek") -> bytes:
    guid = certtable.GUID_VLEK if signer == "vlek" else certtable.GUID_VCEK
    return certtable.build_cert_table([(certtable.GUID_ARK, ark), (certtable.GUID_ASK, ask),
                                       (guid, vek)])


def _certificate_mutations(der: bytes) -> Iterator[tuple[str, bytes]]:
    yield "empty", b""
    yield "one byte", der[:1]
    for cut in (2, 4, 10, len(der) // 2, len(der) - 1):
        yield f"truncated to {cut}", der[:cut]
    yield "pem of nothing", b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    yield "pem of garbage", b"-----BEGIN CERTIFICATE-----\nAAAA====\n-----END CERTIFICATE-----"
    yield "length says more", der[:2] + b"\xff" + der[3:]


@pytest.mark.parametrize("role", ["vek", "ask", "ark"])
def test_malformed_certificates_in_the_table(role: str) -> None:
    emu = emulator()
    report, _ = valid()
    for name, bad in _certificate_mutations(emu.chain[role]):
        chain = {**emu.chain, role: bad}
        result = outcome(report + _table(chain["vek"], chain["ask"], chain["ark"]))
        # A certificate entry of the evidence that does not parse is malformed evidence; an
        # empty entry makes the bytes no certificate table at all (the VCEK is then missing).
        expected = (MalformedEvidenceError, UndecidedError) if name == "empty" else (
            MalformedEvidenceError)
        assert isinstance(result, expected), (role, name, result)
    # Bytes after a complete certificate (padding in a table entry) are ignored.
    padded = {**emu.chain, role: emu.chain[role] + b"\x00\x01"}
    assert isinstance(outcome(report + _table(padded["vek"], padded["ask"], padded["ark"])),
                      SnpClaims)


@FUZZ
@given(st.sampled_from(["vek", "ask", "ark"]), st.data())
def test_certificates_with_a_flipped_byte(role: str, data: st.DataObject) -> None:
    emu = emulator()
    report, _ = valid()
    der = bytearray(emu.chain[role])
    at = data.draw(st.integers(0, len(der) - 1))
    der[at] ^= data.draw(st.integers(1, 255))
    chain = {**emu.chain, role: bytes(der)}
    table = _table(chain["vek"], chain["ask"], chain["ark"])
    result = outcome(report + table)
    if isinstance(result, SnpClaims):
        # The VCEK's key and TBS are signed: a pass means the flip hit bytes no check
        # depends on (the outer signature algorithm), or an ASK/ARK copy that the pinned
        # bundle replaces.
        assert result.report.raw == report
    blobs = (bytes(der),) if role == "vek" else (emu.chain["vek"], bytes(der))
    assert isinstance(with_endorsements(report, blobs),
                      EvidenceError | UndecidedError | SnpClaims | None)


def test_vcek_with_a_duplicate_extension_is_a_chain_error() -> None:
    # Found by test_certificates_with_a_flipped_byte: cryptography parses extensions lazily
    # and raises DuplicateExtension (not a ValueError) on first access.
    emu = emulator()
    report, _ = valid()
    tee_spl = bytes.fromhex("060a2b06010401" "9c78" "010302")  # OID 1.3.6.1.4.1.3704.1.3.2
    vek = emu.chain["vek"]
    assert vek.count(tee_spl) == 1
    duplicate = vek.replace(tee_spl, tee_spl[:-1] + b"\x01")  # teeSPL → a second blSPL
    result = outcome(report + _table(duplicate, emu.chain["ask"], emu.chain["ark"]))
    assert type(result) is ChainError and "do not parse" in result.detail


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["vek", "ask", "ark"]))
def test_random_der_in_table_and_endorsements(garbage: bytes, role: str) -> None:
    emu = emulator()
    report, _ = valid()
    for blob in (b"\x30\x82" + len(garbage).to_bytes(2, "big") + garbage, garbage):
        chain = {**emu.chain, role: blob}
        result = outcome(report + _table(chain["vek"], chain["ask"], chain["ark"]))
        if role == "vek":
            assert isinstance(result, EvidenceError | UndecidedError)
        assert isinstance(with_endorsements(report, (blob,)),
                          EvidenceError | UndecidedError | None)


@FUZZ
@given(st.booleans(), st.data())
def test_crls_with_a_flipped_byte(revoking: bool, data: st.DataObject) -> None:
    emu = emulator()
    report, table = valid()
    crl = bytearray(emu.crl(revoke_intermediate=revoking))
    at = data.draw(st.integers(0, len(crl) - 1))
    crl[at] ^= data.draw(st.integers(1, 255))
    result = with_endorsements(report + table, (bytes(crl),))
    if isinstance(result, SnpClaims):
        assert not revoking or result.revocation == "not_checked"


# -- JSON evidence with a wrong value in every field ------------------------------------------

BAD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**64, 2**1000, -(2**70), float("inf"), "", "zz", "0x",
    "\ud800", "-----BEGIN CERTIFICATE-----", [], [256], [-1], [True], ["a"], [[1]], {},
    {"a": {"b": [None]}}, {"0": 1, "1": 2}, "A" * 5000, list(range(200)),
]


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into ``document`` (lists: every index of short lists, first of long)."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list) and document and not isinstance(document[0], int):
        for index in range(len(document)):
            yield (*prefix, index)
            yield from _paths(document[index], (*prefix, index))


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(document)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _documents() -> dict[str, dict[str, Any]]:
    emu = emulator()
    report, table = valid()
    coco = emu.coco_evidence(bytes(64))
    return {
        "coco": coco,
        "kbs": {"primary_evidence": coco},
        "configfs-tsm": {"outblob": base64.urlsafe_b64encode(report).decode(),
                         "auxblob": base64.urlsafe_b64encode(table).decode(),
                         "provider": "sev_guest\n"},
    }


@pytest.mark.parametrize("form", ["coco", "configfs-tsm", "kbs"])
def test_wrong_value_in_every_json_field(form: str) -> None:
    document = _documents()[form]
    original = outcome(json.dumps(document).encode())
    assert isinstance(original, SnpClaims)
    # The KBS wrapper holds the CoCo document: only its own key is new.
    paths = [("primary_evidence",)] if form == "kbs" else list(_paths(document))
    for path in paths:
        for value in BAD_VALUES:
            result = outcome(json.dumps(_replaced(document, path, value)).encode())
            if isinstance(result, SnpClaims):
                # A pass: the value was the original one (0 for 0), or it sits where the
                # verifier may ignore it (the configfs-tsm provider when not text, an ASK or
                # ARK that the pinned bundle replaces). The report is the signed one.
                assert result.report.raw == original.report.raw, (path, value)
                assert path[0] in ("provider", "cert_chain") or value in (0, None), path


JSON_GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["outblob", "auxblob", "attestation_report", "cert_chain", "report",
                         "primary_evidence", "quote", "signature", "r", "s", "cert_type",
                         "data", "version", "reported_tcb", "chip_id", "x"]),
        children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(JSON_GARBAGE)
def test_nested_json_garbage(document: Any) -> None:
    text = json.dumps(document).encode()
    refused(text)
    refused(json.dumps({"primary_evidence": document}).encode())
    refused(json.dumps({"primary_evidence": json.dumps(document)}).encode())


@FUZZ
@given(st.sampled_from(["coco", "configfs-tsm"]), st.data())
def test_random_fields_replaced_by_garbage(form: str, data: st.DataObject) -> None:
    document = _documents()[form]
    paths = list(_paths(document))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        document = _replaced(document, path, data.draw(JSON_GARBAGE))
        paths = list(_paths(document)) or paths
    outcome(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep primary_evidence", '{"primary_evidence":' * 5000 + "{}" + "}" * 5000),
        ("deep primary_evidence string", json.dumps({"primary_evidence": "{" * 50_000})),
        ("deep quote nesting", '{"quote":' * 400 + '"AA"' + "}" * 400),
        ("huge integer", '{"attestation_report": {"version": ' + "9" * 10_000 + "}}"),
        ("lone surrogate", '{"outblob": "\\ud800"}'),
        ("evidence as a JSON string", json.dumps(json.dumps({"outblob": "AA"}))),
    ],
)
def test_pathological_json(name: str, text: str) -> None:
    refused(text.encode())
