"""Bad input to every endpoint: always a 4xx with an RFC 7807 body, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.broker import RunningBroker, running_broker
from veritee.attester.kbs_client import TeeKey
from veritee.bench.hostile import endpoint_templates, field_paths, replaced

JSON_ENDPOINTS = [
    ("POST", "/kbs/v0/auth", False),
    ("POST", "/kbs/v0/attest", False),
    ("POST", "/kbs/v0/attestation-policy", True),
    ("POST", "/kbs/v0/resource-policy", True),
    ("POST", "/kbs/v0/reference-value", True),
    ("POST", "/kbs/v0/policy-test", True),
    # A platform's own routes (the SEV host side).
    ("POST", "/sev/v0/session", False),
    ("POST", "/sev/v0/secret", False),
]
WRONG_TYPES: list[Any] = [None, 1, "text", [], [1, 2], True, {"version": 1, "tee": ["snp"]},
                          {"runtime-data": "x", "tee-evidence": 3}, {"policy_id": 5, "policy": {}},
                          {"policy": 12}, {"tee": "snp", "evidence": 7},
                          {"tee": "no-such-tee", "evidence": {}}, {"a": {"b": {"c": [None] * 50}}}]
RAW_BODIES = [b"", b"{", b"\xff\xfe\x00", b"null", b"[]" * 1000, b'{"version": "0.4.0"' + b" " * 10,
              b'{"version": "0.4.0", "tee": "snp", "extra-params": NaN}',
              b'{"version": "0.4.0", "tee": "snp", "extra-params": {"x": Infinity}}',
              b"[" * 100000 + b"]" * 100000]


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("sweep")) as running:
        yield running


def _headers(kbs: RunningBroker, admin: bool,
             content_type: str = "application/json") -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if admin:
        headers["Authorization"] = f"Bearer {kbs.admin_token()}"
    return headers


def _assert_problem(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body, dict) and {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == r.status_code


@pytest.mark.parametrize(("method", "path", "admin"), JSON_ENDPOINTS)
@pytest.mark.parametrize("payload", WRONG_TYPES, ids=lambda p: json.dumps(p)[:30])
def test_wrong_json_types(kbs: RunningBroker, method: str, path: str, admin: bool,
                          payload: Any) -> None:
    r = httpx.request(method, kbs.url + path, content=json.dumps(payload),
                      headers=_headers(kbs, admin))
    _assert_problem(r)


@pytest.mark.parametrize(("method", "path", "admin"), JSON_ENDPOINTS)
@pytest.mark.parametrize("raw", RAW_BODIES, ids=lambda b: repr(b[:12]))
def test_malformed_bodies(kbs: RunningBroker, method: str, path: str, admin: bool,
                          raw: bytes) -> None:
    r = httpx.request(method, kbs.url + path, content=raw, headers=_headers(kbs, admin))
    _assert_problem(r)


@pytest.mark.parametrize(("method", "path", "admin"), JSON_ENDPOINTS)
def test_wrong_content_type(kbs: RunningBroker, method: str, path: str, admin: bool) -> None:
    r = httpx.request(method, kbs.url + path, content=b"version=0.4.0&tee=snp",
                      headers=_headers(kbs, admin, "application/x-www-form-urlencoded"))
    _assert_problem(r)
    assert r.status_code in (400, 415)


@pytest.mark.parametrize(("method", "path", "admin"),
                         [*JSON_ENDPOINTS, ("POST", "/kbs/v0/resource/a/b/c", True)])
def test_oversized_bodies(kbs: RunningBroker, method: str, path: str, admin: bool) -> None:
    big = b'{"x": "' + b"a" * (kbs.config.server.max_body_bytes + 10) + b'"}'
    r = httpx.request(method, kbs.url + path, content=big, headers=_headers(kbs, admin))
    _assert_problem(r)
    assert r.status_code == 413


def test_oversized_chunked_body(kbs: RunningBroker) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(kbs.config.server.max_body_bytes // 65536 + 2):
            yield b"a" * 65536

    r = httpx.post(kbs.url + "/kbs/v0/auth", content=chunks(), headers=_headers(kbs, False))
    _assert_problem(r)


def test_unknown_tee(kbs: RunningBroker) -> None:
    r = httpx.post(kbs.url + "/kbs/v0/auth", json={"version": "0.4.0", "tee": "no-such-tee"})
    _assert_problem(r)


def _session(kbs: RunningBroker) -> tuple[str, str]:
    r = httpx.post(kbs.url + "/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp"})
    return r.json()["nonce"], r.cookies["kbs-session-id"]


GARBAGE_EVIDENCE: list[Any] = [
    {}, {"attestation_report": {}}, {"attestation_report": "AAAA", "cert_chain": 5},
    {"outblob": "!!!", "auxblob": ""}, {"outblob": base64.b64encode(b"x" * 1184).decode()},
    "deadbeef", "", ["a"], {"primary_evidence": {"report": 1}},
    {"attestation_report": {"version": "x" * 100}},
]


@pytest.mark.parametrize("evidence", GARBAGE_EVIDENCE, ids=lambda e: json.dumps(e)[:30])
def test_garbage_evidence(kbs: RunningBroker, evidence: Any) -> None:
    nonce, cookie = _session(kbs)
    r = httpx.post(kbs.url + "/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json={
        "runtime-data": {"nonce": nonce, "tee-pubkey": TeeKey().jwk()},
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""}})
    _assert_problem(r)


@pytest.mark.parametrize("pubkey", [
    {}, {"kty": "EC"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    {"kty": "oct", "k": "AAAA"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB"}])
def test_bad_tee_pubkey(kbs: RunningBroker, pubkey: dict[str, Any]) -> None:
    nonce, cookie = _session(kbs)
    r = httpx.post(kbs.url + "/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json={
        "runtime-data": {"nonce": nonce, "tee-pubkey": pubkey},
        "tee-evidence": {"primary_evidence": {}, "additional_evidence": ""}})
    _assert_problem(r)


@pytest.mark.parametrize("path", ["/kbs/v0/resource/a/b", "/kbs/v0/resource/a/b/c/d",
                                  "/kbs/v0/resource/a/../c", "/kbs/v0/nothing", "/kbs/v1/auth",
                                  "/kbs/v0/resource/a%2Fb/c/d"])
def test_unknown_paths(kbs: RunningBroker, path: str) -> None:
    r = httpx.get(kbs.url + path)
    _assert_problem(r)


@pytest.mark.parametrize("auth", ["Bearer", "Bearer not-a-jwt", "Basic abc", "Bearer a.b.c",
                                  "Bearer " + "A" * 5000])
def test_bad_bearer_tokens_on_resources(kbs: RunningBroker, auth: str) -> None:
    r = httpx.get(kbs.url + "/kbs/v0/resource/a/b/c", headers={"Authorization": auth})
    _assert_problem(r)


def test_wrong_methods(kbs: RunningBroker) -> None:
    for method, path in [("GET", "/kbs/v0/auth"), ("PUT", "/kbs/v0/attest"),
                         ("PATCH", "/kbs/v0/resource/a/b/c")]:
        _assert_problem(httpx.request(method, kbs.url + path))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["version", "tee", "extra-params", "runtime-data",
                                             "tee-evidence", "init-data", "nonce"]), json_values))
def test_fuzzed_protocol_bodies(kbs: RunningBroker, body: dict[str, Any]) -> None:
    for path in ("/kbs/v0/auth", "/kbs/v0/attest"):
        r = httpx.post(kbs.url + path, json=body)
        if r.status_code != 200:
            _assert_problem(r)


def test_sweep_covers_every_route(kbs: RunningBroker, tmp_path: Path) -> None:
    """Every POST route that takes a body is in the sweep above."""
    spec = httpx.get(kbs.url + "/openapi.json").json()
    posts = {p for p, ops in spec["paths"].items() if "post" in ops}
    swept = {p for _, p, _ in JSON_ENDPOINTS} | {"/kbs/v0/resource/{repository}/{kind}/{tag}"}
    assert posts <= swept, posts - swept


# -- property: any field of any valid body replaced by a hostile value -------------------------

_TEMPLATES = [t for t in endpoint_templates("snp") if t[0] == "POST"]
_FIELDS = [(method, path, body, admin, field)
           for method, path, body, admin in _TEMPLATES for field in field_paths(body)]


def _nested(depth: int) -> str:
    return "".join("[" if level % 2 else '{"k":' for level in range(depth)) + "0" + "".join(
        "]" if level % 2 else "}" for level in reversed(range(depth)))


_SLOT = "\x00veritee-slot\x00"

#: Raw JSON text put where one field was: lone surrogates as JSON escapes, deep nesting,
#: numbers no float holds, long strings, and ordinary values of any type.
hostile_fragments = st.one_of(
    st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b", "\\ud800\\ud800"]).map(
        lambda e: f'"{e}"'),
    st.builds(_nested, st.integers(min_value=30, max_value=3000)),
    st.integers(min_value=-(2**200), max_value=2**200).map(str),
    st.sampled_from(["1e999999", "-1e999999", "NaN", "-Infinity", "1" * 5000, "-0", "0.1e-400"]),
    st.text(min_size=1, max_size=3).map(lambda t: json.dumps(t * 20_000)),
    json_values.map(json.dumps),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(_FIELDS), fragment=hostile_fragments)
def test_any_field_of_any_endpoint_replaced(kbs: RunningBroker,
                                             case: tuple[str, str, Any, bool, tuple[Any, ...]],
                                             fragment: str) -> None:
    """Admin endpoints with a valid token, KBS endpoints with a live session: whatever one
    field becomes, the answer is a success or a problem body, never a 500."""
    method, path, body, admin, field = case
    document = replaced(body, field, _SLOT)
    cookies = {}
    if path == "/kbs/v0/attest":
        nonce, cookies["kbs-session-id"] = _session(kbs)
        runtime = document.get("runtime-data")
        if isinstance(runtime, dict) and field[:2] != ("runtime-data", "nonce"):
            runtime["nonce"] = nonce
    raw = json.dumps(document).replace(json.dumps(_SLOT), fragment)
    r = httpx.request(method, kbs.url + path, content=raw.encode(), cookies=cookies,
                      headers=_headers(kbs, admin))
    if r.status_code != 200:
        _assert_problem(r)


@pytest.mark.parametrize("cookie", [b"\xc3\xa9.AAAA", b"\xff\xfe.AA", b"a.b.c"])
def test_non_ascii_session_cookies_are_refused(kbs: RunningBroker, cookie: bytes) -> None:
    for method, path in (("POST", "/kbs/v0/attest"), ("GET", "/kbs/v0/resource/a/b/c")):
        r = httpx.request(method, kbs.url + path, content=b"{}", headers=[
            (b"Content-Type", b"application/json"), (b"Cookie", b"kbs-session-id=" + cookie)])
        _assert_problem(r)
