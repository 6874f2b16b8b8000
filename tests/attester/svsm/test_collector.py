"""The SVSM vTPM collectors (``veritee.attester.svsm``): the hardware one against a fake
configfs-tsm kernel under an SVSM (:class:`veritee.testing.svsm.FakeSvsmTsm`) and a real
swtpm as the vTPM (skipped when swtpm or tpm2-tools is absent), the emulated one alone. The
evidence verifies with the activation checked; a guest without the SVSM service provider,
another TEE, a manifest naming another EK and a credential for another AK are typed errors."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from veritee.attester import CollectorError, CollectorUnavailableError
from veritee.attester.kbs_client import Challenge, KbsClient
from veritee.attester.svsm import TOOLS, HardwareSvsmCollector
from veritee.attester.svsm.emulated import EmulatedSvsmCollector
from veritee.collateral import CollateralSource
from veritee.errors import BindingError, MisuseError
from veritee.evidence import Evidence
from veritee.tee.svsm import credential, keys
from veritee.tee.svsm.verify import SvsmVtpmVerifier
from veritee.testing import pki
from veritee.testing.snp import emulated_roots as snp_roots
from veritee.testing.svsm import FakeSvsmTsm, SvsmEmulator, emulated_roots
from veritee.testing.tpm import Swtpm, SwtpmAk

NONCE = bytes(range(64))
KBS_NONCE = "a KBS challenge nonce"
KEY = b"k" * 32
ROOT = Path("/sys/kernel/config/tsm/report")
NOW = pki.now_utc()


def _verify(document: Any, key: bytes = KEY) -> dict[str, Any]:
    verifier = SvsmVtpmVerifier(credential_key=key).with_roots(snp_roots())
    claims = verifier.verify(Evidence.from_json(document), report_data=NONCE,
                             collateral=CollateralSource(), now=NOW)
    return claims.to_dict()


# -- the KBS client's side of it -------------------------------------------------------------


def test_the_kbs_client_offers_auth_params_and_passes_the_challenge() -> None:
    guest = EmulatedSvsmCollector(SvsmEmulator(now=NOW))
    client = KbsClient("http://127.0.0.1:9", "snp-svsm-vtpm", guest)
    params = client.auth_params()
    assert params["supported-hash-algorithms"] == ["sha256", "sha384", "sha512"]
    assert params["ek-public"] == guest.emulator.ek_public.hex()
    extra = credential.challenge_extra(params, b"n", KEY)
    assert "activation" in client.collect(NONCE, Challenge("n", extra))
    plain: list[bytes] = []
    assert KbsClient("http://127.0.0.1:9", "snp", plain.append).auth_params() == {
        "supported-hash-algorithms": ["sha256", "sha384", "sha512"]}
    KbsClient("http://127.0.0.1:9", "snp", plain.append).collect(NONCE, Challenge("n", ""))
    assert plain == [NONCE]  # a plain collector is called with the report data alone


def test_a_collector_may_not_replace_the_hash_list() -> None:
    class Greedy:
        def auth_params(self) -> dict[str, Any]:
            return {"supported-hash-algorithms": ["md5"]}

        def __call__(self, report_data: bytes) -> Any:
            return {}

    with pytest.raises(MisuseError, match="supported-hash-algorithms"):
        KbsClient("http://127.0.0.1:9", "snp", Greedy()).auth_params()


# -- configfs-tsm without a TPM --------------------------------------------------------------


@pytest.mark.parametrize(("name", "kernel", "says"), [
    ("no_svsm_service_provider", FakeSvsmTsm(b"ek", svsm=False), "service_provider"),
    ("another_tee", FakeSvsmTsm(b"ek", provider="tdx_guest"), "tdx_guest"),
])
def test_a_guest_without_the_svsm_provider_is_a_typed_error(name: str, kernel: FakeSvsmTsm,
                                                            says: str) -> None:
    collector = HardwareSvsmCollector(tsm_root=ROOT, fs=kernel, path="")
    with pytest.raises(CollectorUnavailableError) as caught:
        collector(NONCE)
    assert says in caught.value.detail
    assert kernel.entries == {}


def test_the_report_data_is_the_64_byte_nonce() -> None:
    with pytest.raises(MisuseError, match="exactly 64"):
        HardwareSvsmCollector(tsm_root=ROOT, fs=FakeSvsmTsm(b"ek"))(bytes(32))


def test_without_tpm2_tools_the_error_says_what_to_install() -> None:
    kernel = FakeSvsmTsm(SvsmEmulator().manifest)
    with pytest.raises(CollectorUnavailableError, match="apt-get install tpm2-tools"):
        HardwareSvsmCollector(tsm_root=ROOT, fs=kernel, path="").auth_params()
    with pytest.raises(CollectorUnavailableError, match="tpm2-tools is not installed"):
        HardwareSvsmCollector(tsm_root=ROOT, fs=kernel, path="")(NONCE)
    assert "write service_provider" in kernel.log  # the SVSM was asked before the TPM


# -- a real swtpm as the vTPM ----------------------------------------------------------------


def _swtpm_present() -> bool:
    return Swtpm.available() and all(shutil.which(tool) for tool in TOOLS)


@pytest.fixture(scope="module")
def vtpm() -> Iterator[tuple[Swtpm, SwtpmAk]]:
    if not _swtpm_present():
        pytest.skip("swtpm / tpm2-tools absent")
    with Swtpm(banks=("sha256",), ek_cert=False) as tpm:
        yield tpm, tpm.create_ak("rsa")


def _collector(vtpm: tuple[Swtpm, SwtpmAk], kernel: FakeSvsmTsm | None = None,
               **options: Any) -> HardwareSvsmCollector:
    tpm, ak = vtpm
    return HardwareSvsmCollector(tsm_root=ROOT, fs=kernel, ak=str(ak.context), tcti=tpm.tcti,
                                 selection="sha256:0,1,2,3,4,5,6,7", **options)


def _kernel(vtpm: tuple[Swtpm, SwtpmAk]) -> FakeSvsmTsm:
    """configfs-tsm whose SVSM names the swtpm's EK (read by the collector itself)."""
    ek = bytes.fromhex(_collector(vtpm).auth_params()["ek-public"])
    return FakeSvsmTsm(ek)


def test_auth_params_are_the_vtpms_ek_and_ak(vtpm: tuple[Swtpm, SwtpmAk]) -> None:
    params = _collector(vtpm).auth_params()
    ek = keys.parse_ek(bytes.fromhex(params["ek-public"]))
    ak = keys.parse_ak(bytes.fromhex(params["ak-public"]))
    assert ak.name == vtpm[1].name and ek.attributes == 0x000300B2


def test_swtpm_evidence_verifies_with_the_activation_checked(
        vtpm: tuple[Swtpm, SwtpmAk]) -> None:
    kernel = _kernel(vtpm)
    collector = _collector(vtpm, kernel)
    extra = credential.challenge_extra(collector.auth_params(), KBS_NONCE.encode(), KEY)
    document = collector(NONCE, Challenge(KBS_NONCE, {"selected-hash-algorithm": "sha384",
                                                     **extra}))
    assert document["activation"]["nonce"] == KBS_NONCE
    claims = _verify(document)
    assert claims["svsm"]["activation"] == "checked"
    assert claims["svsm"]["ak_name"] == vtpm[1].name.hex()
    assert claims["snp"]["vmpl"] == 0 and claims["tpm"]["pcr_select"] == {
        "sha256": list(range(8))}
    writes = [line for line in kernel.log if line.startswith("write")]
    assert writes == ["write inblob", "write service_provider", "write service_guid",
                      "write service_manifest_version",
                      "write inblob", "write privlevel"]  # then a plain report, at VMPL 3
    assert kernel.entries == {}


def test_swtpm_without_a_challenge_gives_no_activation(vtpm: tuple[Swtpm, SwtpmAk]) -> None:
    document = _collector(vtpm, _kernel(vtpm))(NONCE, Challenge(KBS_NONCE, ""))
    assert "activation" not in document


def test_without_certificates_the_report_has_none(vtpm: tuple[Swtpm, SwtpmAk]) -> None:
    kernel = _kernel(vtpm)
    document = _collector(vtpm, kernel, certificates=False)(NONCE)
    assert sum(line == "write inblob" for line in kernel.log) == 1
    assert document["sev_snp_attestation"]


@pytest.mark.parametrize(("name", "change", "message"), [
    ("credential_for_another_ak", {"ak-name": "000b" + "00" * 32}, "is for the AK named"),
    ("credential_not_base64", {"credential": "%%%"}, "'credential' is not base64"),
])
def test_a_challenge_the_vtpm_cannot_answer_is_refused(vtpm: tuple[Swtpm, SwtpmAk], name: str,
                                                       change: dict[str, str],
                                                       message: str) -> None:
    collector = _collector(vtpm, _kernel(vtpm))
    extra = {**credential.challenge_extra(collector.auth_params(), b"n", KEY), **change}
    with pytest.raises(CollectorError, match=message):
        collector(NONCE, Challenge("n", extra))


def test_a_credential_made_for_another_ak_fails_in_the_tpm(vtpm: tuple[Swtpm, SwtpmAk]) -> None:
    """The broker's challenge for another AK, its ak-name rewritten: the TPM's integrity
    check refuses it (TPM_RC_INTEGRITY)."""
    collector = _collector(vtpm, _kernel(vtpm))
    other = {**collector.auth_params(), "ak-public": SvsmEmulator().ak_public.hex()}
    extra = credential.challenge_extra(other, b"n", KEY)
    extra["ak-name"] = vtpm[1].name.hex()
    with pytest.raises(CollectorError, match="tpm2_activatecredential failed"):
        collector(NONCE, Challenge("n", extra))


def test_a_manifest_naming_another_ek_is_refused(vtpm: tuple[Swtpm, SwtpmAk]) -> None:
    kernel = FakeSvsmTsm(SvsmEmulator().manifest)
    with pytest.raises(CollectorError, match="name the EK the SVSM's manifest names"):
        _collector(vtpm, kernel)(NONCE)


# -- the emulated collector ------------------------------------------------------------------


def test_the_emulated_collector_answers_a_challenge() -> None:
    collector = EmulatedSvsmCollector(SvsmEmulator(now=NOW))
    extra = credential.challenge_extra(collector.auth_params(), KBS_NONCE.encode(), KEY)
    document = collector(NONCE, Challenge(KBS_NONCE, extra))
    assert _verify(document)["svsm"]["activation"] == "checked"
    plain = collector(NONCE, Challenge(KBS_NONCE, ""))
    assert "activation" not in plain
    verifier = SvsmVtpmVerifier(credential_key=KEY).with_roots(emulated_roots())
    assert verifier.verify(Evidence.from_json(document), report_data=NONCE,
                           collateral=CollateralSource(), now=NOW).to_dict()["emulated"]


def test_the_emulated_collector_refuses_an_altered_credential() -> None:
    """The emulated vTPM checks the credential's integrity HMAC as a TPM does."""
    collector = EmulatedSvsmCollector(SvsmEmulator(now=NOW))
    extra = credential.challenge_extra(collector.auth_params(), b"n", KEY)
    id_object = bytearray(base64.b64decode(extra["credential"]))
    id_object[-1] ^= 1
    extra["credential"] = base64.b64encode(id_object).decode()
    with pytest.raises(BindingError, match="TPM_RC_INTEGRITY"):
        collector(NONCE, Challenge("n", extra))
