"""TPM 2.0 marshalling: builders and parsers round-trip, the keylime sample reads as the
research note's §3.1 table says, and every malformed structure is refused by name."""

from __future__ import annotations

import hashlib
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from conftest import corpus_dir
from veritee.errors import MalformedEvidenceError, UnsupportedVersionError
from veritee.tee.tpm.structures import (
    AK_ATTRIBUTES,
    EK_ATTRIBUTES,
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    build_attest,
    build_public,
    build_signature,
    marshal_attest,
    marshal_pcr_selection,
    name_of,
    parse_attest,
    parse_public,
    parse_public_2b,
    parse_signature,
    pcr_digest,
)
from veritee.testing import pki


@cache
def key(name: str) -> Any:
    return pki.load_key(name)


def keylime() -> Path:
    return corpus_dir("ibm-tpm-gpu", "tpm", "keylime")


# -- the keylime sample, field by field (research note §3.1 table) -------------------------


def test_keylime_sample_layout() -> None:
    raw = (keylime() / "quote.bin").read_bytes()
    assert len(raw) == 133
    assert raw[0x00:0x04].hex() == "ff544347" and raw[0x04:0x06].hex() == "8018"
    assert raw[0x06:0x08] == b"\x00\x22" and raw[0x2A:0x2C] == b"\x00\x14"
    attest = parse_attest(raw)
    assert attest.type == TPM_ST_ATTEST_QUOTE
    assert attest.qualified_signer.hex().startswith("000b38b5")
    assert attest.qualified_signer.hex().endswith("0334")
    assert attest.extra_data == b"Ai5M5SjYjnkyv4P7itH1"
    assert (attest.clock, attest.reset_count, attest.restart_count, attest.safe) == (
        1284787942, 3, 0, True)
    assert raw[0x51:0x59].hex() == "2019102300163636"
    assert attest.firmware_version == 0x2019102300163636
    assert raw[0x59:0x5D] == b"\0\0\0\1" and raw[0x5D:0x63].hex() == "000b03000001"
    assert attest.pcr_select == (PcrSelection("sha256", (16,)),)
    assert attest.pcr_digest.hex().startswith("6d4d3749") and raw[0x63:0x65] == b"\0\x20"
    assert marshal_attest(attest) == raw


def test_keylime_signature() -> None:
    sig = parse_signature((keylime() / "sig.bin").read_bytes())
    assert (sig.alg, sig.hash, len(sig.signature)) == ("rsassa", "sha256", 256)
    assert build_signature(sig.alg, sig.hash, sig.signature) == sig.raw


def test_swtpm_ek_template() -> None:
    """swtpm's EK is the TCG default RSA-2048 template (EK profile L-1)."""
    raw = (corpus_dir("ibm-tpm-gpu", "tpm", "swtpm") / "ek.pub").read_bytes()
    public = parse_public_2b(raw)
    assert (public.type, public.name_alg, public.attributes) == ("rsa", "sha256", EK_ATTRIBUTES)
    assert public.auth_policy.hex() == (
        "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
    assert public.symmetric == (TPM_ALG_AES, 128, TPM_ALG_CFB) and public.scheme is None
    rebuilt = build_public(public.key, attributes=public.attributes,
                           auth_policy=public.auth_policy, symmetric=public.symmetric)
    assert rebuilt == public.raw
    assert public.name == b"\x00\x0b" + hashlib.sha256(public.raw).digest()


# -- round trips ------------------------------------------------------------------------------

banks = st.sampled_from(["sha1", "sha256", "sha384", "sha512"])
selections = st.lists(
    st.tuples(banks, st.sets(st.integers(0, 31), max_size=32)), max_size=4,
    unique_by=lambda s: s[0]).map(
    lambda items: [PcrSelection(b, tuple(sorted(i))) for b, i in items])
u64, u32 = st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)


@given(signer=st.binary(max_size=66), extra=st.binary(max_size=66), clock=u64,
       reset=u32, restart=u32, safe=st.booleans(), firmware=u64, select=selections,
       digest=st.binary(max_size=64))
def test_quote_round_trip(*, signer: bytes, extra: bytes, clock: int, reset: int, restart: int,
                          safe: bool, firmware: int, select: list[PcrSelection],
                          digest: bytes) -> None:
    raw = build_attest(qualified_signer=signer, extra_data=extra, clock=clock,
                       reset_count=reset, restart_count=restart, safe=safe,
                       firmware_version=firmware, pcr_select=select, pcr_digest=digest)
    attest = parse_attest(raw)
    assert (attest.qualified_signer, attest.extra_data, attest.clock, attest.reset_count,
            attest.restart_count, attest.safe, attest.firmware_version) == (
        signer, extra, clock, reset, restart, safe, firmware)
    assert attest.pcr_select == tuple(select) and attest.pcr_digest == digest
    assert attest.certified_name is None and marshal_attest(attest) == raw


@given(name=st.binary(max_size=66), qualified=st.binary(max_size=66), extra=st.binary(max_size=8))
def test_certify_round_trip(name: bytes, qualified: bytes, extra: bytes) -> None:
    raw = build_attest(qualified_signer=b"\0\x0b" + bytes(32), extra_data=extra,
                       type=TPM_ST_ATTEST_CERTIFY, certified_name=name,
                       certified_qualified_name=qualified)
    attest = parse_attest(raw)
    assert attest.type == TPM_ST_ATTEST_CERTIFY and attest.pcr_select == ()
    assert (attest.certified_name, attest.certified_qualified_name) == (name, qualified)
    assert marshal_attest(attest) == raw


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("alg", ["rsassa", "rsapss", "ecdsa"])
def test_signature_round_trip(alg: str, hash_name: str) -> None:
    algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                 "sha512": hashes.SHA512()}[hash_name]
    if alg == "ecdsa":
        der = key("tpm-ak-p256").sign(b"m", ec.ECDSA(algorithm))
    elif alg == "rsapss":
        der = key("tpm-ak").sign(b"m", padding.PSS(padding.MGF1(algorithm),
                                                   algorithm.digest_size), algorithm)
    else:
        der = key("tpm-ak").sign(b"m", padding.PKCS1v15(), algorithm)
    raw = build_signature(alg, hash_name, der)  # type: ignore[arg-type]
    sig = parse_signature(raw)
    assert (sig.alg, sig.hash, sig.signature, sig.raw) == (alg, hash_name, der, raw)
    if alg == "ecdsa":  # r and s at the curve's size, as TPMs write them
        assert struct.unpack(">H", raw[4:6])[0] == 32


@pytest.mark.parametrize("name", ["tpm-ak", "tpm-ak-p256"])
def test_public_round_trip(name: str) -> None:
    public_key = key(name).public_key()
    raw = build_public(public_key)
    public = parse_public(raw)
    assert public.restricted_signing and public.attributes == AK_ATTRIBUTES
    assert public.scheme == ("rsassa" if name == "tpm-ak" else "ecdsa")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert public.key.public_bytes(der, spki) == public_key.public_bytes(der, spki)
    assert public.name == name_of(raw) and parse_public_2b(len(raw).to_bytes(2, "big") + raw)


def test_pcr_digest_and_bitmap() -> None:
    values = [bytes([i]) * 32 for i in range(3)]
    assert pcr_digest(values, "sha256") == hashlib.sha256(b"".join(values)).digest()
    assert PcrSelection("sha256", (0, 1, 7, 16)).bitmap() == bytes.fromhex("830001")
    assert PcrSelection("sha256", (24,)).bitmap() == bytes.fromhex("00000001")
    assert marshal_pcr_selection([PcrSelection("sha1", ())]) == bytes.fromhex("000000010004" +
                                                                              "03000000")


# -- refusals -----------------------------------------------------------------------------------

GOOD = build_attest(qualified_signer=b"\0\x0b" + bytes(32), extra_data=b"nonce",
                    pcr_select=[PcrSelection("sha256", (0, 7))], pcr_digest=bytes(32))


def _patched(offset: int, new: bytes) -> bytes:
    return GOOD[:offset] + new + GOOD[offset + len(new):]


SEL = 4 + 2 + (2 + 34) + (2 + 5) + 17 + 8  # offset of TPML_PCR_SELECTION.count in GOOD

BAD_ATTESTS = [
    ("wrong_magic", _patched(0, b"\xff\x54\x43\x48"), MalformedEvidenceError, "0xff544348"),
    ("wrong_type", _patched(4, b"\x80\x14"), MalformedEvidenceError, "0x8014"),
    ("safe_not_bool", _patched(SEL - 9, b"\x02"), MalformedEvidenceError, "safe"),
    ("too_many_selections", _patched(SEL, b"\0\0\0\x11"), MalformedEvidenceError, "17"),
    ("select_too_wide", _patched(SEL + 6, b"\x05"), MalformedEvidenceError, "sizeofSelect"),
    ("unknown_bank", _patched(SEL + 4, b"\x00\x12"), UnsupportedVersionError, "0x0012"),
    ("signer_too_long", _patched(4 + 2, b"\x00\x43"), MalformedEvidenceError,
     "qualifiedSigner"),
    ("trailing", GOOD + b"\0", MalformedEvidenceError, "trailing"),
    ("oversized", GOOD + bytes(4096), MalformedEvidenceError, "maximum"),
    ("duplicate_bank", build_attest(qualified_signer=b"", extra_data=b"", pcr_select=[
        PcrSelection("sha1", (0,)), PcrSelection("sha1", (1,))]), MalformedEvidenceError,
     "twice"),
]


@pytest.mark.parametrize(("name", "raw", "error", "says"), BAD_ATTESTS,
                         ids=[b[0] for b in BAD_ATTESTS])
def test_bad_attest(name: str, raw: bytes, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        parse_attest(raw)


def test_every_truncation_is_refused() -> None:
    assert int.from_bytes(GOOD[:4], "big") == TPM_GENERATED_VALUE
    for cut in range(len(GOOD)):
        with pytest.raises(MalformedEvidenceError):
            parse_attest(GOOD[:cut])


@pytest.mark.parametrize(("raw", "error"), [
    (bytes.fromhex("0005000b0000"), UnsupportedVersionError),   # HMAC
    (bytes.fromhex("0010"), UnsupportedVersionError),           # TPM_ALG_NULL
    (bytes.fromhex("0014000b0002ab"), MalformedEvidenceError),  # truncated sig
    (bytes.fromhex("0014000b0001ab00"), MalformedEvidenceError),  # trailing byte
    (bytes.fromhex("0014000e0001ab"), UnsupportedVersionError),  # unknown hash
    (bytes.fromhex("0018000b0043") + bytes(67) + b"\0\1\1", MalformedEvidenceError),
])
def test_bad_signature(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_signature(raw)


def test_bad_public() -> None:
    good = build_public(key("tpm-ak-p256").public_key())
    with pytest.raises(UnsupportedVersionError, match="0x0025"):
        parse_public(b"\x00\x25" + good[2:])
    curve = good.index(b"\x00\x03\x00\x10")  # curveID P-256, kdf NULL
    with pytest.raises(UnsupportedVersionError, match="curveID"):
        parse_public(good[:curve] + b"\x00\x07" + good[curve + 2:])
    with pytest.raises(MalformedEvidenceError, match="curve"):
        parse_public(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(MalformedEvidenceError, match="trailing"):
        parse_public(good + b"\0")
    with pytest.raises(MalformedEvidenceError):
        parse_public_2b(b"\x00\x10" + good)


def test_swtpm_ak_name() -> None:
    """build_public's defaults are tpm2_createak's RSA template: the Name of the rebuilt
    TPMT_PUBLIC is the one swtpm reported for the AK (ak.name)."""
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "swtpm")
    ak = serialization.load_pem_public_key((folder / "ak.pem").read_bytes())
    assert isinstance(ak, rsa.RSAPublicKey)
    assert name_of(build_public(ak)) == (folder / "ak.name").read_bytes()
