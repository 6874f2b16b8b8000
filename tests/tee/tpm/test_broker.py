"""TPM guests through the broker's KBS flow. A real software TPM (swtpm on loopback, quoted
with tpm2-tools through the guest collector) gets its secret when its AK is enrolled (a
collateral file of the broker) and its PCRs meet the reference values; a changed PCR, an AK
nobody enrolled, and init-data other than what PCR 8 holds are refused with their reasons.
The swtpm tests skip only when swtpm or tpm2-tools is not installed (CI installs both)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.broker import RunningBroker, running_broker, unique_path
from veritee import binding
from veritee.attester.kbs_client import KbsClient, KbsClientError
from veritee.attester.tpm import HardwareTpmCollector
from veritee.eventlog import EV_NO_ACTION
from veritee.testing.tpm import Swtpm, SwtpmAk, TpmEmulator

SECRET = b"a secret for measured TPM guests"
PINNED = (0, 4, 7, 9)
INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "url = 1"\n'
needs_swtpm = pytest.mark.skipif(not Swtpm.available(), reason="swtpm / tpm2-tools absent")


def _boot(tpm: Swtpm, image: TpmEmulator) -> None:
    """Extend the real TPM's PCRs with the emulated image's measured boot."""
    for event in image.events:
        if event.type != EV_NO_ACTION:
            tpm.extend(event.pcr, {"sha256": event.digest("sha256")})


@pytest.fixture(scope="module")
def swtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Swtpm, SwtpmAk, Path]]:
    if not Swtpm.available():
        pytest.skip("swtpm / tpm2-tools absent")
    with Swtpm(banks=("sha256",), ek_cert=False) as tpm:
        image = TpmEmulator(banks=("sha256",))
        _boot(tpm, image)
        log = tmp_path_factory.mktemp("tpm-log") / "binary_bios_measurements"
        log.write_bytes(image.event_log())
        tpm.create_ek()
        yield tpm, tpm.create_ak("rsa"), log


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory,
        swtpm: tuple[Swtpm, SwtpmAk, Path]) -> Iterator[RunningBroker]:
    tmp = tmp_path_factory.mktemp("tpm-broker")
    folder = tmp / "collateral"
    folder.mkdir()
    (folder / "enrolled-ak.pem").write_bytes(swtpm[1].pem)
    sha256 = TpmEmulator().pcrs["sha256"]
    with running_broker(tmp, collateral=(str(folder),)) as running:
        with running.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json={
                **{f"tpm_sha256_pcr{i}": [sha256[i].hex()] for i in PINNED},
                "allow_emulated": [True]}).status_code == 200
            path = "tpm/key/disk"
            assert admin.post(f"/kbs/v0/resource/{path}", content=SECRET, headers={
                "Content-Type": "application/octet-stream"}).status_code == 200
        yield running


def _collector(swtpm: tuple[Swtpm, SwtpmAk, Path], ak: SwtpmAk | None = None
               ) -> HardwareTpmCollector:
    tpm, enrolled, log = swtpm
    return HardwareTpmCollector(ak=str((ak or enrolled).context), tcti=tpm.tcti, eventlog=log,
                                require_eventlog=True)


def _cpu0(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    cpu0: dict[str, Any] = claims["submods"]["cpu0"]
    return cpu0


@needs_swtpm
def test_a_real_tpm_gets_its_secret(kbs: RunningBroker,
                                    swtpm: tuple[Swtpm, SwtpmAk, Path]) -> None:
    with KbsClient(kbs.url, "tpm", _collector(swtpm)) as client:
        attested = client.attest()
        assert client.resource("tpm/key/disk", attested) == SECRET
    cpu0 = _cpu0(attested.token)
    assert cpu0["ear.status"] == "affirming"
    tpm_claims = cpu0["ear.veraison.annotated-evidence"]["tpm"]
    assert tpm_claims["ak_trust"] == "key" and tpm_claims["emulated"] is False
    assert tpm_claims["eventlog_pcrs"]["sha256"]["7"] == tpm_claims["pcrs"]["sha256"]["7"]


@needs_swtpm
def test_an_ak_nobody_enrolled_is_refused(kbs: RunningBroker,
                                          swtpm: tuple[Swtpm, SwtpmAk, Path]) -> None:
    other = swtpm[0].create_ak("rsa")
    with KbsClient(kbs.url, "tpm", _collector(swtpm, other)) as client, \
            pytest.raises(KbsClientError) as refused:
        client.attest()
    assert refused.value.http_status == 401
    assert "UntrustedRootError" in str(refused.value)


@needs_swtpm
def test_a_changed_pcr_is_refused_with_its_reason(tmp_path: Path) -> None:
    """Another kernel command line (PCR 8 measured differently) on a real TPM: the quote and
    its log agree, the reference value does not."""
    with Swtpm(banks=("sha256",), ek_cert=False) as tpm:
        image = TpmEmulator(banks=("sha256",), cmdline=b"init=/bin/sh")
        _boot(tpm, image)
        log = tmp_path / "log"
        log.write_bytes(image.event_log())
        tpm.create_ek()
        ak = tpm.create_ak("rsa")
        folder = tmp_path / "collateral"
        folder.mkdir()
        (folder / "ak.pem").write_bytes(ak.pem)
        expected = TpmEmulator(banks=("sha256",)).pcrs["sha256"]
        with running_broker(tmp_path / "b", collateral=(str(folder),)) as broker:
            with broker.admin() as admin:
                assert admin.post("/kbs/v0/reference-value", json={
                    f"tpm_sha256_pcr{i}": [expected[i].hex()] for i in (0, 8)}
                ).status_code == 200
            collector = HardwareTpmCollector(ak=str(ak.context), tcti=tpm.tcti, eventlog=log)
            with KbsClient(broker.url, "tpm", collector) as client:
                cpu0 = _cpu0(client.attest().token)
    assert cpu0["ear.status"] != "affirming"
    assert "tpm.sha256.pcr8" in json.dumps(cpu0)


def _attest(kbs: RunningBroker, guest: TpmEmulator, *, init_data: str) -> httpx.Response:
    with KbsClient(kbs.url, "tpm", lambda rd: json.loads(guest.trustee(rd))) as client:
        nonce, _, cookie = client.auth()
        runtime = client.runtime_data(nonce)
    digest = binding.runtime_data_digest(runtime, "sha256")
    body = {"runtime-data": runtime, "tee-evidence": json.loads(guest.trustee(digest)),
            "init-data": {"format": "toml", "body": init_data}}
    return httpx.post(f"{kbs.url}/kbs/v0/attest", cookies={"kbs-session-id": cookie},
                      json=body)


@needs_swtpm
def test_init_data_is_bound_through_pcr8(kbs: RunningBroker) -> None:
    """The emulated TPM measured SHA-256 of the init-data into PCR 8 (from zero): presenting
    that init-data attests, presenting other init-data is refused by the broker."""
    launched = hashlib.sha256(INIT_DATA.encode()).digest()
    guest = TpmEmulator(init_data=launched)
    accepted = _attest(kbs, guest, init_data=INIT_DATA)
    assert accepted.status_code == 200, accepted.text
    claims = _cpu0(accepted.json()["token"])["ear.veraison.annotated-evidence"]
    assert claims["init_data_claims"]["claims"] == {"aa.toml": "url = 1"}
    refused = _attest(kbs, guest, init_data=INIT_DATA.replace("url = 1", "url = 2"))
    assert refused.status_code == 401
    assert "InitDataMismatchError: tpm pcrs.sha256.8 is" in refused.json()["detail"]


def test_the_emulated_collector_gets_a_secret(tmp_path: Path) -> None:
    """``veritee attest --tee tpm --emulate``'s collector through a broker that trusts the
    emulated AKs."""
    from veritee.tee import get_platform

    collector = get_platform("tpm").load("emulated_collector")()
    sha256 = TpmEmulator().pcrs["sha256"]
    with running_broker(tmp_path) as broker:
        path = unique_path("tpm")
        with broker.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json={
                **{f"tpm_sha256_pcr{i}": [sha256[i].hex()] for i in PINNED},
                "allow_emulated": [True]}).status_code == 200
            assert admin.post(f"/kbs/v0/resource/{path}", content=SECRET, headers={
                "Content-Type": "application/octet-stream"}).status_code == 200
        with KbsClient(broker.url, "tpm", collector) as client:
            assert client.get_secret(path) == SECRET
