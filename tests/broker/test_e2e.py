"""End-to-end: a real broker on loopback, an emulated SNP guest, SQLite and PostgreSQL.

Covers the KBS protocol shapes and statuses (service-anchors.md §1.2), secret release,
refusals with explanations, replay, expiry, token and admin authentication.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from support.broker import RunningBroker, running_broker, unique_path
from veritee.attester.kbs_client import KbsClient, KbsClientError, TeeKey
from veritee.broker.jwe import b64url_decode, concat_kdf
from veritee.tee.snp.demo import tcb_minimums
from veritee.testing.snp import DEFAULT_MEASUREMENT, SnpEmulator

SECRET = b"disk key: correct horse battery staple"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def kbs(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    tmp = tmp_path_factory.mktemp(f"broker-{request.param}")
    with running_broker(tmp, request.param) as running:
        _provision(running)
        yield running


def _provision(kbs: RunningBroker) -> None:
    with kbs.admin() as admin:
        r = admin.post("/kbs/v0/reference-value", json={
            "snp_launch_measurement": [DEFAULT_MEASUREMENT.hex()],
            "allow_emulated": [True],
            **tcb_minimums("test"),
        })
        assert r.status_code == 200, r.text


def _secret(kbs: RunningBroker, data: bytes = SECRET) -> str:
    path = unique_path()
    with kbs.admin() as admin:
        r = admin.post(f"/kbs/v0/resource/{path}", content=data,
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    return path


_CLIENTS: list[KbsClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _client(kbs: RunningBroker, emulator: SnpEmulator | None = None,
            key: TeeKey | None = None) -> KbsClient:
    emu = emulator or SnpEmulator()
    client = KbsClient(kbs.url, "snp", emu.coco_evidence, key=key or TeeKey())
    _CLIENTS.append(client)
    return client


def _problem(response: httpx.Response, status: int, variant: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"].endswith("/" + variant), body
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return body


# -- release ---------------------------------------------------------------------------------------


def test_emulated_guest_gets_its_secret(kbs: RunningBroker) -> None:
    path = _secret(kbs)
    client = _client(kbs)
    assert client.get_secret(path) == SECRET


def test_secret_through_the_session_cookie(kbs: RunningBroker) -> None:
    path = _secret(kbs)
    client = _client(kbs)
    attested = client.attest()
    assert client.resource(path, attested, use_cookie=True) == SECRET


@pytest.mark.parametrize("form", ["coco", "configfs-tsm", "extended-report-base64"])
def test_every_evidence_form_attests(kbs: RunningBroker, form: str) -> None:
    emu = SnpEmulator(product="genoa", version=5)
    collectors = {
        "coco": emu.coco_evidence,
        "configfs-tsm": emu.configfs_tsm,
        "extended-report-base64": lambda rd: base64.b64encode(emu.extended_report(rd)).decode(),
    }
    path = _secret(kbs)
    with KbsClient(kbs.url, "snp", collectors[form]) as client:
        assert client.get_secret(path) == SECRET


def test_jwe_decrypts_through_a_second_path(kbs: RunningBroker) -> None:
    """Decrypt the JWE with cryptography primitives only (ECDH, Concat KDF, AES-KW, AES-GCM)."""
    path = _secret(kbs)
    key = TeeKey()
    client = _client(kbs, key=key)
    attested = client.attest()
    r = httpx.get(f"{kbs.url}/kbs/v0/resource/{path}",
                  headers={"Authorization": f"Bearer {attested.token}"})
    assert r.status_code == 200
    sealed = r.json()
    assert set(sealed) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    header = json.loads(b64url_decode(sealed["protected"]))
    assert header["alg"] == "ECDH-ES+A256KW" and header["enc"] == "A256GCM"
    epk = header["epk"]
    peer = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + b64url_decode(epk["x"]) + b64url_decode(epk["y"]))
    shared = key.private.exchange(ec.ECDH(), peer)
    cek = aes_key_unwrap(concat_kdf(shared, "ECDH-ES+A256KW", 256),
                         b64url_decode(sealed["encrypted_key"]))
    plain = AESGCM(cek).decrypt(b64url_decode(sealed["iv"]),
                                b64url_decode(sealed["ciphertext"]) + b64url_decode(sealed["tag"]),
                                sealed["protected"].encode())
    assert plain == SECRET
    assert key.decrypt(sealed) == SECRET  # and through joserfc


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_other_curves_receive_the_secret(kbs: RunningBroker, curve: ec.EllipticCurve) -> None:
    path = _secret(kbs)
    client = _client(kbs, key=TeeKey(ec.generate_private_key(curve)))
    assert client.get_secret(path) == SECRET


# -- refusals --------------------------------------------------------------------------------------


def test_unknown_measurement_is_refused_with_an_explanation(kbs: RunningBroker) -> None:
    path = _secret(kbs)
    other = bytes(range(48))
    client = _client(kbs, SnpEmulator(measurement=other))
    attested = client.attest()  # the token is issued; it says contraindicated
    with pytest.raises(KbsClientError) as info:
        client.resource(path, attested)
    assert info.value.http_status == 403
    detail = info.value.problem["detail"]
    assert "measurement" in detail
    assert other.hex() in detail
    assert DEFAULT_MEASUREMENT.hex()[:16] in detail


def test_replayed_nonce_is_refused(kbs: RunningBroker) -> None:
    client = _client(kbs)
    old_nonce, _, _ = client.auth()
    with pytest.raises(KbsClientError) as info:
        client.attest(bind_to_nonce=old_nonce)
    assert info.value.http_status == 401
    assert info.value.problem["type"].endswith("/AttestationError")


def test_evidence_bound_to_an_old_nonce_is_refused(kbs: RunningBroker) -> None:
    """Evidence captured for an earlier challenge, sent with the new nonce."""
    emu = SnpEmulator()
    client = _client(kbs, emu)
    old_nonce, extra, _ = client.auth()
    old_evidence = emu.coco_evidence(client.report_data(old_nonce, extra))
    nonce, _, cookie = client.auth()
    r = httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json={
        "runtime-data": client.runtime_data(nonce),
        "tee-evidence": {"primary_evidence": old_evidence, "additional_evidence": ""},
    })
    body = _problem(r, 401, "AttestationError")
    assert "REPORT_DATA" in body["detail"]


def test_a_failed_attempt_writes_nothing_and_a_genuine_retry_attests(
        kbs: RunningBroker) -> None:
    """The challenge lives in the sealed cookie: a refused attempt leaves no session behind
    (an unauthenticated client cannot grow the database), and evidence bound to the same
    nonce still attests within the session's lifetime."""
    emu = SnpEmulator()
    client = _client(kbs, emu)
    nonce, extra, cookie = client.auth()
    runtime = client.runtime_data(nonce)

    def attest(report_data: bytes) -> httpx.Response:
        return httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json={
            "runtime-data": runtime,
            "tee-evidence": {"primary_evidence": emu.coco_evidence(report_data),
                             "additional_evidence": ""}})

    before = kbs.broker.store.purge_expired(now=kbs.clock() + timedelta(days=1))
    assert before >= 0
    _problem(attest(bytes(64)), 401, "AttestationError")             # not bound: refused
    assert kbs.broker.store.purge_expired(now=kbs.clock() + timedelta(days=1)) == 0
    assert attest(client.report_data(nonce, extra)).status_code == 200


def test_same_challenge_cannot_attest_twice_with_different_evidence(kbs: RunningBroker) -> None:
    client = _client(kbs)
    nonce, extra, cookie = client.auth()
    evidence = SnpEmulator().coco_evidence(client.report_data(nonce, extra))
    body = {"runtime-data": client.runtime_data(nonce),
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""}}
    first = httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json=body)
    assert first.status_code == 200
    again = httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json=body)
    assert again.status_code == 200 and again.json()["token"] == first.json()["token"]


def test_expired_session_is_refused(kbs: RunningBroker) -> None:
    client = _client(kbs)
    nonce, extra, cookie = client.auth()
    evidence = SnpEmulator().coco_evidence(client.report_data(nonce, extra))
    kbs.clock.offset = timedelta(seconds=kbs.config.session.timeout_seconds + 5)
    try:
        r = httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json={
            "runtime-data": client.runtime_data(nonce),
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""}})
    finally:
        kbs.clock.offset = timedelta()
    body = _problem(r, 401, "AttestationError")
    assert "the session has expired" in body["detail"]


@pytest.mark.parametrize("cookie", [None, "0" * 32, "not-a-session", "e30.AAAA"])
def test_wrong_or_missing_cookie_is_refused(kbs: RunningBroker, cookie: str | None) -> None:
    cookies = {"kbs-session-id": cookie} if cookie else None
    r = httpx.post(f"{kbs.url}/kbs/v0/attest", cookies=cookies, json={
        "runtime-data": {"nonce": "x", "tee-pubkey": TeeKey().jwk()},
        "tee-evidence": {"primary_evidence": {}, "additional_evidence": ""}})
    body = _problem(r, 401, "AttestationError")
    assert "cookie" in body["detail"]


def test_missing_token_is_refused(kbs: RunningBroker) -> None:
    r = httpx.get(f"{kbs.url}/kbs/v0/resource/{_secret(kbs)}")
    _problem(r, 401, "TokenNotFound")


def test_expired_token_is_refused(kbs: RunningBroker) -> None:
    path = _secret(kbs)
    attested = _client(kbs).attest()
    kbs.clock.offset = timedelta(seconds=kbs.config.tokens.ttl_seconds + 5)
    try:
        r = httpx.get(f"{kbs.url}/kbs/v0/resource/{path}",
                      headers={"Authorization": f"Bearer {attested.token}"})
    finally:
        kbs.clock.offset = timedelta()
    _problem(r, 401, "TokenVerifierError")


def test_foreign_signed_token_is_refused(kbs: RunningBroker) -> None:
    from cryptography.hazmat.primitives import serialization
    from joserfc import jwt
    from joserfc.jwk import ECKey

    path = _secret(kbs)
    attested = _client(kbs).attest()
    payload = json.loads(b64url_decode(attested.token.split(".")[1]))
    header = json.loads(b64url_decode(attested.token.split(".")[0]))
    other = ec.generate_private_key(ec.SECP256R1())
    key = ECKey.import_key(other.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    forged = jwt.encode(header, payload, key, algorithms=["ES256"])
    r = httpx.get(f"{kbs.url}/kbs/v0/resource/{path}",
                  headers={"Authorization": f"Bearer {forged}"})
    _problem(r, 401, "TokenVerifierError")


def test_missing_resource_is_404(kbs: RunningBroker) -> None:
    client = _client(kbs)
    attested = client.attest()
    r = httpx.get(f"{kbs.url}/kbs/v0/resource/{unique_path('absent')}",
                  headers={"Authorization": f"Bearer {attested.token}"})
    _problem(r, 404, "PluginInternalError")


# -- protocol shapes -------------------------------------------------------------------------------


def test_auth_challenge_shape(kbs: RunningBroker) -> None:
    r = httpx.post(f"{kbs.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "snp",
        "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]}})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"nonce", "extra-params"}
    assert len(base64.b64decode(body["nonce"], validate=True)) == 32
    assert body["extra-params"] == ""
    cookie = r.cookies.get("kbs-session-id")
    assert cookie and cookie.count(".") == 1 and len(cookie) < 400  # a sealed challenge
    assert "expires=" in r.headers["set-cookie"].lower()


def test_protocol_version_mismatch_is_401(kbs: RunningBroker) -> None:
    r = httpx.post(f"{kbs.url}/kbs/v0/auth", json={"version": "0.1.1", "tee": "snp"})
    body = _problem(r, 401, "AttestationError")
    assert "Version Mismatch" in body["detail"]


def test_attest_returns_an_ear_token(kbs: RunningBroker) -> None:
    attested = _client(kbs).attest()
    header = json.loads(b64url_decode(attested.token.split(".")[0]))
    claims = json.loads(b64url_decode(attested.token.split(".")[1]))
    assert header["alg"] == "ES256"
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.status"] == "affirming"
    assert set(cpu0["ear.trustworthiness-vector"]) >= {"executables", "hardware", "configuration"}
    rd = cpu0["ear.veraison.annotated-evidence"]["runtime_data_claims"]
    assert rd["tee-pubkey"]["kty"] == "EC"
    assert claims["exp"] > claims["iat"]


def test_jwks_publishes_the_token_key(kbs: RunningBroker) -> None:
    r = httpx.get(f"{kbs.url}/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys and keys[0]["kty"] == "EC" and keys[0]["crv"] == "P-256"
    assert "d" not in keys[0]


def test_health_and_metrics(kbs: RunningBroker) -> None:
    assert httpx.get(f"{kbs.url}/healthz").json()["status"] == "ok"
    _client(kbs).attest()
    text = httpx.get(f"{kbs.url}/metrics").text
    assert "veritee_http_requests_total" in text
    assert 'veritee_attestations_total{outcome="affirming",tee="snp"}' in text
    assert "veritee_audit_events_pending " in text
    assert "veritee_audit_events_dropped 0.0" in text


def test_audit_log_records_attestations_and_releases(kbs: RunningBroker) -> None:
    path = _secret(kbs)
    _client(kbs).get_secret(path)
    with kbs.admin() as admin:
        events = admin.get("/kbs/v0/audit", params={"limit": 50}).json()
    kinds = {(e["kind"], e["resource"]) for e in events}
    assert ("release", path) in kinds
    assert any(e["kind"] == "attest" and e["verdict"] == "affirming" for e in events)


# -- admin authentication --------------------------------------------------------------------------


ADMIN_CALLS = [
    ("POST", "/kbs/v0/resource/r/t/x", {"content": b"x"}),
    ("DELETE", "/kbs/v0/resource/r/t/x", {}),
    ("POST", "/kbs/v0/attestation-policy", {"json": {"policy_id": "p", "policy": ""}}),
    ("GET", "/kbs/v0/attestation-policy", {}),
    ("POST", "/kbs/v0/resource-policy", {"json": {"policy": ""}}),
    ("GET", "/kbs/v0/resource-policy", {}),
    ("POST", "/kbs/v0/reference-value", {"json": {}}),
    ("GET", "/kbs/v0/reference-value", {}),
    ("POST", "/kbs/v0/policy-test", {"json": {"tee": "snp", "evidence": {}}}),
    ("GET", "/kbs/v0/audit", {}),
]


@pytest.mark.parametrize(("method", "path", "kw"), ADMIN_CALLS)
def test_admin_refuses_without_a_token(kbs: RunningBroker, method: str, path: str,
                                       kw: dict[str, Any]) -> None:
    r = httpx.request(method, kbs.url + path, **kw)
    _problem(r, 401, "AdminAuthAccess")


@pytest.mark.parametrize(("method", "path", "kw"), ADMIN_CALLS)
def test_admin_refuses_a_wrong_role(kbs: RunningBroker, method: str, path: str,
                                    kw: dict[str, Any]) -> None:
    token = kbs.admin_token(role="auditor")
    r = httpx.request(method, kbs.url + path, headers={"Authorization": f"Bearer {token}"}, **kw)
    _problem(r, 403, "AdminAuthAccess")


def test_admin_refuses_foreign_and_expired_tokens(kbs: RunningBroker) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from veritee.broker.admin import mint_admin_token

    foreign = mint_admin_token(ed25519.Ed25519PrivateKey.generate(), now=kbs.clock())
    expired = kbs.admin_token(lifetime=timedelta(seconds=-10))
    for token in (foreign, expired, "not.a.jwt"):
        r = httpx.get(f"{kbs.url}/kbs/v0/audit", headers={"Authorization": f"Bearer {token}"})
        _problem(r, 401, "AdminAuthAccess")


def test_policy_dry_run_explains_without_releasing(kbs: RunningBroker) -> None:
    other = bytes(48)
    emu = SnpEmulator(measurement=other)
    with kbs.admin() as admin:
        r = admin.post("/kbs/v0/policy-test", json={"tee": "snp", "evidence": emu.coco_evidence()})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["verified"] is True
    assert result["status"] != "affirming"
    assert other.hex() in result["explanation"]


def test_resource_policy_can_be_replaced(tmp_path: Path) -> None:
    deny = b'package policy\ndefault allow := false\n'
    with running_broker(tmp_path) as kbs:
        _provision(kbs)
        path = _secret(kbs)
        with kbs.admin() as admin:
            r = admin.post("/kbs/v0/resource-policy",
                           json={"policy": base64.urlsafe_b64encode(deny).decode().rstrip("=")})
            assert r.status_code == 200, r.text
            bad = admin.post("/kbs/v0/resource-policy", json={"policy": "cGFja2FnZQ"})
            _problem(bad, 400, "ParsePolicyError")
        kbs.broker.forget_cached()
        client = _client(kbs)
        with pytest.raises(KbsClientError) as info:
            client.get_secret(path)
        assert info.value.http_status == 403
