"""SVSM vTPM guests through a real broker's KBS flow: ``auth`` carries the vTPM's EK and AK,
the challenge a credential made to that EK for that AK, the guest activates it and sends it
with its evidence, and gets its secret. Refused: a quote signed by an AK other than the one
the credential was made for, a credential replayed from another session, and an ``auth``
request whose ``ek-public`` is malformed (400 with a typed problem, not 500). One flow lets
swtpm play the vTPM (its EK, AK, activation and quote are real; the SVSM's SNP report comes
from a fake configfs-tsm kernel); it is skipped when swtpm or tpm2-tools is absent.

No policy ships for ``snp-svsm-vtpm`` (the generic one fails closed), so the broker is given
one here: the activation checked, and the nonce it was made for is the session's
(``svsm.challenge_nonce`` against ``runtime_data_claims.nonce``)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from support.broker import RunningBroker, running_broker, unique_path
from veritee.attester.kbs_client import Challenge, KbsClient, KbsClientError
from veritee.attester.svsm import TOOLS, HardwareSvsmCollector
from veritee.attester.svsm.emulated import EmulatedSvsmCollector
from veritee.broker import problems
from veritee.encoding import b64url
from veritee.testing.svsm import FakeSvsmTsm, SvsmEmulator
from veritee.testing.tpm import Swtpm

TEE = "snp-svsm-vtpm"
SECRET = b"a secret for SVSM vTPM guests"
POLICY = """\
# veritee: tees snp-svsm-vtpm
package policy

import rego.v1

default svsm := {}

svsm := input["snp-svsm-vtpm"].svsm if is_object(input["snp-svsm-vtpm"].svsm)

default activated := false

activated if svsm.activation == "checked"

default this_session := false

this_session if svsm.challenge_nonce == input.runtime_data_claims.nonce

default trust_claims := {"hardware": 97, "instance-identity": 97}

trust_claims := {"hardware": 2, "instance-identity": 2} if {
	activated
	this_session
}

checks := [
	{"name": "svsm.activation", "held": activated},
	{"name": "svsm.challenge_nonce", "held": this_session},
]
"""


def _provision(kbs: RunningBroker) -> str:
    path = unique_path("svsm")
    with kbs.admin() as admin:
        answer = admin.post("/kbs/v0/attestation-policy", json={
            "type": "rego", "policy_id": f"default_{TEE}", "policy": b64url(POLICY.encode())})
        assert answer.status_code == 200, answer.text
        answer = admin.post(f"/kbs/v0/resource/{path}", content=SECRET, headers={
            "Content-Type": "application/octet-stream"})
        assert answer.status_code == 200, answer.text
    return path


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningBroker, str]]:
    with running_broker(tmp_path_factory.mktemp("svsm-broker")) as running:
        yield running, _provision(running)


def _cpu0(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    cpu0: dict[str, Any] = claims["submods"]["cpu0"]
    return cpu0


def _svsm_claims(token: str) -> dict[str, Any]:
    svsm: dict[str, Any] = _cpu0(token)["ear.veraison.annotated-evidence"][TEE]["svsm"]
    return svsm


@dataclass
class Recording:
    """A collector that records what it sent and what the broker's challenge was."""

    inner: Any
    takes_challenge: ClassVar[bool] = True
    auth: list[dict[str, Any]] = field(default_factory=list)
    challenges: list[Challenge] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    replay: dict[str, Any] | None = None
    """An activation to send instead of the one made for this session."""
    replay_credential: str | None = None
    """A credential to send instead of this session's (with this session's nonce)."""

    def auth_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.inner.auth_params()
        self.auth.append(params)
        return params

    def __call__(self, report_data: bytes, challenge: Challenge) -> Any:
        self.challenges.append(challenge)
        document = self.inner(report_data, challenge)
        if self.replay is not None:
            document["activation"] = self.replay
        if self.replay_credential is not None:
            document["activation"]["credential"] = self.replay_credential
        self.sent.append(document)
        return document


def test_an_emulated_svsm_guest_gets_its_secret(kbs: tuple[RunningBroker, str]) -> None:
    broker, path = kbs
    guest = Recording(EmulatedSvsmCollector(SvsmEmulator()))
    with KbsClient(broker.url, TEE, guest) as client:
        attested = client.attest()
        assert client.resource(path, attested) == SECRET
    assert set(guest.auth[0]) == {"ek-public", "ak-public"}
    extra = guest.challenges[0].extra_params
    assert {"credential", "secret", "ak-name"} <= set(extra)
    assert extra["ak-name"] == SvsmEmulator().ak_name.hex()
    svsm = _svsm_claims(attested.token)
    assert svsm["activation"] == "checked" and svsm["activation_key"] == "configured"
    assert svsm["challenge_nonce"] == guest.challenges[0].nonce
    assert _cpu0(attested.token)["ear.status"] == "affirming"


def test_the_descriptors_emulated_collector_gets_its_secret(
        kbs: tuple[RunningBroker, str]) -> None:
    """``veritee attest --tee snp-svsm-vtpm --emulate``'s collector, as the CLI builds it."""
    from veritee.tee import get_platform

    broker, path = kbs
    collector = get_platform(TEE).load("emulated_collector")()
    with KbsClient(broker.url, TEE, collector) as client:
        assert client.get_secret(path) == SECRET


def test_a_quote_by_another_ak_than_the_activated_one_is_refused(
        kbs: tuple[RunningBroker, str]) -> None:
    """The genuine vTPM activates the credential made for the genuine AK; the quote (and the
    evidence's AK) is a foreign AK's."""
    broker, _ = kbs
    guest = EmulatedSvsmCollector(SvsmEmulator(knob="foreign_ak"))
    with KbsClient(broker.url, TEE, guest) as client, pytest.raises(KbsClientError) as refused:
        client.attest()
    assert refused.value.http_status == 401
    assert "BindingError" in str(refused.value) and "not proven to live" in str(refused.value)


def _first_activation(broker: RunningBroker) -> dict[str, Any]:
    """The activation a genuine guest sent in a session of its own (session A)."""
    first = Recording(EmulatedSvsmCollector(SvsmEmulator()))
    with KbsClient(broker.url, TEE, first) as client:
        client.attest()
    activation: dict[str, Any] = first.sent[0]["activation"]
    return activation


def test_a_whole_activation_replayed_from_another_session_is_refused(
        kbs: tuple[RunningBroker, str]) -> None:
    """Session A's credential with session A's nonce, sent in session B: it verifies (it was
    made by this broker for this EK and AK), but the broker requires the activation to answer
    this session's challenge (the descriptor's ``challenge_claim``), whatever the policy."""
    broker, _ = kbs
    old = _first_activation(broker)
    guest = Recording(EmulatedSvsmCollector(SvsmEmulator()), replay=old)
    with KbsClient(broker.url, TEE, guest) as client, pytest.raises(KbsClientError) as refused:
        client.attest()
    assert old["nonce"] != guest.challenges[0].nonce
    assert refused.value.http_status == 401
    assert "BindingError" in str(refused.value)
    assert "another session's challenge" in str(refused.value)


def test_another_sessions_credential_under_this_sessions_nonce_is_refused(
        kbs: tuple[RunningBroker, str]) -> None:
    """Session A's credential beside session B's nonce: the verifier refuses it."""
    broker, _ = kbs
    old = _first_activation(broker)
    guest = Recording(EmulatedSvsmCollector(SvsmEmulator()),
                      replay_credential=old["credential"])
    with KbsClient(broker.url, TEE, guest) as client, pytest.raises(KbsClientError) as refused:
        client.attest()
    assert guest.sent[0]["activation"]["nonce"] == guest.challenges[0].nonce
    assert refused.value.http_status == 401 and "BindingError" in str(refused.value)


def _auth(broker: RunningBroker, extra: Any) -> httpx.Response:
    return httpx.post(f"{broker.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": TEE, "extra-params": extra})


_GOOD = SvsmEmulator().auth_extra()


@pytest.mark.parametrize(("name", "extra"), [
    ("ek_public_missing", {"ak-public": _GOOD["ak-public"]}),
    ("ek_public_not_text", {**_GOOD, "ek-public": 12}),
    ("ek_public_not_hex_or_base64", {**_GOOD, "ek-public": "not hex! (nor base64)"}),
    ("ek_public_not_a_tpmt_public", {**_GOOD, "ek-public": "00" * 40}),
    ("ek_public_cut_short", {**_GOOD, "ek-public": _GOOD["ek-public"][:-20]}),
    ("ek_public_is_the_ak", {**_GOOD, "ek-public": _GOOD["ak-public"]}),
    ("ek_public_is_pem", {**_GOOD, "ek-public": base64.b64encode(b"-----BEGIN x").decode()}),
    ("ak_public_malformed", {**_GOOD, "ak-public": "00"}),
    ("extra_params_not_an_object", "ek-public"),
])
def test_a_malformed_auth_request_is_400_with_a_typed_problem(
        kbs: tuple[RunningBroker, str], name: str, extra: Any) -> None:
    answer = _auth(kbs[0], extra)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["type"].endswith(f"/{problems.InvalidRequest.variant}")
    assert problem["status"] == 400 and "extra-params" in problem["detail"]


# -- swtpm as the vTPM -----------------------------------------------------------------------


@pytest.mark.skipif(not (Swtpm.available() and all(shutil.which(t) for t in TOOLS)),
                    reason="swtpm / tpm2-tools absent")
def test_swtpm_as_the_vtpm_gets_its_secret(kbs: tuple[RunningBroker, str]) -> None:
    """The hardware collector with a real TPM: tpm2_createek / tpm2_readpublic for the auth
    request, tpm2_activatecredential on the broker's credential, tpm2_quote; the SVSM's
    report from a fake configfs-tsm kernel that names the swtpm's EK."""
    broker, path = kbs
    with Swtpm(banks=("sha256",), ek_cert=False) as tpm:
        ak = tpm.create_ak("rsa")
        options: dict[str, Any] = {"ak": str(ak.context), "tcti": tpm.tcti,
                                   "selection": "sha256:0,1,2,3,4,5,6,7"}
        ek = bytes.fromhex(HardwareSvsmCollector(**options).auth_params()["ek-public"])
        collector = HardwareSvsmCollector(fs=FakeSvsmTsm(ek), tsm_root=Path(
            "/sys/kernel/config/tsm/report"), **options)
        with KbsClient(broker.url, TEE, collector) as client:
            attested = client.attest()
            assert client.resource(path, attested) == SECRET
    svsm = _svsm_claims(attested.token)
    assert svsm["activation"] == "checked" and svsm["ak_name"] == ak.name.hex()
    assert svsm["ek_public"] == ek.hex()
