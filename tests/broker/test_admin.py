"""Admin tokens: Ed25519 (also under Trustee's name "EdDSA") and ES256, checked with
cryptography; every forgery is refused with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from veritee.broker.admin import AdminAuthenticator, AdminAuthError, mint_admin_token
from veritee.broker.config import AdminConfig
from veritee.encoding import b64url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ED = ed25519.Ed25519PrivateKey.generate()
P256 = ec.generate_private_key(ec.SECP256R1())
AUTH = AdminAuthenticator(AdminConfig(), [ED.public_key(), P256.public_key()])
PATH = "/kbs/v0/audit"


def signed(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return f"{head}.{b64url(sign(head.encode()))}"


CLAIMS = {"sub": "ops", "role": "admin", "exp": int((NOW + timedelta(minutes=5)).timestamp())}


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_ed25519_tokens_under_either_name(alg: str) -> None:
    token = signed({"alg": alg}, CLAIMS, ED.sign)
    assert AUTH.authorize(f"Bearer {token}", PATH, now=NOW).subject == "ops"


def test_minted_tokens_verify() -> None:
    for key in (ED, P256):
        token = mint_admin_token(key, now=NOW)
        assert AUTH.authorize(f"Bearer {token}", PATH, now=NOW).role == "admin"


FORGERIES: list[tuple[str, Any, str]] = [
    ("alg none", lambda: signed({"alg": "none"}, CLAIMS, lambda _: b""), "not one of"),
    ("HS256", lambda: signed({"alg": "HS256"}, CLAIMS, lambda _: b"x" * 32), "not one of"),
    ("wrong key", lambda: signed({"alg": "EdDSA"}, CLAIMS,
                                 ed25519.Ed25519PrivateKey.generate().sign), "does not verify"),
    ("EdDSA signature under ES256", lambda: signed({"alg": "ES256"}, CLAIMS, ED.sign),
     "does not verify"),
    ("expired", lambda: mint_admin_token(ED, now=NOW - timedelta(hours=2)), "expired"),
    ("two parts", lambda: "a.b", "2 dot-separated parts"),
    ("crit header", lambda: signed({"alg": "EdDSA", "crit": ["x"]}, CLAIMS, ED.sign),
     "not one of"),
]


@pytest.mark.parametrize(("name", "make", "reason"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_forged_tokens_are_refused(name: str, make: Any, reason: str) -> None:
    with pytest.raises(AdminAuthError, match=reason):
        AUTH.authorize(f"Bearer {make()}", PATH, now=NOW)


def test_a_role_outside_the_acl_is_forbidden() -> None:
    token = mint_admin_token(ED, role="reader", now=NOW)
    with pytest.raises(AdminAuthError, match="may not use") as info:
        AUTH.authorize(f"Bearer {token}", PATH, now=NOW)
    assert info.value.forbidden
