"""Compact JWS, read and checked with ``cryptography`` directly: the shared parsing of EAR
tokens and admin tokens (RFC 7515 §7.1), and the two signature algorithms they use.

``split`` takes the error class to raise, so that each caller keeps its own error type and
messages name what is wrong ("token has 2 dot-separated parts, not 3").
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.encoding import b64url_decode
from veritee.errors import VeriteeError

_ES256 = ec.ECDSA(hashes.SHA256())


def split(token: Any, error: type[VeriteeError]) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """(header, payload bytes, signing input, signature bytes) of a compact JWS.

    Raises:
        ``error``: not text, not three parts, not unpadded base64url, or a header that is not
            a JSON object.
    """
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise error("token is not ASCII text") from exc
    if not isinstance(token, str):
        raise error(f"token is a {type(token).__name__}, not text")
    parts = token.split(".")
    if len(parts) != 3:
        raise error(f"token has {len(parts)} dot-separated parts, not 3 (compact JWS)")
    header, payload, signature = (_part(part, what, error) for part, what in
                                  zip(parts, ("header", "payload", "signature"), strict=True))
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return json_object(header, "header", error), payload, signing_input, signature


def _part(part: str, what: str, error: type[VeriteeError]) -> bytes:
    # An empty signature parses, so that `alg: none` is refused for its algorithm.
    decoded = b64url_decode(part) if "=" not in part else None
    if decoded is None or (not part and what != "signature"):
        raise error(f"token {what} is not unpadded base64url")
    return decoded


def json_object(raw: bytes, what: str, error: type[VeriteeError]) -> dict[str, Any]:
    """``raw`` as a JSON object, else ``error``."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise error(f"token {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise error(f"token {what} is a JSON {type(value).__name__}, not an object")
    return value


def es256_verifies(key: ec.EllipticCurvePublicKey, signature: bytes, signed: bytes) -> bool:
    """An ES256 signature (raw r ‖ s, 64 bytes) over ``signed``."""
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed, _ES256)
    except InvalidSignature:
        return False
    return True


def ed25519_verifies(key: ed25519.Ed25519PublicKey, signature: bytes, signed: bytes) -> bool:
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        return False
    return True


__all__ = ["ed25519_verifies", "es256_verifies", "json_object", "split"]
