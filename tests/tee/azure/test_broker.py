"""Azure SNP CVM guests through the broker's KBS flow: a genuine CVM (evidence v1 and v2) gets
its secret; a changed vTPM PCR is refused by policy with its reason; a vTPM quote not bound to
the hardware report, and v2 evidence whose user-data is not the KBS report data (Trustee's
rule), are refused by verification."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from support.broker import RunningBroker, running_broker
from veritee.attester.kbs_client import KbsClient, KbsClientError
from veritee.tee.azure.demo import AZ_SNP_DEMO
from veritee.testing.azure import AzureEmulator, default_pcrs

SECRET = b"a secret for Azure CVMs"
PATH = "azure/key/disk"


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("azure-broker")) as running:
        refs = {name: value["values"] for name, value in AZ_SNP_DEMO.reference_values().items()}
        with running.admin() as admin:
            assert admin.post("/kbs/v0/reference-value", json=refs).status_code == 200
            assert admin.post(f"/kbs/v0/resource/{PATH}", content=SECRET, headers={
                "Content-Type": "application/octet-stream"}).status_code == 200
        yield running


def _cpu0(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    cpu0: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["submods"]["cpu0"]
    return cpu0


@pytest.mark.parametrize("version", [0, 1, 2])
def test_a_genuine_cvm_gets_its_secret(kbs: RunningBroker, version: int) -> None:
    with KbsClient(kbs.url, "az-snp-vtpm", AzureEmulator(version=version).evidence) as client:
        attested = client.attest()
        assert client.resource(PATH, attested) == SECRET
    claims = _cpu0(attested.token)["ear.veraison.annotated-evidence"]["az-snp-vtpm"]
    assert claims["snp"]["vmpl"] == 0 and claims["hcl"]["report_type"] == "snp"


def test_a_changed_pcr_is_refused_with_its_reason(kbs: RunningBroker) -> None:
    pcrs = list(default_pcrs())
    pcrs[4] = bytes.fromhex("4b" * 32)
    with KbsClient(kbs.url, "az-snp-vtpm", AzureEmulator(pcrs=tuple(pcrs)).evidence) as client:
        cpu0 = _cpu0(client.attest().token)
    assert cpu0["ear.status"] != "affirming"
    assert "azure_pcr4" in json.dumps(cpu0)


@pytest.mark.parametrize(("knob", "says"), [
    ("unbound", "not bound to the hardware report"),
    ("user_data_mismatch", "user-data"),
    ("foreign_ak", "SignatureError"),
])
def test_broken_bindings_are_refused(kbs: RunningBroker, knob: str, says: str) -> None:
    guest = AzureEmulator(knob=knob).evidence
    with KbsClient(kbs.url, "az-snp-vtpm", guest) as client, \
            pytest.raises(KbsClientError) as refused:
        client.attest()
    assert refused.value.http_status == 401
    assert says in str(refused.value)
