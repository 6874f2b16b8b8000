"""The broker's side of a SEV or SEV-ES launch, without state: the launch id and the keys.

A host asks for a launch session for its platform's PDH (``POST /sev/v0/session``); the
broker answers a GODH certificate and a session blob wrapping a transport encryption key
(TEK) and integrity key (TIK), and a *launch id*. Nothing is stored: the launch id is
``base64url(JSON) . base64url(HMAC-SHA256)`` under the platform key the broker derives from
its KEK (``ChallengeSealer.platform_key``, the same on every replica), and TEK ‖ TIK are
derived from that key and the launch id's body, so any replica can check the launch
measurement the host relays later (``POST /sev/v0/secret``) and wrap the secret for it.

Each entry of the secret table the broker injects has a GUID: the one a request names, or
one derived from the resource path (:func:`secret_guid`), which the guest derives the same
way to find the entry under securityfs (``veritee attest --tee sev``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from veritee.encoding import b64url, b64url_decode
from veritee.errors import ExpiredError, MalformedEvidenceError, SignatureError

VERSION: Final = 1
#: Launch ids longer than this are refused before any parsing.
MAX_LAUNCH_ID: Final = 1024
_MAC_LABEL: Final = b"veritee sev launch id v1 "
_KEYS_LABEL: Final = b"veritee sev launch keys v1 "
#: The namespace of the GUIDs derived from resource paths (uuid5; chosen for veritee).
SECRET_NAMESPACE: Final = uuid.UUID("17297472-68e7-45a8-8336-c0f071d86dda")


@dataclass(frozen=True, slots=True)
class LaunchId:
    """What a launch session was made for."""

    session_id: str
    tee: str
    policy: int
    product: str
    emulated: bool
    """The platform chain ended in an emulated root (trusted only when the operator said)."""
    expires_at: datetime

    @classmethod
    def new(cls, *, tee: str, policy: int, product: str, emulated: bool,
            expires_at: datetime) -> LaunchId:
        return cls(secrets.token_hex(16), tee, policy, product, emulated, expires_at)

    def body(self) -> str:
        document = {"v": VERSION, "sid": self.session_id, "t": self.tee, "p": self.policy,
                    "prod": self.product, "e": self.emulated,
                    "x": int(self.expires_at.timestamp())}
        return b64url(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())


def seal(launch: LaunchId, key: bytes) -> str:
    """The launch id text for ``launch`` under the platform ``key``."""
    body = launch.body()
    return f"{body}.{b64url(_mac(key, body))}"


def open_launch_id(text: Any, key: bytes, *, now: datetime) -> LaunchId:
    """The launch a launch id stands for.

    Raises:
        MalformedEvidenceError: not a launch id.
        SignatureError: not made by this broker (another KEK, or altered).
        ExpiredError: past its expiry at ``now``.
    """
    if not isinstance(text, str) or len(text) > MAX_LAUNCH_ID or not text.isascii() \
            or text.count(".") != 1:
        raise MalformedEvidenceError("launch-id is not a launch id of a veritee broker")
    body, _, mac = text.partition(".")
    given = b64url_decode(mac)
    if given is None or not hmac.compare_digest(given, _mac(key, body)):
        raise SignatureError("launch-id was not issued by this broker (or was altered): ask "
                             "for a new launch session")
    launch = _fields(b64url_decode(body))
    if now.timestamp() >= launch.expires_at.timestamp():
        raise ExpiredError(f"launch session {launch.session_id} expired at "
                           f"{launch.expires_at.isoformat()}: ask for a new one")
    return launch


def transport_keys(launch: LaunchId, key: bytes) -> tuple[bytes, bytes]:
    """(TEK, TIK) of ``launch``: 16 bytes each, derived from the platform key and the launch
    id's body (never stored, never sent but wrapped to the platform's PDH)."""
    derived = hmac.new(key, _KEYS_LABEL + launch.body().encode(), hashlib.sha256).digest()
    return derived[:16], derived[16:]


def secret_guid(path: str) -> uuid.UUID:
    """The secret-table GUID of a resource path when the request names none."""
    return uuid.uuid5(SECRET_NAMESPACE, path)


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _MAC_LABEL + body.encode("ascii"), hashlib.sha256).digest()


def _fields(body: bytes | None) -> LaunchId:
    """The fields of a body whose MAC verified (ours; still checked for shape)."""
    try:
        document: Any = json.loads(body or b"")
        if document.get("v") != VERSION:
            raise ValueError("version")
        text = (document["sid"], document["t"], document["prod"])
        if not all(isinstance(v, str) for v in text) or not isinstance(document["e"], bool) \
                or not all(isinstance(document[k], int) for k in ("p", "x")):
            raise ValueError("types")
        return LaunchId(text[0], text[1], document["p"], text[2], document["e"],
                        datetime.fromtimestamp(document["x"], UTC))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise MalformedEvidenceError("launch-id does not hold a launch session") from exc


__all__ = ["LaunchId", "open_launch_id", "seal", "secret_guid", "transport_keys"]
