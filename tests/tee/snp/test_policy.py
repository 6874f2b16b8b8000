"""The default SEV-SNP attestation policy, on claims from the emulated SNP platform."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from support import platforms
from veritee.appraisal import (
    GENERIC_ATTESTATION_POLICY,
    TRUST_CLAIMS,
    Appraisal,
    PolicyEngine,
    shipped_policy,
)
from veritee.appraisal.rego import declared_tees
from veritee.errors import MisuseError
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.layout import parse_report
from veritee.testing.snp import SnpEmulator

SNP_POLICY = platforms.default_policy("snp")


def snp_claims(*, emulated: bool = False, **emulator: Any) -> dict[str, Any]:
    """Claims exactly as the SNP verifier returns them (SnpClaims.to_dict())."""
    machine = SnpEmulator(product="genoa", **emulator)
    report = parse_report(machine.report())
    return SnpClaims(report, "genoa", "vcek", emulated=emulated).to_dict()


CLAIMS = snp_claims()
MEASUREMENT = CLAIMS["measurement"]
OTHER = "b07af9" + "11" * 44 + "9c1d"
REFS: dict[str, list[Any]] = {
    "snp_launch_measurement": [MEASUREMENT, OTHER],
    "snp_bootloader": [10], "snp_tee": [0], "snp_snp": [23], "snp_microcode": [84],
}
AFFIRMING = {"instance-identity": 2, "configuration": 2, "executables": 3, "hardware": 2}


@pytest.fixture(scope="module", params=[True, False], ids=["native", "regopy"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    """Every test runs on the native evaluator of the shipped policy and on regopy."""
    return platforms.engine(native=request.param)


def appraise(engine: PolicyEngine, claims: dict[str, Any], refs: dict[str, list[Any]]
             ) -> Appraisal:
    return engine.appraise(tee="snp", claims=claims, policy_id="default_cpu",
                           policy=SNP_POLICY, reference_values=refs,
                           runtime_data={"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC"}},
                           **platforms.shape("snp"))


def with_(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = claims
        for key in parents:
            target = target[key]
        target[last] = value
    return change


def refs_with(**changes: Any) -> dict[str, list[Any]]:
    refs = {**REFS, **changes}
    return {k: v for k, v in refs.items() if v is not None}


class Case(NamedTuple):
    name: str
    change: Callable[[dict[str, Any]], None] | None
    refs: dict[str, list[Any]]
    vector: dict[str, int]
    """The trust claims that differ from all-affirming."""
    failed: set[str]


CASES = [Case(*case) for case in [

    ("all good", None, REFS, {}, set()),
    ("measurement uppercase reference", None,
     refs_with(snp_launch_measurement=[MEASUREMENT.upper()]), {}, set()),
    ("unknown measurement", with_("measurement", "7a1e5c" + "00" * 44 + "841f"), REFS,
     {"executables": 33}, {"snp.measurement"}),
    ("no measurement reference", None, refs_with(snp_launch_measurement=None),
     {"executables": 33}, {"snp.measurement"}),
    ("measurement not a string", with_("measurement", 7), REFS,
     {"executables": 33}, {"snp.measurement"}),
    ("old snp firmware", with_("reported_tcb.snp", 22), REFS,
     {"hardware": 97}, {"snp.reported_tcb.snp"}),
    ("old microcode", with_("reported_tcb.microcode", 83), REFS,
     {"hardware": 97}, {"snp.reported_tcb.microcode"}),
    ("newer tcb passes", with_("reported_tcb.bootloader", 200), REFS, {}, set()),
    ("minimum is the smallest listed", with_("reported_tcb.snp", 22),
     refs_with(snp_snp=[30, 22]), {}, set()),
    ("no tcb references: not checked", with_("reported_tcb.snp", 0),
     refs_with(snp_bootloader=None, snp_tee=None, snp_snp=None, snp_microcode=None), {}, set()),
    ("tcb reference of strings fails", None, refs_with(snp_snp=["23"]),
     {"hardware": 97}, {"snp.reported_tcb.snp"}),
    ("debug allowed", with_("policy_flags.debug", True), REFS,
     {"configuration": 36}, {"snp.policy.debug"}),
    ("migration agent allowed", with_("policy_flags.migrate_ma", True), REFS,
     {"configuration": 36}, {"snp.policy.migrate_ma"}),
    ("debug flag missing", with_("policy_flags", {}), REFS,
     {"configuration": 36}, {"snp.policy.debug", "snp.policy.migrate_ma"}),
    ("host data allowed", None, refs_with(snp_host_data=["00" * 32]), {}, set()),
    ("host data not allowed", None, refs_with(snp_host_data=["11" * 32]),
     {"configuration": 36}, {"snp.host_data"}),
    ("emulated", with_("emulated", True), REFS,
     {"instance-identity": 96, "hardware": 96}, {"snp.emulated"}),
    ("emulated flag missing counts as emulated", with_("emulated", None), REFS,
     {"instance-identity": 96, "hardware": 96}, {"snp.emulated"}),
    ("emulated allowed explicitly", with_("emulated", True), refs_with(allow_emulated=[True]),
     {}, set()),
    ("allow_emulated must be [true]", with_("emulated", True),
     refs_with(allow_emulated=["true"]), {"instance-identity": 96, "hardware": 96},
     {"snp.emulated"}),
]]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_default_snp_policy(engine: PolicyEngine, case: Case) -> None:
    claims = copy.deepcopy(CLAIMS)
    if case.change:
        case.change(claims)
    result = appraise(engine, claims, case.refs)
    assert result.trust_vector == dict.fromkeys(TRUST_CLAIMS, 0) | AFFIRMING | case.vector
    assert {check.name for check in result.failed()} == case.failed
    worst = max(case.vector.values(), default=0)
    assert result.status == ("affirming" if not worst else
                             "contraindicated" if worst >= 96 else "warning")


def test_string_tcb_does_not_pass_a_numeric_check(engine: PolicyEngine) -> None:
    # Rego orders across types: "99" >= 23 is true. The policy guards with is_number.
    claims = copy.deepcopy(CLAIMS)
    claims["reported_tcb"]["snp"] = "99"
    result = appraise(engine, claims, REFS)
    assert result.trust_vector["hardware"] == 97
    assert result.status == "contraindicated"
    (check,) = result.failed()
    assert check.name == "snp.reported_tcb.snp"
    assert check.detail == ('reported_tcb.snp is "99" (a string), not a number '
                            "(snp_snp: [23])")


def test_emulated_evidence_is_refused_by_default(engine: PolicyEngine) -> None:
    claims = snp_claims(emulated=True)
    result = appraise(engine, claims, REFS)
    assert result.status == "contraindicated"
    assert result.trust_vector["instance-identity"] == 96
    assert result.annotated["snp"]["emulated"] is True
    assert "allow_emulated = [true]" in result.explain()


def test_explanation_names_rule_and_values(engine: PolicyEngine) -> None:
    claims = copy.deepcopy(CLAIMS)
    claims["measurement"] = "7a1e5c" + "00" * 44 + "841f"
    claims["reported_tcb"]["microcode"] = 80
    text = appraise(engine, claims, REFS).explain()
    assert text.splitlines() == [
        f"snp.measurement: {claims['measurement']} is not a reference value "
        f"(snp_launch_measurement: [{MEASUREMENT}, {OTHER}])",
        "snp.reported_tcb.microcode: reported_tcb.microcode is 80, below the minimum 84 "
        "(snp_microcode: [84])",
    ]


def test_checks_carry_the_compared_values(engine: PolicyEngine) -> None:
    result = appraise(engine, CLAIMS, REFS)
    checks = {check.name: check for check in result.checks}
    assert all(check.held for check in result.checks)
    assert checks["snp.measurement"].values == {
        "field": "measurement", "actual": MEASUREMENT, "expected": [MEASUREMENT, OTHER],
        "reference": "snp_launch_measurement"}
    assert checks["snp.reported_tcb.snp"].detail == (
        "reported_tcb.snp is 23 ≥ 23 (snp_snp: [23])")
    assert checks["snp.host_data"].detail == (
        f"host_data is {'00' * 32}; no reference value snp_host_data, not checked")
    assert result.explain() == "snp: affirming under policy default_cpu; all 9 checks held"


def test_annotated_input_has_trustee_aliases(engine: PolicyEngine) -> None:
    result = appraise(engine, CLAIMS, REFS)
    snp = result.annotated["snp"]
    assert snp["reported_tcb_bootloader"] == CLAIMS["reported_tcb"]["bootloader"]
    assert snp["reported_tcb_snp"] == CLAIMS["reported_tcb"]["snp"]
    assert snp["policy_debug_allowed"] is False
    assert snp["policy_migrate_ma"] is False
    assert snp["policy_smt_allowed"] is True
    assert snp["policy_abi_major"] == CLAIMS["policy_flags"]["abi_major"]
    assert snp["platform_smt_enabled"] is True
    assert snp["init_data"] == CLAIMS["host_data"]
    assert result.annotated["init_data"] == CLAIMS["host_data"]
    assert result.annotated["report_data"] == CLAIMS["report_data"]
    assert result.annotated["runtime_data_claims"]["tee-pubkey"] == {"kty": "EC"}
    assert result.annotated["init_data_claims"] == {}


def test_a_tee_without_a_default_policy_is_contraindicated(engine: PolicyEngine) -> None:
    result = engine.appraise(tee="other", claims={"mr_td": "00" * 48},
                             policy_id="default_cpu", policy=GENERIC_ATTESTATION_POLICY,
                             reference_values={})
    assert result.status == "contraindicated"
    assert result.explain() == (
        "policy.configured: veritee has no default attestation policy for this TEE; set one")


def test_snp_policy_is_not_the_generic_one_and_names_its_tee() -> None:
    assert SNP_POLICY != shipped_policy(None) == GENERIC_ATTESTATION_POLICY
    assert declared_tees(SNP_POLICY) == {"snp"}
    with pytest.raises(MisuseError, match="not the file name"):
        shipped_policy("../snp.rego")
    with pytest.raises(MisuseError, match="ships no policy"):
        shipped_policy("nothing.rego")
