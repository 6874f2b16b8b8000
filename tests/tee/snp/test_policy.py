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


def appraise(engine: PolicyEngine, claims: dict[str, Any], refs: dict[str, list[Any]],
             settings: dict[str, Any] | None = None) -> Appraisal:
    return engine.appraise(tee="snp", claims=claims, policy_id="default_cpu",
                           policy=SNP_POLICY, reference_values=refs,
                           runtime_data={"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC"}},
                           settings=settings, **platforms.shape("snp"))


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


def changes(*steps: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        for step in steps:
            step(claims)
    return change


def without(path: str) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = claims
        for key in parents:
            target = target[key]
        del target[last]
    return change


#: The broker requires a checked CRL (input.veritee.require_revocation).
REQUIRED = {"require_revocation": True}
NO_TCB_REFS = {"snp_bootloader": None, "snp_tee": None, "snp_snp": None, "snp_microcode": None}
ALL_TCB = {"snp.reported_tcb.bootloader", "snp.reported_tcb.tee", "snp.reported_tcb.snp",
           "snp.reported_tcb.microcode"}


class Case(NamedTuple):
    name: str
    change: Callable[[dict[str, Any]], None] | None
    refs: dict[str, list[Any]]
    vector: dict[str, int]
    """The trust claims that differ from all-affirming."""
    failed: set[str]
    settings: dict[str, Any] | None = None
    """``input.veritee``."""


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
    # A component without a reference value is not recognised (Trustee's default: 97).
    ("no tcb references: not recognised", None, refs_with(**NO_TCB_REFS),
     {"hardware": 97}, ALL_TCB),
    ("one tcb reference missing", None, refs_with(snp_tee=None),
     {"hardware": 97}, {"snp.reported_tcb.tee"}),
    ("empty tcb reference", None, refs_with(snp_microcode=[]),
     {"hardware": 97}, {"snp.reported_tcb.microcode"}),
    ("tcb reference of strings fails", None, refs_with(snp_snp=["23"]),
     {"hardware": 97}, {"snp.reported_tcb.snp"}),
    ("tcb component missing", without("reported_tcb.bootloader"), REFS,
     {"hardware": 97}, {"snp.reported_tcb.bootloader"}),
    ("reported tcb not an object", with_("reported_tcb", 99), REFS,
     {"hardware": 97}, ALL_TCB),
    ("fmc reported (Turin) without snp_fmc", with_("reported_tcb.fmc", 0), REFS,
     {"hardware": 97}, {"snp.reported_tcb.fmc"}),
    ("fmc reported and its minimum met", with_("reported_tcb.fmc", 3),
     refs_with(snp_fmc=[3]), {}, set()),
    ("fmc below its minimum", with_("reported_tcb.fmc", 1), refs_with(snp_fmc=[2]),
     {"hardware": 97}, {"snp.reported_tcb.fmc"}),
    ("fmc null is reported, not absent", with_("reported_tcb.fmc", None),
     refs_with(snp_fmc=[0]), {"hardware": 97}, {"snp.reported_tcb.fmc"}),
    ("fmc as a string", with_("reported_tcb.fmc", "9"), refs_with(snp_fmc=[0]),
     {"hardware": 97}, {"snp.reported_tcb.fmc"}),
    ("snp_fmc without fmc (Genoa) is not applicable", None, refs_with(snp_fmc=[9]),
     {}, set()),
    # VMPL: only 0 unless snp_vmpl lists others (a less privileged context chose REPORT_DATA).
    ("vmpl 1", with_("vmpl", 1), REFS, {"configuration": 96}, {"snp.vmpl"}),
    ("vmpl 3", with_("vmpl", 3), REFS, {"configuration": 96}, {"snp.vmpl"}),
    ("vmpl as a string", with_("vmpl", "0"), REFS, {"configuration": 96}, {"snp.vmpl"}),
    ("vmpl as a boolean", with_("vmpl", False), REFS, {"configuration": 96}, {"snp.vmpl"}),
    ("vmpl missing", without("vmpl"), REFS, {"configuration": 96}, {"snp.vmpl"}),
    ("vmpl 1 allowed by snp_vmpl", with_("vmpl", 1), refs_with(snp_vmpl=[0, 1]), {}, set()),
    ("vmpl 2 not among snp_vmpl", with_("vmpl", 2), refs_with(snp_vmpl=[0, 1]),
     {"configuration": 96}, {"snp.vmpl"}),
    ("snp_vmpl replaces the default", None, refs_with(snp_vmpl=[1]),
     {"configuration": 96}, {"snp.vmpl"}),
    ("snp_vmpl of strings", with_("vmpl", 1), refs_with(snp_vmpl=["1"]),
     {"configuration": 96}, {"snp.vmpl"}),
    ("empty snp_vmpl allows none", None, refs_with(snp_vmpl=[]),
     {"configuration": 96}, {"snp.vmpl"}),
    ("vmpl and debug: the worst wins", changes(with_("vmpl", 1),
                                                with_("policy_flags.debug", True)),
     REFS, {"configuration": 96}, {"snp.vmpl", "snp.policy.debug"}),
    # Guest policy bits.
    ("debug allowed", with_("policy_flags.debug", True), REFS,
     {"configuration": 36}, {"snp.policy.debug"}),
    ("migration agent allowed", with_("policy_flags.migrate_ma", True), REFS,
     {"configuration": 36}, {"snp.policy.migrate_ma"}),
    ("debug flag missing", with_("policy_flags", {}), REFS,
     {"configuration": 36}, {"snp.policy.debug", "snp.policy.migrate_ma"}),
    ("debug accepted by snp_allow_debug", with_("policy_flags.debug", True),
     refs_with(snp_allow_debug=[True]), {}, set()),
    ("snp_allow_debug must be [true]", with_("policy_flags.debug", True),
     refs_with(snp_allow_debug=["true"]), {"configuration": 36}, {"snp.policy.debug"}),
    ("snp_allow_debug with two values", with_("policy_flags.debug", True),
     refs_with(snp_allow_debug=[True, False]), {"configuration": 36}, {"snp.policy.debug"}),
    ("allowed debug flag must still be a boolean", with_("policy_flags.debug", 1),
     refs_with(snp_allow_debug=[True]), {"configuration": 36}, {"snp.policy.debug"}),
    ("snp_allow_debug does not allow a migration agent",
     with_("policy_flags.migrate_ma", True), refs_with(snp_allow_debug=[True]),
     {"configuration": 36}, {"snp.policy.migrate_ma"}),
    ("migration agent accepted by snp_allow_migrate_ma", with_("policy_flags.migrate_ma", True),
     refs_with(snp_allow_migrate_ma=[True]), {}, set()),
    # Revocation: judged only when the broker requires it.
    ("revocation not checked, not required", None, REFS, {}, set()),
    ("revocation not checked, required", None, REFS, {"hardware": 97}, {"snp.revocation"},
     REQUIRED),
    ("revocation checked, required", with_("revocation", "checked"), REFS, {}, set(),
     REQUIRED),
    ("revocation claim missing, required", without("revocation"), REFS,
     {"hardware": 97}, {"snp.revocation"}, REQUIRED),
    ("revocation claim not a string, required", with_("revocation", True), REFS,
     {"hardware": 97}, {"snp.revocation"}, REQUIRED),
    ("require_revocation must be true", None, REFS, {}, set(), {"require_revocation": 1}),
    ("require_revocation false", None, REFS, {}, set(), {"require_revocation": False}),
    ("emulated outranks revocation", with_("emulated", True), REFS,
     {"instance-identity": 96, "hardware": 96}, {"snp.emulated", "snp.revocation"}, REQUIRED),
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
    result = appraise(engine, claims, case.refs, case.settings)
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


def test_failed_checks_say_what_is_missing(engine: PolicyEngine) -> None:
    claims = copy.deepcopy(CLAIMS)
    claims["vmpl"] = 1
    claims["policy_flags"]["debug"] = True
    result = appraise(engine, claims, refs_with(snp_tee=None), REQUIRED)
    details = {check.name: check.detail for check in result.failed()}
    assert details == {
        "snp.reported_tcb.tee": "reported_tcb.tee is 0, but no reference value snp_tee is set",
        "snp.revocation": 'revocation is "not_checked", expected "checked"; the broker '
                          "requires a checked CRL from AMD's ARK (require_revocation) and "
                          "none could be obtained (AMD KDS unreachable, or no current CRL)",
        "snp.vmpl": "vmpl is 1, expected 0; only VMPL 0 passes (a less privileged context "
                    "chooses its own REPORT_DATA) unless reference value snp_vmpl lists the "
                    "allowed VMPLs",
        "snp.policy.debug": "policy_flags.debug is true, expected false; refused unless "
                            "reference value snp_allow_debug = [true]",
    }
    assert result.trust_vector["hardware"] == 97
    assert result.trust_vector["configuration"] == 96


def test_allowed_values_are_named_when_they_pass(engine: PolicyEngine) -> None:
    claims = copy.deepcopy(CLAIMS)
    claims["vmpl"] = 1
    claims["policy_flags"]["debug"] = True
    claims["revocation"] = "checked"
    result = appraise(engine, claims, refs_with(snp_vmpl=[0, 1], snp_allow_debug=[True]),
                      REQUIRED)
    assert result.status == "affirming"
    checks = {check.name: check for check in result.checks}
    assert checks["snp.vmpl"].detail == "1 is a reference value (snp_vmpl)"
    assert checks["snp.policy.debug"].detail == "true is a reference value (snp_allow_debug)"
    assert checks["snp.revocation"].detail == 'revocation is "checked"'


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
    assert checks["snp.revocation"].detail == (
        "revocation is not required by the broker (input.veritee.require_revocation is not "
        "true); the claim is not judged")
    assert checks["snp.revocation"].values == {"field": "revocation", "actual": "not_checked"}
    assert checks["snp.vmpl"].detail == "vmpl is 0"
    assert checks["snp.reported_tcb.fmc"].detail == "reported_tcb.fmc is absent; no reference "\
        "value snp_fmc, not checked"
    assert result.explain() == "snp: affirming under policy default_cpu; all 12 checks held"


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
