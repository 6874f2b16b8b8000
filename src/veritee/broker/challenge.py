"""Stateless KBS challenges: the session cookie carries the challenge under a MAC.

``POST /kbs/v0/auth`` writes nothing. The ``kbs-session-id`` cookie it sets is
``<base64url(JSON)>.<base64url(HMAC-SHA256)>`` over the session id, the nonce, the TEE, the
selected hash algorithm and the expiry (as Intel Trust Authority signs its nonces). Every
replica that shares the key-encryption key derives the same MAC key (HKDF-SHA256 of the KEK,
its own label), so any replica can check any cookie. Only an attestation that verified is
stored (keyed by the session id), which also makes a second ``/attest`` with the same
cookie return the stored token, as Trustee's KBS does.

Cookies are opaque to KBS clients (guest-components keeps the value and sends it back).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.encoding import b64url, b64url_decode

VERSION: Final = 1
#: Cookies longer than this are refused before any parsing.
MAX_COOKIE: Final = 2048
_LABEL: Final = b"veritee kbs challenge mac v1"
_PLATFORM_LABEL: Final = b"veritee kbs challenge platform key v1 "
NOT_OURS: Final = "the session cookie is not a challenge of this broker: POST /kbs/v0/auth again"


class ChallengeError(Exception):
    """The cookie is not a challenge this broker issued, or it expired."""


@dataclass(frozen=True)
class ChallengeFields:
    session_id: str
    nonce: str
    tee: str
    hash_algorithm: str
    expires_at: datetime


class ChallengeSealer:
    """Seals and opens challenge cookies with a MAC key derived from the KEK."""

    def __init__(self, kek: bytes) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                         info=_LABEL).derive(kek)

    def seal(self, fields: ChallengeFields) -> str:
        body = json.dumps({"v": VERSION, "sid": fields.session_id, "n": fields.nonce,
                           "t": fields.tee, "h": fields.hash_algorithm,
                           "x": int(fields.expires_at.timestamp())},
                          separators=(",", ":"), sort_keys=True).encode()
        encoded = b64url(body)
        return f"{encoded}.{b64url(self._mac(encoded))}"

    def open(self, cookie: str, *, now: datetime) -> ChallengeFields:
        """The fields of ``cookie``.

        Raises:
            ChallengeError: malformed, not sealed by this key, or expired at ``now``.
        """
        if (not isinstance(cookie, str) or len(cookie) > MAX_COOKIE or not cookie.isascii()
                or cookie.count(".") != 1):
            raise ChallengeError(NOT_OURS)
        encoded, _, mac = cookie.partition(".")
        given = b64url_decode(mac)
        if given is None or not hmac.compare_digest(given, self._mac(encoded)):
            raise ChallengeError(NOT_OURS)
        fields = _fields(b64url_decode(encoded))
        if now.timestamp() >= fields.expires_at.timestamp():
            raise ChallengeError("the session has expired: POST /kbs/v0/auth again")
        return fields

    def platform_key(self, tee: str) -> bytes:
        """A key of ``tee``'s own for what its challenge hook adds (for instance the SVSM
        vTPM's credential activation): derived from the KEK, so every replica sharing the KEK
        derives the same key and nothing is stored."""
        return hmac.new(self._key, _PLATFORM_LABEL + tee.encode(), hashlib.sha256).digest()

    def _mac(self, encoded: str) -> bytes:
        return hmac.new(self._key, encoded.encode("ascii"), hashlib.sha256).digest()


def _fields(body: bytes | None) -> ChallengeFields:
    """The fields of a body whose MAC verified (so it is ours; still checked for shape)."""
    try:
        document: Any = json.loads(body or b"")
        if document.get("v") != VERSION:
            raise ValueError("version")
        values = (document["sid"], document["n"], document["t"], document["h"])
        if not all(isinstance(v, str) for v in values) or not isinstance(document["x"], int):
            raise ValueError("types")
        return ChallengeFields(*values, expires_at=datetime.fromtimestamp(document["x"], UTC))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise ChallengeError(NOT_OURS) from exc


__all__ = ["ChallengeError", "ChallengeFields", "ChallengeSealer"]
