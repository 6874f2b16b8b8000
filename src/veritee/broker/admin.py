"""Admin authentication: a bearer JWT signed by a configured key, a role, a path ACL.

As Trustee's ``AuthenticatedAuthorization`` mode (service-anchors.md §1.4): the token must
verify under one of the configured public keys (Ed25519 ``EdDSA`` or P-256 ``ES256``), be
within ``nbf``/``exp``, and carry a ``role`` claim; the role's regular expression must match
the whole request path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

from veritee import jose
from veritee.broker.config import AdminConfig
from veritee.errors import MisuseError

#: ``Ed25519`` is RFC 9864's name; ``EdDSA`` is what Trustee's tooling still mints.
ADMIN_ALGORITHMS = ("Ed25519", "EdDSA", "ES256")

#: The key type each algorithm is checked with. "EdDSA" (what Trustee's tooling mints) names
#: the same Ed25519 signature as RFC 9864's "Ed25519"; signatures are checked with
#: cryptography directly, so no library's deprecation warning needs silencing.
_KEY_TYPES: dict[str, type] = {"Ed25519": ed25519.Ed25519PublicKey,
                               "EdDSA": ed25519.Ed25519PublicKey,
                               "ES256": ec.EllipticCurvePublicKey}


class AdminAuthError(MisuseError):
    """The request is not authorised for an admin path (maps to HTTP 401/403)."""

    def __init__(self, detail: str, *, forbidden: bool = False) -> None:
        super().__init__(detail)
        self.forbidden = forbidden


@dataclass(frozen=True)
class AdminIdentity:
    subject: str
    role: str


class AdminAuthenticator:
    def __init__(self, config: AdminConfig, keys: Sequence[Any]) -> None:
        self.mode = config.mode
        if self.mode not in ("authenticated", "deny_all", "insecure_allow_all"):
            raise MisuseError(f"[admin] mode {self.mode!r} is not one of authenticated, "
                              "deny_all, insecure_allow_all")
        self._keys = [_public(k) for k in keys]
        self._acl = [(e.role, re.compile(e.allowed)) for e in config.acl]

    def authorize(self, authorization: str | None, path: str, *, now: datetime) -> AdminIdentity:
        """Check the ``Authorization`` header for ``path``; return who is asking.

        Raises:
            AdminAuthError: no token, a bad token, or a role not allowed on ``path``.
        """
        if self.mode == "insecure_allow_all":
            return AdminIdentity(subject="anonymous (insecure_allow_all)", role="admin")
        if self.mode == "deny_all":
            raise AdminAuthError("admin endpoints are disabled ([admin] mode = deny_all)",
                                 forbidden=True)
        token = _bearer(authorization)
        claims = self._verify(token, now)
        role = claims.get("role")
        if not isinstance(role, str):
            raise AdminAuthError("the admin token carries no 'role' claim")
        if not any(r == role and rx.fullmatch(path) for r, rx in self._acl):
            raise AdminAuthError(f"role {role!r} may not use {path}", forbidden=True)
        return AdminIdentity(subject=str(claims.get("sub", "unknown")), role=role)

    def _verify(self, token: str, now: datetime) -> dict[str, Any]:
        if not self._keys:
            raise AdminAuthError("no admin public key is configured")
        header, payload, signing_input, signature = jose.split(token, AdminAuthError)
        alg = header.get("alg")
        if alg not in ADMIN_ALGORITHMS or "crit" in header:
            raise AdminAuthError(f"admin token alg {alg!r} is not one of "
                                 f"{', '.join(ADMIN_ALGORITHMS)}")
        for key in self._keys:
            if isinstance(key, _KEY_TYPES[alg]) and _verifies(key, signature, signing_input):
                claims = jose.json_object(payload, "payload", AdminAuthError)
                _check_times(claims, now)
                return claims
        raise AdminAuthError("the admin token does not verify under any configured key")


def _check_times(claims: dict[str, Any], now: datetime) -> None:
    stamp = now.timestamp()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float):
        raise AdminAuthError("the admin token has no numeric 'exp'")
    if stamp >= exp:
        raise AdminAuthError("the admin token has expired")
    if isinstance(nbf, int | float) and stamp < nbf:
        raise AdminAuthError("the admin token is not valid yet")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AdminAuthError("admin endpoints need 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AdminAuthError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _verifies(key: Any, signature: bytes, signed: bytes) -> bool:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return jose.ed25519_verifies(key, signature, signed)
    return jose.es256_verifies(key, signature, signed)


def _public(key: Any) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    """The public half of an admin key (Ed25519 or P-256)."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        ec_pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
        if ec_pub.curve.name != "secp256r1":
            raise MisuseError("admin EC keys must be P-256 (ES256)")
        return ec_pub
    raise MisuseError(f"admin keys must be Ed25519 or P-256, got {type(key).__name__}")


def load_public_key(path: Path) -> Any:
    """A PEM public key (or the public half of a PEM private key)."""
    data = path.read_bytes()
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        return serialization.load_pem_private_key(data, password=None).public_key()


def mint_admin_token(private_key: Any, *, role: str = "admin", subject: str = "admin",
                     now: datetime, lifetime: timedelta = timedelta(hours=1),
                     issuer: str = "veritee") -> str:
    """Sign an admin token (for ``veritee admin token``, the demo and tests)."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        alg = "Ed25519"
        key: ECKey | OKPKey = OKPKey.import_key(private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = "ES256"
        key = ECKey.import_key(private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    else:
        raise MisuseError("admin tokens are signed with Ed25519 or P-256 keys")
    issued = int(now.timestamp())
    claims = {"iss": issuer, "sub": subject, "role": role, "iat": issued,
              "exp": issued + int(lifetime.total_seconds())}
    return jwt.encode({"alg": alg, "typ": "JWT"}, claims, key, algorithms=[alg])
