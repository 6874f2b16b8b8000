"""SEV and SEV-ES launches through a real broker: the host asks for a launch session for its
(emulated) platform's chain, the emulated firmware runs LAUNCH_START with it, measures what
the VMM loads, the host relays the measurement, and the firmware decrypts the secret the
broker returns — only when the launch digest is a reference value the operator opted in
for. Refused: another kernel (with an explanation), a digest not opted in, a debug policy,
a replayed launch id, a forged launch id, a measurement from another session, and the
KBS routes for these TEEs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from support.broker import RunningBroker, running_broker
from support.sev import provision_sev
from veritee.tee.snp.host_cli import BrokerRefusedError, SevBroker
from veritee.tee.snp.sev_launch import secret_guid
from veritee.testing.snp.sev import SevFirmware
from veritee.testing.snp.sev_host import NOKS, EmulatedSevGuest

SECRET = b"the root disk key of a SEV guest"
GENUINE = {"sev": EmulatedSevGuest("sev"), "sev-es": EmulatedSevGuest("sev-es", vcpus=3)}
NOT_OPTED_IN = EmulatedSevGuest("sev", append="console=ttyS0 not-opted-in")


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("sev")) as broker:
        yield broker


@pytest.fixture(scope="module")
def path(kbs: RunningBroker) -> str:
    digests = [g.launch_digest().hex() for g in GENUINE.values()]
    return provision_sev(kbs, SECRET, known=[*digests, NOT_OPTED_IN.launch_digest().hex()],
                         opted_in=digests)


@pytest.mark.parametrize("tee", ["sev", "sev-es"])
def test_a_genuine_launch_gets_its_secret(kbs: RunningBroker, path: str, tee: str) -> None:
    table = GENUINE[tee].launch(kbs.url, [path])
    assert table == {secret_guid(path): SECRET}


def test_a_guest_with_another_kernel_is_refused_with_an_explanation(
        kbs: RunningBroker, path: str) -> None:
    other = EmulatedSevGuest("sev", kernel=b"another kernel")
    with pytest.raises(BrokerRefusedError) as refused:
        other.launch(kbs.url, [path])
    assert refused.value.http_status == 401
    assert "matches none of the 3 reference launch digests" in refused.value.detail
    assert "kernel" in refused.value.detail


def test_a_digest_not_opted_in_is_refused(kbs: RunningBroker, path: str) -> None:
    with pytest.raises(BrokerRefusedError) as refused:
        NOT_OPTED_IN.launch(kbs.url, [path])
    assert refused.value.http_status == 403
    assert "sev.host_relayed" in refused.value.detail
    assert "sev_accept_host_relayed" in refused.value.detail


def test_a_debug_policy_is_refused(kbs: RunningBroker, path: str) -> None:
    debug = EmulatedSevGuest("sev", policy=NOKS)  # NODBG clear
    with kbs.admin() as admin:
        admin.post("/kbs/v0/reference-value", json={
            "sev_launch_digest": [debug.launch_digest().hex()]})
    with pytest.raises(BrokerRefusedError) as refused:
        debug.launch(kbs.url, [path])
    assert refused.value.http_status == 403
    assert "sev.policy.nodbg" in refused.value.detail


def _relayed(kbs: RunningBroker, path: str) -> tuple[SevBroker, dict, SevFirmware]:
    guest = GENUINE["sev"]
    firmware = SevFirmware()
    broker = SevBroker(kbs.url, deadline=10)
    offer = broker.session("sev", guest.guest_policy, {"chain": base64.b64encode(
        firmware.export_full()).decode()})
    firmware.launch_start(offer.godh_cert, offer.session, guest.guest_policy)
    guest.load(firmware)
    measure, mnonce = firmware.launch_measure()
    return broker, guest.relayed(offer.launch_id, firmware, measure + mnonce, [path]), firmware


def test_a_launch_id_is_used_once(kbs: RunningBroker, path: str) -> None:
    broker, request, firmware = _relayed(kbs, path)
    answer = broker.secret(request)
    firmware.launch_secret(answer.header, answer.secret)
    with pytest.raises(BrokerRefusedError) as refused:
        broker.secret(request)
    broker.close()
    assert refused.value.http_status == 401
    assert "used already" in refused.value.detail


def test_a_forged_launch_id_or_another_sessions_measurement_is_refused(
        kbs: RunningBroker, path: str) -> None:
    broker, request, _ = _relayed(kbs, path)
    body, _, mac = request["launch-id"].partition(".")
    forged = {**request, "launch-id": f"{body}.{mac[::-1]}"}
    with pytest.raises(BrokerRefusedError) as refused:
        broker.secret(forged)
    assert refused.value.http_status == 401 and "not issued by this broker" in \
        refused.value.detail
    other_broker, other, _ = _relayed(kbs, path)
    other_broker.close()
    swapped = {**request, "measurement": other["measurement"]}
    with pytest.raises(BrokerRefusedError) as refused:
        broker.secret(swapped)
    broker.close()
    assert refused.value.http_status == 401


def test_the_secret_is_bound_to_this_launch(kbs: RunningBroker, path: str) -> None:
    """A packet for one launch does not open in another (its MAC covers that MEASURE)."""
    broker, request, _ = _relayed(kbs, path)
    answer = broker.secret(request)
    other_broker, _, other = _relayed(kbs, path)
    broker.close()
    other_broker.close()
    with pytest.raises(Exception, match="MAC"):
        other.launch_secret(answer.header, answer.secret)


def test_kbs_routes_refuse_sev_guests(kbs: RunningBroker) -> None:
    answer = httpx.post(f"{kbs.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "sev", "extra-params": ""})
    assert answer.status_code == 400
    assert "veritee host" in answer.json()["detail"]


@pytest.mark.parametrize("body", [
    {}, {"tee": "tdx", "policy": 1, "platform": {}}, {"tee": "sev", "policy": -1},
    {"tee": "sev", "policy": 5, "platform": {"chain": "AAAA"}},
    {"tee": "sev-es", "policy": 1, "platform": {"chain": "AAAA"}},
    {"tee": "sev", "policy": 1, "platform": {"chain": "\ud800"}},
    {"tee": "sev", "policy": 1, "platform": {"chain": "AAAA"}},
    {"tee": "sev", "policy": 1, "platform": "not an object"},
])
def test_bad_session_requests_get_typed_problems(kbs: RunningBroker, body: dict) -> None:
    answer = httpx.post(f"{kbs.url}/sev/v0/session", content=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"})
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize("body", [
    {}, {"launch-id": 7}, {"launch-id": "a.b"}, {"launch-id": "x" * 5000},
    {"launch-id": "\ud800.x"},
])
def test_bad_secret_requests_get_typed_problems(kbs: RunningBroker, body: dict) -> None:
    answer = httpx.post(f"{kbs.url}/sev/v0/secret", content=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"})
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["detail"]


def test_a_body_that_is_not_json_is_refused(kbs: RunningBroker) -> None:
    answer = httpx.post(f"{kbs.url}/sev/v0/session", content=b"[" * 5000,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code in (400, 413, 415), answer.text




def test_an_attestation_report_cannot_stand_in_for_the_measurement(
        kbs: RunningBroker, path: str) -> None:
    """The secret is bound to this launch's TIK: a PEK-signed report (even a valid one)
    in the secret request is not evidence there."""
    from veritee.testing.snp.sev_host import SevEmulator

    broker, request, _ = _relayed(kbs, path)
    report = json.loads(SevEmulator("sev").emulate(report_data=None, host_data=None,
                                                   knobs=()).evidence)
    forged = {k: v for k, v in request.items() if k != "measurement"} | report
    with pytest.raises(BrokerRefusedError) as refused:
        broker.secret(forged)
    broker.close()
    assert refused.value.http_status == 401
    assert "measurement" in refused.value.detail


def test_two_resources_under_one_guid_are_refused(kbs: RunningBroker, path: str) -> None:
    """Two entries under one GUID would let the guest read the wrong secret."""
    broker, request, _ = _relayed(kbs, path)
    clash = {**request, "resources": [path, {"resource": "other/key/x",
                                              "guid": str(secret_guid(path))}]}
    answer = httpx.post(f"{kbs.url}/sev/v0/secret", json=clash)
    broker.close()
    assert answer.status_code == 400
    assert "share one secret-table GUID" in answer.json()["detail"]
