"""The broker under attack: each case reproduces an attack or a fault and checks the outcome
(never a duration). init-data binding, unverified additional evidence, session budgets,
trusted proxies, bounded extra-params, a locked store, policies that cannot evaluate, vendor
fetches for forged reports."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.broker import RunningBroker, running_broker, unique_path
from veritee import binding
from veritee.attester.kbs_client import KbsClient
from veritee.broker.config import LimitsConfig
from veritee.encoding import b64url
from veritee.evidence import TsmReport
from veritee.server.guards import TrustedProxies
from veritee.tee.snp.evidence import TSM_PROVIDER
from veritee.tee.snp.kds import KDS_BASE_URL
from veritee.testing.network import SilentService
from veritee.testing.snp import DEFAULT_MEASUREMENT, SnpEmulator

INIT_DATA = 'version = "0.1.0"\nalgorithm = "{alg}"\n[data]\n"aa.toml" = "url = 1"\n'


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("hardening")) as running:
        with running.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json={
                "snp_launch_measurement": [DEFAULT_MEASUREMENT.hex()],
                "allow_emulated": [True]}).status_code == 200
        yield running


def _attest(kbs: RunningBroker, emu: SnpEmulator, *, init_data: dict[str, str] | None = None,
            additional: str = "") -> httpx.Response:
    with KbsClient(kbs.url, "snp", emu.coco_evidence) as client:
        nonce, _, cookie = client.auth()
        runtime = {**client.runtime_data(nonce), "additional-evidence": additional}
    digest = binding.runtime_data_digest(runtime, "sha384")
    body: dict[str, Any] = {
        "runtime-data": runtime,
        "tee-evidence": {"primary_evidence": emu.coco_evidence(digest + bytes(16)),
                         "additional_evidence": additional}}
    if init_data is not None:
        body["init-data"] = init_data
    return httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json=body)


def _annotated(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    annotated: dict[str, Any] = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    return annotated


# -- init-data is bound to the hardware report -------------------------------------------------


@pytest.mark.parametrize("alg", ["sha256", "sha384", "sha-512"])
def test_init_data_bound_to_host_data_reaches_the_policy(kbs: RunningBroker, alg: str) -> None:
    body = INIT_DATA.format(alg=alg)
    digest = hashlib.new(alg.replace("-", ""), body.encode()).digest()
    host_data = (digest + bytes(32))[:32]
    r = _attest(kbs, SnpEmulator(host_data=host_data), init_data={"format": "toml", "body": body})
    assert r.status_code == 200, r.text
    claims = _annotated(r.json()["token"])["init_data_claims"]
    assert claims["claims"] == {"aa.toml": "url = 1"}
    assert claims["algorithm"] == alg.replace("-", "")


def test_other_init_data_than_the_report_carries_is_refused(kbs: RunningBroker) -> None:
    """The attack: a guest launched with one init-data presents another."""
    launched = hashlib.sha384(INIT_DATA.format(alg="sha384").encode()).digest()[:32]
    presented = INIT_DATA.format(alg="sha384").replace("url = 1", "url = 2")
    r = _attest(kbs, SnpEmulator(host_data=launched),
                init_data={"format": "toml", "body": presented})
    assert r.status_code == 401
    assert r.json()["title"] == "AttestationError"
    assert "InitDataMismatchError: snp host_data is" in r.json()["detail"]


def test_without_init_data_no_init_data_claims_appear(kbs: RunningBroker) -> None:
    r = _attest(kbs, SnpEmulator())
    assert r.status_code == 200
    assert _annotated(r.json()["token"])["init_data_claims"] == {}


@pytest.mark.parametrize(("body", "reason"), [
    ('version = "0.1.0"\n[data]\n', "init-data algorithm is None"),
    ('algorithm = "md5"\n', "init-data algorithm is 'md5'"),
    ("x = " + "[" * 5000 + "]" * 5000, "not valid TOML"),
    ("= =", "not valid TOML"),
    ("", "empty"),
    ('algorithm = "sha384"\ndata = 3\n', "'data' must be a table"),
])
def test_malformed_init_data_is_a_bad_request(kbs: RunningBroker, body: str,
                                              reason: str) -> None:
    r = _attest(kbs, SnpEmulator(), init_data={"format": "toml", "body": body})
    assert r.status_code == 400, r.text
    assert r.json()["title"] == "SerdeError" and reason in r.json()["detail"]


def test_unverified_additional_evidence_stays_out_of_the_token(kbs: RunningBroker) -> None:
    """Additional evidence no verifier checked never reaches policies as verified claims."""
    additional = json.dumps({"nvidia": {"evidence": "forged"}})
    r = _attest(kbs, SnpEmulator(), additional=additional)
    assert r.status_code == 200, r.text
    annotated = _annotated(r.json()["token"])
    assert "additional-evidence" not in annotated["runtime_data_claims"]
    assert "forged" not in r.json()["token"]
    with kbs.admin() as admin:
        events = admin.get("/kbs/v0/audit", params={"kind": "attest", "limit": 5}).json()
    assert any(e["detail"].get("unverified") == {"additional-evidence": len(additional)}
               for e in events)


# -- nobody unauthenticated can fill or stall the broker ---------------------------------------


def test_auth_writes_nothing(kbs: RunningBroker) -> None:
    """50 challenges grew the database by 100 MB before; now /auth stores nothing."""
    db = Path(kbs.config.store.url.removeprefix("sqlite:///"))
    before = _sessions(db)
    extra = {"supported-hash-algorithms": ["sha384"], "pad": "x" * 3000}
    for _ in range(50):
        r = httpx.post(f"{kbs.url}/kbs/v0/auth",
                       json={"version": "0.4.0", "tee": "snp", "extra-params": extra})
        assert r.status_code == 200
    assert _sessions(db) == before


def _sessions(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        count: int = conn.execute("select count(*) from sessions").fetchone()[0]
    return count


def test_oversized_extra_params_are_refused(kbs: RunningBroker) -> None:
    r = httpx.post(f"{kbs.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "snp", "extra-params": {"pad": "x" * 5000}})
    assert r.status_code == 400 and "extra-params is" in r.json()["detail"]


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[RunningBroker]:
    limits = LimitsConfig(sessions_per_minute=6, sessions_burst=2, trusted_proxies=("127.0.0.1",))
    with running_broker(tmp_path, limits=limits) as running:
        yield running


def test_sessions_per_client_are_limited_with_retry_after(limited: RunningBroker) -> None:
    def auth(forwarded: str) -> httpx.Response:
        return httpx.post(f"{limited.url}/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp"},
                          headers={"X-Forwarded-For": forwarded})

    assert [auth("192.0.2.7").status_code for _ in range(2)] == [200, 200]
    refused = auth("192.0.2.7")
    assert refused.status_code == 429 and refused.json()["title"] == "TooManyRequests"
    assert int(refused.headers["retry-after"]) >= 1
    # Another client behind the trusted proxy has its own budget.
    assert auth("198.51.100.9").status_code == 200
    # The proxy's own hops are skipped; the client is the last untrusted address.
    assert auth("192.0.2.7, 127.0.0.1").status_code == 429


def test_forwarded_for_is_ignored_from_untrusted_peers() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("203.0.113.5", ["1.2.3.4"]) == "203.0.113.5"
    assert proxies.client("10.1.2.3", ["1.2.3.4, 10.9.9.9"]) == "1.2.3.4"
    assert proxies.client("10.1.2.3", ["not-an-ip"]) == "10.1.2.3"
    assert TrustedProxies([]).client("10.1.2.3", ["1.2.3.4"]) == "10.1.2.3"


def test_a_locked_store_gives_503_while_healthz_answers(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: writes answer a retryable 503, /healthz
    does not touch the store, /readyz says the store is not writable."""
    with running_broker(tmp_path, busy_timeout_ms=200) as kbs:
        db = kbs.config.store.url.removeprefix("sqlite:///")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            assert httpx.get(f"{kbs.url}/healthz").status_code == 200
            ready = httpx.get(f"{kbs.url}/readyz")
            assert ready.status_code == 503 and ready.json()["title"] == "StorageError"
            assert ready.headers["retry-after"] == "1"
            r = _attest(kbs, SnpEmulator())
            assert r.status_code == 503 and r.json()["title"] == "StorageError", r.text
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert httpx.get(f"{kbs.url}/readyz").status_code == 200


# -- policies that cannot evaluate are refused when installed ----------------------------------


@pytest.mark.parametrize(("kind", "source"), [
    ("attestation", "package policy\nx := 1\n"),  # compiles, defines no trust claim
    ("attestation", 'package policy\ntrust_claims := {"hardware": "two"}\n'),
    ("resource", "package policy\nallow := true\nallow := false\n"),  # a conflict when run
])
def test_a_policy_that_cannot_evaluate_is_refused(kbs: RunningBroker, kind: str,
                                                  source: str) -> None:
    path = "/kbs/v0/attestation-policy" if kind == "attestation" else "/kbs/v0/resource-policy"
    body: dict[str, Any] = {"policy": b64url(source.encode())}
    if kind == "attestation":
        body.update(type="rego", policy_id=f"p-{unique_path()}")
    with kbs.admin() as admin:
        r = admin.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["title"] == "ParsePolicyError"


# -- a vendor fetch for unverified input cannot stall the broker ------------------------------


@pytest.fixture
def vendor() -> Iterator[SilentService]:
    with SilentService(backlog=16) as silent:
        yield silent


def _stranger_report(report_data: bytes) -> bytes:
    """A validly shaped report of a chip nobody knows (random CHIP_ID), without certificates:
    verifying it needs the vendor's VCEK."""
    return SnpEmulator(chip_seed=secrets.token_bytes(16)).report(report_data)


def _post_attest(url: str, report: Callable[[bytes], bytes]) -> httpx.Response:
    with KbsClient(url, "snp", SnpEmulator().coco_evidence) as client:
        nonce, _, cookie = client.auth()
        runtime = client.runtime_data(nonce)
    digest = binding.runtime_data_digest(runtime, "sha384")
    evidence = TsmReport(report(digest + bytes(16)), b"", TSM_PROVIDER).to_json()
    return httpx.post(f"{url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, timeout=60,
                      json={"runtime-data": runtime,
                            "tee-evidence": {"primary_evidence": evidence,
                                             "additional_evidence": ""}})


def test_a_forged_report_waiting_on_the_vendor_does_not_stall_auth(
        tmp_path: Path, vendor: SilentService) -> None:
    """The attack of issue 7 item 5: one forged /attest whose VCEK fetch hangs used to stall
    every request of the worker. Here /auth keeps answering while that fetch is still
    outstanding (the attest is still in flight when the /auth answers arrive)."""
    with running_broker(
            tmp_path, limits=LimitsConfig(sessions_per_minute=0, fetch_timeout_seconds=60),
            offline=False, mirrors=[f"{KDS_BASE_URL}={vendor.url}"]) as kbs:
        answers: list[httpx.Response] = []
        attest = threading.Thread(target=lambda: answers.append(
            _post_attest(kbs.url, _stranger_report)), daemon=True)
        attest.start()
        assert vendor.accepted.wait(30), "the forged report never reached the vendor"
        for _ in range(5):
            r = httpx.post(kbs.url + "/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp"},
                           timeout=20)
            assert r.status_code == 200, r.text
        assert attest.is_alive(), "the forged attest finished before the /auth answers"
        vendor.close()  # the fetch fails; the forged attest is refused
        attest.join(30)
    assert answers and answers[0].status_code >= 400
    assert answers[0].headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("offset", "value"), [
    (0x000, b"\x63\x00\x00\x00"),  # VERSION 99
    (0x034, b"\x02\x00\x00\x00"),  # SIGNATURE_ALGO 2 (none exists)
    (0x04C, b"\x01"),                # a reserved byte that must be zero
], ids=["version", "signature-algo", "reserved"])
def test_structural_checks_run_before_any_vendor_fetch(tmp_path: Path, vendor: SilentService,
                                                        offset: int, value: bytes) -> None:
    def malformed(report_data: bytes) -> bytes:
        report = bytearray(_stranger_report(report_data))
        report[offset:offset + len(value)] = value
        return bytes(report)

    with running_broker(tmp_path, offline=False,
                        mirrors=[f"{KDS_BASE_URL}={vendor.url}"]) as kbs:
        r = _post_attest(kbs.url, malformed)
    assert 400 <= r.status_code < 500, r.text
    assert not vendor.accepted.is_set(), "the vendor was asked about an impossible report"
