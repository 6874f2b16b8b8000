"""JWE to the TEE's key, as the KBS returns resources (flattened JSON serialisation).

RFC 7516 with the algorithms of RFC 7518: ``ECDH-ES+A256KW`` (P-256, P-384, P-521; Concat
KDF §4.6.2, AES key wrap RFC 3394) and ``RSA-OAEP-256``; content encryption ``A256GCM``.
The ephemeral key (``epk``) goes in the *protected* header, as Trustee's KBS does
(``kbs/src/jwe/mod.rs``), so guest-components' client reads it where it expects it.

The protected header is written in the one form that survives the guest's re-serialisation
(:func:`protected_header`): guest-components does not authenticate the ``protected`` text it
received but re-serialises the parsed header (kbs-types ``ProtectedHeader::generate_aad``).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from veritee.encoding import b64url, b64url_decode
from veritee.errors import MisuseError

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
ALGORITHMS = ("ECDH-ES+A256KW", "RSA-OAEP-256")


class JweKeyError(MisuseError):
    """The tee-pubkey cannot receive a JWE (unsupported type, curve or algorithm)."""


def encrypt(plaintext: bytes, tee_pubkey: Mapping[str, Any]) -> dict[str, str]:
    """Encrypt ``plaintext`` to the JWK ``tee_pubkey``.

    Raises:
        JweKeyError: the key is not an EC P-256/P-384/P-521 or RSA public JWK, or asks for an
            algorithm other than ECDH-ES+A256KW / RSA-OAEP-256.
    """
    kty = tee_pubkey.get("kty")
    if kty == "EC":
        alg = str(tee_pubkey.get("alg") or "ECDH-ES+A256KW")
        if alg != "ECDH-ES+A256KW":
            raise JweKeyError(f"EC tee-pubkey asks for alg {alg!r}; only ECDH-ES+A256KW is offered")
        return _ecdh_es(plaintext, tee_pubkey)
    if kty == "RSA":
        alg = str(tee_pubkey.get("alg") or "RSA-OAEP-256")
        if alg != "RSA-OAEP-256":
            raise JweKeyError(f"RSA tee-pubkey asks for alg {alg!r}; only RSA-OAEP-256 is offered")
        return _rsa_oaep(plaintext, tee_pubkey)
    raise JweKeyError(f"tee-pubkey kty is {kty!r}; expected 'EC' or 'RSA'")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """Load a public JWK (EC or RSA), checking the point is on the curve."""
    try:
        if jwk.get("kty") == "EC":
            curve, size = _CURVES[str(jwk.get("crv"))]
            x, y = _b64(jwk, "x"), _b64(jwk, "y")
            if len(x) != size or len(y) != size:
                raise JweKeyError(f"{jwk.get('crv')} coordinates must be {size} bytes")
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
        if jwk.get("kty") == "RSA":
            n = int.from_bytes(_b64(jwk, "n"), "big")
            e = int.from_bytes(_b64(jwk, "e"), "big")
            if n.bit_length() < 2048:
                raise JweKeyError(
                    f"RSA tee-pubkey is {n.bit_length()} bits; at least 2048 required")
            return rsa.RSAPublicNumbers(e, n).public_key()
    except JweKeyError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise JweKeyError(f"tee-pubkey is not a valid public JWK: {exc}") from exc
    raise JweKeyError(f"tee-pubkey kty is {jwk.get('kty')!r}; expected 'EC' or 'RSA'")


def _b64(jwk: Mapping[str, Any], name: str) -> bytes:
    value = b64url_decode(jwk[name]) if isinstance(jwk.get(name), str) else None
    if value is None:
        raise JweKeyError(f"tee-pubkey {name!r} is not base64url text")
    return value


def _ecdh_es(plaintext: bytes, jwk: Mapping[str, Any]) -> dict[str, str]:
    peer = public_key_from_jwk(jwk)
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    crv = str(jwk["crv"])
    curve, size = _CURVES[crv]
    ephemeral = ec.generate_private_key(curve)
    numbers = ephemeral.public_key().public_numbers()
    epk = {"crv": crv, "kty": "EC", "x": b64url(numbers.x.to_bytes(size, "big")),
           "y": b64url(numbers.y.to_bytes(size, "big"))}
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": epk}
    shared = ephemeral.exchange(ec.ECDH(), peer)
    kek = concat_kdf(shared, "ECDH-ES+A256KW", 256)
    cek = os.urandom(32)
    return _seal(header, aes_key_wrap(kek, cek), cek, plaintext)


def _rsa_oaep(plaintext: bytes, jwk: Mapping[str, Any]) -> dict[str, str]:
    peer = public_key_from_jwk(jwk)
    assert isinstance(peer, rsa.RSAPublicKey)
    cek = os.urandom(32)
    wrapped = peer.encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                             algorithm=hashes.SHA256(), label=None))
    return _seal({"alg": "RSA-OAEP-256", "enc": "A256GCM"}, wrapped, cek, plaintext)


def protected_header(header: Mapping[str, Any]) -> str:
    """The base64url ``protected`` member for ``header``, in the form kbs-types re-creates.

    kbs-types (virtee/kbs-types ``src/lib.rs``) parses the header into ``ProtectedHeader
    {alg, enc, #[serde(flatten)] other_fields: Map<String, Value>}`` and takes as AAD
    ``BASE64_URL_SAFE_NO_PAD(serde_json::to_string(header))``: compact JSON, ``alg`` then
    ``enc`` (struct order), then the other members in the order of serde_json's ``Map`` --
    sorted by key by default, as received with the ``preserve_order`` feature -- and nested
    objects likewise. Written with ``alg``, ``enc`` first and every other key sorted at every
    level, the header is a fixed point of both builds, so the guest's AAD is this text.
    """
    if not {"alg", "enc"} <= set(header):
        raise MisuseError("a JWE protected header needs alg and enc")
    order = ["alg", "enc", *sorted(k for k in header if k not in ("alg", "enc"))]
    members = (f"{_compact(name)}:{_compact(header[name])}" for name in order)
    return b64url(("{" + ",".join(members) + "}").encode("utf-8"))


def _compact(value: Any) -> str:
    # serde_json writes non-ASCII as UTF-8 and escapes only '"', '\\' and control characters
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _seal(header: dict[str, Any], encrypted_key: bytes, cek: bytes,
          plaintext: bytes) -> dict[str, str]:
    protected = protected_header(header)
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return {
        "protected": protected,
        "encrypted_key": b64url(encrypted_key),
        "iv": b64url(iv),
        "ciphertext": b64url(sealed[:-16]),
        "tag": b64url(sealed[-16:]),
    }


def concat_kdf(shared: bytes, algorithm_id: str, key_bits: int, apu: bytes = b"",
               apv: bytes = b"") -> bytes:
    """RFC 7518 §4.6.2: Concat KDF (NIST SP 800-56A) with SHA-256, one or more rounds."""
    other = (_lp(algorithm_id.encode()) + _lp(apu) + _lp(apv) + struct.pack(">I", key_bits))
    out = b""
    counter = 1
    while len(out) * 8 < key_bits:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(struct.pack(">I", counter) + shared + other)
        out += digest.finalize()
        counter += 1
    return out[: key_bits // 8]


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data
