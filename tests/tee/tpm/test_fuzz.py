"""Random and mutated TPM evidence: only the specific typed errors, never a traceback, and a
mutated signed byte never verifies."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from veritee.collateral import CollateralSource
from veritee.errors import EvidenceError, MalformedEvidenceError, UndecidedError
from veritee.evidence import Evidence, decode_evidence
from veritee.tee.tpm import proto
from veritee.tee.tpm.evidence import parse_pcr_blob
from veritee.tee.tpm.structures import (
    PcrSelection,
    build_attest,
    build_public,
    build_signature,
    parse_attest,
    parse_public,
    parse_public_2b,
    parse_signature,
    pcr_digest,
)
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing import pki

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NONCE = b"fuzz-nonce"
VALUES = {i: bytes([i]) * 32 for i in (0, 1, 7)}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@cache
def ak() -> Any:
    return pki.load_key("tpm-ak")


@cache
def good() -> tuple[bytes, bytes, bytes]:
    """(TPMS_ATTEST, TPMT_SIGNATURE, tpm2-tools PCR blob) of one valid quote."""
    attest = build_attest(qualified_signer=b"\0\x0b" + bytes(32), extra_data=NONCE,
                          pcr_select=[PcrSelection("sha256", (0, 1, 7))],
                          pcr_digest=pcr_digest(list(VALUES.values()), "sha256"))
    sig = build_signature("rsassa", "sha256",
                          ak().sign(attest, padding.PKCS1v15(), hashes.SHA256()))
    head = (1).to_bytes(4, "little") + b"\x0b\x00\x03\x83\x00\x00\x00\x00" + bytes(8 * 15)
    body = (1).to_bytes(4, "little") + (3).to_bytes(4, "little")
    body += b"".join(b"\x20\x00" + v + bytes(32) for v in VALUES.values())
    body += bytes(5 * 66)
    return attest, sig, head + body


def keylime(attest: bytes, sig: bytes, blob: bytes) -> bytes:
    return b"r" + b":".join(base64.b64encode(p) for p in (attest, sig, blob))


def ak_pem() -> bytes:
    return bytes(ak().public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))


def verify(evidence: Evidence, *files: bytes) -> Any:
    return TpmVerifier().verify(evidence, report_data=NONCE,
                                collateral=CollateralSource.of(*files), now=NOW)


def test_good_fixture_verifies() -> None:
    verify(decode_evidence(keylime(*good())), ak_pem())


def _mutate(data: bytes, at: int, bit: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1:]


# -- structure parsers ---------------------------------------------------------------------------

PARSERS = [parse_attest, parse_signature, parse_public, parse_public_2b, parse_pcr_blob,
           proto.parse_attestation]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@FUZZ
@given(data=st.binary(max_size=700))
def test_random_bytes(parser: Any, data: bytes) -> None:
    with contextlib.suppress(MalformedEvidenceError):
        parser(data)


@FUZZ
@given(at=st.integers(0, 10_000), bit=st.integers(0, 7), cut=st.integers(0, 10_000))
def test_mutated_structures(at: int, bit: int, cut: int) -> None:
    attest, sig, blob = good()
    public = build_public(ak().public_key())
    for parser, data in ((parse_attest, attest), (parse_signature, sig),
                         (parse_public, public), (parse_pcr_blob, blob)):
        for candidate in (_mutate(data, at, bit), data[:cut % len(data)],
                          data + bytes([bit])):
            with contextlib.suppress(MalformedEvidenceError):
                parser(candidate)


# -- whole evidence through the verifier ----------------------------------------------------------


def _only_typed(evidence: bytes, *files: bytes) -> Any:
    try:
        parsed = decode_evidence(evidence)
    except MalformedEvidenceError:
        return None
    try:
        return verify(parsed, *files)
    except (EvidenceError, UndecidedError):
        return None


@FUZZ
@given(part=st.integers(0, 1), at=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_flipped_signed_bytes_never_verify(part: int, at: int, bit: int) -> None:
    pieces = list(good())
    pieces[part] = _mutate(pieces[part], at, bit)
    assert _only_typed(keylime(*pieces), ak_pem()) is None


@FUZZ
@given(at=st.integers(0, 10_000), bit=st.integers(0, 7), cut=st.integers(0, 10_000))
def test_mutated_keylime_string(at: int, bit: int, cut: int) -> None:
    text = keylime(*good())
    _only_typed(_mutate(text, at, bit), ak_pem())
    _only_typed(text[:cut % len(text)], ak_pem())


def _trustee(attest: bytes, sig: bytes) -> dict[str, Any]:
    spki = ak().public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"ak_public": base64.b64encode(spki).decode(),
            "tpm_quote": {"message": base64.b64encode(attest).decode(),
                          "signature": base64.b64encode(sig).decode(),
                          "pcrs": [v.hex() for v in VALUES.values()]}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)


@FUZZ
@given(field=st.sampled_from(["ak_public", "tpm_quote", "message", "signature", "pcrs",
                              "eventlog"]), value=json_values)
@example(field="message", value="\ud800")
@example(field="pcrs", value=["\udfff"])
@example(field="tpm_quote", value='{"message": "' + "[" * 5000)
def test_trustee_fields(field: str, value: Any) -> None:
    doc = _trustee(*good()[:2])
    if field in ("message", "signature", "pcrs"):
        doc["tpm_quote"][field] = value
    else:
        doc[field] = value
    with contextlib.suppress(EvidenceError, UndecidedError):
        verify(Evidence.from_json(doc), ak_pem())


def test_deep_nesting_and_surrogates() -> None:
    for blob in (b"[" * 100_000, b'{"tpm_quote":' * 5000, b'{"tpm_quote": "\\ud800"}',
                 json.dumps({"primary_evidence": {"primary_evidence": "\ud800"}}).encode()):
        assert _only_typed(blob, ak_pem()) is None
    with pytest.raises(MalformedEvidenceError):
        verify(Evidence.from_json("\ud800"), ak_pem())


@FUZZ
@given(at=st.integers(0, 10_000), bit=st.integers(0, 7), cut=st.integers(0, 10_000))
def test_mutated_go_attestation(at: int, bit: int, cut: int) -> None:
    attest, sig, _ = good()
    entries = b"".join(b"\x12" + bytes([36]) + b"\x08" + bytes([i]) + b"\x12\x20" + v
                       for i, v in VALUES.items())
    pcrs = b"\x08\x0b" + entries
    q = b"\x0a" + _len(attest) + attest + b"\x12" + _len(sig) + sig + b"\x1a" + _len(pcrs) + pcrs
    public = build_public(ak().public_key())
    raw = b"\x0a" + _len(public) + public + b"\x12" + _len(q) + q
    assert _only_typed(raw, ak_pem()) is not None  # the unmutated one verifies
    _only_typed(_mutate(raw, at, bit), ak_pem())
    _only_typed(raw[:cut % len(raw)], ak_pem())


def _len(data: bytes) -> bytes:
    n, out = len(data), b""
    while True:
        out += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out
