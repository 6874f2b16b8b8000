"""The default policies of az-snp-vtpm and az-tdx-vtpm through the policy engine, on claims
the verifiers return for the emulated machines."""

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
from veritee.collateral import CollateralFile, CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee.azure.verify import AzSnpVtpmVerifier, AzTdxVtpmVerifier
from veritee.testing.azure import (
    AzureEmulator,
    emulated_snp_roots,
    emulated_tdx_roots,
    init_data_pcr,
)

AFFIRMING = {"instance-identity": 2, "configuration": 2, "executables": 3, "hardware": 2}
INIT_DATA_DIGEST = bytes(range(32))


@functools.cache
def claims_of(machine: str) -> dict[str, Any]:
    pcrs = list(AzureEmulator().pcrs)
    pcrs[8] = init_data_pcr(INIT_DATA_DIGEST)
    emulator = AzureEmulator(machine=machine, pcrs=tuple(pcrs))  # type: ignore[arg-type]
    verifier = (AzSnpVtpmVerifier().with_roots(emulated_snp_roots()) if machine == "snp"
                else AzTdxVtpmVerifier().with_roots(emulated_tdx_roots()))
    files = tuple(CollateralFile(f"c{s}", d, "collateral") for s, d in emulator.collateral())
    claims = verifier.verify(decode_evidence(json.dumps(emulator.evidence()).encode()),
                             report_data=None, collateral=CollateralSource(files=files),
                             now=emulator.now)
    return claims.to_dict()


def refs_of(machine: str) -> dict[str, list[Any]]:
    claims = claims_of(machine)
    pcrs = claims["tpm"]["pcrs"]["sha256"]
    refs: dict[str, list[Any]] = {"azure_pcr4": [pcrs["4"]], "azure_pcr7": [pcrs["7"]],
                                  "azure_pcr8": [init_data_pcr(INIT_DATA_DIGEST).hex()],
                                  "allow_emulated": [True]}
    if machine == "snp":
        tcb = claims["snp"]["reported_tcb"]
        refs |= {f"azure_snp_{k}": [v] for k, v in tcb.items()}
    return refs


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(native=False)


def appraise(engine: PolicyEngine, machine: str, claims: dict[str, Any],
             refs: dict[str, list[Any]]) -> Appraisal:
    tee = f"az-{machine}-vtpm"
    return engine.appraise(tee=tee, claims=claims, policy_id="default_cpu",
                           policy=shipped_policy(f"{tee}.rego"), reference_values=refs)


def vector(appraisal: Appraisal) -> dict[str, int]:
    return {k: appraisal.trust_vector[k] for k in AFFIRMING}


@pytest.mark.parametrize("machine", ["snp", "tdx"])
def test_the_policies_declare_their_tee(machine: str) -> None:
    source = shipped_policy(f"az-{machine}-vtpm.rego")
    assert declared_tees(source) == frozenset({f"az-{machine}-vtpm"})


@pytest.mark.parametrize("machine", ["snp", "tdx"])
def test_genuine_claims_with_reference_values_affirm(engine: PolicyEngine,
                                                     machine: str) -> None:
    appraisal = appraise(engine, machine, claims_of(machine), refs_of(machine))
    assert vector(appraisal) == AFFIRMING, appraisal.explain()
    assert appraisal.status == "affirming"
    names = {c.name for c in appraisal.checks}
    assert f"az-{machine}-vtpm.tpm.pcr8" in names


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = claims
        for key in parents:
            target = target[key]
        target[last] = value
    return change


CASES: list[tuple[str, str, Callable[[dict[str, Any]], None] | None, dict[str, Any],
                  dict[str, int]]] = [
    ("no_pcr_references", "snp", None,
     {"azure_pcr4": None, "azure_pcr7": None, "azure_pcr8": None}, {"executables": 33}),
    ("other_init_data", "snp", None, {"azure_pcr8": ["00" * 32]}, {"executables": 33}),
    ("changed_pcr4", "tdx", _set("tpm.pcrs.sha256.4", "ab" * 32), {}, {"executables": 33}),
    ("pcr_of_the_wrong_type", "snp", _set("tpm.pcrs.sha256.7", 7), {}, {"executables": 33}),
    ("other_launch_measurement", "snp", None,
     {"azure_snp_launch_measurement": ["00" * 48]}, {"executables": 33}),
    ("tcb_below_minimum", "snp", _set("snp.reported_tcb.snp", 0), {}, {"hardware": 97}),
    ("no_tcb_minimum", "snp", None, {"azure_snp_microcode": None}, {"hardware": 97}),
    ("emulated_not_allowed", "snp", None, {"allow_emulated": None},
     {"hardware": 96, "instance-identity": 96}),
    ("emulated_not_allowed_tdx", "tdx", None, {"allow_emulated": None},
     {"hardware": 96, "instance-identity": 96}),
    ("vmpl_one", "snp", _set("snp.vmpl", 1), {}, {"configuration": 96}),
    ("debug_guest", "snp", _set("snp.policy_flags.debug", True), {}, {"configuration": 36}),
    ("debug_allowed", "snp", _set("snp.policy_flags.debug", True),
     {"azure_allow_debug": [True]}, {}),
    ("secure_boot_off", "tdx", _set("hcl.vm_configuration.secure-boot", False), {},
     {"configuration": 36}),
    ("secure_boot_off_allowed", "snp", _set("hcl.vm_configuration.secure-boot", False),
     {"azure_allow_insecure_boot": [True]}, {}),
    ("debug_td", "tdx", _set("tdx.td_attributes_flags.debug", True), {},
     {"configuration": 36}),
    ("tcb_out_of_date", "tdx", _set("tdx.tcb_status", "OutOfDate"), {}, {"hardware": 97}),
    ("tcb_out_of_date_accepted", "tdx", _set("tdx.tcb_status", "OutOfDate"),
     {"azure_tdx_tcb_status": ["OutOfDate"]}, {}),
    ("other_mr_td", "tdx", None, {"azure_tdx_mr_td": ["00" * 48]}, {"executables": 33}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_rule(engine: PolicyEngine, case: tuple[Any, ...]) -> None:
    _, machine, change, refs, expected = case
    claims = copy.deepcopy(claims_of(machine))
    if change is not None:
        change(claims)
    references = {k: v for k, v in {**refs_of(machine), **refs}.items() if v is not None}
    appraisal = appraise(engine, machine, claims, references)
    assert vector(appraisal) == {**AFFIRMING, **expected}, appraisal.explain()
    if expected:
        assert any(not c.held for c in appraisal.checks)


@pytest.mark.parametrize("machine", ["snp", "tdx"])
@pytest.mark.parametrize("variant", ["genuine", "no_references", "empty_input"])
def test_regorus_and_regopy_agree(machine: str, variant: str) -> None:
    source = shipped_policy(f"az-{machine}-vtpm.rego")
    refs = {} if variant == "no_references" else refs_of(machine)
    data = dict(PreparedReferences.build(refs).document)
    document = {} if variant == "empty_input" else {f"az-{machine}-vtpm": claims_of(machine)}
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
