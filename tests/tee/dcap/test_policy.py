"""The default TDX and SGX policies, and Trustee's TDX claim shape in the policy input.

A Trustee-style policy written here (Rego v1, ``import rego.v1``, ``query_reference_value``,
reading ``quote.header``, ``quote.body``, ``td_attributes``, ``tcb_status``,
``collateral_expiration_status`` and ``uefi_event_logs``) gives the trust vector Trustee would
give on the same quote; the default policies fail closed and explain each refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support import platforms
from veritee.collateral import CollateralSource
from veritee.evidence import Evidence
from veritee.tee import get_verifier
from veritee.testing.dcap import DcapEmulator

AFFIRMING_CLAIMS = {"instance-identity": 2, "configuration": 2, "executables": 3, "hardware": 2}

TRUSTEE_STYLE = """package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

default instance_identity := 2

executables := 3 if {
	input.tdx.quote.body.mr_td in query_reference_value("mr_td")
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	some event in input.tdx.uefi_event_logs
	event.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"
	count(event.details.device_paths) > 0
	some digest in event.digests
	is_string(digest.digest)
}

hardware := 2 if {
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input.tdx.quote.body.mr_seam in query_reference_value("mr_seam")
	input.tdx.quote.body.tcb_svn in query_reference_value("tcb_svn")
	input.tdx.tcb_status == "UpToDate"
	input.tdx.collateral_expiration_status == "0"
}

configuration := 2 if {
	input.tdx.td_attributes.debug == false
	input.tdx.td_attributes.septve_disable == true
	input.tdx.quote.body.xfam in query_reference_value("xfam")
}

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"instance-identity": instance_identity,
}
"""


def _vector(result: Any) -> dict[str, int]:
    return {name: result.trust_vector[name] for name in AFFIRMING_CLAIMS}


AFFIRMING = AFFIRMING_CLAIMS


def _claims(**settings: Any) -> dict[str, Any]:
    emulator = DcapEmulator(tee=settings.pop("tee", "tdx"), **settings)
    collateral = CollateralSource.of(json.dumps(emulator.combined_collateral()).encode())
    verifier = get_verifier(emulator.tee, trust_emulated=True)
    return verifier.verify(Evidence.from_json(emulator.coco_evidence()), report_data=None,
                           collateral=collateral, now=emulator.now).to_dict()


def _appraise(tee: str, claims: dict[str, Any], policy: str, refs: dict[str, list[Any]],
              native: bool = True) -> Any:
    return platforms.engine(native=native).appraise(
        tee=tee, claims=claims, policy_id="default_cpu", policy=policy, reference_values=refs,
        **platforms.shape(tee))


def _trustee_refs(claims: dict[str, Any]) -> dict[str, list[Any]]:
    return {"mr_td": [claims["mr_td"]], "rtmr_1": [claims["rtmr1"]],
            "mr_seam": [claims["mr_seam"]], "tcb_svn": [claims["tee_tcb_svn"]],
            "xfam": [claims["xfam"]]}


def test_a_trustee_style_policy_reads_trustees_tdx_shape() -> None:
    claims = _claims()
    result = _appraise("tdx", claims, TRUSTEE_STYLE, _trustee_refs(claims))
    assert _vector(result) == AFFIRMING


@pytest.mark.parametrize(("settings", "claim", "value"), [
    ({"debug": True}, "configuration", 36),
    ({"tcb_out_of_date": True}, "hardware", 97),
])
def test_the_trustee_style_policy_refuses_what_trustee_would(
        settings: dict[str, Any], claim: str, value: int) -> None:
    claims = _claims(**settings)
    result = _appraise("tdx", claims, TRUSTEE_STYLE, _trustee_refs(claims))
    assert result.trust_vector[claim] == value


def test_veritee_verify_keeps_the_contracts_td_attributes() -> None:
    claims = _claims()
    assert isinstance(claims["td_attributes"], str) and len(claims["td_attributes"]) == 16


def _tdx_refs(claims: dict[str, Any]) -> dict[str, list[Any]]:
    return {"tdx_mr_td": [claims["mr_td"].upper()], "allow_emulated": [True]}


@pytest.mark.parametrize("native", [True, False], ids=["planned", "regorus"])
def test_the_default_tdx_policy_affirms_a_known_td(native: bool) -> None:
    claims = _claims()
    result = _appraise("tdx", claims, platforms.default_policy("tdx"), _tdx_refs(claims), native)
    assert _vector(result) == AFFIRMING


@pytest.mark.parametrize(("settings", "refs", "failed"), [
    ({}, {"tdx_mr_td": ["00" * 48]}, "tdx.mr_td"),
    ({"debug": True}, {}, "tdx.debug"),
    ({"tcb_out_of_date": True}, {}, "tdx.tcb_status"),
    ({}, {"tdx_rtmr1": ["11" * 48]}, "tdx.rtmr1"),
    ({}, {"tdx_mr_config_id": ["22" * 48]}, "tdx.mr_config_id"),
    ({}, {"allow_emulated": []}, "tdx.emulated"),
])
def test_the_default_tdx_policy_fails_closed_and_says_why(
        settings: dict[str, Any], refs: dict[str, list[Any]], failed: str) -> None:
    claims = _claims(**settings)
    result = _appraise("tdx", claims, platforms.default_policy("tdx"),
                       {**_tdx_refs(claims), **refs})
    assert result.status != "affirming"
    assert failed in [check.name for check in result.failed()]


def test_the_default_tdx_policy_accepts_listed_tcb_statuses() -> None:
    claims = _claims(tcb_out_of_date=True)
    result = _appraise("tdx", claims, platforms.default_policy("tdx"),
                       {**_tdx_refs(claims), "tdx_tcb_status": ["OutOfDate"]})
    assert _vector(result) == AFFIRMING


def test_the_default_sgx_policy_vouches_by_enclave_or_by_signer() -> None:
    claims = _claims(tee="sgx")
    policy = platforms.default_policy("sgx")
    by_enclave = {"sgx_mr_enclave": [claims["mr_enclave"]], "allow_emulated": [True]}
    assert _vector(_appraise("sgx", claims, policy, by_enclave)) == AFFIRMING
    by_signer = {"sgx_mr_signer": [claims["mr_signer"]], "sgx_isv_prod_id": [claims["isv_prod_id"]],
                 "sgx_isv_svn": [claims["isv_svn"]], "allow_emulated": [True]}
    assert _vector(_appraise("sgx", claims, policy, by_signer)) == AFFIRMING
    newer = {**by_signer, "sgx_isv_svn": [claims["isv_svn"] + 1]}
    assert _appraise("sgx", claims, policy, newer).trust_vector["executables"] == 33
    debug = _claims(tee="sgx", debug=True)
    assert _appraise("sgx", debug, policy, by_enclave).trust_vector["configuration"] == 36
