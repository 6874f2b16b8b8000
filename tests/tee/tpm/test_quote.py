"""Forgeries against :func:`check_quote` and :func:`check_certify`: each check has a case
that gets past the others and is refused by it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    SignatureError,
    UnsupportedVersionError,
)
from veritee.tee.tpm.quote import check_certify, check_quote
from veritee.tee.tpm.structures import (
    TPM_ST_ATTEST_CERTIFY,
    PcrSelection,
    build_attest,
    build_public,
    build_signature,
    parse_public,
    pcr_digest,
)
from veritee.testing import pki

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512()}
NONCE = b"\x90\x09\xab\xcd"


@cache
def key(name: str) -> Any:
    return pki.load_key(name)


def sign(private: Any, attest: bytes, alg: str = "rsassa", hash_name: str = "sha256") -> bytes:
    h = _HASHES[hash_name]
    if alg == "ecdsa":
        raw = private.sign(attest, ec.ECDSA(h))
    elif alg == "rsapss":
        raw = private.sign(attest, padding.PSS(padding.MGF1(h), h.digest_size), h)
    else:
        raw = private.sign(attest, padding.PKCS1v15(), h)
    return build_signature(alg, hash_name, raw)  # type: ignore[arg-type]


PCRS = {"sha256": {0: b"\x01" * 32, 7: b"\x07" * 32}, "sha1": {0: b"\x0a" * 20}}
SELECT = [PcrSelection("sha256", (0, 7)), PcrSelection("sha1", (0,))]


def quote(*, nonce: bytes = NONCE, pcrs: dict[str, dict[int, bytes]] = PCRS,
          digest_hash: str = "sha256", **kw: Any) -> bytes:
    values = [pcrs[s.bank][i] for s in SELECT for i in s.indices]
    return build_attest(qualified_signer=b"\0\x0b" + bytes(32), extra_data=nonce,
                        pcr_select=SELECT, pcr_digest=pcr_digest(values, digest_hash), **kw)


@pytest.mark.parametrize(("alg", "key_name", "hash_name"), [
    ("rsassa", "tpm-ak", "sha256"), ("rsapss", "tpm-ak", "sha256"),
    ("rsapss", "tpm-ak", "sha384"), ("ecdsa", "tpm-ak-p256", "sha256"),
    ("ecdsa", "tpm-ak-p256", "sha512")])
def test_valid(alg: str, key_name: str, hash_name: str) -> None:
    attest = quote(digest_hash=hash_name)
    sig = sign(key(key_name), attest, alg, hash_name)
    parsed = check_quote(attest, sig, key(key_name).public_key(), pcrs=PCRS, nonce=NONCE)
    assert parsed.extra_data == NONCE and parsed.pcr_select == tuple(SELECT)


def test_pss_with_maximum_salt() -> None:
    """Older TPM revisions salt PSS with as many bytes as the key allows."""
    attest = quote()
    raw = key("tpm-ak").sign(attest, padding.PSS(padding.MGF1(hashes.SHA256()),
                                                 padding.PSS.MAX_LENGTH), hashes.SHA256())
    check_quote(attest, build_signature("rsapss", "sha256", raw), key("tpm-ak").public_key(),
                pcrs=PCRS, nonce=NONCE)


def test_tpm_public_key_accepted() -> None:
    public = parse_public(build_public(key("tpm-ak").public_key()))
    attest = quote()
    check_quote(attest, sign(key("tpm-ak"), attest), public, pcrs=PCRS, nonce=NONCE)
    with pytest.raises(SignatureError, match="fixes RSASSA"):
        check_quote(attest, sign(key("tpm-ak"), attest, "rsapss"), public, pcrs=PCRS,
                    nonce=NONCE)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


Forge = Callable[[], tuple[bytes, bytes, Any, dict[str, dict[int, bytes]], bytes]]


def _base(**kw: Any) -> tuple[bytes, bytes, Any, dict[str, dict[int, bytes]], bytes]:
    attest = quote(**kw)
    return attest, sign(key("tpm-ak"), attest), key("tpm-ak").public_key(), PCRS, NONCE


def _wrong_key() -> Any:
    a, s, _, p, n = _base()
    return a, s, key("tpm-foreign-ak").public_key(), p, n


def _flipped_signature() -> Any:
    a, s, k, p, n = _base()
    return a, _flip(s, len(s) - 1), k, p, n


def _flipped_attest() -> Any:
    a, s, k, p, n = _base()
    return _flip(a, 10), s, k, p, n


def _wrong_nonce() -> Any:
    a, s, k, p, _ = _base()
    return a, s, k, p, NONCE[:-1] + b"\xce"


def _nonce_prefix() -> Any:
    a, s, k, p, _ = _base()
    return a, s, k, p, NONCE[:-1]


def _changed_pcr() -> Any:
    a, s, k, _, n = _base()
    return a, s, k, {**PCRS, "sha256": {0: b"\x01" * 32, 7: b"\x08" * 32}}, n


def _missing_pcr() -> Any:
    a, s, k, _, n = _base()
    return a, s, k, {"sha256": {0: b"\x01" * 32}}, n


def _bank_hash_digest() -> Any:
    """pcrDigest with the SHA-1 bank's hash for a SHA-256 signature (GCE's pitfall)."""
    attest = quote(digest_hash="sha1")
    return attest, sign(key("tpm-ak"), attest), key("tpm-ak").public_key(), PCRS, NONCE


def _sha1_signature() -> Any:
    attest = quote(digest_hash="sha1")
    return attest, sign(key("tpm-ak"), attest, "rsassa", "sha1"), key(
        "tpm-ak").public_key(), PCRS, NONCE


def _rsa_sig_ec_key() -> Any:
    a, s, _, p, n = _base()
    return a, s, key("tpm-ak-p256").public_key(), p, n


def _ecdsa_sig_rsa_key() -> Any:
    attest = quote()
    return attest, sign(key("tpm-ak-p256"), attest, "ecdsa"), key("tpm-ak").public_key(), \
        PCRS, NONCE


def _pss_labelled_rsassa() -> Any:
    """A PKCS#1 v1.5 signature presented as PSS."""
    attest = quote()
    raw = key("tpm-ak").sign(attest, padding.PKCS1v15(), hashes.SHA256())
    return attest, build_signature("rsapss", "sha256", raw), key("tpm-ak").public_key(), \
        PCRS, NONCE


def _certify_as_quote() -> Any:
    attest = build_attest(qualified_signer=b"", extra_data=NONCE, type=TPM_ST_ATTEST_CERTIFY,
                          certified_name=b"\0\x0b" + bytes(32))
    return attest, sign(key("tpm-ak"), attest), key("tpm-ak").public_key(), PCRS, NONCE


def _hmac_signature() -> Any:
    a, _, k, p, n = _base()
    return a, bytes.fromhex("0005000b0020") + bytes(32), k, p, n


FORGERIES: list[tuple[str, Forge, type[Exception], str]] = [
    ("wrong_key", _wrong_key, SignatureError, "does not verify"),
    ("flipped_signature_byte", _flipped_signature, SignatureError, "does not verify"),
    ("flipped_attest_byte", _flipped_attest, SignatureError, "does not verify"),
    ("wrong_nonce", _wrong_nonce, BindingError, "9009abcd.*9009abce"),
    ("nonce_prefix", _nonce_prefix, BindingError, "extraData"),
    ("changed_pcr", _changed_pcr, BindingError, "pcrDigest"),
    ("missing_pcr", _missing_pcr, MalformedEvidenceError, "sha256:7, sha1:0"),
    ("bank_hash_digest", _bank_hash_digest, BindingError, "sha256 digest"),
    ("sha1_signature", _sha1_signature, SignatureError, "SHA-1"),
    ("rsa_signature_ec_key", _rsa_sig_ec_key, SignatureError, "EC key"),
    ("ecdsa_signature_rsa_key", _ecdsa_sig_rsa_key, SignatureError, "RSA key"),
    ("pss_label_on_pkcs1", _pss_labelled_rsassa, SignatureError, "does not verify"),
    ("certify_as_quote", _certify_as_quote, MalformedEvidenceError, "0x8017"),
    ("hmac_signature", _hmac_signature, UnsupportedVersionError, "sigAlg"),
]


@pytest.mark.parametrize(("name", "forge", "error", "says"), FORGERIES,
                         ids=[f[0] for f in FORGERIES])
def test_forgery_refused(name: str, forge: Forge, error: type[Exception], says: str) -> None:
    attest, sig, public, pcrs, nonce = forge()
    with pytest.raises(error, match=says):
        check_quote(attest, sig, public, pcrs=pcrs, nonce=nonce)


def test_sha1_signature_when_allowed() -> None:
    attest = quote(digest_hash="sha1")
    check_quote(attest, sign(key("tpm-ak"), attest, "rsassa", "sha1"),
                key("tpm-ak").public_key(), pcrs=PCRS, nonce=NONCE, allow_sha1=True)


def test_certify() -> None:
    name = b"\0\x0b" + hashlib.sha256(b"object").digest()
    attest = build_attest(qualified_signer=b"", extra_data=NONCE, type=TPM_ST_ATTEST_CERTIFY,
                          certified_name=name, certified_qualified_name=name)
    public: rsa.RSAPublicKey = key("tpm-ak").public_key()
    sig = sign(key("tpm-ak"), attest)
    parsed = check_certify(attest, sig, public, nonce=NONCE, certified_name=name)
    assert parsed.certified_name == name
    with pytest.raises(BindingError, match="name"):
        check_certify(attest, sig, public, certified_name=name[:-1] + b"\0")
    with pytest.raises(SignatureError):
        check_certify(attest, _flip(sig, 20), public)
    q = quote()
    with pytest.raises(MalformedEvidenceError, match="certify"):
        check_certify(q, sign(key("tpm-ak"), q), public)
