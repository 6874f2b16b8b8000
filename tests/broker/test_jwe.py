"""The resource JWE: its protected header survives the guest's re-serialisation.

guest-components decrypts with kbs-types: it parses ``protected``, re-serialises it with
serde_json (``alg``, ``enc``, then the other members; maps sorted by key unless serde_json's
``preserve_order`` feature is on) and uses that text as the AES-GCM AAD. ``guest_decrypt``
below does the same, with either map order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from veritee.attester.kbs_client import TeeKey
from veritee.broker import jwe
from veritee.encoding import b64url, b64url_decode
from veritee.errors import MisuseError

SECRET = b"disk key: correct horse battery staple"
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
Reserialise = Callable[[dict[str, Any]], str]


def ec_jwk(private: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    return TeeKey(private).jwk()


def rsa_jwk(private: rsa.RSAPrivateKey) -> dict[str, str]:
    numbers = private.public_key().public_numbers()
    return {"kty": "RSA", "alg": "RSA-OAEP-256",
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes(3, "big"))}


# -- the guest: kbs-types' AAD, then RFC 7518 -------------------------------------------------


def sorted_maps(header: dict[str, Any]) -> str:
    """serde_json without ``preserve_order``: struct fields, then BTreeMap (sorted) order."""
    rest = {k: header[k] for k in sorted(header) if k not in ("alg", "enc")}
    return _struct(header, rest, sort_nested=True)


def insertion_order(header: dict[str, Any]) -> str:
    """serde_json with ``preserve_order``: struct fields, then the members as received."""
    rest = {k: v for k, v in header.items() if k not in ("alg", "enc")}
    return _struct(header, rest, sort_nested=False)


def _struct(header: dict[str, Any], rest: dict[str, Any], *, sort_nested: bool) -> str:
    # ProtectedHeader { alg, enc, #[serde(flatten)] other_fields }
    members = [("alg", header["alg"]), ("enc", header["enc"]), *rest.items()]
    text = ",".join(json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"),
                                                     sort_keys=sort_nested) for k, v in members)
    return b64url(("{" + text + "}").encode())


def guest_decrypt(sealed: dict[str, str], private: Any, reserialise: Reserialise) -> bytes:
    header = json.loads(b64url_decode(sealed["protected"]) or b"")
    aad = reserialise(header).encode("ascii")   # not sealed["protected"]
    encrypted_key = b64url_decode(sealed["encrypted_key"]) or b""
    if header["alg"] == "ECDH-ES+A256KW":
        epk = header["epk"]
        curve = CURVES[epk["crv"]]
        peer = ec.EllipticCurvePublicKey.from_encoded_point(
            curve, b"\x04" + (b64url_decode(epk["x"]) or b"") + (b64url_decode(epk["y"]) or b""))
        shared = private.exchange(ec.ECDH(), peer)
        cek = aes_key_unwrap(jwe.concat_kdf(shared, "ECDH-ES+A256KW", 256), encrypted_key)
    else:
        assert header["alg"] == "RSA-OAEP-256"
        cek = private.decrypt(encrypted_key, padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    assert header["enc"] == "A256GCM"
    body = (b64url_decode(sealed["ciphertext"]) or b"") + (b64url_decode(sealed["tag"]) or b"")
    return AESGCM(cek).decrypt(b64url_decode(sealed["iv"]) or b"", body, aad)


# -- cases -------------------------------------------------------------------------------------

_EC_KEYS = {name: ec.generate_private_key(curve) for name, curve in CURVES.items()}
_RSA_KEY = rsa.generate_private_key(65537, 2048)
KEYS: list[tuple[str, Any, dict[str, str]]] = [
    *((name, key, ec_jwk(key)) for name, key in _EC_KEYS.items()),
    ("RSA-2048", _RSA_KEY, rsa_jwk(_RSA_KEY)),
]


def canonical(header: dict[str, Any]) -> str:
    """The expected text, written out by hand."""
    if "epk" not in header:
        return f'{{"alg":"{header["alg"]}","enc":"{header["enc"]}"}}'
    epk = header["epk"]
    return (f'{{"alg":"{header["alg"]}","enc":"{header["enc"]}","epk":{{"crv":"{epk["crv"]}",'
            f'"kty":"{epk["kty"]}","x":"{epk["x"]}","y":"{epk["y"]}"}}}}')


@pytest.mark.parametrize(("name", "private", "jwk"), KEYS, ids=[k[0] for k in KEYS])
def test_protected_is_the_canonical_form(name: str, private: Any, jwk: dict[str, str]) -> None:
    sealed = jwe.encrypt(SECRET, jwk)
    header = json.loads(b64url_decode(sealed["protected"]) or b"")
    assert sealed["protected"] == b64url(canonical(header).encode())
    if name == "RSA-2048":
        assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM"}
    else:
        assert list(header) == ["alg", "enc", "epk"]
        assert list(header["epk"]) == ["crv", "kty", "x", "y"]
        assert header["epk"]["crv"] == name
    # a fixed point of both serde_json builds
    assert sorted_maps(header) == insertion_order(header) == sealed["protected"]


@pytest.mark.parametrize("reserialise", [sorted_maps, insertion_order])
@pytest.mark.parametrize(("name", "private", "jwk"), KEYS, ids=[k[0] for k in KEYS])
def test_the_guest_decrypts(name: str, private: Any, jwk: dict[str, str],
                            reserialise: Reserialise) -> None:
    assert guest_decrypt(jwe.encrypt(SECRET, jwk), private, reserialise) == SECRET


@pytest.mark.parametrize(("name", "private", "jwk"), KEYS[:3], ids=[k[0] for k in KEYS[:3]])
def test_veritee_kbs_client_decrypts(name: str, private: Any, jwk: dict[str, str]) -> None:
    assert TeeKey(private).decrypt(jwe.encrypt(SECRET, jwk)) == SECRET


def test_protected_header_rule() -> None:
    header = {"zz": 1, "epk": {"y": "b", "x": "a", "kty": "EC", "crv": "P-256"},
              "enc": "A256GCM", "alg": "ECDH-ES+A256KW", "kid": "é"}
    assert b64url_decode(jwe.protected_header(header)) == (
        '{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":"a",'
        '"y":"b"},"kid":"é","zz":1}').encode()
    # kbs-types' own test vector (protected_header_generate_aad)
    assert jwe.protected_header({"alg": "fakealg", "enc": "fakeenc"}) == (
        "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9")


# -- what fails --------------------------------------------------------------------------------


def _resealed(sealed: dict[str, str], header: dict[str, Any]) -> dict[str, str]:
    """``sealed`` with its header replaced (the attacker cannot recompute the tag)."""
    return {**sealed, "protected": jwe.protected_header(header)}


def _header(sealed: dict[str, str]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(b64url_decode(sealed["protected"]) or b"")
    return value


P256 = KEYS[0]
OTHER_EPK = ec_jwk(ec.generate_private_key(ec.SECP256R1()))
TAMPERED: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], type[Exception]]] = [
    ("member added", lambda h: {**h, "kid": "attacker"}, InvalidTag),
    ("epk member added", lambda h: {**h, "epk": {**h["epk"], "use": "enc"}}, InvalidTag),
    ("epk replaced", lambda h: {**h, "epk": {k: OTHER_EPK[k] for k in ("crv", "kty", "x", "y")}},
     InvalidUnwrap),
]


@pytest.mark.parametrize("reserialise", [sorted_maps, insertion_order])
@pytest.mark.parametrize(("name", "tamper", "error"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_tampered_header_fails(name: str, tamper: Callable[[dict[str, Any]], dict[str, Any]],
                                 error: type[Exception], reserialise: Reserialise) -> None:
    _, private, jwk = P256
    sealed = jwe.encrypt(SECRET, jwk)
    with pytest.raises(error):
        guest_decrypt(_resealed(sealed, tamper(_header(sealed))), private, reserialise)


def test_the_old_member_order_fails_a_sorting_guest() -> None:
    """Why the order matters: ``epk`` written kty, crv, x, y authenticates as sent, but a
    guest that re-serialises with sorted maps computes another AAD and the tag fails."""
    private = ec.generate_private_key(ec.SECP256R1())
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    numbers = ephemeral.public_key().public_numbers()
    epk = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
           "y": b64url(numbers.y.to_bytes(32, "big"))}
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": epk}
    protected = b64url(json.dumps(header, separators=(",", ":")).encode())
    cek = b"\x01" * 32
    kek = jwe.concat_kdf(ephemeral.exchange(ec.ECDH(), private.public_key()),
                         "ECDH-ES+A256KW", 256)
    iv = b"\x02" * 12
    body = AESGCM(cek).encrypt(iv, SECRET, protected.encode())
    sealed = {"protected": protected, "encrypted_key": b64url(aes_key_wrap(kek, cek)),
              "iv": b64url(iv), "ciphertext": b64url(body[:-16]), "tag": b64url(body[-16:])}
    assert guest_decrypt(sealed, private, insertion_order) == SECRET
    with pytest.raises(InvalidTag):
        guest_decrypt(sealed, private, sorted_maps)


def test_a_header_without_alg_or_enc_is_misuse() -> None:
    with pytest.raises(MisuseError):
        jwe.protected_header({"alg": "RSA-OAEP-256"})
