"""Bad SVSM vTPM input of every kind gives an evidence error (rejected) or an undecided one:
never a misuse error, a crash or a pass (STYLE §8). Random bytes; the genuine JSON with
every field replaced by junk; bit flips in every binary part; hostile challenge requests."""

from __future__ import annotations

import base64
import copy
import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.collateral import CollateralSource
from veritee.errors import EvidenceError, MalformedEvidenceError, UndecidedError
from veritee.evidence import Evidence, decode_evidence
from veritee.tee.snp.layout import SIGNED_SIZE
from veritee.tee.svsm import credential
from veritee.tee.svsm.verify import SvsmVtpmVerifier
from veritee.testing import pki
from veritee.testing.svsm import SvsmEmulator, emulated_roots

FUZZ = settings(deadline=None, max_examples=120,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
NONCE = bytes(range(64))
NOW = pki.now_utc()
KEY = b"k" * 32


@functools.cache
def _verifier() -> SvsmVtpmVerifier:
    return SvsmVtpmVerifier().with_roots(emulated_roots())


@functools.cache
def _ek_key() -> Any:
    return pki.load_key("svsm-vtpm-ek")


@functools.cache
def _genuine() -> dict[str, Any]:
    return SvsmEmulator(now=NOW).evidence(NONCE)


def _outcome(evidence: Evidence) -> None:
    try:
        _verifier().verify(evidence, report_data=NONCE, collateral=CollateralSource(), now=NOW)
    except (EvidenceError, UndecidedError):
        return
    pytest.fail("mutated evidence verified")


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    try:
        evidence = decode_evidence(data)
    except MalformedEvidenceError:
        return
    _outcome(evidence)


JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=50),
                 st.binary(max_size=80).map(lambda b: b.hex()),
                 st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
                 st.lists(st.integers(min_value=-5, max_value=300), max_size=20),
                 st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


PATHS = _paths(SvsmEmulator(now=NOW).evidence(NONCE))


@FUZZ
@given(st.sampled_from(PATHS), JUNK)
def test_every_field_replaced(path: tuple[Any, ...], junk: Any) -> None:
    document = copy.deepcopy(_genuine())
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = junk
    if _benign(path, junk):  # an optional field dropped, or the same value spelled otherwise
        return
    _outcome(Evidence.from_json(document))


def _benign(path: tuple[Any, ...], junk: Any) -> bool:
    if path == ("nonce",):
        return junk is None
    if path == ("vtpm_service_manifest_version",):
        return (junk == 0 and not isinstance(junk, bool)) or (
            isinstance(junk, str) and junk.strip().isdigit() and int(junk.strip()) == 0)
    return False


BINARY_FIELDS = [("sev_snp_attestation",), ("vtpm_service_manifest",), ("ak_public",),
                 ("tpm_quote", "message"), ("tpm_quote", "signature"),
                 ("activation", "credential")]


@FUZZ
@given(st.sampled_from(BINARY_FIELDS), st.data())
def test_bit_flips(path: tuple[str, ...], data: st.DataObject) -> None:
    document = copy.deepcopy(_genuine())
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    value = node[path[-1]]
    raw = bytes.fromhex(value) if path == ("sev_snp_attestation",) else base64.b64decode(value)
    # the SNP part: the signed report and its signature (the certificate table behind it
    # holds certificates a verifier may not need, like the pinned ARK)
    end = SIGNED_SIZE + 144 if path == ("sev_snp_attestation",) else len(raw)
    at = data.draw(st.integers(min_value=0, max_value=end - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    flipped = raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1:]
    cut = data.draw(st.booleans())
    if cut:
        flipped = flipped[:at]
    node[path[-1]] = (flipped.hex() if path == ("sev_snp_attestation",)
                      else base64.b64encode(flipped).decode())
    if not flipped:
        node[path[-1]] = ""
    _outcome(Evidence.from_json(document))


@FUZZ
@given(st.dictionaries(st.sampled_from(["ek-public", "ak-public", "x"]), JUNK, max_size=3))
def test_hostile_challenge_requests(extra: dict[str, Any]) -> None:
    try:
        credential.challenge_extra(extra, b"nonce", KEY)
    except EvidenceError:
        return
    pytest.fail("a junk auth request got a credential")


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_activation_of_junk_blobs(id_object: bytes, secret: bytes) -> None:
    try:
        credential.activate_credential(_ek_key(), b"\x00\x0b" + bytes(32), id_object, secret)
    except EvidenceError:
        return
    pytest.fail("junk activated")


@functools.cache
def _gotpm() -> bytes:
    return SvsmEmulator(now=NOW).go_tpm_tools(NONCE)


@FUZZ
@given(st.data())
def test_go_tpm_tools_mutations(data: st.DataObject) -> None:
    """Bit flips and cuts of the protobuf: rejected, or undecided (the form never verifies)."""
    blob = _gotpm()
    at = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    if data.draw(st.booleans()):
        blob = blob[:at]
    else:
        blob = blob[:at] + bytes([blob[at] ^ (1 << data.draw(st.integers(0, 7)))]) + blob[at + 1:]
    if blob:
        _outcome(Evidence(blob, "raw"))
