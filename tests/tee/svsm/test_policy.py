"""The default policy of snp-svsm-vtpm through the policy engine, on claims the verifier
returns for the emulated SVSM vTPM: with reference values it affirms; each refusal names the
check that did not hold; without reference values it fails closed."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
import regopy

from veritee.appraisal import Appraisal, PolicyEngine, rego, shipped_policy
from veritee.appraisal.prepared import PreparedReferences
from veritee.appraisal.rego import declared_tees
from veritee.collateral import CollateralSource
from veritee.errors import CollateralMissingError
from veritee.evidence import Evidence
from veritee.tee.svsm.verify import CredentialKey, SvsmVtpmVerifier
from veritee.testing import pki
from veritee.testing.svsm import SvsmEmulator, emulated_roots

TEE = "snp-svsm-vtpm"
POLICY = f"{TEE}.rego"
AFFIRMING = {"instance-identity": 2, "configuration": 2, "executables": 3, "hardware": 2}
NONCE = bytes(range(64))
NOW = pki.now_utc()


@functools.cache
def _claims() -> str:
    evidence = Evidence.from_json(SvsmEmulator(now=NOW).evidence(NONCE))
    claims = SvsmVtpmVerifier().with_roots(emulated_roots()).verify(
        evidence, report_data=NONCE, collateral=CollateralSource(), now=NOW)
    return json.dumps(claims.to_dict())


def claims_of() -> dict[str, Any]:
    """A fresh copy of the verified claims of the genuine emulated guest."""
    claims: dict[str, Any] = json.loads(_claims())
    return claims


def refs_of() -> dict[str, list[Any]]:
    claims = claims_of()
    pcrs = claims["tpm"]["pcrs"]["sha256"]
    refs: dict[str, list[Any]] = {
        "svsm_launch_measurement": [claims["snp"]["measurement"]],
        "svsm_pcr0": [pcrs["0"]], "svsm_pcr4": [pcrs["4"].upper()], "svsm_pcr7": [pcrs["7"]],
        "allow_emulated": [True]}
    refs |= {f"svsm_snp_{k}": [v] for k, v in claims["snp"]["reported_tcb"].items()}
    return refs


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(native=False)


def appraise(engine: PolicyEngine, claims: dict[str, Any], refs: dict[str, list[Any]],
             settings: dict[str, Any] | None = None) -> Appraisal:
    return engine.appraise(tee=TEE, claims=claims, policy_id="default_cpu",
                           policy=shipped_policy(POLICY), reference_values=refs,
                           settings=settings)


def vector(appraisal: Appraisal) -> dict[str, int]:
    return {k: appraisal.trust_vector[k] for k in AFFIRMING}


def failed(appraisal: Appraisal) -> dict[str, str]:
    return {c.name: c.detail for c in appraisal.checks if not c.held}


def test_the_policy_declares_its_tee() -> None:
    assert declared_tees(shipped_policy(POLICY)) == frozenset({TEE})


def test_the_emulated_guest_is_what_the_cases_change() -> None:
    claims = claims_of()
    assert claims["snp"]["vmpl"] == 0 and claims["emulated"] is True
    assert claims["svsm"]["activation"] == "checked"
    assert claims["svsm"]["quote_nonce"] == "bound"
    assert claims["snp"]["policy_flags"]["debug"] is False
    assert "fmc" not in claims["snp"]["reported_tcb"]


def test_genuine_claims_with_reference_values_affirm(engine: PolicyEngine) -> None:
    appraisal = appraise(engine, claims_of(), refs_of())
    assert vector(appraisal) == AFFIRMING, appraisal.explain()
    assert appraisal.status == "affirming"
    names = {c.name for c in appraisal.checks}
    assert {f"{TEE}.snp.measurement", f"{TEE}.svsm.activation", f"{TEE}.svsm.quote_nonce",
            f"{TEE}.snp.vmpl", f"{TEE}.tpm.pcr0", f"{TEE}.tpm.pcr4", f"{TEE}.tpm.pcr7"} <= names
    assert f"{TEE}.tpm.pcr1" not in names


def test_the_launch_measurement_alone_vouches_for_the_executables(
        engine: PolicyEngine) -> None:
    refs = {k: v for k, v in refs_of().items() if not k.startswith("svsm_pcr")}
    appraisal = appraise(engine, claims_of(), refs)
    assert vector(appraisal) == AFFIRMING, appraisal.explain()
    pcrs = next(c for c in appraisal.checks if c.name == f"{TEE}.tpm.pcrs")
    assert pcrs.held and "not checked" in pcrs.detail


def test_genuine_hardware_needs_no_allow_emulated(engine: PolicyEngine) -> None:
    claims = claims_of()
    claims["emulated"] = claims["snp"]["emulated"] = False
    refs = {k: v for k, v in refs_of().items() if k != "allow_emulated"}
    assert vector(appraise(engine, claims, refs)) == AFFIRMING


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = claims
        for key in parents:
            target = target[key]
        target[last] = value
    return change


def _genuine_roots_emulated_key(claims: dict[str, Any]) -> None:
    """The SNP chain is AMD's but the activation used the emulated credential key."""
    claims["snp"]["emulated"] = False
    claims["emulated"] = True


#: (id, change to the claims, reference values changed (None: removed), the trust claims
#: that differ from AFFIRMING, the check that must not hold)
CASES: list[tuple[str, Callable[[dict[str, Any]], None] | None, dict[str, Any],
                  dict[str, int], str]] = [
    ("unknown_launch_measurement", None, {"svsm_launch_measurement": ["00" * 48]},
     {"executables": 33}, "snp.measurement"),
    ("no_launch_measurement", None, {"svsm_launch_measurement": None},
     {"executables": 33}, "snp.measurement"),
    ("launch_measurement_of_the_wrong_type", _set("snp.measurement", 7), {},
     {"executables": 33}, "snp.measurement"),
    ("changed_pcr4", _set("tpm.pcrs.sha256.4", "ab" * 32), {}, {"executables": 33},
     "tpm.pcr4"),
    ("other_pcr0_reference", None, {"svsm_pcr0": ["00" * 32]}, {"executables": 33},
     "tpm.pcr0"),
    ("pcr_the_quote_does_not_carry", None, {"svsm_pcr8": ["00" * 32]},
     {"executables": 33}, "tpm.pcr8"),
    ("pcr_of_the_wrong_type", _set("tpm.pcrs.sha256.7", 7), {}, {"executables": 33},
     "tpm.pcr7"),
    ("activation_not_checked", _set("svsm.activation", "not_checked"), {},
     {"configuration": 96}, "svsm.activation"),
    ("activation_absent", _set("svsm.activation", "absent"), {}, {"configuration": 96},
     "svsm.activation"),
    ("quote_nonce_not_bound", _set("svsm.quote_nonce", "not_bound"), {},
     {"configuration": 36}, "svsm.quote_nonce"),
    ("vmpl_one", _set("snp.vmpl", 1), {}, {"configuration": 96}, "snp.vmpl"),
    ("vmpl_of_the_wrong_type", _set("snp.vmpl", "0"), {}, {"configuration": 96},
     "snp.vmpl"),
    ("debug_guest", _set("snp.policy_flags.debug", True), {}, {"configuration": 36},
     "snp.policy.debug"),
    ("migration_agent", _set("snp.policy_flags.migrate_ma", True), {},
     {"configuration": 36}, "snp.policy.migrate_ma"),
    ("tcb_below_minimum", _set("snp.reported_tcb.snp", 0), {}, {"hardware": 97},
     "snp.reported_tcb.snp"),
    ("tcb_of_the_wrong_type", _set("snp.reported_tcb.microcode", "999"), {},
     {"hardware": 97}, "snp.reported_tcb.microcode"),
    ("no_tcb_minimum", None, {"svsm_snp_microcode": None}, {"hardware": 97},
     "snp.reported_tcb.microcode"),
    ("fmc_without_minimum", _set("snp.reported_tcb.fmc", 1), {}, {"hardware": 97},
     "snp.reported_tcb.fmc"),
    ("emulated_not_allowed", None, {"allow_emulated": None},
     {"hardware": 96, "instance-identity": 96}, "emulated"),
    ("emulated_credential_key_not_allowed", _genuine_roots_emulated_key,
     {"allow_emulated": None}, {"hardware": 96, "instance-identity": 96}, "emulated"),
    ("emulated_claim_absent", lambda claims: claims.pop("emulated"), {},
     {"hardware": 96, "instance-identity": 96}, "emulated"),
]

def _upper_measurement(claims: dict[str, Any]) -> None:
    claims["snp"]["measurement"] = claims["snp"]["measurement"].upper()


#: Cases an allowing reference value (or a better value) turns back to affirming.
ALLOWED: list[tuple[str, Callable[[dict[str, Any]], None], dict[str, Any]]] = [
    ("debug_allowed", _set("snp.policy_flags.debug", True), {"svsm_allow_debug": [True]}),
    ("migration_agent_allowed", _set("snp.policy_flags.migrate_ma", True),
     {"svsm_allow_migrate_ma": [True]}),
    ("tcb_above_minimum", _set("snp.reported_tcb.snp", 200), {}),
    ("fmc_with_minimum", _set("snp.reported_tcb.fmc", 2), {"svsm_snp_fmc": [1]}),
    ("measurement_in_upper_case", _upper_measurement, {}),
]


def _references(refs: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: v for k, v in {**refs_of(), **refs}.items() if v is not None}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_refusal_is_explained(engine: PolicyEngine, case: tuple[Any, ...]) -> None:
    _, change, refs, expected, check = case
    claims = claims_of()
    if change is not None:
        change(claims)
    appraisal = appraise(engine, claims, _references(refs))
    assert vector(appraisal) == {**AFFIRMING, **expected}, appraisal.explain()
    assert appraisal.status != "affirming"
    assert list(failed(appraisal)) == [f"{TEE}.{check}"], appraisal.explain()
    assert f"{TEE}.{check}" in appraisal.explain()


@pytest.mark.parametrize("case", ALLOWED, ids=[c[0] for c in ALLOWED])
def test_each_allowance(engine: PolicyEngine, case: tuple[Any, ...]) -> None:
    _, change, refs = case
    claims = claims_of()
    change(claims)
    appraisal = appraise(engine, claims, _references(refs))
    assert vector(appraisal) == AFFIRMING, appraisal.explain()


def test_any_of_several_launch_measurements(engine: PolicyEngine) -> None:
    claims = claims_of()
    refs = _references({"svsm_launch_measurement": ["00" * 48, claims["snp"]["measurement"]]})
    assert vector(appraise(engine, claims, refs)) == AFFIRMING


def test_the_refusals_say_why(engine: PolicyEngine) -> None:
    claims = claims_of()
    claims["svsm"]["activation"] = "not_checked"
    claims["snp"]["vmpl"] = 2
    refs = _references({"svsm_launch_measurement": ["00" * 48]})
    explained = failed(appraise(engine, claims, refs))
    assert "not proven to live in the vTPM" in explained[f"{TEE}.svsm.activation"]
    assert "not_checked" in explained[f"{TEE}.svsm.activation"]
    assert "VMPL 0" in explained[f"{TEE}.snp.vmpl"]
    assert "svsm_launch_measurement" in explained[f"{TEE}.snp.measurement"]


def test_revocation_when_the_broker_requires_it(engine: PolicyEngine) -> None:
    claims = claims_of()
    appraisal = appraise(engine, claims, refs_of(), settings={"require_revocation": True})
    assert vector(appraisal) == {**AFFIRMING, "hardware": 97}
    assert list(failed(appraisal)) == [f"{TEE}.snp.revocation"]
    claims["snp"]["revocation"] = "checked"
    appraisal = appraise(engine, claims, refs_of(), settings={"require_revocation": True})
    assert vector(appraisal) == AFFIRMING, appraisal.explain()


def test_no_reference_values_fail_closed(engine: PolicyEngine) -> None:
    appraisal = appraise(engine, claims_of(), {})
    assert vector(appraisal) == {"instance-identity": 96, "configuration": 2,
                                 "executables": 33, "hardware": 96}
    assert appraisal.status == "contraindicated"
    names = failed(appraisal)
    assert f"{TEE}.snp.measurement" in names and f"{TEE}.emulated" in names
    assert "no reference value svsm_launch_measurement" in names[f"{TEE}.snp.measurement"]
    claims = claims_of()
    claims["emulated"] = claims["snp"]["emulated"] = False
    appraisal = appraise(engine, claims, {})
    assert vector(appraisal) == {**AFFIRMING, "executables": 33, "hardware": 97}
    assert {f"{TEE}.snp.reported_tcb.{c}" for c in ("bootloader", "tee", "snp", "microcode")
            } <= set(failed(appraisal))


def test_empty_claims_fail_closed(engine: PolicyEngine) -> None:
    appraisal = appraise(engine, {}, refs_of())
    assert vector(appraisal) == {"instance-identity": 96, "configuration": 96,
                                 "executables": 33, "hardware": 96}


def test_the_claims_of_an_undecided_activation_are_refused(engine: PolicyEngine) -> None:
    """The partial claims the verifier gives when no credential key checked the activation
    (undecided): the policy refuses them too, whatever else holds."""
    bare = SvsmVtpmVerifier().with_roots([r for r in emulated_roots()
                                          if not isinstance(r, CredentialKey)])
    with pytest.raises(CollateralMissingError) as caught:
        bare.verify(Evidence.from_json(SvsmEmulator(now=NOW).evidence(NONCE)),
                    report_data=NONCE, collateral=CollateralSource(), now=NOW)
    partial = caught.value.claims
    assert partial is not None and partial["svsm"]["activation"] == "not_checked"
    appraisal = appraise(engine, copy.deepcopy(dict(partial)), refs_of())
    assert appraisal.trust_vector["configuration"] == 96
    assert appraisal.status == "contraindicated"
    assert f"{TEE}.svsm.activation" in failed(appraisal)


@pytest.mark.parametrize("variant", ["genuine", "no_references", "empty_input", "refused"])
def test_regorus_and_regopy_agree(variant: str) -> None:
    source = shipped_policy(POLICY)
    refs = {} if variant == "no_references" else refs_of()
    data = dict(PreparedReferences.build(refs).document)
    claims = claims_of()
    if variant == "refused":
        claims["svsm"]["activation"] = "absent"
        claims["tpm"]["pcrs"]["sha256"]["4"] = "ab" * 32
        claims["snp"]["reported_tcb"]["snp"] = "8"
    document = {} if variant == "empty_input" else {TEE: claims}
    text = rego.PolicyText.read(source, policy_id="p")
    outputs = frozenset({"trust_claims", "checks"})
    mine = rego.CompiledPolicy(policy_id="p", text=text, outputs=outputs,
                               data=data).evaluate(document)
    interpreter = regopy.Interpreter()
    interpreter.add_module(rego.POLICY_MODULE, source)
    interpreter.add_module(rego.BUILTINS_MODULE, rego.BUILTINS_SOURCE)
    interpreter.add_module(rego.OUTPUT_MODULE, rego.output_module(outputs))
    interpreter.add_data_json(json.dumps(data))
    interpreter.set_input_term(json.dumps(document))
    output = interpreter.query(f"result := data.{rego.OUTPUT_PACKAGE}.{rego.RESULT_RULE}")
    assert output.ok(), str(output)
    theirs = json.loads(str(output))["bindings"]["result"]["values"]
    assert mine["trust_claims"] == theirs["trust_claims"]
    assert mine["checks"] == theirs["checks"]
