"""TDX and SGX guests through the broker's KBS flow, with the emulated platforms' collateral
configured as the broker's collateral files: genuine guests are affirming; init-data is bound
to MRCONFIGID (a guest presenting other init-data than it was launched with is refused); a
debug TD, an unknown MRTD, an out-of-date TCB and a tampered event log are refused, each with
its reason."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.broker import RunningBroker, running_broker
from veritee import binding
from veritee.attester.dcap.emulated import EmulatedSgxCollector, EmulatedTdxCollector
from veritee.attester.kbs_client import KbsClient
from veritee.errors import MisuseError
from veritee.tee import get_platform
from veritee.testing.dcap import DEFAULT_MR_ENCLAVE, DEFAULT_MR_TD, DcapEmulator

INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"aa.toml" = "url = 1"\n'


def _collateral(folder: Path) -> Path:
    folder.mkdir()
    for tee in ("tdx", "sgx"):
        emulator = DcapEmulator(tee=tee)  # type: ignore[arg-type]
        (folder / f"{tee}.collateral.json").write_text(json.dumps(
            emulator.combined_collateral()))
    return folder


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    tmp = tmp_path_factory.mktemp("dcap-broker")
    with running_broker(tmp, collateral=(str(_collateral(tmp / "collateral")),)) as running:
        with running.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json={
                "tdx_mr_td": [DEFAULT_MR_TD.hex()], "sgx_mr_enclave": [DEFAULT_MR_ENCLAVE.hex()],
                "allow_emulated": [True]}).status_code == 200
        yield running


def _attest(kbs: RunningBroker, emulator: DcapEmulator, *,
            init_data: dict[str, str] | None = None) -> httpx.Response:
    tee = emulator.tee
    with KbsClient(kbs.url, tee, emulator.coco_evidence) as client:
        nonce, _, cookie = client.auth()
        runtime = client.runtime_data(nonce)
    digest = binding.runtime_data_digest(runtime, "sha384")
    evidence = emulator.coco_evidence(digest + bytes(16))
    body: dict[str, Any] = {"runtime-data": runtime, "tee-evidence": evidence}
    if init_data is not None:
        body["init-data"] = init_data
    return httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie}, json=body)


def _cpu0(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    payload = response.json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    cpu0: dict[str, Any] = claims["submods"]["cpu0"]
    return cpu0


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_a_genuine_guest_is_affirming(kbs: RunningBroker, tee: str) -> None:
    cpu0 = _cpu0(_attest(kbs, DcapEmulator(tee=tee)))  # type: ignore[arg-type]
    assert cpu0["ear.status"] == "affirming"
    assert cpu0["ear.veraison.annotated-evidence"][tee]["tcb_status"] == "UpToDate"


def test_init_data_is_bound_to_mrconfigid(kbs: RunningBroker) -> None:
    launched = hashlib.sha384(INIT_DATA.encode()).digest()
    guest = DcapEmulator(tee="tdx", mr_config_id=launched)
    cpu0 = _cpu0(_attest(kbs, guest, init_data={"format": "toml", "body": INIT_DATA}))
    assert cpu0["ear.veraison.annotated-evidence"]["init_data_claims"]["claims"] == {
        "aa.toml": "url = 1"}
    other = INIT_DATA.replace("url = 1", "url = 2")
    refused = _attest(kbs, guest, init_data={"format": "toml", "body": other})
    assert refused.status_code == 401
    assert "InitDataMismatchError: tdx mr_config_id is" in refused.json()["detail"]


@pytest.mark.parametrize(("settings", "why"), [
    ({"debug": True}, "tdx.debug"),
    ({"mr_td": bytes(48)}, "tdx.mr_td"),
    ({"tcb_out_of_date": True}, "tdx.tcb_status"),
])
def test_refusals_say_why(kbs: RunningBroker, settings: dict[str, Any], why: str) -> None:
    cpu0 = _cpu0(_attest(kbs, DcapEmulator(tee="tdx", **settings)))
    assert cpu0["ear.status"] != "affirming"
    assert why in json.dumps(cpu0)


def test_a_tampered_event_log_is_refused(kbs: RunningBroker) -> None:
    refused = _attest(kbs, DcapEmulator(tee="tdx", knob="tampered_event"))
    assert refused.status_code == 401
    assert "BindingError" in refused.json()["detail"] and "RTMR" in refused.json()["detail"]


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_the_emulated_collector_gets_a_secret(kbs: RunningBroker, tee: str) -> None:
    """``veritee attest --tee tdx|sgx --emulate``'s collector, end to end."""
    collector = get_platform(tee).load("emulated_collector")()
    assert isinstance(collector, EmulatedTdxCollector | EmulatedSgxCollector)
    secret = b"a secret for emulated guests"
    with kbs.admin() as admin:
        assert admin.post("/kbs/v0/resource/dcap/key/test", content=secret, headers={
            "Content-Type": "application/octet-stream"}).status_code == 200
    with KbsClient(kbs.url, tee, collector) as client:
        assert client.get_secret("dcap/key/test") == secret
    with pytest.raises(MisuseError, match="64"):
        collector(bytes(32))


def test_a_grace_period_makes_expired_collateral_a_claim(tmp_path: Path) -> None:
    """Configured grace: collateral past its nextUpdate verifies, the claim says so, and the
    default policy refuses it unless a reference value allows it."""
    folder = tmp_path / "collateral"
    folder.mkdir()
    stale = DcapEmulator(knob="expired_collateral")
    (folder / "tdx.collateral.json").write_text(json.dumps(stale.combined_collateral()))
    refs = {"tdx_mr_td": [DEFAULT_MR_TD.hex()], "allow_emulated": [True]}
    with running_broker(tmp_path / "b", collateral=(str(folder),),
                        collateral_grace_seconds=7 * 86400) as graced:
        with graced.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json=refs).status_code == 200
        cpu0 = _cpu0(_attest(graced, DcapEmulator()))
        assert cpu0["ear.veraison.annotated-evidence"]["tdx"]["collateral_expired"] is True
        assert cpu0["ear.status"] != "affirming" and "tdx.collateral" in json.dumps(cpu0)
        with graced.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json={
                "tdx_allow_expired_collateral": [True]}).status_code == 200
        assert _cpu0(_attest(graced, DcapEmulator()))["ear.status"] == "affirming"
    with running_broker(tmp_path / "c", collateral=(str(folder),)) as strict:
        refused = _attest(strict, DcapEmulator())
        assert refused.status_code == 401 and "ExpiredError" in refused.json()["detail"]


def _mutations() -> list[Any]:
    quote = base64.b64decode(DcapEmulator().coco_evidence(bytes(64))["quote"])
    cases: list[Any] = [
        {"quote": base64.b64encode(quote[:cut]).decode()} for cut in (0, 10, 47, 48, 631, 700)]
    for offset in (0, 2, 4, 12, 30, 48 + 136, 632, 700, len(quote) - 1):
        flipped = bytearray(quote)
        flipped[offset] ^= 0x80
        cases.append({"quote": base64.b64encode(bytes(flipped)).decode(), "cc_eventlog": None})
    cases += [{"quote": 7}, {"quote": ["x"]}, {"quote": "\ud800"}, {"cc_eventlog": "AAAA"},
              {"quote": base64.b64encode(quote).decode(), "cc_eventlog": "not base64!"},
              {"quote": base64.b64encode(quote).decode(),
               "cc_eventlog": base64.b64encode(b"\xff" * 64).decode()},
              "", [], 12, {"a": {"b": {"c": {"d": [[[[[[[]]]]]]]}}}}]
    return cases


@pytest.mark.parametrize("evidence", _mutations())
def test_bad_tdx_evidence_is_refused_with_a_problem_never_a_500(kbs: RunningBroker,
                                                                evidence: Any) -> None:
    with KbsClient(kbs.url, "tdx", DcapEmulator().coco_evidence) as client:
        nonce, _, cookie = client.auth()
        runtime = client.runtime_data(nonce)
    body = json.dumps({"runtime-data": runtime, "tee-evidence": evidence})  # \ud800 escaped
    r = httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie},
                   content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 401), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"]
