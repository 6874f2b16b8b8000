"""Sealed challenge cookies: every way of forging, altering, replaying past expiry or
mangling one is a ChallengeError, never another exception."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veritee.broker.challenge import ChallengeError, ChallengeFields, ChallengeSealer
from veritee.encoding import b64url, b64url_decode

KEK = bytes(range(32))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIELDS = ChallengeFields("sid-1", "nonce-1", "snp", "sha384", NOW + timedelta(minutes=5))
SEALER = ChallengeSealer(KEK)


def test_a_sealed_cookie_opens_to_its_fields() -> None:
    assert SEALER.open(SEALER.seal(FIELDS), now=NOW) == FIELDS


def _body(cookie: str) -> dict[str, object]:
    decoded = b64url_decode(cookie.split(".", maxsplit=1)[0])
    assert decoded is not None
    loaded: dict[str, object] = json.loads(decoded)
    return loaded


@pytest.mark.parametrize("change", [{"t": "tdx"}, {"n": "other"}, {"x": 2**40},
                                    {"sid": "sid-2"}, {"h": "sha256"}])
def test_an_altered_body_under_the_old_mac_is_refused(change: dict[str, object]) -> None:
    cookie = SEALER.seal(FIELDS)
    forged = b64url(json.dumps({**_body(cookie), **change}).encode()) + "." + cookie.split(".")[1]
    with pytest.raises(ChallengeError):
        SEALER.open(forged, now=NOW)


def test_a_cookie_sealed_under_another_kek_is_refused() -> None:
    with pytest.raises(ChallengeError):
        SEALER.open(ChallengeSealer(bytes(32)).seal(FIELDS), now=NOW)


def test_a_mac_computed_with_the_kek_itself_is_refused() -> None:
    """The MAC key is derived from the KEK (HKDF with its own label), not the KEK."""
    body = b64url(json.dumps(_body(SEALER.seal(FIELDS))).encode())
    forged = body + "." + b64url(hmac.new(KEK, body.encode(), hashlib.sha256).digest())
    with pytest.raises(ChallengeError):
        SEALER.open(forged, now=NOW)


def test_an_expired_cookie_is_refused() -> None:
    with pytest.raises(ChallengeError, match="expired"):
        SEALER.open(SEALER.seal(FIELDS), now=FIELDS.expires_at)


def test_a_well_sealed_body_of_another_version_or_shape_is_refused() -> None:
    for body in ({"v": 2, "sid": "s", "n": "n", "t": "snp", "h": "sha384", "x": 2**40},
                 {"v": 1, "sid": 5, "n": "n", "t": "snp", "h": "sha384", "x": 2**40},
                 {"v": 1, "sid": "s", "n": "n", "t": "snp", "h": "sha384", "x": "soon"},
                 {"v": 1, "sid": "s", "n": "n", "t": "snp", "h": "sha384", "x": 10**30},
                 [1, 2]):
        encoded = b64url(json.dumps(body).encode())
        cookie = f"{encoded}.{b64url(SEALER._mac(encoded))}"
        with pytest.raises(ChallengeError):
            SEALER.open(cookie, now=NOW)


@pytest.mark.parametrize("cookie", ["", ".", "a.b.c", "é.AAAA", "AAAA.é", "\udcff.AA",
                                    "x" * 5000 + ".AA", SEALER.seal(FIELDS)[:-3]])
def test_mangled_cookies_are_refused(cookie: str) -> None:
    with pytest.raises(ChallengeError):
        SEALER.open(cookie, now=NOW)


@given(st.text(max_size=300))
def test_any_text_is_refused_with_a_challenge_error(cookie: str) -> None:
    with pytest.raises(ChallengeError):
        SEALER.open(cookie, now=NOW)
